"""The two operators, usable on their own from Python (no Dagster)."""

from video_assets.operators.keyframes import VideoAdaptiveKeyframesSampling
from video_assets.operators.quality import VideoQualityScore

__all__ = ["VideoAdaptiveKeyframesSampling", "VideoQualityScore"]
