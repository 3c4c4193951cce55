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
from video_assets.fields import setting

GIB = 1024 ** 3


@dataclass(frozen=True)
class ReadLimits:
    """Limits per video (the one definition: the operators' ``limits``, the pipeline's warehouse resource and
    its environment variables are derived from these fields). ``None`` switches a limit off.

    Local files and remote objects whose size is known up front are refused before reading when they are
    larger than ``max_bytes``; ``max_pixels`` is checked before anything is decoded or allocated;
    ``timeout_sec`` is checked between packets, frames and reads, and a decoder stuck inside one FFmpeg call
    is abandoned by the batch runner instead (see :func:`video_assets.operators.batching.run_overlapped`).
    Transient errors are HTTP 5xx/429, connection resets, timeouts and S3 throttling; permanent ones (404,
    403, not a video) are never retried.
    """

    max_bytes: int | None = setting(20 * GIB, (
        "Bytes read per video, re-reads after seeks included (20 GiB); empty: no limit."))
    max_duration_sec: float | None = setting(6 * 3600.0, (
        "Longest video accepted, seconds (6 h), from the container header and the frame index."))
    max_pixels: int | None = setting(8192 * 8192, (
        "Largest frame accepted, width x height (8192 x 8192: 8K UHD fits), checked before decoding."))
    max_decoded_frames: int | None = setting(2_000_000, (
        "Frames decoded per video at most (2,000,000: every frame of 6 h at 90 fps)."))
    timeout_sec: float | None = setting(3600.0, (
        "Wall-clock time per video, from opening the source to the last frame; a video past it is abandoned."))
    http_connect_timeout_sec: float | None = setting(10.0, "HTTP/S3 connect timeout, per connection attempt.")
    http_read_timeout_sec: float | None = setting(60.0, "HTTP/S3 socket read timeout.")
    max_retries: int = setting(3, "Retries of transient errors (HTTP 5xx, resets, S3 throttling) per request.")
    retry_backoff_sec: float = setting(0.5, (
        "First retry delay; it doubles per retry (0.5 s, 1 s, 2 s, ... at most 10 s, with jitter)."))

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
