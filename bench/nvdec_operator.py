"""A CANDIDATE NVDEC path through the real operators (issue 18, item 2), for the bench only.

Nothing in ``video_assets/`` uses it: no NVDEC code ships in the product before it has run on a GPU. Until then
it has run only against a stand-in decoder that serves the CPU reader's own frames as torch tensors
(``video_assets_tests/test_nvdec_operator.py``): that checks the plumbing (indices, chunks, fallbacks, the
mixed queue, results equal to the thread path), never NVDEC's pixels, which ``bench/nvdec_probe.py`` compares
with the CPU's on the GPU.

How a video goes (:class:`NvdecPrepare`, a ``prepare(item, emit)`` of the overlapped loop for an operator's
:class:`~video_assets.operators.stage.SharedDecode`):

1. The video is opened on the CPU with the operator's own opener, as on the thread path: the source policy,
   the read limits, the frame index (a demux), the stages' positions and their union, the warnings all stay
   the project's (:func:`~video_assets.operators.stage.decode_stages`, which takes the frame source as a
   parameter).
2. The union's frames are decoded by a PyNvVideoCodec ``SimpleDecoder(path, use_device_memory=True,
   output_color_type=RGB)`` with ``get_batch_frames_by_index`` in chunks of the stages' ``chunk_frames``
   (:func:`bench.nvdec_probe.nvdec_frames`: copied out with DLPack and ``torch.stack``, the stream synchronised
   before the next call). Each NVDEC session (a decoder) is reused across videos with ``reconfigure_decoder``
   (:class:`bench.nvdec_probe.Decoders`). Frames stay CUDA uint8 tensors: they go into each stage's chunks
   (``FrameBuffer`` takes tensors) and are preprocessed by the stage's own ``preprocess`` (the model's
   ``Preprocessor``, on its CUDA device: the resize runs there). They never go through numpy.
3. So the metadata (:class:`~video_assets.operators.stage.DecodeReport`, positions, truncation, warnings) is
   the CPU path's for the same video, and ``finish``/results are unchanged.

Fallback to the CPU, per video, counted in :class:`NvdecStats` with the reason:

- before opening: an input that is not a local file (bytes, base64, a URL or object store: NVDEC's demuxer
  needs a path; this candidate does not hand it bytes) goes to the CPU ``prepare`` of the run (a decode
  process or the thread path);
- before decoding, with the video open: ``stream_index`` set (NVDEC's demuxer picks its own stream), a display
  rotation or flip (NVDEC returns the stored picture), a decoder that cannot be made (an unsupported codec:
  AV1 on Hopper; anything PyNvVideoCodec refuses), or a frame count other than the reader's index: the video is
  decoded on this thread on the CPU, from the reader already open (not moved to a decode process);
- during the decode: a chunk that fails, comes back short (``get_batch_frames_by_index`` drops repeated and
  out-of-range indices) or has another frame size: the remaining positions are decoded on the CPU from the same
  reader (its warnings as usual), so nothing already emitted is lost (``mid_video`` in the stats).

The mixed queue (:class:`MixedPrepare`): the loop's N decode worker threads take inputs from its one queue;
each call checks out one of ``sessions`` NVDEC sessions (an H200 has 7 NVDEC engines) if one is free and runs
NVDEC, else runs the run's CPU ``prepare`` (a decode process, :class:`~video_assets.operators.decode_processes.
RemotePrepare`, or the thread path). With ``sessions + processes`` workers, at most ``processes`` run on the CPU
at once, so the two kinds add their throughputs. A session's decoder is used by one thread at a time, but not
always the same thread (the loop starts new worker threads per call; the probe, too, makes its decoders on one
thread and uses them on others). An input NVDEC cannot take (not a local file) goes to the CPU prepare without
holding a session; on a worker that is not a decode process's, that call starts an extra decode process for
the time of the video (``DecodeProcessPool.acquire``). :func:`use_nvdec` attaches this to an operator instance by
wrapping its ``in_processes`` step (the one place where both operators choose threads or processes), so
``details()``/``__call__``/``iter_details`` run unchanged (``bench/decode_processes.py`` modes ``nvdec`` and
``nvdec+P``).

Moving it into ``video_assets/`` once it has run on a GPU (and the probe showed the frames exact):

- ``decoder="auto" | "cpu" | "nvdec"`` in ``compute/settings.py`` ``DecodeSettings`` (defined once, with
  ``nvdec_sessions``), taken by both operators and the Dagster resource; "auto": NVDEC only when PyNvVideoCodec
  imports, a CUDA device is the model's and a first decode works, else the CPU;
- this module's classes into ``operators/`` (``DecodeProcessOwner.in_processes`` chooses the prepare instead of
  being wrapped; the decoders are owned, and closed, with the decode process pool); :func:`nvdec_frames` and
  :class:`Decoders` from the probe move with them;
- the run's metadata records the decoder (``nvdec`` videos, CPU fallbacks by reason), videos/s and GPU busy;
- a lazy import of PyNvVideoCodec (it needs the driver's NVENC library even to decode) and a CPU-only default
  that never tries it without a CUDA model;
- tests: these stand-in tests move with it, plus a CUDA test (run on the GPU) that rows on NVDEC equal the CPU
  decoder's within the tolerance the probe measured (scores, not bits: NVDEC's colour conversion differs).

What the GPU run must show first: the probe frame-exact (``best_offsets == [0]``) on the corpus; no
``fallback_reasons`` or ``mid_video_fallbacks`` on plain H.264 files; and whether the CPU work left per NVDEC
video (the demux for the frame index, and the first frame decoded on the CPU by ``reader.orientation`` to read
the display matrix) or the parent's GIL is what limits ``nvdec``.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from bench.nvdec_probe import Decoders, _error, nvdec_frames, nvdec_status
from video_assets.errors import VideoSourceError
from video_assets.operators.common import VideoInput
from video_assets.operators.stage import SharedDecode, decode_stages
from video_assets.video import VideoReader
from video_assets.video.orientation import IDENTITY
from video_assets.video.sampler import frame_rgb

DEFAULT_SESSIONS = 7  # an H200's NVDEC engines


class NvdecStats:
    """What a run's NVDEC path did: videos decoded on NVDEC, videos the mixed queue gave the CPU, and the CPU
    fallbacks by reason (before the decode, or ``mid_video`` for the rest of a video)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.nvdec_videos = 0
        self.cpu_videos = 0  # taken by a CPU worker of the mixed queue (no session free): not a fallback
        self.fallbacks: Counter[str] = Counter()
        self.mid_video: Counter[str] = Counter()

    def count(self, what: str, reason: str | None = None) -> None:
        with self.lock:
            if what == "nvdec":
                self.nvdec_videos += 1
            elif what == "cpu":
                self.cpu_videos += 1
            elif what == "fallback":
                self.fallbacks[reason or "?"] += 1
            else:
                self.mid_video[reason or "?"] += 1

    def as_dict(self) -> dict:
        with self.lock:
            return {"nvdec_videos": self.nvdec_videos, "cpu_videos": self.cpu_videos,
                    "cpu_fallbacks": sum(self.fallbacks.values()) + sum(self.mid_video.values()),
                    "fallback_reasons": dict(self.fallbacks), "mid_video_fallbacks": dict(self.mid_video)}


