"""Video input: sources, sampling plans and frame-accurate decoding (no Dagster, no torch)."""

from video_assets.errors import LimitExceededError, SourcePolicyError, VideoDecodeError, VideoSourceError
from video_assets.storage.policy import SourcePolicy
from video_assets.video.limits import ReadLimits
from video_assets.video.plan import SAMPLE_MODES, SamplePlan, make_plan, select_positions
from video_assets.video.reader import VideoReader
from video_assets.video.sampler import (
                                       DEFAULT_CHUNK_FRAMES,
                                       FrameBuffer,
                                       FrameChunk,
                                       SampledFrames,
                                       TruncatedVideoWarning,
                                       iter_frames,
                                       sample_chunks,
                                       sample_frames,
                                       sample_from_reader,
)
from video_assets.video.source import VideoSource, open_source

__all__ = [
    "DEFAULT_CHUNK_FRAMES", "FrameBuffer", "FrameChunk", "LimitExceededError", "ReadLimits", "SAMPLE_MODES",
    "SamplePlan", "SourcePolicy", "SourcePolicyError", "SampledFrames", "TruncatedVideoWarning",
    "VideoDecodeError", "VideoReader", "VideoSource", "VideoSourceError", "iter_frames", "make_plan",
    "open_source", "sample_chunks", "sample_frames", "sample_from_reader", "select_positions",
]
