"""Where the model steps run: in this process (``local``, the default) or on a Ray cluster (``ray``).

A backend maps an *operator factory* over a list of videos and returns one detail dict per video, in order.
The factory is a picklable callable (``functools.partial(VideoQualityScore, **kwargs)``) whose product has
``details(videos, progress=...)``; a backend decides where and how many operator instances exist.
"""

from video_assets.compute.base import BACKEND_ENV, ComputeBackend, LocalBackend, OperatorFactory, make_backend

__all__ = ["BACKEND_ENV", "ComputeBackend", "LocalBackend", "OperatorFactory", "make_backend"]
