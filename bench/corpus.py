"""Synthetic benchmark videos, encoded with PyAV and cached under ``bench/.corpus/`` (git-ignored).

The content is a textured background (several octaves of smoothed noise plus stripes and blocks) that pans
along a smooth curve, a second texture blended over it at 16% that pans on another path, a textured sprite
that moves across on a third path, and a light film grain cycled from a small pool. Every frame differs from
the previous one, motion compensation works as on real footage, and the bitrate lands in a realistic range
for 720p30 (about 3 Mbit/s at libx264's default CRF 23, P/B-frames several times smaller than I-frames, no
spurious scene-cut keyframes), so decoding cost per frame is representative: not near-free like a constant
picture, not huge like pure noise.

Frames are generated directly in yuv420p by slicing precomputed planes, so encoding speed is bound by the
encoder (libx264 ``veryfast``), not by frame generation.

Reuse from other benchmarks::

    from bench.corpus import build_corpus, encode_video
    paths = build_corpus("sampling", quick=False)          # cached; encoded on first use
    encode_video(Path("x.mp4"), 1280, 720, 30, 10.0, gop=60)  # one-off video
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

# BENCH_CORPUS_DIR: elsewhere (make device-dry-run keeps its tiny corpus in its own folder)
CORPUS_DIR = Path(os.environ.get("BENCH_CORPUS_DIR") or Path(__file__).resolve().parent / ".corpus")
_GEN_VERSION = 3  # bump when the content generator changes, so cached files are rebuilt


@dataclass(frozen=True)
class VideoSpec:
    """Parameters of one synthetic video; ``filename`` encodes them, so the cache is keyed by them."""

    width: int
    height: int
    fps: int
    seconds: float
    gop: int
    codec: str = "libx264"
    preset: str = "veryfast"
    seed: int = 0

    @property
    def num_frames(self) -> int:
        return int(round(self.seconds * self.fps))

    @property
    def filename(self) -> str:
        secs = f"{self.seconds:g}".replace(".", "p")
        return (f"{self.codec}_{self.width}x{self.height}_{self.fps}fps_{secs}s_gop{self.gop}_{self.preset}"
                f"_s{self.seed}_v{_GEN_VERSION}.mp4")

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height} {self.seconds:g}s GOP {self.gop}"


# Corpora by kind. The "sampling" corpus is the one the targets in bench/README.md refer to.
CORPORA: dict[str, dict[bool, list[VideoSpec]]] = {
    "sampling": {
        False: [VideoSpec(1280, 720, 30, 60.0, gop=30), VideoSpec(1280, 720, 30, 60.0, gop=250)],
        True: [VideoSpec(640, 360, 30, 20.0, gop=30), VideoSpec(640, 360, 30, 20.0, gop=250)],
    },
}


# -- content ----------------------------------------------------------------------------------------------
def _octave_noise(rng: np.random.Generator, h: int, w: int, scales=(2, 6, 16, 64, 256),
                  weights=(0.12, 0.13, 0.25, 0.3, 0.2)) -> np.ndarray:
    """Smooth multi-scale noise in [0, 1], shape (h, w): coarse blobs down to fine texture."""
    acc = np.zeros((h, w), np.float32)
    for scale, weight in zip(scales, weights):
        small = rng.random((max(2, h // scale), max(2, w // scale))).astype(np.float32)
        img = Image.fromarray(small, mode="F").resize((w, h), Image.BICUBIC)
        acc += weight * np.asarray(img, dtype=np.float32)
    acc -= acc.min()
    acc /= max(float(acc.max()), 1e-6)
    return acc


def _texture(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured YUV picture of shape (h, w) for Y and (h/2, w/2) for U and V, uint8."""
    y = _octave_noise(rng, h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # stripes and a soft checkerboard: sharp-ish edges like man-made structure
    y = 0.7 * y + 0.15 * (0.5 + 0.5 * np.sin(xx * 0.11 + 3 * np.sin(yy * 0.013)))
    y += 0.15 * (((xx // 48 + yy // 48) % 2) * _octave_noise(rng, h, w, scales=(32, 128), weights=(0.5, 0.5)))
    y = np.clip(16 + y * 219, 0, 255).astype(np.uint8)
    chroma = dict(scales=(16, 64, 256), weights=(0.2, 0.4, 0.4))
    u = np.clip(128 + (_octave_noise(rng, h // 2, w // 2, **chroma) - 0.5) * 120, 0, 255).astype(np.uint8)
    v = np.clip(128 + (_octave_noise(rng, h // 2, w // 2, **chroma) - 0.5) * 120, 0, 255).astype(np.uint8)
    return y, u, v


class _FrameGenerator:
    """Yields yuv420p frames as (h * 3 // 2, w) uint8 arrays, cheaply (slices of precomputed planes)."""

    GRAIN_POOL = 8

    def __init__(self, width: int, height: int, fps: int, seed: int = 0):
        if width % 4 or height % 4:
            raise ValueError("width and height must be multiples of 4")
        self.w, self.h, self.fps = width, height, fps
        rng = np.random.default_rng(seed)
        # background texture with room to pan: 1.5x the frame in each direction
        self.pad_x, self.pad_y = (width // 2) & ~1, (height // 2) & ~1
        self.bg = _texture(rng, height + self.pad_y, width + self.pad_x)
        # a second luma layer blended over the background and panning on a different path (parallax, like
        # foliage or water over a scene): the picture is not one rigid translation, so motion compensation
        # leaves residuals as on real footage
        self.overlay = _texture(rng, height + self.pad_y, width + self.pad_x)[0].astype(np.uint16)
        # a sprite (a quarter of the frame height) with its own texture
        self.sw = self.sh = (height // 4) & ~3
        self.sprite = _texture(rng, self.sh, self.sw)
        # film grain pool: small signed luma offsets, cycled
        self.grain = rng.integers(-3, 4, size=(self.GRAIN_POOL, height, width), dtype=np.int16)

    def frame(self, i: int) -> np.ndarray:
        t = i / self.fps
        # background pans along a Lissajous curve: a few pixels per frame, direction changing slowly
        ox = int(self.pad_x / 2 * (1 + math.sin(2 * math.pi * t / 23.0))) & ~1
        oy = int(self.pad_y / 2 * (1 + math.sin(2 * math.pi * t / 17.0 + 1.0))) & ~1
        h, w = self.h, self.w
        by, bu, bv = self.bg
        qx = int(self.pad_x / 2 * (1 + math.sin(2 * math.pi * t / 11.0 + 2.0))) & ~1
        qy = int(self.pad_y / 2 * (1 + math.cos(2 * math.pi * t / 13.0))) & ~1
        y = by[oy:oy + h, ox:ox + w].astype(np.uint16) * 216
        y += self.overlay[qy:qy + h, qx:qx + w] * 40
        y >>= 8
        y = y.astype(np.int16)
        y += self.grain[i % self.GRAIN_POOL]
        u = bu[oy // 2:oy // 2 + h // 2, ox // 2:ox // 2 + w // 2].copy()
        v = bv[oy // 2:oy // 2 + h // 2, ox // 2:ox // 2 + w // 2].copy()
        # sprite bounces around on another path
        sx = int((w - self.sw) * (0.5 + 0.5 * math.sin(2 * math.pi * t / 7.0))) & ~1
        sy = int((h - self.sh) * (0.5 + 0.5 * math.cos(2 * math.pi * t / 5.0))) & ~1
        py, pu, pv = self.sprite
        y[sy:sy + self.sh, sx:sx + self.sw] = py
        u[sy // 2:(sy + self.sh) // 2, sx // 2:(sx + self.sw) // 2] = pu
        v[sy // 2:(sy + self.sh) // 2, sx // 2:(sx + self.sw) // 2] = pv
        out = np.empty((h * 3 // 2, w), np.uint8)
        np.clip(y, 0, 255, out=y)
        out[:h] = y
        out[h:h + h // 4] = u.reshape(h // 4, w)
        out[h + h // 4:] = v.reshape(h // 4, w)
        return out


# -- encoding ---------------------------------------------------------------------------------------------
def encode_video(path: Path | str, width: int, height: int, fps: int, seconds: float, gop: int,
                 codec: str = "libx264", preset: str = "veryfast", seed: int = 0,
                 options: dict | None = None) -> Path:
    """Encode a synthetic video to ``path`` (mp4 unless the suffix says otherwise) and return the path.

    libx264 runs with its defaults apart from ``preset`` and the GOP (``gop_size``): 3 B-frames, B-pyramid,
    CRF 23, closed GOPs, frame threading (one slice per frame). Writes to a temporary file first, so an
    interrupted run never leaves a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    gen = _FrameGenerator(width, height, fps, seed)
    n = int(round(seconds * fps))
    tb = Fraction(1, fps)
    fmt = "mp4" if path.suffix.lower() in (".mp4", "") else None
    try:
        with av.open(str(tmp), "w", format=fmt) as out:
            stream = out.add_stream(codec, rate=fps)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.gop_size = gop
            opts = dict(options or {})
            if codec in ("libx264", "libx265"):
                opts.setdefault("preset", preset)
            stream.codec_context.options = opts
            stream.codec_context.time_base = tb
            # PyAV opens encoders with slice threading, which makes libx264 cut every frame into one slice per
            # thread (sliced_threads=1); x264's own default (and the ffmpeg CLI's) is frame threading with one
            # slice per frame, as in most real files. Slice count matters: it decides whether a decoder's
            # slice threading can run in parallel.
            stream.codec_context.thread_type = "FRAME"
            for i in range(n):
                frame = av.VideoFrame.from_ndarray(gen.frame(i), format="yuv420p")
                frame.pts = i
                frame.time_base = tb
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def corpus_specs(kind: str = "sampling", quick: bool = False) -> list[VideoSpec]:
    try:
        return list(CORPORA[kind][bool(quick)])
    except KeyError:
        raise ValueError(f"unknown corpus kind {kind!r}; known: {', '.join(CORPORA)}") from None


def ensure_video(spec: VideoSpec, directory: Path = CORPUS_DIR, verbose: bool = True) -> Path:
    """Path of the cached video for ``spec``, encoding it first when missing."""
    path = Path(directory) / spec.filename
    if path.exists():
        return path
    if verbose:
        print(f"[corpus] encoding {spec.label} ({spec.num_frames} frames, {spec.codec} {spec.preset}) "
              f"-> {path}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    encode_video(path, spec.width, spec.height, spec.fps, spec.seconds, spec.gop, spec.codec, spec.preset,
                 spec.seed)
    if verbose:
        dt = time.perf_counter() - t0
        mbps = path.stat().st_size * 8 / spec.seconds / 1e6
        print(f"[corpus]   done in {dt:.1f} s ({spec.num_frames / dt:.0f} frames/s encoded), "
              f"{path.stat().st_size / 1e6:.1f} MB, {mbps:.2f} Mbit/s", file=sys.stderr, flush=True)
    return path


def build_corpus_specs(kind: str = "sampling", quick: bool = False, directory: Path = CORPUS_DIR,
                       verbose: bool = True) -> list[tuple[VideoSpec, Path]]:
    """Like :func:`build_corpus`, with each path's :class:`VideoSpec`."""
    return [(spec, ensure_video(spec, directory, verbose)) for spec in corpus_specs(kind, quick)]


def build_corpus(kind: str = "sampling", quick: bool = False, directory: Path = CORPUS_DIR,
                 verbose: bool = True) -> list[Path]:
    """Paths of the videos of corpus ``kind`` (encoded and cached on first use)."""
    return [p for _, p in build_corpus_specs(kind, quick, directory, verbose)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build (or list) the cached benchmark corpus.")
    ap.add_argument("--kind", default="sampling", choices=sorted(CORPORA))
    ap.add_argument("--quick", action="store_true", help="the small corpus")
    args = ap.parse_args(argv)
    for spec, path in build_corpus_specs(args.kind, args.quick):
        print(json.dumps({"path": str(path), "bytes": path.stat().st_size, **asdict(spec)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
