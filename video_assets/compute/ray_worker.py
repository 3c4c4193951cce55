"""The Ray actor that runs an operator (:class:`Worker`) and the fix-ups of the rows it returns.

Imported by every worker process: nothing heavy at module level, so a restarted worker is back quickly.
"""

from __future__ import annotations

import logging
from typing import Any

from video_assets.compute.base import OperatorFactory, per_video_kwargs
from video_assets.storage import describe_uri


def set_device(details: list, device: str | None) -> list:
    """Record where the model ran (the driver's own guess may differ: a CPU driver, GPU workers)."""
    if device:
        for d in details:
            for part in (d if isinstance(d, (tuple, list)) else (d,)):
                if isinstance(part, dict):
                    part.setdefault("device", device)
    return details


def as_failed(detail: Any, video: str, message: str) -> Any:
    """The operator's own row for an unusable input, about ``video`` and with ``message`` as its error (every
    part of a combined operator's row fails alike)."""
    if isinstance(detail, (tuple, list)):
        return type(detail)(as_failed(d, video, message) for d in detail)
    if isinstance(detail, dict):
        from video_assets.ids import stable_video_id

        detail = dict(detail, error=message)
        if "source" in detail:
            detail["source"] = describe_uri(video)
        if "video_id" in detail:
            detail["video_id"] = stable_video_id(video)
    return detail


def _worker_progress(total: int):
    # The driver reports progress for the whole run; this one logs at INFO, which a worker drops.
    from video_assets.progress import Progress

    return Progress(total, "ray worker", every_sec=float("inf"))


class Worker:
    """A Ray actor: one operator per map call (``key``), built from the factory; the model behind it is loaded
    once per process by the core's model cache, so it stays warm across calls, steps and partitions. Nothing
    heavy is imported before the first task needs it (a restarted worker is back quickly)."""

    def __init__(self):
        self._key: str | None = None
        self._op = None

    def _operator(self, key: str, factory: OperatorFactory):
        if key != self._key:
            self._op, self._key = factory(), key
        return self._op

    def run(self, key: str, factory: OperatorFactory, job: int, videos: list[str],
            texts: list | None = None) -> tuple[int, list]:
        op = self._operator(key, factory)
        details = op.details(videos, progress=_worker_progress(len(videos)), **per_video_kwargs(texts))
        return job, set_device(details, getattr(op, "device", None))

    def failed(self, key: str, factory: OperatorFactory, job: int, video: str,
               message: str) -> tuple[int, list]:
        # An empty source fails in the operator before any I/O: its row has every column the runner reads.
        op = self._operator(key, factory)
        quiet = logging.getLogger("video_assets")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # the operator's warning would name "<video #0>", not the video
        try:
            [detail] = op.details([None], progress=_worker_progress(1))
        finally:
            quiet.setLevel(level)
        return job, set_device([as_failed(detail, video, message)], getattr(op, "device", None))

