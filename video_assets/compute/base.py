"""The backend interface and the local backend (no extra dependencies); the factory is
:func:`video_assets.compute.make_backend`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from video_assets.errors import VideoAssetsError

if TYPE_CHECKING:  # torch behind it: a restarted Ray worker should not pay for it before it needs it
    from video_assets.progress import Progress


class ComputeBackendError(VideoAssetsError):
    """The compute backend cannot run the step: its cluster cannot be reached or started, it lacks the
    resources asked for, or its workers fail on everything (not one video's fault)."""


class VideoOperator(Protocol):
    def results(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                progress: Progress | None = None, **per_video: Sequence[Any]) -> list: ...

    def failed_result(self, video: Any, error: str) -> Any: ...


OperatorFactory = Callable[[], VideoOperator]


class ComputeBackend(ABC):
    """Where an operator runs over a list of videos. Subclasses implement :meth:`map_results`."""

    name: str

    @abstractmethod
    def map_results(self, factory: OperatorFactory, videos: Sequence[str], progress: Progress,
                    texts: Sequence[Any] | None = None) -> list:
        """One typed result per video (:mod:`video_assets.operators.results`; a shared decode's pair, a list
        for a video given a list of queries), in input order; a bad video gives a result with ``error`` set,
        never an exception. ``texts``: the keyframes operators' queries per video (see their ``details``)."""

    def map_details(self, factory: OperatorFactory, videos: Sequence[str], progress: Progress,
                    texts: Sequence[Any] | None = None) -> list:
        """:meth:`map_results` as the operators' detail dicts."""
        from video_assets.operators.results import as_dicts

        return as_dicts(self.map_results(factory, videos, progress, texts))


class LocalBackend(ComputeBackend):
    """One operator in this process: decode workers and the model overlap inside it."""

    name = "local"

    def map_results(self, factory: OperatorFactory, videos: Sequence[str], progress: Progress,
                    texts: Sequence[Any] | None = None) -> list:
        op = factory()
        try:
            return op.results(list(videos), progress=progress, **per_video_kwargs(texts))
        finally:
            close = getattr(op, "close", None)  # its decode processes, if it started any
            if close is not None:
                close()


def per_video_kwargs(texts: Sequence[Any] | None) -> dict:
    """The per-video arguments of an operator's ``details`` (only those given: the quality operator has none)."""
    return {} if texts is None else {"texts": list(texts)}
