"""Pieces both operators share: inputs, read limits, source policy, devices, how a video is opened, the
bounds of streamed results and the model base class."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# Re-exported: these lived here before video_assets/ids.py, models/defaults.py and compute/settings.py.
from video_assets.compute.settings import decoder_threads_for as decoder_threads_for
from video_assets.compute.settings import default_decode_workers as default_decode_workers
from video_assets.errors import VideoSourceError
from video_assets.ids import stable_video_id
from video_assets.models.defaults import MODEL_ENV as MODEL_ENV
from video_assets.models.defaults import MODEL_PATH_ENV as MODEL_PATH_ENV
from video_assets.models.defaults import default_model_name as default_model_name
from video_assets.models.defaults import default_model_path as default_model_path
from video_assets.operators.decode_processes import DecodeProcessOwner
from video_assets.storage.policy import SourcePolicy
from video_assets.video.limits import DEFAULT_LIMITS, ReadLimits
from video_assets.video.reader import VideoReader
from video_assets.video.source import decode_base64, describe_source, open_source

log = logging.getLogger(__name__)

_said_no_gpu = False


def resolve_source_policy(policy: SourcePolicy | None) -> SourcePolicy:
    """The operators' policy: the given one, else :meth:`SourcePolicy.permissive` (a caller in Python
    decides what it opens; the pipeline passes its configured, strict policy)."""
    if policy is not None and not isinstance(policy, SourcePolicy):
        raise ValueError(f"source_policy must be a SourcePolicy, got {type(policy).__name__}")
    return policy if policy is not None else SourcePolicy.permissive()


def resolve_limits(limits: ReadLimits | None) -> ReadLimits:
    if limits is not None and not isinstance(limits, ReadLimits):
        raise ValueError(f"limits must be a ReadLimits, got {type(limits).__name__}")
    return limits if limits is not None else DEFAULT_LIMITS


def default_window(decode_workers: int) -> int:
    """How many videos ``iter_details`` runs ahead of the oldest one not yet yielded: enough to keep every decode
    worker and the model busy, few enough that the results held at once stay small. ``decode_workers``: the
    decoders this call really runs (its decode processes when it uses them, else its threads)."""
    return max(8, 4 * decode_workers)


@dataclass(frozen=True)
class VideoInput:
    """One input video: what to open, its container hint, a log-safe name and a stable id."""

    source: Any  # path/URI str or bytes
    video_format: str | None
    description: str
    video_id: str
    error: str | None = None  # set when the input is unusable before any I/O (bad base64, None)


def _ascii(data: bytes | bytearray | memoryview, desc: str) -> str:
    try:
        return bytes(data).decode("ascii")
    except UnicodeDecodeError:
        raise VideoSourceError(f"{desc}: not valid base64 (the bytes are not ASCII text)") from None


def make_inputs(sources: Sequence[Any], formats: Sequence[str | None] | None, default_format: str,
                kind: str = "auto", bytes_go: str = "with video_src_type='video_binary'") -> list[VideoInput]:
    """Normalise a list of sources. ``kind`` is "auto", "video_url", "video_base64" or "video_binary";
    ``bytes_go``: where the caller takes bytes, said when "video_url" gets some."""
    if isinstance(sources, (str, bytes)):
        raise ValueError("pass a list of videos, not a single one")
    sources = list(sources)
    if formats is not None and len(formats) != len(sources):
        raise ValueError(f"video_formats has {len(formats)} entries for {len(sources)} videos")
    out = []
    for i, src in enumerate(sources):
        fmt = (formats[i] if formats is not None else None) or default_format
        if src is None or (isinstance(src, str) and not src.strip()):
            out.append(VideoInput(None, fmt, f"<video #{i}>", "none", f"<video #{i}>: empty source"))
            continue
        if kind == "video_base64" and isinstance(src, (str, bytes, bytearray, memoryview)):
            desc = f"<base64 video #{i}, {len(src)} chars>"
            try:
                src = decode_base64(src if isinstance(src, str) else _ascii(src, desc), desc)
            except Exception as e:  # keep the row: it becomes a null result with this error
                out.append(VideoInput(None, fmt, desc, stable_video_id(src), str(e)))
                continue
        elif kind == "video_binary" and not isinstance(src, (bytes, bytearray, memoryview)):
            raise ValueError(f"video #{i}: video_src_type='video_binary' needs bytes, got {type(src).__name__}")
        elif kind == "video_url" and not isinstance(src, (str, os.PathLike)):
            raise ValueError(f"video #{i}: expected a path or URI here, got {type(src).__name__} (pass bytes "
                             f"{bytes_go})")
        if isinstance(src, os.PathLike):
            src = os.fspath(src)
        out.append(VideoInput(src, fmt, describe_source(src), stable_video_id(src)))
    return out


def resolve_device(device: str | None, rank: int = 0) -> str:
    """``device`` if given (a CUDA request without a GPU falls back to CPU with a warning), else cuda:rank or cpu."""
    import torch

    from video_assets.models import resolve_device as check_device

    if device:
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            log.warning("device=%r requested but no GPU is available: running on the CPU (float32)", device)
            return "cpu"
        return str(check_device(device))
    if torch.cuda.is_available():
        return str(check_device(f"cuda:{rank}"))
    global _said_no_gpu
    if not _said_no_gpu:  # once per process, not once per operator
        _said_no_gpu = True
        log.info("no GPU available: running on the CPU (float32)")
    return "cpu"


class ClipOperator(DecodeProcessOwner):
    """Base of both operators: the CLIP model, loaded on first use and shared process-wide (same name, folder,
    device and dtype give the same loaded model), and the decode processes when ``decode_processes`` asks for
    them (see :mod:`video_assets.operators.decode_processes`)."""

    clip_model_name: str
    model_path: str
    device: str
    dtype: str
    batch_size: int
    decode_workers: int
    storage_options: dict | None
    source_policy: SourcePolicy
    limits: ReadLimits
    stream_index: int | None
    apply_rotation: bool
    _model = None

    @property
    def model(self):
        if self._model is None:
            from video_assets.models import load_clip

            self._model = load_clip(self.clip_model_name, self.model_path or None, self.device, self.dtype,
                                    self.batch_size)
        return self._model

    @property
    def opener(self) -> VideoOpener:
        """How this operator opens a video (a decoder thread share per decode worker)."""
        return VideoOpener(self.storage_options, self.source_policy, self.limits, self.stream_index,
                           self.apply_rotation, decoder_threads_for(self.decode_workers))


@dataclass(frozen=True)
class VideoOpener:
    """How the operators open one input: the read settings, picklable (what a decode in another process
    needs)."""

    storage_options: dict | None
    source_policy: SourcePolicy
    limits: ReadLimits
    stream_index: int | None
    apply_rotation: bool
    thread_count: int = 0

    @contextmanager
    def open(self, item: VideoInput) -> Iterator[VideoReader]:
        with open_source(item.source, item.video_format, self.storage_options, policy=self.source_policy,
                         limits=self.limits) as opened, \
                VideoReader(opened, thread_count=self.thread_count, stream_index=self.stream_index,
                            apply_rotation=self.apply_rotation) as reader:
            yield reader
