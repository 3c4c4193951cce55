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
from video_assets.compute.settings import BACKEND_ENV, BACKENDS, ComputeSettings

__all__ = ["BACKENDS", "BACKEND_ENV", "ComputeBackend", "ComputeBackendError", "ComputeSettings", "LocalBackend",
           "OperatorFactory", "make_backend"]


def make_backend(backend: str | ComputeSettings | None = None, **options) -> ComputeBackend:
    """``backend`` "local" or "ray" (empty: ``$VIDEO_ASSETS_COMPUTE_BACKEND``, else "local"), or a
    :class:`ComputeSettings`; ``options``: the Ray fields of :class:`ComputeSettings` (None: the default),
    validated for every backend and used by "ray"."""
    if isinstance(backend, ComputeSettings):
        settings = backend
    else:
        settings = ComputeSettings(backend=backend or os.environ.get(BACKEND_ENV) or "local",
                                   **{k: v for k, v in options.items() if v is not None})
    if settings.backend == "local":
        return LocalBackend()
    try:
        # the optional extra, imported only when chosen
        from video_assets.compute.ray_backend import RayBackend
    except ModuleNotFoundError as e:
        if e.name != "ray" and not (e.name or "").startswith("ray."):
            raise
        raise ModuleNotFoundError("compute backend 'ray' needs Ray: pip install 'video_assets[ray]'",
                                  name=e.name) from e
    return RayBackend(settings)
