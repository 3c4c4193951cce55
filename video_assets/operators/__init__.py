"""The two operators, usable on their own from Python (no Dagster), and both over one decode of each video
(:class:`QualityAndKeyframes`).

The operator classes are imported on first use (PEP 562): importing a light submodule such as
``video_assets.operators.common`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {"VideoAdaptiveKeyframesSampling": "keyframes", "VideoQualityScore": "quality",
            "QualityAndKeyframes": "combined"}

__all__ = ["QualityAndKeyframes", "VideoAdaptiveKeyframesSampling", "VideoQualityScore"]

if TYPE_CHECKING:
    from video_assets.operators.combined import QualityAndKeyframes
    from video_assets.operators.keyframes import VideoAdaptiveKeyframesSampling
    from video_assets.operators.quality import VideoQualityScore


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
