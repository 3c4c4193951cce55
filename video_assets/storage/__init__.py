"""Object storage access shared by every part of the project (sources, keyframe export, warehouse)."""

from video_assets.storage.fs import describe_uri, filesystem_for, is_remote_uri, join_uri, write_bytes

__all__ = ["describe_uri", "filesystem_for", "is_remote_uri", "join_uri", "write_bytes"]
