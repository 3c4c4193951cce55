"""Frame-accurate, seek-aware decoding of chosen frames with PyAV.

How frames are found:
1. A demux-only scan (no decoding; ~20 ms for a minute of 720p) lists every packet's presentation timestamp and
   keyframe flag. Sorting the timestamps gives each frame's index and time in presentation order, from the
   decoded stream's own timestamps (edit lists, VFR and non-zero start times included), not container counts.
2. The wanted frames are fetched in ascending order. Before each one the reader either continues decoding forward
   or seeks to the keyframe at or before it, whichever decodes fewer frames (a seek pays off only when that
   keyframe lies beyond the current decoding position).
3. On the way to a wanted frame, packets whose frames are not wanted are decoded with ``skip_frame=NONREF``: the
   decoder drops non-reference frames (most B-frames), which nothing later needs (only for decoders that apply
   the setting to each packet as it is sent; see ``_PER_PACKET_SKIP_DECODERS``). Only wanted frames are
   converted to RGB, so memory is bounded by the frames returned.

The stream is the one FFmpeg would play (``av_find_best_stream``, never a cover picture) unless
``stream_index`` names one. Frames come out as displayed: the display matrix that FFmpeg attaches to each
decoded frame (phones' portrait rotation, flips) is applied to the RGB view (``apply_rotation=False``: the
stored picture).
"""

from __future__ import annotations

import logging
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from video_assets.errors import VideoDecodeError
from video_assets.video.limits import Deadline, ReadLimits
from video_assets.video.orientation import IDENTITY, Orientation, copy_into
from video_assets.video.orientation import frame_orientation as _orientation_in_side_data
from video_assets.video.source import OpenedSource

log = logging.getLogger(__name__)

# Formats FFmpeg opens as one-picture "videos"; a still image is not a video for this project.
_IMAGE_FORMAT_SUFFIXES = ("_pipe",)
_IMAGE_FORMATS = {"image2", "gif", "apng", "webp"}
# Seeking flushes the decoder and its frame threads; continuing forward through a few frames is cheaper.
_SEEK_MIN_GAIN_FRAMES = 4
# Decoders that apply ``skip_frame`` to each packet when it is sent (FFmpeg's own decoders; frame threads
# copy the setting per submitted packet). Others must never see it changed: libdav1d (AV1) reads
# ``skip_frame`` only once, when the decoder opens, and then decodes reference frames only for the whole
# session. The reader set NONREF before the first packet, so every non-reference AV1 frame (every other frame
# of an SVT-AV1 GOP) was dropped, wanted or not: count_k=4 on 60 frames returned 2 frames "truncated", and a
# decode of all packets gave 32 of 60 frames. Intra-only codecs (MJPEG, ProRes) have nothing to skip.
_PER_PACKET_SKIP_DECODERS = frozenset({"h264", "hevc", "mpeg1video", "mpeg2video", "mpeg4", "vp8", "vp9"})
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

    def __post_init__(self):
        first = int(self.pts[0]) if len(self.pts) else 0
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


@dataclass
class DecodeStats:
    frames_decoded: int = 0  # frames the decoder returned (skipped non-reference frames not counted)
    packets_sent: int = 0
    seeks: int = 0
    decode_errors: int = 0
    indexed_from_header: bool = False  # the index came from the MP4/MOV sample table, not a full scan


