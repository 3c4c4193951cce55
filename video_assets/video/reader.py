"""Frame-accurate, seek-aware decoding of chosen frames with PyAV: :class:`VideoReader`, an open video stream.

How frames are found:
1. The stream is indexed without decoding (:mod:`video_assets.video.frame_index`): every frame's
   presentation timestamp and keyframe flag, in presentation order, from a demux-only scan or, for a remote
   MP4/MOV, from its sample table.
2. The wanted frames are fetched in ascending order (:mod:`video_assets.video.fetch`). Before each one the
   reader either continues decoding forward or seeks to the keyframe at or before it, whichever decodes fewer
   frames (a seek pays off only when that keyframe lies beyond the current decoding position).
3. On the way to a wanted frame, packets whose frames are not wanted are decoded with ``skip_frame=NONREF``: the
   decoder drops non-reference frames (most B-frames), which nothing later needs (only for decoders that apply
   the setting to each packet as it is sent; see ``PER_PACKET_SKIP_DECODERS``). Only wanted frames are
   converted to RGB, so memory is bounded by the frames returned.

The stream is the one FFmpeg would play (``av_find_best_stream``, never a cover picture) unless
``stream_index`` names one. Frames come out as displayed: the display matrix that FFmpeg attaches to each
decoded frame (phones' portrait rotation, flips) is applied to the RGB view (``apply_rotation=False``: the
stored picture).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from video_assets.errors import VideoDecodeError
from video_assets.video.container_checks import mp4_truncation, segment_truncation
from video_assets.video.fetch import FrameFetch
from video_assets.video.fetch import missing_frames_warning as missing_frames_warning  # operators import it here
from video_assets.video.frame_index import (
    FrameIndex,
    Scan,
    ffmpeg_reason,
    index_from_header,
    listed_frames,
    scan_stream,
    seek_to_start,
    spans_a_wrap,
)
from video_assets.video.limits import Deadline, ReadLimits
from video_assets.video.orientation import IDENTITY, Orientation, copy_into
from video_assets.video.orientation import frame_orientation as _orientation_in_side_data
from video_assets.video.source import OpenedSource

log = logging.getLogger(__name__)

# Formats FFmpeg opens as one-picture "videos"; a still image is not a video for this project.
_IMAGE_FORMAT_SUFFIXES = ("_pipe",)
_IMAGE_FORMATS = {"image2", "gif", "apng", "webp"}
# Decoders that apply ``skip_frame`` to each packet when it is sent (FFmpeg's own decoders; frame threads
# copy the setting per submitted packet). Others must never see it changed: libdav1d (AV1) reads
# ``skip_frame`` only once, when the decoder opens, and then decodes reference frames only for the whole
# session. The reader set NONREF before the first packet, so every non-reference AV1 frame (every other frame
# of an SVT-AV1 GOP) was dropped, wanted or not: count_k=4 on 60 frames returned 2 frames "truncated", and a
# decode of all packets gave 32 of 60 frames. Intra-only codecs (MJPEG, ProRes) have nothing to skip.
PER_PACKET_SKIP_DECODERS = frozenset({"h264", "hevc", "mpeg1video", "mpeg2video", "mpeg4", "vp8", "vp9"})


@dataclass
class DecodeStats:
    frames_decoded: int = 0  # frames the decoder returned (skipped non-reference frames not counted)
    packets_sent: int = 0
    packets_hopped: int = 0  # demuxed on the way to a keyframe and not sent (video.fetch)
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
        self.remote = opened.remote  # read over the network: seeks skip bytes, hops would read them (video.fetch)
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
        cut = segment_truncation(opened)  # a Matroska/WebM cut short (read before FFmpeg reads the same bytes)
        if cut:
            self.truncated = True
            self.warnings.append(cut)
        self._opened = opened  # a counted stream's start is reached by opening it again (see seek_to)
        self._threads = (thread_type, thread_count)
        try:
            self._open_stream(opened, stream_index)
        except VideoDecodeError as e:
            why = mp4_truncation(opened)  # a cut MP4 fails in FFmpeg's words, which do not say so
            if why:
                raise VideoDecodeError(f"{e}; {why}") from None
            raise

    def _open_stream(self, opened: OpenedSource, stream_index: int | None) -> None:
        """Open the container, choose and index the stream, and check what the limits decide from them."""
        self.container = self._open(opened)
        try:
            self._check_is_video()
            self.index = self._index_stream(stream_index, opened.remote)
            self._set_threads()
            # How fetches decode this stream (read by video.fetch; they last as long as the reader):
            self.skip_nonref = self.stream.codec_context.name in PER_PACKET_SKIP_DECODERS
            self.seeks_trusted = True  # until a seek lands where the scan's timestamps do not match
            self.stream.codec_context.flush_buffers()
            # AVI stores no presentation times: for H.264/HEVC FFmpeg stamps packets in decode order (pts =
            # dts + 1), so with B-frames the decoder's frames carry another frame's time (a count_k=4 plan got
            # the frames [8, 23, 37, 51] for [7, 22, 37, 52]). There the decoder's output order is the
            # presentation order: frames are counted from the keyframe decoding started at (closed GOPs, which
            # H.264/HEVC keyframes in AVI are), and nothing may be skipped, since every frame must be counted.
            # A counted index (raw .h264/.hevc without timestamps, timestamps that restart or repeat) is in
            # output order from the first frame, its only keyframe.
            self.output_order = self._counted or (
                self._decode_order_pts and "avi" in (self.container.format.name or "")
                and self.stream.codec_context.name in ("h264", "hevc"))
            if self.output_order:
                self.skip_nonref = False
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
        raise VideoDecodeError(f"{self.description}: not a readable video container ({ffmpeg_reason(error)})")

    def _set_threads(self) -> None:
        self.stream.thread_type, self.stream.thread_count = self._threads  # FFmpeg frame + slice threading

    def _reopen(self) -> None:
        """Open the source again, at its first byte, with the same stream: how a counted stream is decoded from
        its start. No seek can be trusted to get there: after any seek (to 0, below the earliest timestamp, or to
        byte 0) FFmpeg's Matroska demuxer ends at the end of the first Segment, so a ``cat a.mkv b.mkv``, whose
        scan (from the open, without a seek) counted both, lost the second one's frames."""
        index = self.stream.index
        self.container.close()
        self.container = self._open(self._opened)
        self.stream = self.container.streams[index]
        self._set_threads()

    # -- metadata -------------------------------------------------------------------------------------------
    def _check_is_video(self) -> None:
        fmt = self.container.format.name or ""
        if fmt in _IMAGE_FORMATS or fmt.endswith(_IMAGE_FORMAT_SUFFIXES):
            raise VideoDecodeError(f"{self.description}: a still image ({fmt}), not a video")
        if not self.container.streams.video:
            kinds = sorted({s.type for s in self.container.streams}) or ["no streams"]
            raise VideoDecodeError(f"{self.description}: no video stream (contains: {', '.join(kinds)})")

    def _index_stream(self, stream_index: int | None, remote: bool) -> FrameIndex:
        """Choose the stream (:meth:`_choose_stream`) and index it. Whether a track is a cover picture is known
        once its frames are counted (:func:`_is_cover`): a stream chosen by default that turns out to be one is
        passed over for the next (the file opened again: its scan read to the end); ``stream_index`` naming one
        is an error. Only what the chosen stream's scan found is kept."""
        covers: set[int] = set()
        while True:
            self.stream = self._choose_stream(stream_index, covers)
            if self.stream.codec_context is None:  # PyAV's sign that FFmpeg has no decoder for this codec
                raise VideoDecodeError(f"{self.description}: unsupported video codec (no decoder available)")
            listed = listed_frames(self.container, self.stream)
            # A picture track that may be a cover is held to the limits once it is known not to be one (a cover
            # larger than max_pixels refused the video beside it); any other before its scan reads it.
            maybe_cover = _is_cover(self.stream, 1 if listed is None else listed)
            if not maybe_cover:
                self._check_header()
            # A one-sample picture track of an MP4/MOV is a cover by its sample table: scanning it would read
            # the whole file (a remote one over the network) for one frame.
            scan = None if _is_cover(self.stream, listed) else (
                # A remote file would be read whole by the scan; MP4/MOV headers index it without the media.
                (remote and self._header_scan())
                or scan_stream(self.container, self.stream, self.limits, self.deadline, self.description))
            if scan is not None and not _is_cover(self.stream, len(scan.index)):
                break
            if stream_index is not None:
                raise _cover_error(self.description, self.stream)
            covers.add(self.stream.index)
            if scan is not None:
                self._reopen()  # the scan read to the end
        if maybe_cover:
            self._check_header()
        if scan.truncation:
            self.truncated = True
            self.warnings.extend(scan.truncation)
        self._decode_order_pts = scan.decode_order_pts
        self._counted = scan.counted  # see frame_index.Scan
        self._starts_untimed = scan.starts_untimed
        self.warnings.extend(scan.notes)
        return scan.index

    def _choose_stream(self, stream_index: int | None, covers: set[int]):
        """The stream FFmpeg would play (``av_find_best_stream``), never a cover (nor one of ``covers``, found
        to be covers by their scan); or ``stream_index``."""
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
                raise _cover_error(self.description, stream)
            return stream
        videos = [st for st in streams.video if not _is_cover(st) and st.index not in covers]
        if not videos:
            raise VideoDecodeError(f"{self.description}: no video stream, only a cover picture "
                                   f"(streams: {_describe_streams(streams, covers)})")
        best = streams.best("video")
        # av_find_best_stream ranks the default disposition first, so a cover flagged default could still win
        return next((st for st in videos if best is not None and st.index == best.index), videos[0])

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
        # The span of timestamps that wrap is no duration: the index's, unwrapped, is checked once it is built.
        if declared is not None and not spans_a_wrap(declared, self.stream.time_base):
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

    @cached_property
    def fps(self) -> float:
        """The frame rate: the stream's declared rate (FFmpeg's ``guessed_rate`` first: an MP4's ``average_rate``
        is measured over rounded sample durations, 29.9694 for 90 frames of 29.97 fps at 1/15360, where the
        guessed 30000/1001 is exact), when the index's timestamps keep to it (see
        :func:`_keeps_rate`; a 30 fps Matroska video, whose 1 ms timestamps put 10 frames at 0, 33, 67, ..., 300
        ms, is 30 fps, not 10 frames / 0.333 s = 30.03), else the average measured from the index, frames over
        the duration (VFR; a declared rate that the timestamps contradict)."""
        rates = [r for r in (self.stream.guessed_rate, self.stream.average_rate) if r]
        tick = float(self.stream.time_base or 0)
        rate = next((r for r in rates if _keeps_rate(self.index.times, float(r), tick)), None)
        if rate is not None:
            return float(rate)
        if len(self.index) < 2:  # one frame keeps any rate: none is declared
            return 0.0
        return len(self.index) / self.duration if self.duration > 0 else 0.0

    def _header_scan(self) -> Scan | None:
        try:
            index = index_from_header(self.container, self.stream)
        except av.error.FFmpegError:
            # The seek back to the start for the scan failed (a sample table that lists nothing to seek by):
            # the scan starts from a new open instead.
            self._reopen()
            return None
        if index is None:
            return None
        self.stats.indexed_from_header = True
        return Scan(index)

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
        ``warnings`` and ``truncated``. How: :class:`~video_assets.video.fetch.FrameFetch`.
        """
        wanted = np.unique(np.asarray(positions, dtype=np.int64))
        if len(wanted) == 0:
            return
        if wanted[0] < 0 or wanted[-1] >= len(self.index):
            raise IndexError(f"{self.description}: frame positions out of range 0..{len(self.index) - 1}")
        yield from FrameFetch(self, wanted.tolist(), rgb).frames()


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
        try:
            self.seek_to(0)
            cc = self.stream.codec_context  # after the seek: a counted stream's is a new one
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
            self.stream.codec_context.flush_buffers()
        return IDENTITY

    def seek_to(self, position: int) -> None:
        self.stats.seeks += 1
        target = self.index.demuxed(int(self.index.pts[position]))
        try:
            if self._counted or (position == 0 and self._starts_untimed):
                # A counted index (no timestamps to seek by, or ones that restart) is decoded from the start,
                # its only keyframe, without a seek (see _reopen); so is a stream whose first packets have no
                # timestamp to seek to.
                self._reopen()
                return
            if position == 0:
                # Not to the first frame's timestamp: timestamp seeks can land one GOP late (MPEG-TS).
                seek_to_start(self.container, self.stream, self.index.earliest_ts)
            else:
                self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError as e:
            raise VideoDecodeError(f"{self.description}: seek failed ({ffmpeg_reason(e)})") from None
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


# Codecs of the pictures that files carry as covers; a one-frame track of one beside a video is a cover.
_COVER_CODECS = frozenset({"mjpeg", "png"})


def _is_cover(stream, frames: int | None = None) -> bool:
    """A cover picture, not a video: flagged ``attached_pic``, or, once its ``frames`` are counted, a one-frame
    MJPEG/PNG track in a file that has another video stream (Matroska has no cover flag for tracks, and
    FFmpeg's own choice can prefer it: a PNG track flagged default). The one rule for both the default choice
    and ``stream_index`` (see VideoReader._index_stream)."""
    if stream.disposition & av.stream.Disposition.attached_pic:
        return True
    return (frames == 1 and stream.codec_context is not None and stream.codec_context.name in _COVER_CODECS
            and any(st.index != stream.index and not _is_cover(st) for st in stream.container.streams.video))


def _cover_error(description: str, stream) -> VideoDecodeError:
    kind = "attached_pic" if _is_cover(stream) else f"a one-frame {stream.codec_context.name} track"
    return VideoDecodeError(f"{description}: stream {stream.index} is a cover picture ({kind}), not a video "
                            f"(streams: {_describe_streams(stream.container.streams, {stream.index})})")


def _describe_streams(streams, covers: set[int] = frozenset()) -> str:
    """``0: audio, 1: video, ...``; ``covers``: streams known to be cover pictures besides the flagged ones."""
    return ", ".join(f"{st.index}: "
                     f"{'cover picture' if st.type == 'video' and (st.index in covers or _is_cover(st)) else st.type}"
                     for st in streams) or "none"


# Timestamps are rounded to the time base, or to a coarser one they were remuxed from: Matroska's, FLV's 1 ms.
_ROUNDED_TO_SEC = 0.001


def _keeps_rate(times: np.ndarray, rate: float, tick: float) -> bool:
    """Every frame's time is a whole number of frames at ``rate`` from the first, to within their rounding (one
    ``tick`` of the time base, at least 1 ms), and most frames follow the previous one by one frame (a dropped
    frame keeps the rate; a rate that merely divides every time does not: 1 ms timestamps are all whole
    frames at 1000 fps)."""
    frames = np.asarray(times, dtype=np.float64) * rate
    whole = np.round(frames)
    if not np.all(np.abs(frames - whole) <= max(tick, _ROUNDED_TO_SEC) * rate + 1e-6):
        return False
    return len(whole) < 2 or float(np.median(np.diff(whole))) == 1.0


def rgb_view(rgb: av.VideoFrame) -> np.ndarray:
    """The HxWx3 pixels of an rgb24 frame, as a view without the row padding."""
    plane = rgb.planes[0]
    h, w = rgb.height, rgb.width
    return np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)[:, : w * 3].reshape(h, w, 3)

