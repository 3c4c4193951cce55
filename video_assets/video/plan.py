"""Sampling plans: which frames to take, as a pure function of the frames' times.

Everything here is validated before any I/O, and the selection works on an array of frame times only, so it is
exact, cheap and testable without video.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

_TIME_EPS = 1e-6  # seconds; far below any real frame interval
SAMPLE_MODES = ("by_count_uniform", "by_interval_time", "by_fps", "by_interval_frames", "by_timestamps")


@dataclass(frozen=True)
class SamplePlan:
    """The sampling parameters. Build it with :func:`make_plan`, which validates them."""

    sample_mode: str = "by_count_uniform"
    start_time_sec: float = 0.0
    end_time_sec: float | None = None
    count_k: int | None = 8
    interval_sec: float | None = None
    interval_frames: int | None = None
    target_fps: float | None = None
    timestamps_sec: tuple[float, ...] | None = field(default=None)
    max_frames: int | None = None


def _finite(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def _positive_int(name: str, value) -> int:
    if value is None:
        raise ValueError(f"{name} is required")
    if isinstance(value, bool) or not float(value).is_integer():
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return int(value)


def make_plan(sample_mode: str = "by_count_uniform", start_time_sec: float | None = 0.0,
              end_time_sec: float | None = None, count_k: int | None = 8, interval_sec: float | None = None,
              interval_frames: int | None = None, target_fps: float | None = None,
              timestamps_sec: Sequence[float] | None = None, max_frames: int | None = None) -> SamplePlan:
    """Validate sampling parameters; raise ValueError naming the offending parameter."""
    if sample_mode not in SAMPLE_MODES:
        raise ValueError(f"sample_mode must be one of {', '.join(SAMPLE_MODES)}; got {sample_mode!r}")
    start = 0.0 if start_time_sec is None else _finite("start_time_sec", start_time_sec)
    if start < 0:
        raise ValueError(f"start_time_sec must be >= 0, got {start_time_sec!r}")
    end = None if end_time_sec is None else _finite("end_time_sec", end_time_sec)
    if end is not None and end <= start:
        raise ValueError(f"end_time_sec ({end}) must be greater than start_time_sec ({start})")
    if max_frames is not None:
        max_frames = _positive_int("max_frames", max_frames)
    ts = None
    if sample_mode == "by_count_uniform":
        count_k = _positive_int("count_k", count_k)
    elif sample_mode == "by_interval_time":
        if interval_sec is None:
            raise ValueError("interval_sec is required for sample_mode='by_interval_time'")
        interval_sec = _finite("interval_sec", interval_sec)
        if interval_sec <= 0:
            raise ValueError(f"interval_sec must be > 0, got {interval_sec!r}")
    elif sample_mode == "by_fps":
        if target_fps is None:
            raise ValueError("target_fps is required for sample_mode='by_fps'")
        target_fps = _finite("target_fps", target_fps)
        if target_fps <= 0:
            raise ValueError(f"target_fps must be > 0, got {target_fps!r}")
    elif sample_mode == "by_interval_frames":
        interval_frames = _positive_int("interval_frames", interval_frames)
    elif sample_mode == "by_timestamps":
        if timestamps_sec is None:
            raise ValueError("timestamps_sec is required for sample_mode='by_timestamps'")
        if isinstance(timestamps_sec, (str, bytes)) or not hasattr(timestamps_sec, "__iter__"):
            raise ValueError(f"timestamps_sec must be a list of numbers, got {timestamps_sec!r}")
        ts = tuple(_finite("timestamps_sec", t) for t in timestamps_sec)
    return SamplePlan(sample_mode, start, end, count_k if sample_mode == "by_count_uniform" else None,
                      interval_sec if sample_mode == "by_interval_time" else None,
                      interval_frames if sample_mode == "by_interval_frames" else None,
                      target_fps if sample_mode == "by_fps" else None, ts, max_frames)


def target_times(plan: SamplePlan, duration: float) -> np.ndarray | None:
    """Target times in seconds for time-based modes (None for by_interval_frames)."""
    start = plan.start_time_sec
    end = plan.end_time_sec if plan.end_time_sec is not None else duration
    if plan.sample_mode == "by_interval_frames":
        return None
    if plan.sample_mode == "by_timestamps":
        t = np.asarray(plan.timestamps_sec, dtype=np.float64)
        return t[(t >= start) & (t < end)]
    if end <= start:
        return np.empty(0)
    if plan.sample_mode == "by_count_uniform":
        k = plan.count_k
        return start + (np.arange(k) + 0.5) * (end - start) / k
    step = plan.interval_sec if plan.sample_mode == "by_interval_time" else 1.0 / plan.target_fps
    n = int(math.ceil((end - start) / step)) + 1
    t = start + np.arange(n) * step  # multiplication, not accumulation: no drift on long videos
    return t[t < end]


def select_positions(plan: SamplePlan, frame_times: np.ndarray, duration: float) -> np.ndarray:
    """Positions (0-based, ascending, unique) into ``frame_times`` chosen by ``plan``.

    ``frame_times`` are the frames' presentation times from the first frame, ascending.
    """
    frame_times = np.asarray(frame_times, dtype=np.float64)
    n = len(frame_times)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    targets = target_times(plan, duration)
    if targets is None:  # by_interval_frames
        start = plan.start_time_sec
        end = plan.end_time_sec if plan.end_time_sec is not None else duration
        in_window = np.flatnonzero((frame_times >= start) & (frame_times < end))
        chosen = in_window[:: plan.interval_frames]
    else:
        # The frame shown at time t is the last frame with t_i <= t (the first frame for t < 0).
        # _TIME_EPS absorbs float rounding (j / fps vs pts * time_base) without ever reaching a later frame.
        chosen = np.clip(np.searchsorted(frame_times, targets + _TIME_EPS, side="right") - 1, 0, n - 1)
        chosen = np.unique(chosen)
    chosen = chosen.astype(np.int64)
    if plan.max_frames is not None and len(chosen) > plan.max_frames:
        m, k = len(chosen), plan.max_frames
        chosen = chosen[(np.arange(k) * m) // k]
    return chosen
