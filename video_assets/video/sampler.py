"""The frame sampler's public entry points: ``sample_frames`` (one array) and ``iter_frames`` (chunks).

``sample_frames`` returns every chosen frame in one (n, H, W, 3) array: simplest when n frames fit in memory
(8 frames of 1080p are 50 MB; 3,600 are 22 GB). ``iter_frames`` yields the same frames in chunks of at most
``chunk`` frames as they are decoded, so memory stays that of one chunk whatever the plan or the video's
length; the operators stream this way (:class:`FrameBuffer`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import av
import numpy as np

from video_assets.errors import VideoDecodeError
from video_assets.fields import check_keywords, keywords_from
from video_assets.storage.policy import SourcePolicy
from video_assets.video.limits import ReadLimits
from video_assets.video.orientation import copy_into
from video_assets.video.plan import DEFAULT_PLAN, SamplePlan, select_positions
from video_assets.video.reader import DecodeStats, VideoReader, check_stream_index
from video_assets.video.source import VideoSource, open_source

log = logging.getLogger(__name__)

# Frames per chunk when streaming: 32 frames of 720p are 88 MB, and a chunk is one preprocessing call.
DEFAULT_CHUNK_FRAMES = 32


class TruncatedVideoWarning(UserWarning):
    """The video ended early or had undecodable frames; the result holds the frames that could be decoded."""


@dataclass
class SampledFrames:
    """Frames chosen from one video, in presentation order."""

    indices: list[int]  # 0-based indices in the stream's presentation order
    timestamps: list[float]  # seconds from the first frame (first frame = 0.0)
    frames: np.ndarray  # uint8, (n, H, W, 3), RGB
    source: str  # description of the source, safe to log
    duration: float  # seconds: last frame's time + one frame duration
    fps: float
    width: int  # displayed size (after the display rotation, unless apply_rotation=False)
    height: int
    codec: str
    num_frames: int  # frames in the stream
    truncated: bool = False  # True when the stream ended early or wanted frames could not be decoded
    warnings: list[str] = field(default_factory=list)
    stats: DecodeStats = field(default_factory=DecodeStats)
    rotation: int = 0  # clockwise degrees applied for display (0 with apply_rotation=False)
    stream_index: int = 0  # the container's stream that was read

    def __len__(self) -> int:
        return len(self.indices)


@keywords_from(SamplePlan, exclude=("sample_mode",))
def sample_frames(source: VideoSource, sample_mode: str = DEFAULT_PLAN.sample_mode, *,
                  video_format: str | None = None, default_video_format: str = "mp4",
                  storage_options: dict | None = None, plan: SamplePlan | None = None, decoder_threads: int = 0,
                  policy: SourcePolicy | None = None, limits: ReadLimits | None = None,
                  stream_index: int | None = None, apply_rotation: bool = True, **sampling) -> SampledFrames:
    """Sample frames from a video.

    The sampling keywords (``start_time_sec``, ``end_time_sec``, ``count_k``, ``interval_sec``,
    ``interval_frames``, ``target_fps``, ``timestamps_sec``, ``max_frames``) are the fields of
    :class:`~video_assets.video.plan.SamplePlan`, with its defaults; ``plan``: a ready plan instead.

    ``source``: a local path (str or Path), ``file://``, ``http(s)://``, ``s3://bucket/key``, ``tos://bucket/key``
    (endpoint from ``VIDEO_ASSETS_TOS_ENDPOINT``), raw ``bytes``, or a base64 ``str``. ``video_format`` (or,
    when it is None, ``default_video_format``) is the container hint for bytes and base64 inputs.

    Semantics. Let f_0..f_{N-1} be the stream's frames in presentation order and t_i their time from the first
    frame (t_0 = 0.0, from decoded timestamps). "The frame shown at time t" is the last frame with t_i <= t
    (f_0 for t < 0). The window is [start_time_sec, end) with end = the stream's duration (last frame time +
    one frame duration), or end_time_sec when that is earlier.

    - ``by_count_uniform`` (count_k, default 8): targets start + (j + 0.5) * (end - start) / count_k.
    - ``by_interval_time`` (interval_sec): targets start, start + interval_sec, ... while < end.
    - ``by_fps`` (target_fps): targets start + j / target_fps while < end.
    - ``by_interval_frames`` (interval_frames): every interval_frames-th frame among the frames whose time lies
      in the window, starting with the first of them.
    - ``by_timestamps`` (timestamps_sec): exactly those times; times outside the window are dropped.

    Each target maps to the frame shown at that time; a frame chosen twice appears once; output is ascending.
    ``max_frames``: when n > max_frames frames are chosen, keep positions floor(j * n / max_frames).

    Wrong parameters raise ValueError naming the parameter, before any I/O. Unreadable sources raise
    VideoSourceError, undecodable content VideoDecodeError (both name the source). A truncated stream that
    still has decodable frames returns them with ``truncated=True`` and a TruncatedVideoWarning.

    Decoding seeks to keyframes for sparse plans and decodes forward for dense ones, skipping non-reference
    frames that are not wanted; only the chosen frames are converted to RGB and kept. ``decoder_threads``:
    FFmpeg threads for this video (0 = one per core; callers decoding several videos at once pass fewer).

    ``policy`` (:class:`~video_assets.storage.policy.SourcePolicy`, default permissive): where a path/URI may
    point; a violation raises SourcePolicyError before anything is read. ``limits``
    (:class:`~video_assets.video.limits.ReadLimits`, default limits): bytes, duration, frame size, decoded
    frames, wall-clock time, HTTP timeouts and retries; exceeding one raises LimitExceededError.

    Stream: the one FFmpeg plays (``av_find_best_stream``), never a cover picture (``attached_pic``, or a
    one-frame MJPEG/PNG track beside another video; a file with only cover pictures is a VideoDecodeError), or
    ``stream_index`` (the container's stream number; VideoDecodeError when it is out of range, not a video, or
    a cover by the same rule). Frames are returned as displayed: the
    stream's display matrix (portrait phone video: 90/270 degrees; 180; mirrored) is applied, and ``width`` /
    ``height`` are the displayed size. ``apply_rotation=False`` returns the stored picture.
    """
    check_stream_index(stream_index)
    plan = _plan("sample_frames", plan, sample_mode, sampling)
    with open_source(source, video_format or default_video_format, storage_options, policy=policy,
                     limits=limits) as opened:
        with VideoReader(opened, thread_count=decoder_threads, stream_index=stream_index,
                         apply_rotation=apply_rotation) as reader:
            return sample_from_reader(reader, plan)


def _plan(func_name: str, plan: SamplePlan | None, sample_mode: str, sampling: dict) -> SamplePlan:
    """``plan``, else the plan of the sampling keywords (wrong names: TypeError; wrong values: ValueError)."""
    check_keywords(func_name, SamplePlan, sampling)
    return plan if plan is not None else SamplePlan(sample_mode=sample_mode, **sampling)


def sample_from_reader(reader: VideoReader, plan: SamplePlan,
                       fetched: Iterable[tuple[int, av.VideoFrame]] | None = None) -> SampledFrames:
    """Apply ``plan`` to an open reader (lets callers reuse one open video for several plans). ``fetched``:
    the plan's ``(position, frame)`` pairs already decoded by the caller (one decode shared by several plans);
    default: fetch them from ``reader``."""
    positions = select_positions(plan, reader.index.times, reader.duration)
    got_pos: list[int] = []
    # RGB pixels are written straight into one preallocated array: converting each frame to its own array
    # and stacking them afterwards copied every frame twice (a quarter of the time on 1 fps 720p plans).
    out: np.ndarray | None = None
    for pos, frame in (reader.fetch(positions, rgb=False) if fetched is None else fetched):
        view = frame_rgb(reader, frame)  # as displayed: a (strided) view, copied once into ``out`` below
        h, w = view.shape[:2]
        if out is None:
            out = np.empty((len(positions), h, w, 3), dtype=np.uint8)
        elif out.shape[1:3] != (h, w):
            raise _size_changed(reader, out.shape[1:3], (h, w))
        copy_into(out[len(got_pos)], view)
        got_pos.append(pos)
    if out is not None:
        arr = out[: len(got_pos)]
    else:
        arr = np.empty((0, reader.height, reader.width, 3), dtype=np.uint8)
    return sampled_result(reader, got_pos, arr, stacklevel=4)


def sampled_result(reader: VideoReader, got_pos: list[int], arr: np.ndarray,
                   stacklevel: int = 3, report: tuple[bool, Sequence[str]] | None = None) -> SampledFrames:
    """The :class:`SampledFrames` of the positions ``got_pos`` read from ``reader`` with pixels ``arr``
    (streaming callers pass an empty array: the metadata only); warns once when the video was truncated.
    ``report``: ``(truncated, warnings)`` to record instead of the reader's (a decode shared by several
    plans reports each plan's own)."""
    truncated, warns = (reader.truncated, reader.warnings) if report is None else report
    result = SampledFrames(
        indices=got_pos,
        timestamps=[float(reader.index.times[p]) for p in got_pos],
        frames=arr, source=reader.description, duration=reader.duration, fps=reader.fps,
        width=reader.width, height=reader.height, codec=reader.codec, num_frames=len(reader.index),
        truncated=truncated, warnings=list(warns), stats=reader.stats,
        rotation=reader.rotation, stream_index=reader.stream_index)
    if result.truncated:
        msg = f"{reader.description}: " + "; ".join(result.warnings)
        log.warning(msg)
        warnings.warn(msg, TruncatedVideoWarning, stacklevel=stacklevel)
    return result