def local_path(item: VideoInput) -> str | None:
    """The local file an input names, for NVDEC's demuxer (None: bytes, a URL, an object store, missing)."""
    src = item.source
    if not isinstance(src, str):
        return None
    src = src.removeprefix("file://")
    return src if os.path.isfile(src) else None


def _not_for_nvdec(reader: VideoReader, stream_index: int | None) -> str | None:
    """Why an open video must stay on the CPU before any NVDEC decode, or None."""
    if stream_index is not None:
        return "stream_index set"
    if reader.orientation != IDENTITY:  # decodes the first frame on the CPU to read its display matrix
        return "display rotation or flip"
    return None


class _NvdecFetch:
    """The ``fetch``/``to_rgb`` pair of :func:`decode_stages` for one video: NVDEC chunks of the union, and
    the CPU reader for the rest of the video when a chunk fails."""

    def __init__(self, dec, reader: VideoReader, chunk: int, on_fallback: Callable[[str], None]):
        self.dec, self.reader, self.chunk, self.on_fallback = dec, reader, chunk, on_fallback
        self.device: torch.device | None = None  # set by the first NVDEC frame; CPU frames then join it

    def fetch(self, union: np.ndarray) -> Iterator[tuple[int, Any]]:
        hw = (self.reader.height, self.reader.width)
        for start in range(0, len(union), self.chunk):
            idx = union[start:start + self.chunk].tolist()
            try:
                frames = nvdec_frames(self.dec, idx)
                if tuple(frames.shape[1:3]) != hw or frames.dtype != torch.uint8:
                    raise RuntimeError(f"NVDEC frames are {tuple(frames.shape[1:])} {frames.dtype}, "
                                       f"the reader's {hw}")
            except Exception as e:  # noqa: BLE001 - the rest of the video goes to the CPU
                self.on_fallback(_error(e))
                yield from self.reader.fetch(union[start:], rgb=False)
                return
            self.device = frames.device
            yield from zip(idx, frames)

    def to_rgb(self, frame) -> Any:
        if isinstance(frame, torch.Tensor):
            return frame
        rgb = frame_rgb(self.reader, frame)  # a CPU frame (fallback)
        if self.device is None:
            return rgb
        return torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device)


