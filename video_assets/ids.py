"""Stable video ids: what the tables, keyframe folders and backends name a video by (no torch, no I/O)."""

from __future__ import annotations

import hashlib
import os
from typing import Any


def stable_video_id(source: Any) -> str:
    """16 hex chars of SHA-1 over the URI string, or over the content for bytes/base64 inputs."""
    h = hashlib.sha1()
    content = isinstance(source, (bytes, bytearray, memoryview))
    h.update(bytes(source) if content else os.fspath(source).encode())
    return h.hexdigest()[:16]
