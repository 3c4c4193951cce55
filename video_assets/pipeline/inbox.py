"""Watching an inbox (a local folder or an object-store prefix) for new files with one fsspec code path.

:func:`list_inbox` lists a prefix recursively (S3: ListObjectsV2 pages of 1,000 keys; the listing carries each
object's size, LastModified and ETag, so nothing else is requested). :class:`InboxCursor` remembers what was
seen in a small, JSON-serialisable form:

- ``hw``: the newest modification time handled so far;
- ``recent``: for objects modified within ``lookback_sec`` before ``hw``, a 12-hex-digit hash of their path, a
  4-hex-digit hash of their ETag and size, and their modification time.

An object is new when it was modified after ``hw - lookback_sec`` and ``recent`` does not hold it with that
same modification time, ETag and size. So a new file, or a file written again (new mtime, or new ETag within
the same second of S3's one-second timestamps), is seen once; objects that show up late in a listing with an
older timestamp (S3 stamps a multipart upload with its start time) are still seen if they are at most
``lookback_sec`` older than ``hw``; and the cursor stays small because ``recent`` forgets entries older than
the lookback window. Whether a re-written file has new content is decided by the caller (content hashes), not
here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from video_assets.storage import filesystem_for
from video_assets.storage.fs import scheme_of

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".flv",
                            ".wmv", ".mpg", ".mpeg", ".3gp", ".ogv"})
_HASH_CHARS = 12
_TOK_CHARS = 4
_ENTRY_CHARS = _HASH_CHARS + _TOK_CHARS
# Local files up to this size get a full SHA-1 as fingerprint; larger ones size + head/middle/tail samples.
FULL_HASH_MAX_BYTES = 256 * 1024 * 1024
_SAMPLE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class InboxObject:
    uri: str  # what to open (s3://bucket/key or an absolute local path)
    path: str  # the path relative to the watched prefix, with '/'
    size: int
    mtime: float  # seconds since the epoch
    etag: str | None = None


def list_inbox(prefix_uri: str, accept: Callable[[str], bool], storage_options: dict | None = None
               ) -> list[InboxObject]:
    """Every file under ``prefix_uri`` (recursively) whose relative path passes ``accept``; hidden files and
    folders (a path component starting with '.') are left out. A prefix that does not exist is empty."""
    fs, root = filesystem_for(prefix_uri, storage_options)
    scheme = scheme_of(prefix_uri)
    local = scheme in ("", "file")
    root = root.rstrip("/")
    if not local:
        fs.invalidate_cache(root)  # s3fs caches listings; a sensor must see the store as it is now
    try:
        found = fs.find(root, detail=True, withdirs=False)
    except FileNotFoundError:
        return []
    out = []
    for p, info in found.items():
        p = p.rstrip("/")
        if not p.startswith(root + "/"):
            continue
        rel = p[len(root) + 1:]
        if any(part.startswith(".") for part in rel.split("/")) or not accept(rel):
            continue
        if info.get("type") == "directory":
            continue
        if local:
            uri, mtime, etag = p, float(info.get("mtime") or os.path.getmtime(p)), None
        else:
            uri = f"{scheme}://{p}"
            lm = info.get("LastModified") or info.get("last_modified")
            mtime = lm.timestamp() if hasattr(lm, "timestamp") else float(lm or 0)
            etag = (info.get("ETag") or info.get("etag") or "").strip('"') or None
        out.append(InboxObject(uri=uri, path=rel, size=int(info.get("size") or 0), mtime=mtime, etag=etag))
    return out


def suffix_filter(suffixes: Iterable[str]) -> Callable[[str], bool]:
    allowed = {s.lower() for s in suffixes}
    return lambda rel: posixpath.splitext(rel.lower())[1] in allowed


def _h(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()[:_HASH_CHARS]


def _tok(obj: InboxObject) -> str:
    return hashlib.sha1(f"{obj.etag or ''}:{obj.size}".encode()).hexdigest()[:_TOK_CHARS]


class InboxCursor:
    """What an inbox watcher has handled; see the module docstring."""

    def __init__(self, hw: float = -math.inf, recent: dict[str, tuple[float, str]] | None = None):
        self.hw = hw
        self.recent: dict[str, tuple[float, str]] = dict(recent or {})  # path hash -> (mtime, etag/size hash)

    @classmethod
    def loads(cls, s: str | None) -> InboxCursor:
        if not s:
            return cls()
        try:
            d = json.loads(s)
            recent = {}
            for mtime, entries in d.get("recent", {}).items():
                t = float(mtime)
                for i in range(0, len(entries), _ENTRY_CHARS):
                    e = entries[i:i + _ENTRY_CHARS]
                    recent[e[:_HASH_CHARS]] = (t, e[_HASH_CHARS:])
            hw = d.get("hw")
            return cls(-math.inf if hw is None else float(hw), recent)
        except (ValueError, TypeError, AttributeError):
            return cls()  # an unreadable cursor: start over (callers dedupe by content)

    def dumps(self) -> str:
        by_time: dict[str, list[str]] = {}
        for h, (t, tok) in self.recent.items():
            by_time.setdefault(repr(t), []).append(h + tok)
        return json.dumps({"v": 2, "hw": None if self.hw == -math.inf else self.hw,
                           "recent": {t: "".join(sorted(es)) for t, es in sorted(by_time.items())}},
                          separators=(",", ":"))

    def is_new(self, obj: InboxObject, lookback_sec: float) -> bool:
        if obj.mtime <= self.hw - lookback_sec:
            return False
        return self.recent.get(_h(obj.path)) != (obj.mtime, _tok(obj))

    def mark(self, obj: InboxObject) -> None:
        self.recent[_h(obj.path)] = (obj.mtime, _tok(obj))
        self.hw = max(self.hw, obj.mtime)

    def prune(self, lookback_sec: float) -> None:
        limit = self.hw - lookback_sec
        self.recent = {h: v for h, v in self.recent.items() if v[0] > limit}


def select_new(objects: Iterable[InboxObject], cursor: InboxCursor, lookback_sec: float,
               settle_sec: float = 0.0, limit: int | None = None,
               now: float | None = None) -> tuple[list[InboxObject], int]:
    """New objects, oldest first (ties by path), at most ``limit``; objects modified less than ``settle_sec``
    ago wait for a later call (a local file may still be being copied). Returns (selected, number waiting)."""
    now = time.time() if now is None else now
    new = sorted((o for o in objects if cursor.is_new(o, lookback_sec)), key=lambda o: (o.mtime, o.path))
    ready = [o for o in new if o.mtime <= now - settle_sec]
    chosen = ready if limit is None else ready[:limit]
    return chosen, len(new) - len(chosen)


def fingerprint(obj: InboxObject, storage_options: dict | None = None) -> str:
    """What identifies the content: the object store's ETag, or for a local file its SHA-1 (files over
    FULL_HASH_MAX_BYTES: size plus SHA-1 of the first, middle and last MiB, prefixed 'sample:')."""
    if obj.etag:
        return f"etag:{obj.etag}"
    fs, path = filesystem_for(obj.uri, storage_options)
    h = hashlib.sha1()
    if obj.size <= FULL_HASH_MAX_BYTES:
        with fs.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(4 * 1024 * 1024), b""):
                h.update(chunk)
        return f"sha1:{h.hexdigest()}"
    with fs.open(path, "rb") as f:
        for offset in (0, obj.size // 2, max(0, obj.size - _SAMPLE_BYTES)):
            f.seek(offset)
            h.update(f.read(_SAMPLE_BYTES))
    return f"sample:{obj.size}:{h.hexdigest()}"


def is_content_hash(fp: str) -> bool:
    """Whether equal fingerprints mean equal bytes (a full SHA-1, or a single-part upload's MD5 ETag)."""
    return fp.startswith("sha1:") or (fp.startswith("etag:") and "-" not in fp)
