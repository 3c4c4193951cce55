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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from video_assets.errors import LimitExceededError, SourcePolicyError, VideoSourceError
from video_assets.storage.fs import describe_uri, filesystem_for, redact_text, scheme_of
from video_assets.storage.policy import SourcePolicy, find_policy_error
from video_assets.storage.retry import call_with_retries, http_status
from video_assets.video.limits import DEFAULT_LIMITS, Deadline, ReadLimits

VideoSource = str | os.PathLike | bytes | bytearray | memoryview

# Remote reads: large blocks amortise request latency; readahead suits forward decoding.
_REMOTE_BLOCK_SIZE = 4 * 1024 * 1024
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/=_\-\s]+$")
_DATA_URI_RE = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)


@dataclass
class OpenedSource:
    """A source ready for ``av.open``: ``file`` is a path or a seekable binary file object."""

    file: str | IO[bytes]
    description: str  # safe to log: no credentials, no raw bytes
    format_hint: str | None  # container format for bytes/base64 inputs ("mp4", "webm", ...)
    size: int | None
    remote: bool = False  # bytes come over the network: read as little as possible
    limits: ReadLimits = DEFAULT_LIMITS
    deadline: Deadline | None = None  # the video's wall-clock budget, started when the source was opened

    def __post_init__(self):
        if self.deadline is None:
            self.deadline = self.limits.deadline(self.description)


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


def looks_like_base64_bytes(data: bytes) -> bool:
    """Bytes that are base64 text (a column of base64 read as binary), not a video: no container starts with
    64 bytes of the base64 alphabet (MP4 starts with a box size, Matroska with 0x1A45DFA3, MPEG-TS with 0x47
    and binary, AVI with RIFF and a binary size)."""
    head = bytes(data[:4096])
    return len(data) >= 64 and head.isascii() and bool(_BASE64_RE.match(head.decode("ascii")))


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


