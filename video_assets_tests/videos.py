"""Test videos encoded with PyAV whose frames show their own index as big black/white blocks.

The pattern survives lossy compression, so a test reads the index back from returned pixels and checks that
the right frame came back, not just the right number of frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BLOCK = 16  # pixels per bit block
GRID = 4  # 4x4 = 16 bits of frame index
WIDTH, HEIGHT = 96, 64
COVER_SIZE = 64  # the cover picture's width and height


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
                 container_options: dict | None = None, pix_fmt: str = "yuv420p",
                 display_rotation: int | None = None, hflip: bool = False, vflip: bool = False,
                 audio_first: bool = False, cover_track_first: bool | str = False, cover_attached: bool = False,
                 first_frame: int = 0, time_base: Fraction | None = None, first_pattern: int = 0,
                 cover_size: int = COVER_SIZE) -> Path:
    """Encode ``n_frames`` pattern frames. ``pts_seconds`` gives explicit (variable) frame times.

    Recorded-video traits: ``display_rotation`` (counter-clockwise degrees, PyAV's convention; a phone's
    portrait video is -90) with ``hflip``/``vflip`` writes a display matrix (MP4/MOV ``tkhd``, Matroska
    projection); ``audio_first`` puts an AAC stream before the video; ``cover_track_first`` a one-frame MJPEG
    track before it, ``cover_size`` (64) pixels square (stream 0; a codec name instead of True: of that codec,
    e.g. ``"png"``);
    ``cover_attached`` a cover picture with the ``attached_pic`` disposition (MP4 ``covr``, Matroska
    attachment); ``first_frame`` < 0 encodes that many extra frames before time 0 (pattern index
    ``first_frame``...), which the MP4 muxer hides behind an edit list. ``time_base``: the encoder's (default
    1/fps, or 1 ms with ``pts_seconds``). ``first_pattern``: the pattern index of the first frame (a second
    recording that continues a first one's count).
    """
    out = av.open(str(path), "w", format=container_format, options=container_options or {})
    audio = _add_audio(out) if audio_first else None
    cover = _add_cover_track(out, "mjpeg" if cover_track_first is True else cover_track_first, cover_size) \
        if cover_track_first else None
    attached = _add_attached_cover(out) if cover_attached else None
    stream = out.add_stream(codec, rate=fps)
    rotated = display_rotation is not None or hflip or vflip
    quarter = rotated and (display_rotation or 0) % 180 != 0
    # width/height are the displayed size; a quarter turn stores the picture on its side, as phones do
    stream.width, stream.height = (height, width) if quarter else (width, height)
    stream.pix_fmt = pix_fmt
    stream.gop_size = gop
    if rotated:
        stream.set_display_rotation(display_rotation or 0, hflip=hflip, vflip=vflip)
    opts = dict(options or {})
    if bframes is not None and codec in ("libx264", "libx265"):
        if codec == "libx264":
            opts.setdefault("bf", str(bframes))
        else:
            opts.setdefault("x265-params", f"bframes={bframes}:keyint={gop}:min-keyint={gop}:log-level=error")
    if codec == "libx264":
        opts.setdefault("preset", "veryfast")
    stream.codec_context.options = opts
    tb = time_base or (Fraction(1, 1000) if pts_seconds is not None else Fraction(1, fps))
    stream.codec_context.time_base = tb
    for c in (cover, attached):
        if c is not None:
            _mux_cover(out, c)
    for i in range(first_frame, n_frames):
        picture = pattern_frame(i - first_frame + first_pattern, width, height)
        if rotated:  # stored so that a player, applying the display matrix, shows the pattern upright
            picture = np.ascontiguousarray(stored_picture(picture, display_rotation or 0, hflip, vflip))
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        t = pts_seconds[i] if pts_seconds is not None else i / fps
        frame.pts = int(round((t + start_seconds) / tb))
        frame.time_base = tb
        for packet in stream.encode(frame):
            out.mux(packet)
        if audio is not None:
            _mux_audio_until(out, audio, (i + 1) / fps)
    for packet in stream.encode():
        out.mux(packet)
    if audio is not None:
        for packet in audio[0].encode():
            out.mux(packet)
    out.close()
    return Path(path)


def displayed_picture(stored: np.ndarray, display_rotation: int, hflip: bool = False,
                      vflip: bool = False) -> np.ndarray:
    """What a player shows for a stored picture (PyAV's set_display_rotation: turn counter-clockwise by
    ``display_rotation`` degrees, then mirror), written with numpy's own rotation, not the reader's."""
    img = np.rot90(stored, (display_rotation // 90) % 4)
    if hflip:
        img = img[:, ::-1]
    if vflip:
        img = img[::-1]
    return img


def stored_picture(displayed: np.ndarray, display_rotation: int, hflip: bool = False,
                   vflip: bool = False) -> np.ndarray:
    """The inverse of :func:`displayed_picture`."""
    img = displayed[::-1] if vflip else displayed
    img = img[:, ::-1] if hflip else img
    return np.rot90(img, -(display_rotation // 90) % 4)


def _add_audio(out):
    stream = out.add_stream("aac", rate=44100)
    stream.layout = "mono"
    return [stream, 0]  # stream, samples written


def _mux_audio_until(out, audio, seconds: float) -> None:
    stream, pos = audio
    while pos < seconds * 44100:
        t = (pos + np.arange(1024)) / 44100.0
        frame = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :],
                                           format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44100, pos
        pos += 1024
        for packet in stream.encode(frame):
            out.mux(packet)
    audio[1] = pos


def cover_image(size: int = COVER_SIZE) -> np.ndarray:
    """The cover picture: a flat grey square, unlike any pattern frame."""
    return np.full((size, size, 3), 200, np.uint8)


def _add_cover_track(out, codec: str = "mjpeg", size: int = COVER_SIZE):
    stream = out.add_stream(codec, rate=1)
    stream.width = stream.height = size
    stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "rgb24"
    return stream


def _mux_cover(out, stream) -> None:
    frame = av.VideoFrame.from_ndarray(cover_image(stream.width), format="rgb24")
    frame.pts = 0
    for packet in list(stream.encode(frame)) + list(stream.encode()):
        out.mux(packet)


def _add_attached_cover(out):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(cover_image()).save(buf, format="JPEG")
    if "matroska" in out.format.name or "webm" in out.format.name:
        out.add_attachment("cover.jpg", "image/jpeg", buf.getvalue())
        return None
    stream = _add_cover_track(out)  # MP4/MOV write an attached_pic stream as the ``covr`` tag
    stream.disposition = av.stream.Disposition.attached_pic
    return stream  # its one packet is muxed once every stream exists


def encode_cover_only(path: Path) -> Path:
    """An MP4 whose only picture is a cover (``attached_pic``), with an audio track: a song, not a video."""
    out = av.open(str(path), "w")
    audio = _add_audio(out)
    _mux_cover(out, _add_attached_cover(out))
    _mux_audio_until(out, audio, 1.0)
    for packet in audio[0].encode():
        out.mux(packet)
    out.close()
    return Path(path)


def encode_pictures_only(path: Path, codecs: Sequence[str] = ("mjpeg", "mjpeg")) -> Path:
    """A file of one-frame picture tracks without any video (two cover images in a Matroska)."""
    out = av.open(str(path), "w")
    for stream in [_add_cover_track(out, codec) for codec in codecs]:
        _mux_cover(out, stream)
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