def frame_rgb(reader: VideoReader, frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame's HxWx3 RGB pixels as displayed, as every sampling path delivers them (a possibly
    strided view of a new frame: copy it with :func:`~video_assets.video.orientation.copy_into`)."""
    return reader.displayed_view(frame)


def _size_changed(reader: VideoReader, old_hw: tuple[int, int], new_hw: tuple[int, int]) -> VideoDecodeError:
    (h0, w0), (h, w) = old_hw, new_hw
    return VideoDecodeError(f"{reader.description}: frame size changes mid-stream ({w0}x{h0} -> {w}x{h}); "
                            "not supported")


class FrameChunk(NamedTuple):
    """Consecutive chosen frames of one video, in presentation order: what :func:`iter_frames` yields."""

    indices: list[int]  # 0-based positions in the stream's presentation order
    timestamps: list[float]  # seconds from the first frame
    frames: np.ndarray  # uint8, (k, H, W, 3), RGB; its own array (unless FrameBuffer(reuse=True) made it); a
    # torch tensor when the frames were tensors


class FrameBuffer:
    """Gathers one video's RGB frames into :class:`FrameChunk` s of at most ``size`` frames.

    :meth:`add` copies a frame into the current chunk's array and returns the chunk when it is full;
    :meth:`flush` returns the last, partial one. ``expected``: how many frames will come at most (a chunk's
    array is never larger). ``indices`` keeps every position added (small: the metadata needs them).

    Frames are numpy arrays, or uint8 torch tensors (then the chunks are tensors on the frames' device).

    ``reuse=True``: every chunk is written into one array, allocated with the first frame and kept, so a chunk's
    ``frames`` are valid only until the next :meth:`add`. For callers that are done with a chunk before they
    add the next frame (the operators preprocess it at once, into a new tensor). A new array per chunk (88 MB
    at 720p) was an mmap and ~22,000 page faults each time, and the previous chunk, still referenced while the
    next one filled, doubled what one decode held.
    """

    def __init__(self, reader: VideoReader, size: int = DEFAULT_CHUNK_FRAMES, expected: int | None = None,
                 reuse: bool = False):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"chunk must be a positive int, got {size!r}")
        self.reader, self.size, self.expected, self.reuse = reader, size, expected, reuse
        self.indices: list[int] = []
        self.hw: tuple[int, int] | None = None  # the first frame's size; every frame must have it
        self._out: np.ndarray | None = None
        self._kept: np.ndarray | None = None  # with reuse: the one array every chunk is written into
        self._k = 0

    def add(self, pos: int, rgb: np.ndarray) -> FrameChunk | None:
        hw = rgb.shape[:2]
        if self.hw is None:
            self.hw = hw
        elif hw != self.hw:
            raise _size_changed(self.reader, self.hw, hw)
        if self._out is None:
            left = self.size if self.expected is None else max(1, self.expected - len(self.indices))
            n = min(self.size, left)
            if not self.reuse:
                self._out = _frames_like(rgb, (n, hw[0], hw[1], 3))
            else:
                if self._kept is None or len(self._kept) < n or type(self._kept) is not type(rgb):
                    self._kept = _frames_like(rgb, (n, hw[0], hw[1], 3))
                self._out = self._kept[:n]
        if isinstance(self._out, np.ndarray):
            copy_into(self._out[self._k], rgb)
        else:
            self._out[self._k].copy_(rgb)
        self._k += 1
        self.indices.append(pos)
        return self.flush() if self._k == len(self._out) else None

    def flush(self) -> FrameChunk | None:
        if not self._k:
            return None
        k, frames = self._k, self._out[: self._k]
        self._out, self._k = None, 0
        indices = self.indices[-k:]
        times = self.reader.index.times
        return FrameChunk(indices, [float(times[p]) for p in indices], frames)

    def result(self, stacklevel: int = 3, report: tuple[bool, Sequence[str]] | None = None) -> SampledFrames:
        """The :class:`SampledFrames` of every frame added, without pixels (``frames`` has 0 rows);
        ``report`` as in :func:`sampled_result`."""
        h, w = self.hw or (self.reader.height, self.reader.width)
        return sampled_result(self.reader, list(self.indices), np.empty((0, h, w, 3), np.uint8), stacklevel + 1,
                              report)


def _frames_like(rgb, shape: tuple[int, ...]):
    """An empty uint8 frame array for frames like ``rgb``: numpy for numpy frames; for a torch tensor (frames
    decoded on a GPU), a tensor on its device (torch is not imported here: the tensor makes its own)."""
    if isinstance(rgb, np.ndarray):
        return np.empty(shape, dtype=np.uint8)
    return rgb.new_empty(shape)


def sample_chunks(reader: VideoReader, plan: SamplePlan, chunk: int = DEFAULT_CHUNK_FRAMES,
                  buffer: FrameBuffer | None = None) -> Iterator[FrameChunk]:
    """Apply ``plan`` to an open reader and yield its frames in chunks as they are decoded (the streaming
    :func:`sample_from_reader`). ``buffer``: the :class:`FrameBuffer` to use (its :meth:`~FrameBuffer.result`
    gives the metadata afterwards)."""
    positions = select_positions(plan, reader.index.times, reader.duration)
    buf = buffer or FrameBuffer(reader, chunk, len(positions))
    buf.expected = len(positions)
    for pos, frame in reader.fetch(positions, rgb=False):
        full = buf.add(pos, frame_rgb(reader, frame))
        if full is not None:
            yield full
    last = buf.flush()
    if last is not None:
        yield last


@keywords_from(SamplePlan, exclude=("sample_mode",))
def iter_frames(source: VideoSource, sample_mode: str = DEFAULT_PLAN.sample_mode, *,
                chunk: int = DEFAULT_CHUNK_FRAMES, video_format: str | None = None,
                default_video_format: str = "mp4", storage_options: dict | None = None,
                plan: SamplePlan | None = None, decoder_threads: int = 0,
                policy: SourcePolicy | None = None, limits: ReadLimits | None = None,
                stream_index: int | None = None, apply_rotation: bool = True, **sampling) -> Iterator[FrameChunk]:
    """The frames :func:`sample_frames` returns, streamed: yields :class:`FrameChunk` ``(indices, timestamps,
    frames)`` of at most ``chunk`` frames each, in order, as they are decoded. Concatenated, the chunks equal
    ``sample_frames``'s indices, timestamps and frames; memory is that of one chunk (plus the decoder), however
    many frames the plan chooses.

    Same arguments and errors as :func:`sample_frames`. Wrong parameters raise ValueError here, before any I/O;
    the video is opened when iteration starts, and closed when it ends or the generator is closed. A truncated
    video gives the frames that could be decoded and a TruncatedVideoWarning at the end.
    """
    plan = _plan("iter_frames", plan, sample_mode, sampling)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    check_stream_index(stream_index)

    def frames() -> Iterator[FrameChunk]:
        with open_source(source, video_format or default_video_format, storage_options, policy=policy,
                         limits=limits) as opened:
            with VideoReader(opened, thread_count=decoder_threads, stream_index=stream_index,
                             apply_rotation=apply_rotation) as reader:
                buf = FrameBuffer(reader, chunk)
                yield from sample_chunks(reader, plan, chunk, buf)
                buf.result(stacklevel=3)  # the truncation warning, as sample_frames gives it

    return frames()
