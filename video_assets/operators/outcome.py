"""What a run of the overlapped loop reports: one :class:`Outcome` per input, the :class:`RunStats` counters,
the error message that names an input, and the backstop time limit (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from video_assets.errors import VideoAssetsError

R = TypeVar("R")


@dataclass
class Outcome(Generic[R]):
    """The result for one input: ``value`` when it worked, else ``error`` (a message naming the input)."""

    value: R | None = None
    error: str | None = None


@dataclass
class RunStats:
    """What one run held at once (the pipeline's own counters; tests and benchmarks read them).

    Frames are counted from the moment a worker emits a chunk until the model has consumed them: in the
    bounded queue, blocked on putting into it, or waiting in a partial batch. Results are counted while they
    wait in the reorder buffer of an in-order :func:`iter_overlapped`. Kept bytes are the model's per-frame rows
    (features, or a stage's scores) of the videos whose last frame has not been encoded yet.
    """

    chunks: int = 0  # chunks emitted
    frames: int = 0  # frames emitted
    largest_chunk: int = 0  # frames in the largest chunk
    frames_held: int = 0  # now
    peak_frames_held: int = 0
    results_waiting: int = 0  # now
    peak_results_waiting: int = 0
    peak_in_flight: int = 0  # items started and not yet delivered, at most
    kept_bytes: int = 0  # now: the per-frame rows (Stage.per_frame) kept for videos not yet finished
    peak_kept_bytes: int = 0


def error_message(item_desc: str, exc: BaseException) -> str:
    if isinstance(exc, VideoAssetsError) or str(exc).startswith(f"{item_desc}:"):
        return str(exc)  # already names the source
    return f"{item_desc}: {type(exc).__name__}: {exc}"



def hard_timeout(timeout_sec: float | None) -> float | None:
    """When the batch stops waiting for a video: its limit plus 10 % and 2 s, so that the reader's own checks
    (which give the precise message and release the decoder) normally fire first."""
    return None if timeout_sec is None else timeout_sec * 1.1 + 2.0
