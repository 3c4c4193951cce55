"""VideoQualityScore: CLIP-IQA over frames sampled from each video, reduced to one score in 0..1."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

from video_assets.errors import VideoSourceError
from video_assets.models import DEFAULT_QUALITY_MODEL, ClipModel
from video_assets.operators.batching import Outcome, RunStats, iter_overlapped, run_overlapped
from video_assets.operators.common import (
    ClipOperator,
    VideoInput,
    default_decode_workers,
    default_model_name,
    default_model_path,
    default_window,
    make_inputs,
    resolve_device,
    resolve_limits,
    resolve_source_policy,
)
from video_assets.operators.slabs import FeatureSlabs
from video_assets.progress import ProgressArg, resolve_progress
from video_assets.scoring import clip_iqa_probs, parse_prompts, prompt_label, reduce_scores
from video_assets.scoring.clip_iqa import REDUCE_MODES
from video_assets.storage.policy import SourcePolicy
from video_assets.video import (
    DEFAULT_CHUNK_FRAMES,
    FrameBuffer,
    FrameChunk,
    SampledFrames,
    VideoReader,
    make_plan,
    sample_chunks,
    select_positions,
)
from video_assets.video.limits import ReadLimits
from video_assets.video.reader import check_stream_index

log = logging.getLogger(__name__)

# Frames are preprocessed in chunks as they are decoded: memory does not grow with the frames a plan chooses.
_CHUNK_FRAMES = DEFAULT_CHUNK_FRAMES


class VideoQualityScore(ClipOperator):
    """Score videos with CLIP-IQA.

    Parameters keep the names, defaults and meanings of the LAS "视频质量评分" operator:

    - ``model_path``: base folder of local models (``{model_path}/{clip_model_name}`` is loaded when present, else
      it is the download cache; empty: the hub's default cache). Default: ``$VIDEO_ASSETS_MODEL_PATH`` or "".
    - ``clip_model_name``: default ``openai/clip-vit-large-patch14`` (``$VIDEO_ASSETS_CLIP_MODEL`` overrides the
      default, e.g. ``video-assets/tiny-clip`` offline).
    - ``prompt``: a named pair ("quality", "sharpness", ... 16 names), a (positive, negative) pair, a
      "positive|negative" string, or a list of those (then each video gets one score per prompt).
    - ``device``: "cuda" (default when a GPU exists; falls back to CPU with a warning when none), "cuda:N", "cpu".
      ``dtype``: default float16 on GPU, float32 on CPU. ``batch_size``: frames per forward pass, gathered across
      videos.
    - sampling: ``sample_mode``, ``start_time_sec``, ``end_time_sec``, ``count_k``, ``interval_sec``,
      ``interval_frames``, ``target_fps``, ``timestamps_sec``, ``max_frames`` — see
      :func:`video_assets.video.sample_frames`.
    - ``reduce_mode``: "avg", "max", "min" (or "median") over the sampled frames.
    - ``default_video_format``: container hint for bytes/base64 inputs.
    - ``decode_workers``: parallel decode threads feeding the model (default min(4, CPUs)).
    - ``progress``: the default for every call: None (a tqdm bar on stderr when interactive, else quiet),
      True, False, or a callable(done, total, rate) called after every video; see :mod:`video_assets.progress`.
    - ``stream_index`` (default: the stream FFmpeg plays, never a cover picture) and ``apply_rotation``
      (default True: frames are scored as displayed) — see :func:`video_assets.video.sample_frames`.

    ``op(video_paths=[...])`` or ``op(video_binaries=[...], video_formats=[...])`` returns one score (or list
    of scores) per input, in input order; None when the video cannot be read or scored — see
    :meth:`score_details` for the reason. :meth:`iter_details` yields the same rows one by one as videos
    finish. Frames stream through in chunks: memory does not depend on the frames sampled or the video's
    length. ``last_run_stats`` (:class:`~video_assets.operators.batching.RunStats`) counts what the latest call
    held at once.
    """

    def __init__(self, model_path: str | None = None, clip_model_name: str | None = None,
                 prompt: Any = "quality", device: str | None = None, sample_mode: str = "by_count_uniform",
                 start_time_sec: float = 0.0, end_time_sec: float | None = None, count_k: int | None = 8,
                 interval_sec: float | None = None, interval_frames: int | None = None,
                 target_fps: float | None = None, timestamps_sec: Sequence[float] | None = None,
                 max_frames: int | None = None, reduce_mode: str = "avg", default_video_format: str = "mp4",
                 dtype: str | None = None, batch_size: int = 32, decode_workers: int | None = None,
                 storage_options: dict | None = None,
                 source_policy: SourcePolicy | None = None, limits: ReadLimits | None = None,
                 progress: ProgressArg = None, stream_index: int | None = None, apply_rotation: bool = True):
        # Validate everything before loading anything.
        check_stream_index(stream_index)
        self.stream_index, self.apply_rotation = stream_index, bool(apply_rotation)
        self.plan = make_plan(sample_mode, start_time_sec, end_time_sec, count_k, interval_sec, interval_frames,
                              target_fps, timestamps_sec, max_frames)
        self.pairs, self.multi_prompt = parse_prompts(prompt)
        if reduce_mode not in REDUCE_MODES:
            raise ValueError(f"reduce_mode must be one of {', '.join(REDUCE_MODES)}; got {reduce_mode!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.reduce_mode = reduce_mode
        self.model_path = default_model_path(model_path)
        self.clip_model_name = default_model_name(clip_model_name, DEFAULT_QUALITY_MODEL)
        self.device = resolve_device(device)
        self.dtype = dtype or ("float16" if self.device.startswith("cuda") else "float32")
        self.batch_size = batch_size
        self.default_video_format = default_video_format
        self.decode_workers = decode_workers or default_decode_workers()
        self.storage_options = storage_options
        # where sources may point and what one video may cost (None: permissive policy, default limits)
        self.source_policy = resolve_source_policy(source_policy)
        self.limits = resolve_limits(limits)
        resolve_progress(progress, 0, "quality")  # validates it
        self.progress = progress
        self.last_run_stats = RunStats()

    @property
    def prompt_labels(self) -> list[str]:
        return [prompt_label(p) for p in self.pairs]

    def __call__(self, video_paths: Sequence[Any] | None = None, video_binaries: Sequence[Any] | None = None,
                 video_formats: Sequence[str | None] | None = None, progress: ProgressArg = None) -> list:
        return [d["score"] for d in self.score_details(video_paths, video_binaries, video_formats, progress)]

    def score_details(self, video_paths: Sequence[Any] | None = None, video_binaries: Sequence[Any] | None = None,
                      video_formats: Sequence[str | None] | None = None,
                      progress: ProgressArg = None) -> list[dict]:
        """Per input, in order: ``score`` (float, list of floats for a prompt list, or None), ``frame_scores``,
        ``frame_indices``, ``timestamps``, ``error`` (None when fine), plus ``video_id``, ``source``,
        ``truncated``, ``warnings``, ``prompts``, ``scored_at``. ``progress``: as in the constructor (None:
        the constructor's)."""
        if (video_paths is None) == (video_binaries is None):
            raise ValueError("pass exactly one of video_paths or video_binaries")
        kind = "video_url" if video_paths is not None else "auto"
        inputs = make_inputs(video_paths if video_paths is not None else video_binaries, video_formats,
                             self.default_video_format, kind)
        outcomes = run_overlapped(inputs, **self._run_args(inputs, progress))
        return [self._row(it, out) for it, out in zip(inputs, outcomes)]

    def details(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                progress: ProgressArg = None) -> list[dict]:
        """:meth:`score_details` for URIs/paths, with the same signature as the keyframes operator's
        ``details`` (what compute backends call)."""
        return self.score_details(video_paths=videos, video_formats=video_formats, progress=progress)

    def iter_details(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                     progress: ProgressArg = None, *, ordered: bool = True,
                     window: int | None = None) -> Iterator[dict] | Iterator[tuple[int, dict]]:
        """The rows of :meth:`score_details`, yielded one by one as videos finish, so that a call over any
        number of videos holds only a few results at once. ``videos``: paths/URIs or bytes.

        ``ordered=True``: rows in input order; at most ``window`` videos (default ``max(8, 4 *
        decode_workers)``) are started ahead of the oldest row not yet yielded, so one slow video holds back
        at most that many finished rows. ``ordered=False``: ``(input index, row)`` pairs in the order videos
        finish. Closing the iterator early (``break``) stops the decode workers."""
        inputs = make_inputs(videos, video_formats, self.default_video_format, "auto")
        return self._iter_rows(inputs, progress, ordered, window)

    def _iter_rows(self, inputs: list[VideoInput], progress: ProgressArg, ordered: bool, window: int | None):
        run = iter_overlapped(inputs, **self._run_args(inputs, progress), ordered=ordered,
                              window=window or default_window(self.decode_workers))
        try:
            for pos, out in run:
                row = self._row(inputs[pos], out)
                yield row if ordered else (pos, row)
        finally:
            run.close()

    def _run_args(self, inputs: list[VideoInput], progress: ProgressArg) -> dict:
        """The arguments of run_overlapped/iter_overlapped for one call over ``inputs``."""
        model = self.model
        text_features = self._text_features(model)
        self.last_run_stats = RunStats()
        return dict(
            describe=lambda it: it.description, prepare=lambda it, emit: self._prepare(model, it, emit),
            embed=FeatureSlabs(model.encode_pixels),
            finish=lambda it, meta, feats: self._finish(meta, feats, text_features, model.logit_scale),
            batch_size=self.batch_size, decode_workers=self.decode_workers,
            item_timeout_sec=self.limits.timeout_sec, stats=self.last_run_stats,
            progress=resolve_progress(self.progress if progress is None else progress, len(inputs), "quality"))

    # -- steps -----------------------------------------------------------------------------------------------
    def _text_features(self, model: ClipModel) -> torch.Tensor:
        return model.encode_text([t for pair in self.pairs for t in pair])

    def _prepare(self, model: ClipModel, item: VideoInput, emit) -> SampledFrames:
        """Decode the plan's frames and emit them preprocessed, a chunk at a time; returns the sample's
        metadata (what :func:`~video_assets.video.sample_frames` returns, without the pixels)."""
        if item.error:
            raise VideoSourceError(item.error)
        with self._reader(item) as reader:
            buf = FrameBuffer(reader, _CHUNK_FRAMES, reuse=True)
            for chunk in sample_chunks(reader, self.plan, buffer=buf):
                self._emit_chunk(model, chunk, emit)
            return buf.result()

    def _positions(self, reader: VideoReader) -> np.ndarray:
        """The frame positions this operator needs from an open video (what a shared decode must include)."""
        return select_positions(self.plan, reader.index.times, reader.duration)

    @staticmethod
    def _emit_chunk(model: ClipModel, chunk: FrameChunk | None, emit) -> None:
        if chunk is not None:
            emit(model.preprocess(chunk.frames))

    def _finish(self, sample, feats: torch.Tensor, text_features: torch.Tensor, logit_scale: float) -> dict:
        if len(sample.indices) == 0:
            raise ValueError(f"{sample.source}: no frames in the sampling window "
                             f"(duration {sample.duration:.2f}s, start {self.plan.start_time_sec}s)")
        probs = clip_iqa_probs(feats, text_features, logit_scale).cpu().numpy().astype(np.float64)  # (n, p)
        score = reduce_scores(probs, self.reduce_mode)
        return {"sample": sample, "frame_scores": probs, "score": score}

    def _row(self, item: VideoInput, out: Outcome) -> dict:
        row = {"video_id": item.video_id, "source": item.description, "prompts": self.prompt_labels,
               "score": None, "frame_scores": [], "frame_indices": [], "timestamps": [], "error": out.error,
               "truncated": False, "warnings": [], "scored_at": datetime.now(timezone.utc).isoformat()}
        if out.value is not None:
            v, s = out.value, out.value["sample"]
            scores = [float(x) for x in v["score"]]
            per_frame = v["frame_scores"]
            row.update(score=scores if self.multi_prompt else scores[0],
                       frame_scores=per_frame.tolist() if self.multi_prompt else per_frame[:, 0].tolist(),
                       frame_indices=list(s.indices), timestamps=list(s.timestamps), truncated=s.truncated,
                       warnings=list(s.warnings))
        return row