class VideoReader:
    """An open video stream: metadata, its frame index, and exact frame fetches. Use as a context manager."""

    def __init__(self, opened: OpenedSource, thread_type: str = "AUTO", thread_count: int = 0,
                 limits: ReadLimits | None = None, deadline: Deadline | None = None, *,
                 stream_index: int | None = None, apply_rotation: bool = True):
        check_stream_index(stream_index)
        self.description = opened.description
        self.apply_rotation = bool(apply_rotation)
        # The display orientation of the frames (from their side data); known once a frame has been decoded.
        self._orientation: Orientation | None = None if self.apply_rotation else IDENTITY
        self.size_bytes = opened.size
        self.truncated = False
        self.warnings: list[str] = []
        self.stats = DecodeStats()
        # One colour converter for all of this reader's frames. frame.to_ndarray()/reformat() build a new
        # SwsContext per frame, and with threads=0 each starts and joins one slice thread per CPU. threads=1:
        # the decoder threads already use the cores. Not thread-safe; a reader is used by one thread at a time.
        self._rgb = VideoReformatter()
        # The source's limits and deadline unless the caller gives others.
        self.limits = limits or opened.limits
        self.deadline = deadline or opened.deadline or self.limits.deadline(self.description)
        self.deadline.check()
        self.container = self._open(opened)
        try:
            self._check_is_video()
            self.stream = self._choose_stream(stream_index)
            if self.stream.codec_context is None:  # PyAV's sign that FFmpeg has no decoder for this codec
                raise VideoDecodeError(f"{self.description}: unsupported video codec (no decoder available)")
            self._check_header()
            self.stream.thread_type = thread_type  # FFmpeg frame + slice threading
            self.stream.thread_count = thread_count
            self._skip_nonref = self.stream.codec_context.name in _PER_PACKET_SKIP_DECODERS
            self._seeks_trusted = True  # until a seek lands where the scan's timestamps do not match
            # A remote file would be read whole by the scan; MP4/MOV headers index it without the media data.
            self._decode_order_pts = False  # set by the scan
            self.index = (opened.remote and self._index_from_header()) or self._scan()
            self.stream.codec_context.flush_buffers()
            # AVI stores no presentation times: for H.264/HEVC FFmpeg stamps packets in decode order (pts =
            # dts + 1), so with B-frames the decoder's frames carry another frame's time (a count_k=4 plan got
            # the frames [8, 23, 37, 51] for [7, 22, 37, 52]). There the decoder's output order is the
            # presentation order: frames are counted from the keyframe decoding started at (closed GOPs, which
            # H.264/HEVC keyframes in AVI are), and nothing may be skipped, since every frame must be counted.
            self._output_order = (self._decode_order_pts and "avi" in (self.container.format.name or "")
                                  and self.stream.codec_context.name in ("h264", "hevc"))
            if self._output_order:
                self._skip_nonref = False
        except BaseException:
            self.container.close()
            raise
        if len(self.index) == 0:
            self.container.close()
            raise VideoDecodeError(f"{self.description}: video stream has no frames")
        self.duration = self._duration()
        try:
            self.limits.check_duration(self.description, self.duration)
        except BaseException:
            self.container.close()
            raise

    def _open(self, opened: OpenedSource):
        # FFmpeg probes the content; the caller's format hint is only a fallback for unprobeable input.
        formats = [None] + ([opened.format_hint] if opened.format_hint else [])
        error: BaseException | None = None
        for fmt in formats:
            if hasattr(opened.file, "seek"):
                opened.file.seek(0)
            # Over the network, probe less than FFmpeg's default 5 MB before the first seek can help.
            options = {"probesize": str(1 << 20)} if opened.remote else {}
            try:
                return av.open(opened.file, mode="r", format=fmt, metadata_errors="ignore", options=options)
            except av.error.FileNotFoundError:
                raise VideoDecodeError(f"{self.description}: file not found") from None
            except (av.error.FFmpegError, UnicodeDecodeError, OSError, ValueError) as e:
                error = e if error is None else error
        raise VideoDecodeError(f"{self.description}: not a readable video container ({_reason(error)})")

    # -- metadata -------------------------------------------------------------------------------------------
    def _check_is_video(self) -> None:
        fmt = self.container.format.name or ""
        if fmt in _IMAGE_FORMATS or fmt.endswith(_IMAGE_FORMAT_SUFFIXES):
            raise VideoDecodeError(f"{self.description}: a still image ({fmt}), not a video")
        if not self.container.streams.video:
            kinds = sorted({s.type for s in self.container.streams}) or ["no streams"]
            raise VideoDecodeError(f"{self.description}: no video stream (contains: {', '.join(kinds)})")

    def _choose_stream(self, stream_index: int | None):
        """The stream FFmpeg would play (``av_find_best_stream``), never a cover; or ``stream_index``."""
        streams = self.container.streams
        if stream_index is not None:
            if stream_index >= len(streams):
                raise VideoDecodeError(f"{self.description}: stream_index {stream_index} out of range "
                                       f"(the file has {len(streams)} streams: {_describe_streams(streams)})")
            stream = streams[stream_index]
            if stream.type != "video":
                raise VideoDecodeError(f"{self.description}: stream {stream_index} is {stream.type}, not "
                                       f"video (streams: {_describe_streams(streams)})")
            if _is_cover(stream):
                raise VideoDecodeError(f"{self.description}: stream {stream_index} is a cover picture "
                                       f"(attached_pic), not a video (streams: {_describe_streams(streams)})")
            return stream
        videos = [st for st in streams.video if not _is_cover(st)]
        if not videos:
            raise VideoDecodeError(f"{self.description}: no video stream, only a cover picture "
                                   f"(streams: {_describe_streams(streams)})")
        best = streams.best("video")
        # av_find_best_stream ranks the default disposition first, so a cover flagged default could still win
        return best if best is not None and not _is_cover(best) else videos[0]

    def _check_header(self) -> None:
        """Limits that the stream header alone decides, before any packet is decoded or any frame buffer
        exists: frame size and declared duration."""
        w, h = self.stored_width, self.stored_height
        if w <= 0 or h <= 0:
            # FFmpeg zeroes sizes it refuses (above ~16k x 16k) or cannot find; nothing could be decoded.
            raise VideoDecodeError(f"{self.description}: the video stream has no valid frame size "
                                   f"({w}x{h}) in its header")
        self.limits.check_frame_size(self.description, w, h)
        declared = self._declared_duration()
        if declared is not None:
            self.limits.check_duration(self.description, declared)

    def _declared_duration(self) -> float | None:
        s = self.stream
        if s.duration is not None and s.time_base:
            return float(s.duration * s.time_base)
        if self.container.duration is not None:
            return self.container.duration / av.time_base
        return None

    @property
    def stored_width(self) -> int:
        """Width of the pictures as coded (before the display rotation)."""
        return int(self.stream.codec_context.width or 0)

    @property
    def stored_height(self) -> int:
        return int(self.stream.codec_context.height or 0)

    @property
    def orientation(self) -> Orientation:
        """How frames are turned for display (identity with ``apply_rotation=False``). The display matrix
        comes with decoded frames; when none has been decoded yet, the first frame is decoded to read it."""
        if self._orientation is None:
            self._orientation = self._peek_orientation()
        return self._orientation

    @property
    def rotation(self) -> int:
        """Clockwise degrees (0/90/180/270) the stored picture is turned for display (see Orientation)."""
        return self.orientation.rotation

    @property
    def width(self) -> int:
        """Width of the frames as returned (displayed: a portrait phone video is taller than wide)."""
        return self.orientation.displayed_size(self.stored_width, self.stored_height)[0]

    @property
    def height(self) -> int:
        return self.orientation.displayed_size(self.stored_width, self.stored_height)[1]

    @property
    def stream_index(self) -> int:
        return int(self.stream.index)

    @property
    def codec(self) -> str:
        return self.stream.codec_context.name

    @property
    def fps(self) -> float:
        """Average frame rate measured from the index (frames over the span of their timestamps)."""
        if len(self.index) < 2:
            rate = self.stream.average_rate or self.stream.guessed_rate
            return float(rate) if rate else 0.0
        return (len(self.index) - 1) / float(self.index.times[-1]) if self.index.times[-1] > 0 else 0.0

    def _scan(self) -> FrameIndex:
        pts, key = [], []
        stream = self.stream
        max_ts = None  # a stream that runs past max_duration_sec is stopped while it is being scanned
        if self.limits.max_duration_sec is not None and stream.time_base:
            max_ts = self.limits.max_duration_sec / float(stream.time_base)
        first = None
        try:
            for packet in self.container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue  # flush packet at EOF, or a frame an edit list hides
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    continue
                pts.append(ts)
                key.append(packet.is_keyframe)
                if len(pts) % _SCAN_CHECK_EVERY == 0:
                    self.deadline.check()
                first = ts if first is None else min(first, ts)
                if max_ts is not None and ts - first > max_ts:
                    self.limits.check_duration(self.description, float((ts - first) * stream.time_base))
        except av.error.FFmpegError as e:
            self.truncated = True
            self.warnings.append(f"stream ends early after {len(pts)} packets ({_reason(e)}); "
                                 "sampling the frames before that point")
        expected = self._expected_frame_count()
        if not self.truncated and expected is not None and expected > len(pts):
            self.truncated = True
            self.warnings.append(f"the container lists {expected} frames but only {len(pts)} are present "
                                 "(file cut short?); sampling the frames that are there")
        if not pts:
            return FrameIndex(np.empty(0, np.int64), np.empty(0, bool), stream.time_base or Fraction(1, 1))
        pts_a = np.asarray(pts, dtype=np.int64)
        key_a = np.asarray(key, dtype=bool)
        self._decode_order_pts = bool(np.all(np.diff(pts_a) > 0))
        order = np.argsort(pts_a, kind="stable")
        pts_a, key_a = pts_a[order], key_a[order]
        keep = np.concatenate([[True], np.diff(pts_a) > 0])  # duplicate timestamps cannot be told apart
        pts_a, key_a = pts_a[keep], key_a[keep]
        if not key_a[0]:
            key_a[0] = True  # decoding must start somewhere; FFmpeg recovers from the first packet
        return FrameIndex(pts_a, key_a, stream.time_base)

    def _index_from_header(self) -> FrameIndex | None:
        """The index of an MP4/MOV from its sample table alone, or None when it cannot be trusted.

        The sample table gives every frame's decode timestamp and keyframe flag. Presentation timestamps are
        the decode timestamps shifted by the reorder delay: exact when B-frame reordering has a constant delay
        (every common encoder at a constant frame rate) or when there is no reordering. The first packets are
        demuxed to measure the shift and to check the rule against real presentation timestamps; on any
        mismatch the full scan runs instead.
        """
        fmt = self.container.format.name or ""
        if "mov" not in fmt and "mp4" not in fmt:
            return None
        index = self._header_index()
        if index is None:
            self.container.seek(0, backward=True)  # the full scan starts from the beginning again
        return index

    def _header_index(self) -> FrameIndex | None:
        try:
            entries = [e for e in self.stream.index_entries if not e.is_discard]
        except Exception:
            return None
        if len(entries) < 2:
            return None
        dts = np.fromiter((e.timestamp for e in entries), np.int64, len(entries))
        key = np.fromiter((e.is_keyframe for e in entries), bool, len(entries))
        probe_n = min(len(entries), 64)
        seen: list[tuple[int, bool]] = []
        try:
            for packet in self.container.demux(self.stream):
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
        shift = min(p for p, _ in seen) - int(dts[0])
        pts = dts + shift
        # Every keyframe must sit where the rule puts it, and the presentation times seen so far must be
        # exactly the predicted ones (the last few may still be waiting behind reordering).
        if any(k and p != int(pts[i]) for i, (p, k) in enumerate(seen)):
            return None
        margin = min(16, probe_n // 2)
        if sorted(p for p, _ in seen)[: probe_n - margin] != sorted(pts[:probe_n].tolist())[: probe_n - margin]:
            return None
        order = np.argsort(pts, kind="stable")
        pts, key = pts[order], key[order]
        if np.any(np.diff(pts) <= 0):
            return None
        self.stats.indexed_from_header = True
        return FrameIndex(pts, key, self.stream.time_base)

    def _expected_frame_count(self) -> int | None:
        """Frames the container's own index promises (MP4/MOV list every sample), if it knows."""
        try:
            entries = self.stream.index_entries
            n = sum(1 for e in entries if not e.is_discard)
        except Exception:
            return None
        return n if n > 1 else None

    def _duration(self) -> float:
        """Span of the stream in seconds: last frame's time plus one frame duration."""
        times = self.index.times
        if len(times) >= 2:
            step = float(np.median(np.diff(times[-min(len(times), 32):])))
        else:
            rate = self.stream.average_rate or self.stream.guessed_rate
            step = 1.0 / float(rate) if rate else 0.0
        return float(times[-1] + step)

    # -- decoding -----------------------------------------------------------------------------------------
    def fetch(self, positions: np.ndarray, rgb: bool = True) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(position, frame)`` for each wanted position (ascending), frame as HxWx3 uint8 RGB.

        Positions whose frame cannot be decoded (truncated or corrupt data) are skipped, recorded in
        ``warnings`` and ``truncated``.
        """
        wanted = np.unique(np.asarray(positions, dtype=np.int64))
        if len(wanted) == 0:
            return
        if wanted[0] < 0 or wanted[-1] >= len(self.index):
            raise IndexError(f"{self.description}: frame positions out of range 0..{len(self.index) - 1}")
        idx = self.index
        # plain ints: the loop below compares them for every packet and frame (numpy scalars cost more)
        want_pts = idx.pts[wanted].tolist()
        wanted = wanted.tolist()
        cc = self.stream.codec_context
        i = 0
        fed_pos = None  # presentation position of the newest packet sent to the decoder
        demux = None
        missing: list[int] = []
        retry_from = None  # set when a seek landed after the wanted frame: seek to an earlier keyframe
        while i < len(wanted):
            kf = idx.keyframe_at_or_before(wanted[i])
            if retry_from is not None:
                kf, retry_from = retry_from, None
            elif demux is not None and not self._seek_pays(kf, fed_pos):
                kf = None  # keep decoding forward
            just_seeked = kf is not None
            if just_seeked:
                self._seek_to(kf)
                demux = self.container.demux(self.stream)
                fed_pos = kf - 1
                counted = kf  # output-order streams: the position of the next frame the decoder returns
            # After a seek into the file the demuxer's timestamps must be the scan's, starting at a keyframe
            landing = kf is not None and kf > 0
            progressed = False
            reached_eof = True
            try:
                for packet in demux:
                    self.deadline.check()
                    # Packets an edit list hides (is_discard) are decoded all the same: the first shown
                    # frames reference them (the keyframe before an MP4 edit list's start); FFmpeg drops
                    # their frames.
                    ts = packet.pts if packet.pts is not None else packet.dts
                    if landing and ts is not None and not packet.is_discard:
                        if not self._lands_as_scanned(ts, packet.is_keyframe, first=landing == 1):
                            # MPEG-PS: a seek lands mid-GOP, and the parser then interpolates the timestamps
                            # of packets without their own PTS differently than the linear scan did (half a
                            # frame off), so frames cannot be matched. Decode forward from the start from now
                            # on.
                            self._seeks_trusted = False
                            retry_from, reached_eof = 0, False
                            break
                        landing = 2
                    if ts is not None:
                        # Frames before the next wanted one are only needed if other frames reference them.
                        if self._skip_nonref:
                            cc.skip_frame = "NONREF" if ts < want_pts[i] else "DEFAULT"
                        fed_pos = max(fed_pos, idx.position_of(ts))
                    elif self._skip_nonref:
                        cc.skip_frame = "DEFAULT"  # the flush packet at EOF
                    self.stats.packets_sent += 1
                    drain = False
                    i_before = i
                    if ts is not None:
                        if ts == want_pts[i] and not self._output_order:  # (output order: ts names no frame)
                            # This packet holds the next wanted frame; its references were sent before it and
                            # every earlier wanted frame is out already, so draining loses nothing.
                            drain = (i + 1 >= len(wanted)
                                     or self._seek_pays(idx.keyframe_at_or_before(wanted[i + 1]), fed_pos))
                    try:
                        frames = packet.decode()
                        if drain:
                            # the next wanted frame is reached by a seek (or there is none): drain the decoder
                            # now instead of decoding the following packets just to push this frame out
                            frames = list(frames) + list(cc.decode(None))
                    except av.error.FFmpegError:
                        self.stats.decode_errors += 1
                        continue
                    for frame in frames:
                        self.stats.frames_decoded += 1
                        self.limits.check_decoded_frames(self.description, self.stats.frames_decoded)
                        fpts = frame.pts
                        if self._output_order:
                            fpts = int(idx.pts[counted]) if counted < len(idx) else None
                            counted += 1
                        if fpts is None:
                            continue
                        if just_seeked and fpts > want_pts[i] and kf > 0:
                            # Container seek indexes by decode time and can land one GOP late (B-frames).
                            retry_from = idx.keyframe_at_or_before(kf - 1)
                            break
                        just_seeked = False
                        while i < len(wanted) and want_pts[i] < fpts:
                            missing.append(wanted[i])  # the decoder passed it without producing it
                            i += 1
                        if i < len(wanted) and want_pts[i] == fpts:
                            # the header's size was checked; a stream can still switch to a larger one
                            self.limits.check_frame_size(self.description, frame.width, frame.height)
                            yield wanted[i], (self.rgb_array(frame) if rgb else frame)
                            i += 1
                            progressed = True
                    if retry_from is not None or i >= len(wanted):
                        reached_eof = False
                        break
                    if drain:
                        if i == i_before and just_seeked and kf > 0:
                            # Nothing decoded since the seek: it landed mid-GOP (MPEG-TS). Start earlier.
                            retry_from = idx.keyframe_at_or_before(kf - 1)
                        elif i == i_before:  # drained without producing it: corrupt data
                            missing.append(wanted[i])
                            i += 1
                        reached_eof = False
                        demux = None  # the decoder is drained: the next wanted frame needs a seek
                        break
                    if progressed:
                        next_kf = idx.keyframe_at_or_before(wanted[i])
                        if self._seek_pays(next_kf, fed_pos):
                            reached_eof = False
                            break  # cheaper to seek than to decode forward to the next wanted frame
            except av.error.FFmpegError as e:
                self.warnings.append(f"demuxing failed ({_reason(e)})")
            if reached_eof and just_seeked and kf > 0:
                # The seek landed past the last keyframe (MPEG-TS seeks can land one GOP late): start earlier.
                retry_from = idx.keyframe_at_or_before(kf - 1)
                continue
            if reached_eof:
                missing.extend(wanted[i:])
                break
        if self._skip_nonref:
            cc.skip_frame = "DEFAULT"
        if missing:
            self.truncated = True
            self.warnings.append(missing_frames_warning(missing))

    def _seek_pays(self, kf: int, fed_pos: int) -> bool:
        """Seeking to keyframe ``kf`` decodes fewer frames than going on from ``fed_pos`` (and seeks work)."""
        return self._seeks_trusted and kf > fed_pos + _SEEK_MIN_GAIN_FRAMES

    def _lands_as_scanned(self, ts: int, keyframe: bool, first: bool) -> bool:
        """After a seek: the packet's timestamp is one the scan saw (the first packet: at a keyframe)."""
        pos = self.index.position_of(ts)
        if pos >= len(self.index) or self.index._pts[pos] != ts:
            return False
        return not first or (keyframe and bool(self.index.keyframe[pos]))

    def rgb_frame(self, frame: av.VideoFrame) -> av.VideoFrame:
        """``frame`` converted to rgb24 with this reader's converter (same pixels as ``frame.reformat``)."""
        return self._rgb.reformat(frame, format="rgb24", threads=1)

    def rgb_array(self, frame: av.VideoFrame) -> np.ndarray:
        """``frame`` as an HxWx3 uint8 RGB array as displayed: ``frame.to_ndarray(format="rgb24")`` turned by
        the frame's display matrix (a view of a new frame's buffer, without its row padding; a transposed or
        mirrored frame is copied once, into a contiguous array). With ``apply_rotation=False`` the stored
        picture."""
        view = self.displayed_view(frame)
        if view.strides[1] == 3:  # a row's pixels are adjacent: usable as it is (as before, or upside down)
            return view
        out = np.empty(view.shape, np.uint8)
        copy_into(out, view)
        return out

    def displayed_view(self, frame: av.VideoFrame) -> np.ndarray:
        """``frame`` in RGB as displayed, as a (strided) view; :func:`copy_into` copies it fast."""
        return self.frame_orientation(frame).apply(rgb_view(self.rgb_frame(frame)))

    def frame_orientation(self, frame: av.VideoFrame) -> Orientation:
        """The display orientation of one decoded frame (identity with ``apply_rotation=False``)."""
        if not self.apply_rotation:
            return IDENTITY
        o = _orientation_in_side_data(frame)
        if o is None:
            if not any("multiple of 90" in w for w in self.warnings):
                self.warnings.append("the display matrix rotates by an angle that is not a multiple of 90 "
                                     "degrees; frames are returned as stored")
            o = IDENTITY
        if self._orientation is None:
            self._orientation = o
        return o

    def _peek_orientation(self) -> Orientation:
        """Decode the first frame to read its display matrix (the stream header's side data is not exposed by
        PyAV; FFmpeg copies it onto every decoded frame). Only callers that ask for the size before any frame
        was fetched pay for this (the probe)."""
        cc = self.stream.codec_context
        try:
            self._seek_to(0)
            for packet in self.container.demux(self.stream):
                self.deadline.check()
                try:
                    frames = list(packet.decode()) + (list(cc.decode(None)) if packet.size else [])
                except av.error.FFmpegError:
                    continue
                if frames:
                    return self.frame_orientation(frames[0])
                if packet.size:
                    cc.flush_buffers()  # drained without a frame (data before the first keyframe): go on
        except (av.error.FFmpegError, VideoDecodeError):
            pass
        finally:
            cc.flush_buffers()
        return IDENTITY

    def _seek_to(self, position: int) -> None:
        self.stats.seeks += 1
        target = int(self.index.pts[position])
        try:
            if position == 0:
                # Timestamp seeks can land one GOP late (MPEG-TS); the start is always reachable this way.
                self.container.seek(0, backward=True)
            else:
                self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError as e:
            raise VideoDecodeError(f"{self.description}: seek failed ({_reason(e)})") from None
        self.stream.codec_context.flush_buffers()

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_stream_index(stream_index) -> None:
    """ValueError unless ``stream_index`` is None or an int >= 0 (checked before any I/O)."""
    if stream_index is None:
        return
    if isinstance(stream_index, bool) or not isinstance(stream_index, (int, np.integer)) or stream_index < 0:
        raise ValueError(f"stream_index must be None or an int >= 0, got {stream_index!r}")


def _is_cover(stream) -> bool:
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _describe_streams(streams) -> str:
    return ", ".join(f"{st.index}: {'cover picture' if st.type == 'video' and _is_cover(st) else st.type}"
                     for st in streams) or "none"


def rgb_view(rgb: av.VideoFrame) -> np.ndarray:
    """The HxWx3 pixels of an rgb24 frame, as a view without the row padding."""
    plane = rgb.planes[0]
    h, w = rgb.height, rgb.width
    return np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)[:, : w * 3].reshape(h, w, 3)


def missing_frames_warning(missing: list[int]) -> str:
    """The warning for wanted frames that could not be decoded (also used to attribute them per consumer when
    one fetch serves several plans)."""
    return (f"{len(missing)} wanted frame(s) could not be decoded (truncated or corrupt data), first at index "
            f"{missing[0]}")


def _reason(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return msg.split(": '", 1)[0] if msg else type(e).__name__
