"""The Ray actor that runs an operator (:class:`Worker`) and returns its typed results.

Imported by every worker process: nothing heavy at module level, so a restarted worker is back quickly.
"""

from __future__ import annotations

from video_assets.compute.base import OperatorFactory, per_video_kwargs
from video_assets.operators.results import with_device


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
        results = op.results(videos, progress=_worker_progress(len(videos)), **per_video_kwargs(texts))
        return job, with_device(results, getattr(op, "device", None))

    def failed(self, key: str, factory: OperatorFactory, job: int, video: str,
               message: str) -> tuple[int, list]:
        """The operator's failed result for a video it could not run (its worker died on it)."""
        op = self._operator(key, factory)
        return job, with_device([op.failed_result(video, message)], getattr(op, "device", None))