class NvdecPrepare:
    """``prepare(item, emit, slot)`` of ``decode`` with NVDEC session ``slot`` of ``decoders`` (see the module
    docstring); ``cpu(item, emit)``: where an input that is not a local file goes."""

    def __init__(self, decode: SharedDecode, decoders: Decoders, stats: NvdecStats,
                 cpu: Callable[[VideoInput, Any], Any] | None = None):
        self.decode, self.decoders, self.stats = decode, decoders, stats
        self.cpu = cpu or decode.prepare
        self.chunk = min(stage.chunk_frames for stage in decode.stages)

    def __call__(self, item: VideoInput, emit, slot: int | None) -> list[Any]:
        if item.error:
            raise VideoSourceError(item.error)
        path = local_path(item)
        if path is None:
            self.stats.count("fallback", "not a local file")
            return self.cpu(item, emit)
        opener = self.decode.opener
        with opener.open(item) as reader:
            reason = _not_for_nvdec(reader, opener.stream_index)
            dec = None
            if reason is None:
                try:
                    dec = self.decoders.get(slot, path)
                    if len(dec) != len(reader.index):
                        reason = "frame count differs from the reader's"
                except Exception as e:  # noqa: BLE001 - an unsupported codec (AV1 on Hopper), a refused file
                    reason = f"decoder: {_error(e)}"
            if reason is not None:
                self.stats.count("fallback", reason)
                return decode_stages(reader, self.decode.stages, emit)
            mid: list[str] = []
            source = _NvdecFetch(dec, reader, self.chunk, mid.append)
            metas = decode_stages(reader, self.decode.stages, emit, fetch=source.fetch, to_rgb=source.to_rgb)
            if mid:
                self.stats.count("mid_video", mid[0])
            else:
                self.stats.count("nvdec")
            return metas


class Sessions:
    """``n`` NVDEC session slots, checked out per video without waiting (None: all are busy)."""

    def __init__(self, n: int):
        self.free = list(range(n - 1, -1, -1))
        self.lock = threading.Lock()

    def checkout(self) -> int | None:
        with self.lock:
            return self.free.pop() if self.free else None

    def release(self, slot: int) -> None:
        with self.lock:
            self.free.append(slot)


class MixedPrepare:
    """The loop's ``prepare``: NVDEC when one of ``sessions`` is free, else ``cpu`` (the run's own prepare: a
    decode process or the thread path); every decode worker takes its inputs from the loop's one queue."""

    def __init__(self, nvdec: NvdecPrepare, cpu: Callable[[VideoInput, Any], Any], sessions: Sessions,
                 stats: NvdecStats):
        self.nvdec, self.cpu, self.sessions, self.stats = nvdec, cpu, sessions, stats

    def __call__(self, item: VideoInput, emit) -> Any:
        if item.error or local_path(item) is None:  # NVDEC cannot take it: it holds no session
            return self.nvdec(item, emit, None)
        slot = self.sessions.checkout()
        if slot is None:
            self.stats.count("cpu")
            return self.cpu(item, emit)
        try:
            return self.nvdec(item, emit, slot)
        finally:
            self.sessions.release(slot)


class NvdecRun:
    """An operator instance running on NVDEC (:func:`use_nvdec`): its sessions, decoders and stats."""

    def __init__(self, op, nvc, sessions: int):
        if sessions < 1:
            raise ValueError(f"sessions must be >= 1, got {sessions}")
        self.op, self.n = op, sessions
        self.decoders, self.stats, self.sessions = Decoders(nvc), NvdecStats(), Sessions(sessions)
        self._original = op.in_processes
        op.in_processes = self.in_processes

    def in_processes(self, decode: SharedDecode, models, loop: dict) -> dict:
        """The operator's own choice (threads, or its decode processes), then NVDEC sessions in front of it:
        ``sessions`` more decode workers, the CPU ones as many as that choice ran."""
        loop = self._original(decode, models, loop)
        cpu = loop.get("prepare") or decode.prepare
        cpu_workers = loop["decode_workers"] if "prepare" in loop else 0
        mixed = MixedPrepare(NvdecPrepare(decode, self.decoders, self.stats, cpu), cpu, self.sessions, self.stats)
        return {**loop, "prepare": mixed, "decode_workers": self.n + cpu_workers}

    def summary(self) -> dict:
        return {"decoder": "nvdec", "nvdec_sessions": self.n, **self.stats.as_dict(), **self.decoders.stats()}

    def close(self) -> None:
        """The operator back on its own decode; the decoders dropped."""
        self.op.in_processes = self._original
        self.decoders.slots.clear()


def use_nvdec(op, nvc=None, sessions: int = DEFAULT_SESSIONS) -> NvdecRun:
    """Run ``op`` (a VideoQualityScore or VideoAdaptiveKeyframesSampling, or anything with ``in_processes``)
    with ``sessions`` NVDEC sessions in front of its own decode workers: with ``decode_processes=0`` only the
    sessions decode (fallbacks on their threads), with ``decode_processes=P`` they share one queue with P decode
    processes. ``nvc``: the PyNvVideoCodec module (None: imported; raises RuntimeError with the reason when
    NVDEC is not usable here)."""
    if nvc is None:
        st, nvc = nvdec_status()
        if nvc is None:
            raise RuntimeError(f"NVDEC is not available: {st['reason']}")
    return NvdecRun(op, nvc, sessions)
