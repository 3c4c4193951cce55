"""Object storage access shared by every part of the project (sources, keyframe export, warehouse)."""

from video_assets.storage.fs import filesystem_for, write_bytes
from video_assets.storage.policy import SourcePolicy
from video_assets.storage.uri import describe_uri, is_remote_uri, join_uri, redact_text

__all__ = ["SourcePolicy", "describe_uri", "filesystem_for", "is_remote_uri", "join_uri", "redact_text",
           "write_bytes"]
