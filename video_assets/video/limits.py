"""Per-video resource limits: what one untrusted video may cost in bytes, time, pixels and decoding work.

A crafted file can claim a huge frame size, go on for days, or make a decoder spin; a slow server can hold a
connection open forever. Every limit is checked as early as the information exists (the stream header before
any decoding, the byte count on every read, the clock between packets) and ends that video with a
:class:`~video_assets.errors.LimitExceededError` naming the source, the limit and the value; the batch goes on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from video_assets.errors import LimitExceededError

GIB = 1024 ** 3


@dataclass(frozen=True)
class ReadLimits:
    """Limits per video. ``None`` switches a limit off.

    - ``max_bytes`` (20 GiB): bytes read from the source, re-reads after seeks included. Local files and
      remote objects whose size is known up front are refused before reading when they are larger.
    - ``max_duration_sec`` (6 h): the stream's duration, from the container header and from the frame index.
    - ``max_pixels`` (8192 x 8192 = 67 Mpx, 8K UHD fits): width x height from the stream header, checked before
      anything is decoded or allocated.
    - ``max_decoded_frames`` (2,000,000: every frame of 6 h at 90 fps): frames the decoder returns.
    - ``timeout_sec`` (3600): wall-clock time per video from opening the source to the last frame. Checked
      between packets, frames and reads; a decoder stuck inside one FFmpeg call is abandoned by the batch
      runner instead (see :func:`video_assets.operators.batching.run_overlapped`).
    - ``http_connect_timeout_sec`` (10) / ``http_read_timeout_sec`` (60): per connection attempt and per
      socket read of http(s) sources.
    - ``max_retries`` (3) and ``retry_backoff_sec`` (0.5): transient errors (HTTP 5xx/429, connection resets,
      timeouts, S3 throttling) are retried this many times with exponential backoff (0.5 s, 1 s, 2 s, ... at
      most 10 s, with jitter); permanent ones (404, 403, not a video) never.
    """

    max_bytes: int | None = 20 * GIB
    max_duration_sec: float | None = 6 * 3600.0
    max_pixels: int | None = 8192 * 8192
    max_decoded_frames: int | None = 2_000_000
    timeout_sec: float | None = 3600.0
    http_connect_timeout_sec: float | None = 10.0
    http_read_timeout_sec: float | None = 60.0
    max_retries: int = 3
    retry_backoff_sec: float = 0.5

    def __post_init__(self):
        for name in ("max_bytes", "max_duration_sec", "max_pixels", "max_decoded_frames", "timeout_sec",
                     "http_connect_timeout_sec", "http_read_timeout_sec"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0
                                  or not math.isfinite(v)):
                raise ValueError(f"{name} must be a positive number or None, got {v!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if not self.retry_backoff_sec >= 0:
            raise ValueError(f"retry_backoff_sec must be >= 0, got {self.retry_backoff_sec!r}")

    @classmethod
    def unlimited(cls) -> ReadLimits:
        return cls(None, None, None, None, None, None, None)

    # -- checks (each raises LimitExceededError naming the source, the limit and the value) ---------------
    def check_bytes(self, description: str, n: int, what: str = "bytes read") -> None:
        if self.max_bytes is not None and n > self.max_bytes:
            raise LimitExceededError(f"{description}: {what} {n} exceeds the limit max_bytes={self.max_bytes}")

    def check_duration(self, description: str, seconds: float) -> None:
        if self.max_duration_sec is not None and seconds > self.max_duration_sec:
            raise LimitExceededError(f"{description}: duration {seconds:.1f}s exceeds the limit "
                                     f"max_duration_sec={self.max_duration_sec:g}")

    def check_frame_size(self, description: str, width: int, height: int) -> None:
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise LimitExceededError(f"{description}: frame size {width}x{height} ({width * height} pixels) "
                                     f"exceeds the limit max_pixels={self.max_pixels}")

    def check_decoded_frames(self, description: str, n: int) -> None:
        if self.max_decoded_frames is not None and n > self.max_decoded_frames:
            raise LimitExceededError(f"{description}: decoded frames {n} exceed the limit "
                                     f"max_decoded_frames={self.max_decoded_frames}")

    def deadline(self, description: str) -> Deadline:
        return Deadline(self.timeout_sec, description)


DEFAULT_LIMITS = ReadLimits()


class Deadline:
    """A per-video wall-clock budget, started when the source is opened; :meth:`check` raises when spent."""

    def __init__(self, timeout_sec: float | None, description: str):
        self.timeout_sec = timeout_sec
        self.description = description
        self.start = time.monotonic()
        self.at = None if timeout_sec is None else self.start + timeout_sec

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() > self.at

    def check(self) -> None:
        if self.expired():
            raise LimitExceededError(f"{self.description}: took longer than the limit "
                                     f"timeout_sec={self.timeout_sec:g} "
                                     f"({time.monotonic() - self.start:.1f}s so far); abandoned")
