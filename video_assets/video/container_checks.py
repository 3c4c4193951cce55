"""Container-level checks the demuxer does not make: a Matroska/WebM or MP4/MOV file cut short.

FFmpeg's Matroska demuxer ends a cut file at its last complete block without an error, and Matroska has no
list of every frame to count against (MP4's sample table is counted by ``frame_index``). What it does have is
the size of its Segment, the element that holds everything else, written in the first few dozen bytes: a file
that ends before its Segment does was cut short. A live (streamed) mux writes the size as "unknown" (all ones)
and then makes no claim to check. Only the EBML header and the Segment's header are read: a few dozen bytes
from the start, before FFmpeg reads the same bytes (a remote file's first range request serves both).

MP4/MOV (:func:`mp4_truncation`): most encoders write the index (the ``moov`` box) after the media, so a file
cut short has no index, or half of one, and FFmpeg then fails in words that do not say so ("Invalid data", or a
"data" stream and no video). Asked only once a video has failed, it walks the top-level boxes (a few small
reads) and names the box the file ends in.
"""

from __future__ import annotations

import os
import struct

from video_assets.video.source import OpenedSource

_EBML_ID = 0x1A45DFA3
_SEGMENT_ID = 0x18538067
_ID_AND_SIZE = 4 + 8  # a top-level element ID is 4 bytes; a size vint at most 8
_MAX_EBML_HEADER = 4096  # the EBML header holds a handful of short elements; more is not a real header
# ISO base media (MP4, MOV, 3GP, fragmented MP4) top-level boxes that can come first
_MP4_FIRST_BOXES = frozenset({b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid"})
_MAX_BOXES = 256  # a fragmented MP4 has a moof/mdat pair per fragment; past this many, no claim


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


def mp4_truncation(opened: OpenedSource) -> str | None:
    """Why ``opened`` (an MP4/MOV) looks cut short: a top-level box declared to end past the end of the file, or
    no ``moov`` (nor any ``moof``) box at all. None when the boxes add up, it is not MP4/MOV, its size is
    unknown, or it cannot be read."""
    size = opened.size
    if not size:
        return None
    try:
        with _HeadReader(opened.file) as head:
            at, seen = 0, set()
            for _ in range(_MAX_BOXES):
                if at == size:
                    break
                header = head.read_at(at, 16)
                if len(header) < 8:
                    return f"the file ends at byte {size} inside a box's header: cut short" if at else None
                box_size, kind = struct.unpack(">I4s", header[:8])
                if (not at and kind not in _MP4_FIRST_BOXES) or not all(32 <= c < 127 for c in kind):
                    return None  # not an MP4/MOV, or not a box boundary: no claim
                if box_size == 1:  # a 64-bit size follows
                    if len(header) < 16:
                        return None
                    box_size = struct.unpack(">Q", header[8:16])[0]
                elif box_size == 0:  # the last box, to the end of the file
                    box_size = size - at
                if box_size < 8:
                    return None
                seen.add(kind)
                end = at + box_size
                if end > size:
                    name = kind.decode("latin-1")
                    index = "" if b"moov" in seen - {kind} or b"moof" in seen else (
                        ", its index of the frames" if kind == b"moov" else
                        ", before its index of the frames (the 'moov' box, written after the media)")
                    return f"the file ends at byte {size} inside its '{name}' box{index} (declared to end at " \
                           f"byte {end}): cut short"
                at = end
            else:
                return None  # too many boxes to walk: no claim
    except OSError:
        return None
    if b"moov" not in seen and b"moof" not in seen:
        return "the MP4 has no 'moov' box (its index of the frames): cut short, or never finished"
    return None


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

    def read_at(self, offset: int, n: int) -> bytes:
        self._f.seek(offset)
        return self.read(n)

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
