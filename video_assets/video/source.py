"""Turn any supported video source into something PyAV can open, with a name fit for error messages.

Sources: a local path (str or Path), ``file://``, ``http(s)://``, ``s3://``, ``tos://``, raw ``bytes``, or a
base64 ``str`` (optionally a ``data:video/...;base64,`` URI). Remote objects are opened as seekable fsspec
files that fetch byte ranges on demand, so a plan that seeks reads only the parts it needs.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Union

from video_assets.errors import VideoSourceError
from video_assets.storage.fs import describe_uri, filesystem_for, scheme_of

VideoSource = Union[str, os.PathLike, bytes, bytearray, memoryview]

# Remote reads: large blocks amortise request latency; readahead suits forward decoding.
_REMOTE_BLOCK_SIZE = 4 * 1024 * 1024
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/=_\-\s]+$")
_DATA_URI_RE = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)


@dataclass
class OpenedSource:
    """A source ready for ``av.open``: ``file`` is a path or a seekable binary file object."""

    file: Union[str, IO[bytes]]
    description: str  # safe to log: no credentials, no raw bytes
    format_hint: str | None  # container format for bytes/base64 inputs ("mp4", "webm", ...)
    size: int | None
    remote: bool = False  # bytes come over the network: read as little as possible


def describe_source(source: VideoSource) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    s = os.fspath(source)
    if _looks_like_base64(s):
        return f"<base64 string, {len(s)} chars>"
    return describe_uri(s)


def _looks_like_base64(s: str) -> bool:
    if _DATA_URI_RE.match(s):
        return True
    if scheme_of(s) or len(s) < 64 or os.path.exists(s):
        return False
    head = s[:4096]
    return bool(_BASE64_RE.match(head)) and "/" not in head[:1] and not head.startswith((".", "~"))


def decode_base64(s: str, description: str = "<base64 string>") -> bytes:
    """Decode a base64 (or url-safe base64, or data-URI) string into bytes, with a clear error."""
    body = _DATA_URI_RE.sub("", s.strip(), count=1)
    body = re.sub(r"\s+", "", body)
    try:
        if "-" in body or "_" in body:
            return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise VideoSourceError(f"{description}: not valid base64 ({e})") from None


def _format_hint(video_format: str | None) -> str | None:
    if not video_format:
        return None
    fmt = video_format.lower().lstrip(".")
    # Users give file extensions; FFmpeg wants demuxer names for a few of them.
    return {"mkv": "matroska", "m4v": "mp4", "mov": "mov", "ts": "mpegts", "webm": "webm"}.get(fmt, fmt)


@contextmanager
def open_source(source: VideoSource, video_format: str | None = None,
                storage_options: dict | None = None) -> Iterator[OpenedSource]:
    """Open ``source`` for reading. Raises VideoSourceError naming the source when it cannot be read.

    ``video_format`` is a container hint used for bytes and base64 inputs (FFmpeg probes the content anyway;
    the hint only matters for formats that cannot be probed reliably). ``storage_options`` go to fsspec, except
    ``block_size``: bytes per remote range request (default 4 MiB).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        desc = f"<{len(data)} bytes>"
        if not data:
            raise VideoSourceError(f"{desc}: empty input (0 bytes)")
        yield OpenedSource(io.BytesIO(data), desc, _format_hint(video_format), len(data))
        return
    if isinstance(source, Path):
        source = str(source)
    if not isinstance(source, str):
        raise VideoSourceError(f"unsupported video source type {type(source).__name__}; "
                               "expected a path, URI, bytes or base64 str")
    if _looks_like_base64(source):
        desc = f"<base64 string, {len(source)} chars>"
        data = decode_base64(source, desc)
        if not data:
            raise VideoSourceError(f"{desc}: decodes to 0 bytes")
        yield OpenedSource(io.BytesIO(data), desc, _format_hint(video_format), len(data))
        return

    desc = describe_uri(source)
    scheme = scheme_of(source)
    if scheme not in ("", "file", "http", "https", "s3", "s3a", "tos"):
        raise VideoSourceError(f"{desc}: unsupported URI scheme '{scheme}://'")
    opts = dict(storage_options or {})
    block_size = int(opts.pop("block_size", _REMOTE_BLOCK_SIZE))
    fs, path = filesystem_for(source, opts)
    if scheme in ("", "file"):
        if not os.path.exists(path):
            raise VideoSourceError(f"{desc}: file not found")
        if os.path.isdir(path):
            raise VideoSourceError(f"{desc}: is a directory, not a video file")
        size = os.path.getsize(path)
        if size == 0:
            raise VideoSourceError(f"{desc}: empty file (0 bytes)")
        yield OpenedSource(path, desc, _format_hint(video_format), size)
        return

    try:
        f = fs.open(path, "rb", block_size=block_size, cache_type="readahead")
    except FileNotFoundError:
        raise VideoSourceError(f"{desc}: not found (404 or no such object)") from None
    except PermissionError as e:
        raise VideoSourceError(f"{desc}: access denied ({e})") from None
    except Exception as e:  # network errors come in many library-specific types
        raise VideoSourceError(f"{desc}: cannot open ({type(e).__name__}: {e})") from None
    with f:
        size = getattr(f, "size", None)
        if size == 0:
            raise VideoSourceError(f"{desc}: empty object (0 bytes)")
        if not _seekable(f):
            # A server that does not report sizes or ranges gives a stream; spool it so PyAV can seek.
            with tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024) as spool:
                try:
                    shutil.copyfileobj(f, spool, block_size)
                except Exception as e:
                    raise VideoSourceError(f"{desc}: read failed ({type(e).__name__}: {e})") from None
                size = spool.tell()
                if size == 0:
                    raise VideoSourceError(f"{desc}: empty object (0 bytes)")
                spool.seek(0)
                yield OpenedSource(spool, desc, _format_hint(video_format), size)
            return
        yield OpenedSource(f, desc, _format_hint(video_format), size, remote=True)


def _seekable(f) -> bool:
    try:
        return bool(f.seekable())
    except Exception:
        return False
