"""The frame index of a video stream: every frame's presentation timestamp and keyframe flag, in presentation
order, without decoding.

Two ways to build it: :func:`scan_stream`, a demux-only scan of every packet (~20 ms for a minute of 720p), and
:func:`index_from_header`, which reads an MP4/MOV sample table instead, so a remote file is indexed without
reading its media data. Sorting the timestamps gives each frame's index and time in presentation order, from
the stream's own timestamps (edit lists, VFR and non-zero start times included), not container counts.

Where timestamps cannot order the frames, the scan builds a *counted* index instead: position i is the i-th
frame the decoder returns, decoding from the start (which is the order a player shows them). That is the case
for raw elementary streams (``.h264``/``.hevc``: no timestamps at all; times at the frame rate FFmpeg derives,
one packet duration per frame) and for streams whose timestamps repeat or restart (``cat a.ts b.ts``; a remux
that duplicated a timestamp), whose times continue across each restart.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from video_assets.errors import VideoDecodeError
from video_assets.video.limits import Deadline, ReadLimits

# The deadline is checked every this many packets in the demux-only scan (a clock read per packet is cheap but
# adds up over millions of packets).
_SCAN_CHECK_EVERY = 256
# Within one recording, B-frame reordering moves a packet at most this many places from its presentation
# position (H.264/HEVC hold at most 16 pictures for reordering); a packet displaced further, or one whose
# timestamp lies further before the newest one seen, belongs to a recording whose timestamps restarted.
_MAX_REORDER = 16
# FFmpeg unwraps the timestamp wraps a demuxer declares, but not one a muxer made: FFmpeg's FLV muxer writes
# timestamps in 31 bits, so the frames before 0 of a stream with negative timestamps are read 2^31 ms later
# than those after 0 (a 2-second clip lasted 2,147,484 s and failed the duration limit). A forward jump within
# 60 s (FFmpeg's own unwrapping allows the same) of 2^31, 2^32 or 2^33 ticks, when that is over a day (1 ms:
# 24.9 days; MPEG-TS's 90 kHz: 2^33 is 26.5 h), is a wrap, not a pause.
_WRAP_BITS = (31, 32, 33)
_WRAP_SLACK_SEC = 60
_WRAP_MIN_SEC = 86400


@dataclass
class FrameIndex:
    """Presentation-order index of a video stream, built from packet timestamps."""

    pts: np.ndarray  # int64, ascending: presentation timestamps of every frame (a counted index: 0, 1, ...)
    keyframe: np.ndarray  # bool, aligned with pts
    time_base: Fraction
    # seconds from the first frame, ascending; by default from pts (a counted index gives its own)
    times: np.ndarray | None = None
    # The earliest timestamp, decode or presentation, of any of the stream's packets (for seek_to_start);
    # None: the first frame's.
    earliest_ts: int | None = None
    # (newest timestamp before a wrap, its size): demuxed timestamps beyond the wrap are ``size`` larger than
    # the index's (see _WRAP_BITS); None: no wrap
    wrap: tuple[int, int] | None = None

    def __post_init__(self):
        first = int(self.pts[0]) if len(self.pts) else 0
        if len(self.pts):
            self.earliest_ts = first if self.earliest_ts is None else min(int(self.earliest_ts), first)
        if self.times is None:
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



    def unwrapped(self, ts: int | None) -> int | None:
        """A demuxed timestamp in the index's terms (the same unless the stream's timestamps wrap)."""
        if self.wrap is None or ts is None:
            return ts
        before, size = self.wrap
        return ts - size if ts > before + size // 2 else ts

    def demuxed(self, pts: int) -> int:
        """The demuxer's timestamp of the index's ``pts`` (to seek to)."""
        if self.wrap is None:
            return pts
        before, size = self.wrap
        return pts + size if pts > before else pts

    def has_frame_at(self, pts: int, keyframe: bool = False) -> bool:
        """A frame of the index has timestamp ``pts`` (with ``keyframe``: and it is a keyframe)."""
        pos = self.position_of(pts)
        if pos >= len(self) or self._pts[pos] != pts:
            return False
        return not keyframe or bool(self.keyframe[pos])


@dataclass
class Scan:
    """What the demux-only scan found: the index, whether the stream's packets came in presentation order
    (AVI stamps packets in decode order), and why the stream looks cut short (empty when it does not).

    ``counted``: the index counts frames in the decoder's output order from the start (its pts are the
    positions): fetches must count decoded frames instead of matching their timestamps, and cannot seek (not
    even to the start: the reader opens the stream again). ``notes``: what the caller should be told (not a
    truncation). ``starts_untimed``: the first packets have no timestamp (a Matroska written with negative
    timestamps, ``avoid_negative_ts=disabled``, stores none for them): a seek to the start lands at the first
    timestamp, after them, mid-GOP, so the start too is reached by opening the stream again."""

    index: FrameIndex
    decode_order_pts: bool = False
    truncation: list[str] = field(default_factory=list)
    counted: bool = False
    notes: list[str] = field(default_factory=list)
    starts_untimed: bool = False


def scan_stream(container, stream, limits: ReadLimits, deadline: Deadline, description: str) -> Scan:
    """Index ``stream`` of the open ``container`` by demuxing every packet (no decoding). A stream that
    outlasts ``limits.max_duration_sec`` is stopped while it is being scanned; a stream that ends early (a
    demux error, or fewer packets than the container's index lists) is indexed as far as it goes."""
    pts, key = [], []
    untimed = 0  # packets without any timestamp (raw elementary streams: all of them), from the first keyframe
    untimed_lead = 0  # ... and before it
    untimed_durations: set = set()
    # every packet from the first keyframe, timed or not, and those before it: a stream whose timestamps are
    # mostly missing is counted (see below)
    from_key = before_key = 0
    durations: set = set()
    truncation: list[str] = []
    max_ts = None  # a stream that runs past max_duration_sec is stopped while it is being scanned
    if limits.max_duration_sec is not None and stream.time_base:
        max_ts = limits.max_duration_sec / float(stream.time_base)
    first = None
    earliest = None  # FrameIndex.earliest_ts; a packet's decode time is at or before its presentation time
    starts_untimed = False  # see Scan
    newest = None  # the latest timestamp so far
    wrap = None  # FrameIndex.wrap
    tb = float(stream.time_base or 0)
    wraps = _wrap_sizes(tb)
    slack = _WRAP_SLACK_SEC / tb if tb else 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # flush packet at EOF
            t = packet.dts if packet.dts is not None else packet.pts
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is not None and wrap is None and newest is not None:
                size = next((w for w in wraps if abs(ts - newest - w) <= slack), None)
                wrap = (newest, size) if size else None
            if wrap is not None:  # every packet after the wrap is beyond it (decode times only increase)
                t, ts = (None if v is None else v - wrap[1] for v in (t, ts))
            if ts is not None:
                newest = ts if newest is None else max(newest, ts)
            if t is not None and (earliest is None or t < earliest):
                earliest = t
            if packet.is_discard:
                continue  # a frame an edit list hides
            if from_key or packet.is_keyframe:
                from_key += 1
                durations.add(packet.duration)
            else:
                before_key += 1
            if ts is None:
                starts_untimed = starts_untimed or not pts
                if not untimed and not packet.is_keyframe:
                    untimed_lead += 1  # see _untimed_scan
                    continue
                untimed += 1
                duration = packet.duration
                untimed_durations.add(duration)
                if untimed % _SCAN_CHECK_EVERY == 0:
                    deadline.check()
                if max_ts is not None and duration and untimed * duration > max_ts:
                    limits.check_duration(description, float(untimed * duration * stream.time_base))
                continue
            pts.append(ts)
            key.append(packet.is_keyframe)
            if len(pts) % _SCAN_CHECK_EVERY == 0:
                deadline.check()
            first = ts if first is None else min(first, ts)
            if max_ts is not None and ts - first > max_ts:
                limits.check_duration(description, float((ts - first) * stream.time_base))
    except av.error.FFmpegError as e:
        truncation.append(f"stream ends early after {len(pts) + untimed} packets ({ffmpeg_reason(e)}); "
                          "sampling the frames before that point")
    expected = _expected_frame_count(stream)
    if not truncation and expected is not None and expected > len(pts) + untimed:
        truncation.append(f"the container lists {expected} frames but only {len(pts) + untimed} are present "
                          "(file cut short?); sampling the frames that are there")
    if not pts and untimed:
        return _untimed_scan(stream, untimed, untimed_lead, untimed_durations, description, truncation)
    if not pts:
        return Scan(FrameIndex(np.empty(0, np.int64), np.empty(0, bool), stream.time_base or Fraction(1, 1)),
                    truncation=truncation)
    untimed += untimed_lead
    if untimed > len(pts):
        # Most frames have no timestamp (small frames that FFmpeg's MPEG-PS muxer packs several to a PES, only
        # the first stamped): leaving them out would leave a few frames of the video. The decoder returns them
        # in presentation order, so they are counted from the start, as a raw stream's are.
        scan = _untimed_scan(stream, from_key, before_key, durations, description, truncation,
                             what=f"a {stream.codec_context.name} stream whose frames are mostly without timestamps")
        scan.notes.insert(0, f"{untimed} of {len(pts) + untimed} frame(s) have no timestamp: frames are counted in "
                             "decoding order from the start, at the frame rate; sampling decodes from the start")
        return scan
    notes = [f"{untimed} frame(s) without a timestamp were left out"] if untimed else []
    pts_a = np.asarray(pts, dtype=np.int64)
    key_a = np.asarray(key, dtype=bool)
    decode_order_pts = bool(np.all(np.diff(pts_a) > 0))
    order = np.argsort(pts_a, kind="stable")
    sorted_pts = pts_a[order]
    if not decode_order_pts and (np.any(np.diff(sorted_pts) == 0)
                                 or int(np.abs(order - np.arange(len(order))).max()) > _MAX_REORDER):
        # Repeated or restarting timestamps: sorting them would merge or interleave frames of different
        # recordings (and drop repeats), so the frames are counted in decoding order instead.
        scan = _restarted_scan(stream, pts_a, key_a, sorted_pts, earliest, truncation, notes)
        if scan is not None and untimed:
            # Counting needs every frame in the index, and those without a timestamp have no known place.
            raise VideoDecodeError(f"{description}: timestamps that restart or repeat, and {untimed} frame(s) "
                                   "without any: the frames cannot be put in order exactly")
        if scan is not None:
            return scan
    pts_a, key_a = sorted_pts, key_a[order]
    if not key_a[0]:
        key_a[0] = True  # decoding must start somewhere; FFmpeg recovers from the first packet
    return Scan(FrameIndex(pts_a, key_a, stream.time_base, earliest_ts=earliest, wrap=wrap), decode_order_pts,
                truncation, notes=notes, starts_untimed=starts_untimed)


def _wrap_sizes(tb: float) -> list[int]:
    """The timestamp wraps, in ticks of a time base of ``tb`` seconds, that the scan unwraps (see _WRAP_BITS)."""
    return [1 << b for b in _WRAP_BITS if (1 << b) * tb >= _WRAP_MIN_SEC]


def spans_a_wrap(seconds: float, time_base) -> bool:
    """``seconds``, a duration the container declares, is a timestamp wrap's length (to within
    _WRAP_SLACK_SEC): FFmpeg measured it across a wrap that the scan unwraps. An FLV without a duration in its
    metadata (a live recording) whose timestamps before 0 were written in 31 bits declares 2,147,483.6 s."""
    tb = float(time_base or 0)
    return any(abs(seconds - size * tb) <= _WRAP_SLACK_SEC for size in _wrap_sizes(tb))


def _counted_index(times: np.ndarray, time_base: Fraction, earliest_ts: int | None = None) -> FrameIndex:
    """An index whose pts are the positions in the decoder's output order, with the frames' ``times``. Only
    the first frame is a keyframe: without timestamps to land on, decoding always starts there
    (``earliest_ts``: the stream's, for seek_to_start)."""
    n = len(times)
    key = np.zeros(n, dtype=bool)
    key[0] = True
    return FrameIndex(np.arange(n, dtype=np.int64), key, time_base, times=times, earliest_ts=earliest_ts)


def _untimed_scan(stream, n: int, lead: int, durations: set, description: str, truncation: list[str],
                  what: str | None = None) -> Scan:
    """The counted index of a stream without timestamps (raw Annex-B H.264/HEVC: FFmpeg's parser splits it
    into one packet per picture, and the decoder returns them in presentation order, B-frames reordered by
    their picture order count; the frames themselves carry no timestamp). Each frame lasts the packet duration
    FFmpeg derives from the stream's timing information, else 1 / the frame rate FFmpeg guesses.

    ``lead`` packets came before the first keyframe (a stream cut mid-GOP): the decoder returns nothing for
    them (their parameter sets are missing), so they are not counted."""
    durations = {d for d in durations if d}
    if len(durations) > 1:
        # Packets no longer map one to one onto equally long frames: fields coded as pictures of their own
        # (half a frame each; the decoder joins two into one frame), pulldown, or streams of different rates.
        what = what or f"a raw {stream.codec_context.name} stream without timestamps"
        raise VideoDecodeError(f"{description}: {what} "
                               "whose pictures last different times (joined streams of different frame rates, "
                               "separately coded fields, or pulldown): its frames cannot be counted and timed "
                               "exactly")
    if durations:
        step = durations.pop() * stream.time_base
    else:
        rate = stream.guessed_rate or stream.average_rate
        if not rate:
            raise VideoDecodeError(f"{description}: a video stream without timestamps or a frame rate")
        step = 1 / Fraction(rate)
    times = np.arange(n, dtype=np.float64) * float(step)
    notes = [f"{lead} packet(s) before the first keyframe were left out (the stream starts mid-GOP; they "
             "cannot be decoded)"] if lead else []
    return Scan(_counted_index(times, Fraction(step)), truncation=truncation, counted=True, notes=notes)


def _restarted_scan(stream, pts_a: np.ndarray, key_a: np.ndarray, sorted_pts: np.ndarray, earliest: int | None,
                    truncation: list[str], notes: list[str]) -> Scan | None:
    """The counted index of a stream whose timestamps repeat or restart. The packets are cut into runs at
    each restart (a timestamp further before the newest one seen than reordering explains); each run is put
    in presentation order by its timestamps and starts one frame after the previous run ends, so the times
    continue. Repeated timestamps within a run keep their frames, at the same time. None when nothing repeats
    or restarts (only reordered further than :data:`_MAX_REORDER`): the sorted timestamps order the frames."""
    steps = np.diff(sorted_pts)
    step = int(np.median(steps[steps > 0])) if np.any(steps > 0) else 1
    # Packets before the first keyframe (a recording cut mid-GOP) come out of the decoder as nothing when
    # their parameter sets are missing; counting them would shift every later frame. (Matched by timestamp,
    # as normally, they are simply never found.)
    lead = int(np.argmax(key_a)) if np.any(key_a) else 0
    pts_a = pts_a[lead:]
    window = _MAX_REORDER * step
    starts = [0]
    while True:
        run = pts_a[starts[-1]:]
        newest = np.maximum.accumulate(run)
        back = np.flatnonzero(run[1:] < newest[:-1] - window)
        if not len(back):
            break
        starts.append(starts[-1] + int(back[0]) + 1)
    runs, repeated, end = [], 0, None
    for a, b in zip(starts, starts[1:] + [len(pts_a)]):
        run = np.sort(pts_a[a:b], kind="stable")
        repeated += int(np.count_nonzero(np.diff(run) == 0))
        if end is not None:
            run = run - run[0] + end
        end = int(run[-1]) + step
        runs.append(run)
    shown = np.concatenate(runs)
    later = len(pts_a) - starts[1] if len(starts) > 1 else 0
    if not later and not repeated:
        return None  # reordered further than usual, but by timestamps that order the frames
    times = (shown - shown[0]).astype(np.float64) * float(stream.time_base)
    what = []
    if later:
        what.append(f"{later} frame(s) after {len(starts) - 1} restart(s) of the timestamps (joined recordings?)")
    if repeated:
        what.append(f"{repeated} frame(s) with a repeated timestamp")
    continued = ", their times continuing across each restart" if later else ", at the time of their twin"
    if lead:
        notes = notes + [f"{lead} packet(s) before the first keyframe were left out (the stream starts mid-GOP; "
                         "they cannot be decoded)"]
    notes = notes + [f"{' and '.join(what)} kept: frames are counted in decoding order from the start, as a "
                     f"player shows them{continued}; sampling decodes from the start"]
    return Scan(_counted_index(times, stream.time_base, earliest), truncation=truncation, counted=True,
                notes=notes)


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
    return FrameIndex(pts, key, stream.time_base, earliest_ts=earliest)



def listed_frames(container, stream) -> int | None:
    """The frames an MP4/MOV's sample table lists for ``stream``, read at the open without demuxing anything
    (None: another container, whose index, if any, does not list every frame)."""
    fmt = container.format.name or ""
    if "mov" not in fmt and "mp4" not in fmt:
        return None
    try:
        return sum(1 for e in stream.index_entries if not e.is_discard)
    except Exception:
        return None


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
