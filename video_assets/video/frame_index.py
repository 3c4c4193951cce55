"""The frame index of a video stream: every frame's presentation timestamp and keyframe flag, in presentation
order, without decoding.

Two ways to build it: :func:`scan_stream`, a demux-only scan of every packet (~20 ms for a minute of 720p), and
:func:`index_from_header`, which reads an MP4/MOV sample table instead, so a remote file is indexed without
reading its media data. Sorting the timestamps gives each frame's index and time in presentation order, from
the stream's own timestamps (edit lists, VFR and non-zero start times included), not container counts.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from video_assets.video.limits import Deadline, ReadLimits

# The deadline is checked every this many packets in the demux-only scan (a clock read per packet is cheap but
# adds up over millions of packets).
_SCAN_CHECK_EVERY = 256


@dataclass
class FrameIndex:
    """Presentation-order index of a video stream, built from packet timestamps."""

    pts: np.ndarray  # int64, ascending: presentation timestamps of every frame
    keyframe: np.ndarray  # bool, aligned with pts
    time_base: Fraction
    times: np.ndarray = field(init=False)  # seconds from the first frame
    # The earliest timestamp, decode or presentation, of any of the stream's packets (for seek_to_start);
    # None: the first frame's.
    earliest_ts: int | None = None

    def __post_init__(self):
        first = int(self.pts[0]) if len(self.pts) else 0
        if len(self.pts):
            self.earliest_ts = first if self.earliest_ts is None else min(int(self.earliest_ts), first)
        self.times = (self.pts - first).astype(np.float64) * float(self.time_base)
        # The decode loop looks these up for every packet while holding the GIL, which caps how many decode
        # threads one process can keep busy: bisect over a plain int64 array takes ~0.5 us where a numpy call on
        # a scalar takes ~4 us (and finding the last keyframe by scanning took O(position)).
        positions = np.arange(len(self.pts), dtype=np.int64)
        self._pts = array("q", np.ascontiguousarray(self.pts, dtype=np.int64).tobytes())
        self._last_keyframe = array("q", np.maximum.accumulate(np.where(self.keyframe, positions, 0)).tobytes())

    def __len__(self) -> int:
        return len(self.pts)

    def position_of(self, pts: int) -> int:
        """Position of the first frame whose timestamp is >= ``pts`` (``np.searchsorted`` on ``pts``)."""
        return bisect_left(self._pts, pts)

    def keyframe_at_or_before(self, position: int) -> int:
        if position < 0 or not len(self._last_keyframe):
            return 0
        return self._last_keyframe[min(position, len(self._last_keyframe) - 1)]



    def has_frame_at(self, pts: int, keyframe: bool = False) -> bool:
        """A frame of the index has timestamp ``pts`` (with ``keyframe``: and it is a keyframe)."""
        pos = self.position_of(pts)
        if pos >= len(self) or self._pts[pos] != pts:
            return False
        return not keyframe or bool(self.keyframe[pos])


@dataclass
class Scan:
    """What the demux-only scan found: the index, whether the stream's packets came in presentation order
    (AVI stamps packets in decode order), and why the stream looks cut short (empty when it does not)."""

    index: FrameIndex
    decode_order_pts: bool = False
    truncation: list[str] = field(default_factory=list)


def scan_stream(container, stream, limits: ReadLimits, deadline: Deadline, description: str) -> Scan:
    """Index ``stream`` of the open ``container`` by demuxing every packet (no decoding). A stream that
    outlasts ``limits.max_duration_sec`` is stopped while it is being scanned; a stream that ends early (a
    demux error, or fewer packets than the container's index lists) is indexed as far as it goes."""
    pts, key = [], []
    truncation: list[str] = []
    max_ts = None  # a stream that runs past max_duration_sec is stopped while it is being scanned
    if limits.max_duration_sec is not None and stream.time_base:
        max_ts = limits.max_duration_sec / float(stream.time_base)
    first = None
    earliest = None  # FrameIndex.earliest_ts; a packet's decode time is at or before its presentation time
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # flush packet at EOF
            t = packet.dts if packet.dts is not None else packet.pts
            if t is not None and (earliest is None or t < earliest):
                earliest = t
            if packet.is_discard:
                continue  # a frame an edit list hides
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                continue
            pts.append(ts)
            key.append(packet.is_keyframe)
            if len(pts) % _SCAN_CHECK_EVERY == 0:
                deadline.check()
            first = ts if first is None else min(first, ts)
            if max_ts is not None and ts - first > max_ts:
                limits.check_duration(description, float((ts - first) * stream.time_base))
    except av.error.FFmpegError as e:
        truncation.append(f"stream ends early after {len(pts)} packets ({ffmpeg_reason(e)}); "
                          "sampling the frames before that point")
    expected = _expected_frame_count(stream)
    if not truncation and expected is not None and expected > len(pts):
        truncation.append(f"the container lists {expected} frames but only {len(pts)} are present "
                          "(file cut short?); sampling the frames that are there")
    if not pts:
        return Scan(FrameIndex(np.empty(0, np.int64), np.empty(0, bool), stream.time_base or Fraction(1, 1)),
                    truncation=truncation)
    pts_a = np.asarray(pts, dtype=np.int64)
    key_a = np.asarray(key, dtype=bool)
    decode_order_pts = bool(np.all(np.diff(pts_a) > 0))
    order = np.argsort(pts_a, kind="stable")
    pts_a, key_a = pts_a[order], key_a[order]
    keep = np.concatenate([[True], np.diff(pts_a) > 0])  # duplicate timestamps cannot be told apart
    pts_a, key_a = pts_a[keep], key_a[keep]
    if not key_a[0]:
        key_a[0] = True  # decoding must start somewhere; FFmpeg recovers from the first packet
    return Scan(FrameIndex(pts_a, key_a, stream.time_base, earliest), decode_order_pts, truncation)


def index_from_header(container, stream) -> FrameIndex | None:
    """The index of an MP4/MOV from its sample table alone, or None when it cannot be trusted.

    The sample table gives every frame's decode timestamp and keyframe flag. Presentation timestamps are
    the decode timestamps shifted by the reorder delay: exact when B-frame reordering has a constant delay
    (every common encoder at a constant frame rate) or when there is no reordering. The first packets are
    demuxed to measure the shift and to check the rule against real presentation timestamps; on any
    mismatch the full scan runs instead.
    """
    fmt = container.format.name or ""
    if "mov" not in fmt and "mp4" not in fmt:
        return None
    index = _header_index(container, stream)
    if index is None:  # the full scan starts from the beginning again
        try:
            earliest = min((e.timestamp for e in stream.index_entries), default=None)
        except Exception:
            earliest = None
        seek_to_start(container, stream, earliest)
    return index


def seek_to_start(container, stream, earliest_ts: int | None) -> None:
    """Seek ``container`` to the first packet of ``stream``, whose packets' earliest timestamp (decode or
    presentation, in the stream's time base) is ``earliest_ts`` (None: unknown).

    ``container.seek(0)`` finds the last position stamped at or before time 0. That is the start when no
    packet is stamped before 0 (a seek to the first keyframe's own timestamp can land one GOP late in
    MPEG-TS, which searches by decode time). Otherwise it lands mid-stream: an MPEG-TS that starts within
    60 s before the 33-bit PTS wrap (broadcast captures, HLS segments of 24/7 streams; FFmpeg unwraps the
    timestamps before the wrap to negative values), or one written with negative timestamps, lost every
    frame before the wrap point. There the seek asks for a time just below the earliest timestamp: the
    demuxers' searches (MPEG-TS's binary search, MP4's sample table) find nothing earlier and start at the
    first packet.
    """
    if earliest_ts is None or earliest_ts >= 0:
        container.seek(0, backward=True)
    else:
        container.seek(int(earliest_ts) - 1, stream=stream, backward=True)


def _header_index(container, stream) -> FrameIndex | None:
    try:
        all_entries = list(stream.index_entries)
    except Exception:
        return None
    entries = [e for e in all_entries if not e.is_discard]
    if len(entries) < 2:
        return None
    dts = np.fromiter((e.timestamp for e in entries), np.int64, len(entries))
    key = np.fromiter((e.is_keyframe for e in entries), bool, len(entries))
    probe_n = min(len(entries), 64)
    seen: list[tuple[int, bool]] = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:
                continue
            if packet.pts is None:
                return None
            seen.append((packet.pts, packet.is_keyframe))
            if len(seen) >= probe_n:
                break
    except av.error.FFmpegError:
        return None
    if len(seen) < probe_n:
        return None
    # With B-frames the presentation times are the decode times shifted by the reorder delay only while every
    # frame lasts as long: where the duration changes after the probe (VFR, a dropped frame) the shifted decode
    # times name times no frame has. So a stream that reorders must have one decode step from end to end.
    reorders = stream.codec_context.has_b_frames or any(a[0] > b[0] for a, b in zip(seen, seen[1:]))
    if reorders and np.any(np.diff(dts) != dts[1] - dts[0]):
        return None
    shift = min(p for p, _ in seen) - int(dts[0])
    pts = dts + shift
    # Every keyframe must sit where the rule puts it, and the presentation times seen so far must be
    # exactly the predicted ones (the last few may still be waiting behind reordering).
    if any(k and p != int(pts[i]) for i, (p, k) in enumerate(seen)):
        return None
    margin = min(16, probe_n // 2)
    if sorted(p for p, _ in seen)[: probe_n - margin] != sorted(pts[:probe_n].tolist())[: probe_n - margin]:
        return None
    earliest = min(min(e.timestamp for e in all_entries), min(p for p, _ in seen))
    order = np.argsort(pts, kind="stable")
    pts, key = pts[order], key[order]
    if np.any(np.diff(pts) <= 0):
        return None
    return FrameIndex(pts, key, stream.time_base, earliest)



def _expected_frame_count(stream) -> int | None:
    """Frames the container's own index promises (MP4/MOV list every sample), if it knows."""
    try:
        entries = stream.index_entries
        n = sum(1 for e in entries if not e.is_discard)
    except Exception:
        return None
    return n if n > 1 else None



def ffmpeg_reason(e: BaseException) -> str:
    """An FFmpeg (or OS) error's reason without the file name PyAV appends (messages name the source
    themselves)."""
    msg = getattr(e, "strerror", None) or str(e)
    return msg.split(": '", 1)[0] if msg else type(e).__name__
