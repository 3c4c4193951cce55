"""The backend interface and the local backend (no extra dependencies)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from video_assets.errors import VideoAssetsError

if TYPE_CHECKING:  # torch behind it: a restarted Ray worker should not pay for it before it needs it
    from video_assets.progress import Progress

BACKEND_ENV = "VIDEO_ASSETS_COMPUTE_BACKEND"
BACKENDS = ("local", "ray")


class ComputeBackendError(VideoAssetsError):
    """The compute backend cannot run the step: its cluster cannot be reached or started, it lacks the
    resources asked for, or its workers fail on everything (not one video's fault)."""


class VideoOperator(Protocol):
    def details(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                progress: Progress | None = None) -> list[dict]: ...


OperatorFactory = Callable[[], VideoOperator]


class ComputeBackend(Protocol):
    name: str

    def map_details(self, factory: OperatorFactory, videos: Sequence[str], progress: Progress) -> list[dict]:
        """One detail dict per video, in input order; a bad video gives a dict with ``error`` set, never an
        exception."""
        ...


class LocalBackend:
    """One operator in this process: decode workers and the model overlap inside it."""

    name = "local"

    def map_details(self, factory: OperatorFactory, videos: Sequence[str], progress: Progress) -> list[dict]:
        return factory().details(list(videos), progress=progress)


def make_backend(backend: str | None = None, **options) -> ComputeBackend:
    """``backend`` "local" or "ray" (empty: ``$VIDEO_ASSETS_COMPUTE_BACKEND``, else "local"); ``options`` go to
    the Ray backend (address, num_workers, num_gpus_per_worker, batch_size, num_cpus_per_worker, runtime_env) and
    are ignored by "local"."""
    name = (backend or os.environ.get(BACKEND_ENV) or "local").strip().lower()
    if name == "local":
        return LocalBackend()
    if name == "ray":
        try:
            # the optional extra, imported only when chosen
            from video_assets.compute.ray_backend import RayBackend
        except ModuleNotFoundError as e:
            if e.name != "ray" and not (e.name or "").startswith("ray."):
                raise
            raise ModuleNotFoundError("compute backend 'ray' needs Ray: pip install 'video_assets[ray]'",
                                      name=e.name) from e

        return RayBackend(**{k: v for k, v in options.items() if v is not None})
    raise ValueError(f"compute backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
