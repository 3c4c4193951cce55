"""Container-level checks the demuxer does not make: a Matroska/WebM file cut short.

FFmpeg's Matroska demuxer ends a cut file at its last complete block without an error, and Matroska has no
list of every frame to count against (MP4's sample table is counted by ``frame_index``). What it does have is
the size of its Segment, the element that holds everything else, written in the first few dozen bytes: a file
that ends before its Segment does was cut short. A live (streamed) mux writes the size as "unknown" (all ones)
and then makes no claim to check. Only the EBML header and the Segment's header are read: a few dozen bytes
from the start, before FFmpeg reads the same bytes (a remote file's first range request serves both).
"""

from __future__ import annotations

import os

from video_assets.video.source import OpenedSource

_EBML_ID = 0x1A45DFA3
_SEGMENT_ID = 0x18538067
_ID_AND_SIZE = 4 + 8  # a top-level element ID is 4 bytes; a size vint at most 8
_MAX_EBML_HEADER = 4096  # the EBML header holds a handful of short elements; more is not a real header


def segment_truncation(opened: OpenedSource) -> str | None:
    """Why ``opened`` (a Matroska/WebM) looks cut short, from its Segment's declared end and the file's size;
    None when it is whole, not Matroska, its size is unknown, or its Segment's size is "unknown"."""
    if not opened.size:
        return None
    try:
        end = _segment_end(_HeadReader(opened.file))
    except OSError:  # an unreadable file is reported by the open that follows, in its own words
        return None
    if end is None or opened.size >= end:
        return None
    return (f"file ends at byte {opened.size} of a Segment declared to end at byte {end}: cut short; "
            "sampling the frames that are there")


def _segment_end(head: _HeadReader) -> int | None:
    """The byte offset at which the first Segment is declared to end, or None (no claim)."""
    with head:
        buf = head.read(_ID_AND_SIZE)
        ebml_id = _vint(buf, 0, keep_marker=True)
        if ebml_id is None or ebml_id[0] != _EBML_ID:
            return None
        header_size = _vint(buf, ebml_id[1])
        if header_size is None or header_size[0] is None or header_size[0] > _MAX_EBML_HEADER:
            return None
        segment_at = header_size[1] + header_size[0]
        buf += head.read(segment_at + _ID_AND_SIZE - len(buf))
        segment_id = _vint(buf, segment_at, keep_marker=True)
        if segment_id is None or segment_id[0] != _SEGMENT_ID:
            return None
        segment_size = _vint(buf, segment_id[1])
        if segment_size is None or segment_size[0] is None:
            return None  # cut inside the header, or the "unknown" size of a live mux
        return segment_size[1] + segment_size[0]


def _vint(buf: bytes, at: int, keep_marker: bool = False) -> tuple[int | None, int] | None:
    """The EBML variable-length integer at ``buf[at]``: ``(value, offset after it)``; value None for a size
    of all ones ("unknown"); None when ``buf`` ends first or the first byte is 0 (no valid length)."""
    if at >= len(buf) or buf[at] == 0:
        return None
    length = 9 - buf[at].bit_length()  # the leading zeros of the first byte, plus one
    if at + length > len(buf):
        return None
    raw = int.from_bytes(buf[at:at + length], "big")
    if keep_marker:  # element IDs are compared with their length marker, as the spec writes them
        return raw, at + length
    value = raw & ((1 << (7 * length)) - 1)
    return (None if value == (1 << (7 * length)) - 1 else value), at + length


class _HeadReader:
    """Reads the first bytes of an open source (a path, or a seekable file object whose position it puts
    back), as a context manager."""

    def __init__(self, file):
        self._file = file
        self._f = None
        self._pos = None

    def __enter__(self) -> _HeadReader:
        if isinstance(self._file, (str, os.PathLike)):
            self._f = open(self._file, "rb")  # noqa: SIM115 - closed in __exit__
        else:
            self._f = self._file
            self._pos = self._f.tell()
            self._f.seek(0)
        return self

    def read(self, n: int) -> bytes:
        out = b""
        while len(out) < n:  # a raw file object may return fewer bytes than asked
            chunk = self._f.read(n - len(out))
            if not chunk:
                break
            out += chunk
        return out

    def __exit__(self, *exc) -> None:
        if self._pos is None:
            self._f.close()
        else:
            self._f.seek(self._pos)