def _inline_video(source) -> tuple[bytes, str] | None:
    """``(the video's bytes, its description)`` for a video given inline: bytes, base64 text given as bytes (a
    base64 column read as binary), or a base64 str; None for a path or URI."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise VideoSourceError(f"<{len(data)} bytes>: empty input (0 bytes)")
        if not looks_like_base64_bytes(data):
            return data, f"<{len(data)} bytes>"
        desc, text = f"<{len(data)} bytes of base64>", data.decode("ascii")
    elif isinstance(source, str) and _looks_like_base64(source):
        desc, text = f"<base64 string, {len(source)} chars>", source
    else:
        return None
    data = decode_base64(text, desc)
    if not data:
        raise VideoSourceError(f"{desc}: decodes to 0 bytes")
    return data, desc


def _format_hint(video_format: str | None) -> str | None:
    if not video_format:
        return None
    fmt = video_format.lower().lstrip(".")
    # Users give file extensions; FFmpeg wants demuxer names for a few of them.
    return {"mkv": "matroska", "m4v": "mp4", "mov": "mov", "ts": "mpegts", "webm": "webm"}.get(fmt, fmt)


@contextmanager
def open_source(source: VideoSource, video_format: str | None = None, storage_options: dict | None = None, *,
                policy: SourcePolicy | None = None, limits: ReadLimits | None = None) -> Iterator[OpenedSource]:
    """Open ``source`` for reading. Raises VideoSourceError naming the source when it cannot be read.

    ``video_format`` is a container hint used for bytes and base64 inputs (FFmpeg probes the content anyway;
    the hint only matters for formats that cannot be probed reliably). ``storage_options`` go to fsspec, except
    ``block_size``: bytes per remote range request (default 4 MiB).

    ``policy`` (default :meth:`SourcePolicy.permissive`): checked before anything is opened; a violation
    raises SourcePolicyError and nothing is read. Raw bytes and base64 are not subject to it. ``limits``
    (default :class:`ReadLimits`): byte budget, HTTP timeouts and retries here; the reader applies the rest.
    The per-video deadline starts now.
    """
    limits = limits or DEFAULT_LIMITS
    if isinstance(source, Path):
        source = str(source)
    inline = _inline_video(source)
    if inline is not None:
        data, desc = inline
        limits.check_bytes(desc, len(data), "input size")
        yield OpenedSource(io.BytesIO(data), desc, _format_hint(video_format), len(data), limits=limits)
        return
    if not isinstance(source, str):
        raise VideoSourceError(f"unsupported video source type {type(source).__name__}; "
                               "expected a path, URI, bytes or base64 str")

    desc = describe_uri(source)
    scheme = scheme_of(source)
    if scheme not in ("", "file", "http", "https", "s3", "s3a", "tos"):
        raise VideoSourceError(f"{desc}: unsupported URI scheme '{scheme}://'")
    policy = policy or SourcePolicy.permissive()
    policy.check(source)  # before any I/O: a rejected source is never opened
    deadline = limits.deadline(desc)
    opts = dict(storage_options or {})
    block_size = int(opts.pop("block_size", _REMOTE_BLOCK_SIZE))
    fs, path = filesystem_for(source, opts, policy=policy, limits=limits)
    if scheme in ("", "file"):
        if not os.path.exists(path):
            raise VideoSourceError(f"{desc}: file not found")
        if os.path.isdir(path):
            raise VideoSourceError(f"{desc}: is a directory, not a video file")
        size = os.path.getsize(path)
        if size == 0:
            raise VideoSourceError(f"{desc}: empty file (0 bytes)")
        # FFmpeg reads local files itself; a file larger than the byte budget is refused before reading.
        limits.check_bytes(desc, size, "file size")
        yield OpenedSource(path, desc, _format_hint(video_format), size, limits=limits, deadline=deadline)
        return

    http = scheme in ("http", "https")

    def do_open():
        deadline.check()
        return fs.open(path, "rb", block_size=block_size, cache_type="readahead")

    try:
        # s3/tos requests are retried inside botocore; http(s) here.
        f = call_with_retries(do_open, desc, limits.max_retries if http else 0, limits.retry_backoff_sec,
                              deadline.remaining)
    except LimitExceededError:
        raise
    except Exception as e:  # network errors come in many library-specific types
        raise source_error(desc, e, "cannot open") from None
    with f:
        size = getattr(f, "size", None)
        if size == 0:
            raise VideoSourceError(f"{desc}: empty object (0 bytes)")
        if size is not None:
            limits.check_bytes(desc, size, "object size")
        guarded = GuardedFile(f, desc, limits, deadline, retry=http)
        if not _seekable(f):
            # A server that does not report sizes or ranges gives a stream; spool it so PyAV can seek (and so
            # that an empty one is read to its end once: PyAV would read it again and again).
            with tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024) as spool:
                try:
                    shutil.copyfileobj(guarded, spool, block_size)
                except (LimitExceededError, SourcePolicyError):
                    raise
                except Exception as e:
                    raise source_error(desc, e, "read failed") from None
                size = spool.tell()
                if size == 0:
                    raise VideoSourceError(f"{desc}: empty object (0 bytes)")
                spool.seek(0)
                yield OpenedSource(spool, desc, _format_hint(video_format), size, limits=limits,
                                   deadline=deadline)
            return
        yield OpenedSource(guarded, desc, _format_hint(video_format), size, remote=True, limits=limits,
                           deadline=deadline)


def source_error(desc: str, e: BaseException, action: str) -> VideoSourceError:
    """A VideoSourceError for a failed open/read: policy violations keep their type, HTTP statuses are named,
    and nothing from the library's message can leak a credential."""
    policy_error = find_policy_error(e)
    if policy_error is not None:
        msg = str(policy_error)
        return SourcePolicyError(msg if msg.startswith(desc) else f"{desc}: {redact_text(msg)}")
    status = http_status(e)
    cause = e.__cause__
    # fsspec's HTTP info() turns every failure into FileNotFoundError; the cause says what really happened.
    network_cause = (isinstance(e, FileNotFoundError) and cause is not None
                     and not isinstance(cause, FileNotFoundError)
                     and (type(cause).__module__.startswith("aiohttp") or isinstance(cause, (OSError, TimeoutError))))
    if status == 404 or (status is None and isinstance(e, FileNotFoundError) and not network_cause):
        return VideoSourceError(f"{desc}: not found (404 or no such object)")
    if status in (401, 403) or isinstance(e, PermissionError):
        return VideoSourceError(f"{desc}: access denied" + (f" (HTTP {status})" if status else ""))
    if status is not None:
        return VideoSourceError(f"{desc}: {action}: HTTP {status}")
    shown = cause if network_cause else e
    return VideoSourceError(f"{desc}: {action} ({type(shown).__name__}: {redact_text(str(shown))})")


class GuardedFile(io.RawIOBase):
    """A remote file object as PyAV sees it: counts bytes against ``max_bytes``, checks the deadline on every
    read, and retries transient read errors (http) from the same position."""

    def __init__(self, f, description: str, limits: ReadLimits, deadline: Deadline, retry: bool):
        super().__init__()
        self._f = f
        self.description = description
        self.limits = limits
        self.deadline = deadline
        self.retry = retry
        self.bytes_read = 0
        self.size = getattr(f, "size", None)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return _seekable(self._f)

    def read(self, n: int = -1) -> bytes:
        self.deadline.check()
        pos = self._f.tell() if self.retry and self.seekable() else None

        def attempt() -> bytes:
            return self._f.read(n)

        def rewind() -> None:
            if pos is not None:
                self._f.seek(pos)

        try:
            data = call_with_retries(attempt, self.description,
                                     self.limits.max_retries if (self.retry and pos is not None) else 0,
                                     self.limits.retry_backoff_sec, self.deadline.remaining, rewind)
        except (LimitExceededError, SourcePolicyError):
            raise
        except Exception as e:  # noqa: BLE001 - named and redacted for the row's error
            raise source_error(self.description, e, "read failed") from None
        self.bytes_read += len(data)
        self.limits.check_bytes(self.description, self.bytes_read)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        super().close()  # the underlying file is closed by open_source's ``with``


def _seekable(f) -> bool:
    """Whether ``f`` can really seek. fsspec answers a server that reports no size (or a size of 0, or no
    ranges) with a stream file whose ``seekable()`` is true, as for every file read in "rb", although it cannot
    seek; its ``size`` is None."""
    if getattr(f, "size", 0) is None:
        return False
    try:
        return bool(f.seekable())
    except Exception:
        return False
