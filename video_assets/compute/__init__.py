"""Where the model steps run: in this process (``local``, the default) or on a Ray cluster (``ray``).

A backend maps an *operator factory* over a list of videos and returns one typed result per video, in order
(``map_results``; ``map_details`` gives the detail dicts). The factory is a picklable callable
(``functools.partial(VideoQualityScore, **kwargs)``) whose product has ``results(videos, progress=...)`` and
``failed_result(video, error)``; a backend decides where and how many operator instances exist.

:func:`make_backend` is the factory: the interface and the local backend are in :mod:`.base`, the Ray backend
(:mod:`.ray_backend`, with :mod:`.ray_connection` and :mod:`.ray_worker`) is imported only when chosen.
"""

from __future__ import annotations

import os

from video_assets.compute.base import ComputeBackend, ComputeBackendError, LocalBackend, OperatorFactory

BACKEND_ENV = "VIDEO_ASSETS_COMPUTE_BACKEND"
BACKENDS = ("local", "ray")

__all__ = ["BACKENDS", "BACKEND_ENV", "ComputeBackend", "ComputeBackendError", "LocalBackend",
           "OperatorFactory", "make_backend"]


def make_backend(backend: str | None = None, **options) -> ComputeBackend:
    """``backend`` "local" or "ray" (empty: ``$VIDEO_ASSETS_COMPUTE_BACKEND``, else "local"); ``options`` go
    to the Ray backend (address, num_workers, num_gpus_per_worker, batch_size, num_cpus_per_worker,
    runtime_env) and are ignored by "local"."""
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
