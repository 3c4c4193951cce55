"""Test videos encoded with PyAV whose frames show their own index as big black/white blocks.

The pattern survives lossy compression, so a test reads the index back from returned pixels and checks that
the right frame came back, not just the right number of frames.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

BLOCK = 16  # pixels per bit block
GRID = 4  # 4x4 = 16 bits of frame index
WIDTH, HEIGHT = 96, 64


def pattern_frame(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    img = np.full((height, width, 3), 128, np.uint8)
    for bit in range(GRID * GRID):
        r, c = divmod(bit, GRID)
        img[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK] = 255 if (index >> bit) & 1 else 0
    # a colour stripe that varies per frame so encoders see motion, away from the bit blocks
    img[:, GRID * BLOCK:, 0] = (index * 7) % 256
    return img


def read_index(frame: np.ndarray) -> int:
    """Read back the index drawn by :func:`pattern_frame` (frame at the original size)."""
    value = 0
    for bit in range(GRID * GRID):
        r, c = divmod(bit, GRID)
        block = frame[r * BLOCK + 3:(r + 1) * BLOCK - 3, c * BLOCK + 3:(c + 1) * BLOCK - 3]
        if block.mean() > 127:
            value |= 1 << bit
    return value


def encode_video(path: Path, n_frames: int = 60, fps: int = 30, codec: str = "libx264", gop: int = 12,
                 bframes: int | None = 2, container_format: str | None = None,
                 pts_seconds: Sequence[float] | None = None, start_seconds: float = 0.0,
                 width: int = WIDTH, height: int = HEIGHT, options: dict | None = None,
                 container_options: dict | None = None) -> Path:
    """Encode ``n_frames`` pattern frames. ``pts_seconds`` gives explicit (variable) frame times."""
    out = av.open(str(path), "w", format=container_format, options=container_options or {})
    stream = out.add_stream(codec, rate=fps)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.gop_size = gop
    opts = dict(options or {})
    if bframes is not None and codec in ("libx264", "libx265"):
        if codec == "libx264":
            opts.setdefault("bf", str(bframes))
        else:
            opts.setdefault("x265-params", f"bframes={bframes}:keyint={gop}:min-keyint={gop}:log-level=error")
    if codec == "libx264":
        opts.setdefault("preset", "veryfast")
    stream.codec_context.options = opts
    tb = Fraction(1, 1000) if pts_seconds is not None else Fraction(1, fps)
    stream.codec_context.time_base = tb
    for i in range(n_frames):
        frame = av.VideoFrame.from_ndarray(pattern_frame(i, width, height), format="rgb24")
        t = pts_seconds[i] if pts_seconds is not None else i / fps
        frame.pts = int(round((t + start_seconds) / tb))
        frame.time_base = tb
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return Path(path)


def encode_audio_only(path: Path, seconds: float = 1.0) -> Path:
    out = av.open(str(path), "w")
    stream = out.add_stream("aac", rate=44100)
    samples = int(44100 * seconds)
    t = np.arange(samples) / 44100.0
    data = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
    pos = 0
    for chunk in range(0, samples, 1024):
        frame = av.AudioFrame.from_ndarray(data[:, chunk:chunk + 1024], format="fltp", layout="mono")
        frame.sample_rate = 44100
        frame.pts = pos
        pos += frame.samples
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return Path(path)


def stream_times(path: Path) -> list[float]:
    """Presentation times (from the first frame) of every frame, by decoding everything: the ground truth."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = sorted(f.pts for f in c.decode(s))
        return [float((p - pts[0]) * s.time_base) for p in pts]
