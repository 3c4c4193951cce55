"""Sampling plans: which frames to take, as a pure function of the frames' times.

Everything here is validated before any I/O, and the selection works on an array of frame times only, so it is
exact, cheap and testable without video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from video_assets.fields import setting

_TIME_EPS = 1e-6  # seconds; far below any real frame interval
SAMPLE_MODES = ("by_count_uniform", "by_interval_time", "by_fps", "by_interval_frames", "by_timestamps")


def _finite(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def _required_positive(name: str, value, mode: str) -> float:
    """The number a ``mode`` needs: given, finite and > 0."""
    if value is None:
        raise ValueError(f"{name} is required for sample_mode={mode!r}")
    number = _finite(name, value)
    if number <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return number


def _positive_int(name: str, value) -> int:
    if value is None:
        raise ValueError(f"{name} is required")
    if isinstance(value, bool) or not float(value).is_integer():
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class SamplePlan:
    """Which frames to take from one video: the sampling parameters of :func:`~video_assets.video.sample_frames`
    and the quality operator, validated when the plan is made (ValueError naming the parameter, before any
    I/O). Only the parameter of the chosen ``sample_mode`` is checked and used; the others are kept as given
    ("empty" in a doc: None).

    This is the one definition of these parameters: the sampler's and the quality operator's keywords, the
    pipeline's ``QualitySettings`` and the Launchpad's quality config are derived from its fields.
    """

    sample_mode: str = setting("by_count_uniform", " | ".join(SAMPLE_MODES), choices=SAMPLE_MODES)
    start_time_sec: float = setting(0.0, "Window start (seconds).")
    end_time_sec: float | None = setting(None, "Window end; empty: the end.")
    count_k: int | None = setting(8, "by_count_uniform: frames per video.")
    interval_sec: float | None = setting(None, "by_interval_time: seconds.")
    interval_frames: int | None = setting(None, "by_interval_frames: n.")
    target_fps: float | None = setting(None, "by_fps: frames per second.")
    timestamps_sec: tuple[float, ...] | None = setting(None, "by_timestamps: times (s).")
    max_frames: int | None = setting(None, "Cap on sampled frames per video.")

    def __post_init__(self):
        mode = self.sample_mode
        if mode not in SAMPLE_MODES:
            raise ValueError(f"sample_mode must be one of {', '.join(SAMPLE_MODES)}; got {mode!r}")
        start = 0.0 if self.start_time_sec is None else _finite("start_time_sec", self.start_time_sec)
        if start < 0:
            raise ValueError(f"start_time_sec must be >= 0, got {self.start_time_sec!r}")
        end = None if self.end_time_sec is None else _finite("end_time_sec", self.end_time_sec)
        if end is not None and end <= start:
            raise ValueError(f"end_time_sec ({end}) must be greater than start_time_sec ({start})")
        values = dict(start_time_sec=start, end_time_sec=end)
        if self.max_frames is not None:
            values["max_frames"] = _positive_int("max_frames", self.max_frames)
        if mode == "by_count_uniform":
            values["count_k"] = _positive_int("count_k", self.count_k)
        elif mode == "by_interval_time":
            values["interval_sec"] = _required_positive("interval_sec", self.interval_sec, mode)
        elif mode == "by_fps":
            values["target_fps"] = _required_positive("target_fps", self.target_fps, mode)
        elif mode == "by_interval_frames":
            values["interval_frames"] = _positive_int("interval_frames", self.interval_frames)
        elif mode == "by_timestamps" and self.timestamps_sec is None:
            raise ValueError("timestamps_sec is required for sample_mode='by_timestamps'")
        ts = self.timestamps_sec
        if ts is not None:  # a list (from JSON, the Launchpad) is kept as a tuple: plans are hashable values
            if isinstance(ts, (str, bytes)) or not hasattr(ts, "__iter__"):
                if mode == "by_timestamps":
                    raise ValueError(f"timestamps_sec must be a list of numbers, got {ts!r}")
            elif mode == "by_timestamps":
                values["timestamps_sec"] = tuple(_finite("timestamps_sec", t) for t in ts)
            else:
                values["timestamps_sec"] = tuple(ts)
        for name, value in values.items():
            object.__setattr__(self, name, value)


DEFAULT_PLAN = SamplePlan()


def make_plan(*args, **kwargs) -> SamplePlan:
    """``SamplePlan(*args, **kwargs)``: validate sampling parameters (same order and names as
    :class:`SamplePlan`); raise ValueError naming the offending parameter."""
    return SamplePlan(*args, **kwargs)


def window_end(plan: SamplePlan, duration: float) -> float:
    """The window's end: ``end_time_sec``, but never past the video (an end of 100 s on a 3 s video would
    spread count_k's targets over 100 s and collapse them onto the last frame)."""
    return duration if plan.end_time_sec is None else min(plan.end_time_sec, duration)


def target_times(plan: SamplePlan, duration: float) -> np.ndarray | None:
    """Target times in seconds for time-based modes (None for by_interval_frames)."""
    start = plan.start_time_sec
    end = window_end(plan, duration)
    # A target within float rounding of the end is at the end, so not in the window: a 5 s Matroska video
    # (1 ms time base) lasts 4.967 + 0.033 = 5.000000000000001 s, and t = 5.0 would add its last frame again.
    before_end = end - _TIME_EPS
    if plan.sample_mode == "by_interval_frames":
        return None
    if plan.sample_mode == "by_timestamps":
        t = np.asarray(plan.timestamps_sec, dtype=np.float64)
        return t[(t >= start) & (t < before_end)]
    if end <= start:
        return np.empty(0)
    if plan.sample_mode == "by_count_uniform":
        k = plan.count_k
        return start + (np.arange(k) + 0.5) * (end - start) / k
    step = plan.interval_sec if plan.sample_mode == "by_interval_time" else 1.0 / plan.target_fps
    n = int(math.ceil((end - start) / step)) + 1
    t = start + np.arange(n) * step  # multiplication, not accumulation: no drift on long videos
    return t[t < before_end]


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
        end = window_end(plan, duration)
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
