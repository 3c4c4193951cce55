"""Regenerate the bundled demo videos in data/samples/ (committed; run this only to change them).

Three short 320x180 clips with visibly different quality (sharp moving shapes, a blurred and noisy copy, a
dark low-contrast one) and one broken file, so the demo shows scores that differ and a row that fails.
"""

from pathlib import Path

import av
import numpy as np

OUT = Path(__file__).parent / "samples"
W, H, FPS, SECONDS = 320, 180, 24, 6


def scene(i: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    img = np.zeros((H, W, 3), np.float32)
    img[..., 0] = 0.5 + 0.5 * np.sin((x + 3 * i) / 23.0)
    img[..., 1] = 0.5 + 0.5 * np.cos((y - 2 * i) / 17.0)
    img[..., 2] = (x / W)
    cx, cy = int(W / 2 + 90 * np.sin(i / 15)), int(H / 2 + 50 * np.cos(i / 11))
    img[max(0, cy - 20):cy + 20, max(0, cx - 20):cx + 20] = (1.0, 1.0, 0.2)
    img[(x // 40 + y // 40) % 2 == 0] *= 0.85  # checkerboard texture
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def degrade(img: np.ndarray, i: int) -> np.ndarray:
    small = img[::8, ::8].repeat(8, 0).repeat(8, 1)[:H, :W].astype(np.float32)
    noise = np.random.default_rng(i).normal(0, 30, small.shape)
    return np.clip(small + noise, 0, 255).astype(np.uint8)


def dark(img: np.ndarray, i: int) -> np.ndarray:
    return (img.astype(np.float32) * 0.15 + 10).astype(np.uint8)


def write(name: str, transform=None) -> None:
    with av.open(str(OUT / name), "w") as out:
        s = out.add_stream("libx264", rate=FPS, options={"crf": "28", "preset": "slow"})
        s.width, s.height, s.pix_fmt, s.gop_size = W, H, "yuv420p", 48
        for i in range(FPS * SECONDS):
            img = scene(i)
            if transform:
                img = transform(img, i)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    write("sharp_shapes.mp4")
    write("blurry_noisy.mp4", degrade)
    write("dark_low_contrast.mp4", dark)
    (OUT / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    for p in sorted(OUT.iterdir()):
        print(p.name, p.stat().st_size)
