"""VideoQualityScore: CLIP-IQA over frames sampled from each video, reduced to one score in 0..1."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from video_assets.compute.settings import DecodeSettings
from video_assets.fields import build
from video_assets.models import DEFAULT_QUALITY_MODEL, ClipModel
from video_assets.models.settings import ClipSettings
from video_assets.operators.batching import Outcome, RunStats
from video_assets.operators.common import (
    ClipOperator,
    VideoInput,
    make_inputs,
    resolve_device,
    resolve_limits,
    resolve_source_policy,
)
from video_assets.operators.results import QualityResult
from video_assets.operators.stage import DecodeReport, SharedDecode, Stage, StageState, preprocessor
from video_assets.progress import ProgressArg, resolve_progress
from video_assets.scoring import clip_iqa_probs, parse_prompts, prompt_label, reduce_scores
from video_assets.scoring.reduce import check_reduce_mode
from video_assets.storage.policy import SourcePolicy
from video_assets.video import (
    SampledFrames,
    SamplePlan,
    VideoReader,
    select_positions,
)
from video_assets.video.limits import ReadLimits
from video_assets.video.plan import DEFAULT_PLAN as _PLAN
from video_assets.video.reader import check_stream_index

log = logging.getLogger(__name__)


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
      ``decode_processes``: None (auto: threads below 8 cores), 0 (threads), N (N decode processes, started on
      the first call and kept until :meth:`close`; see :mod:`video_assets.operators.decode_processes`).
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
                 prompt: Any = "quality", device: str | None = None,
                 sample_mode: str = _PLAN.sample_mode, start_time_sec: float = _PLAN.start_time_sec,
                 end_time_sec: float | None = _PLAN.end_time_sec, count_k: int | None = _PLAN.count_k,
                 interval_sec: float | None = _PLAN.interval_sec, interval_frames: int | None = _PLAN.interval_frames,
                 target_fps: float | None = _PLAN.target_fps,
                 timestamps_sec: Sequence[float] | None = _PLAN.timestamps_sec,
                 max_frames: int | None = _PLAN.max_frames, reduce_mode: str = "avg",
                 default_video_format: str = "mp4", dtype: str | None = None, batch_size: int = 32,
                 decode_workers: int | None = None, decode_processes: int | None = None,
                 storage_options: dict | None = None,
                 source_policy: SourcePolicy | None = None, limits: ReadLimits | None = None,
                 progress: ProgressArg = None, stream_index: int | None = None, apply_rotation: bool = True):
        # A thin front door: the keywords are those of LAS; the settings objects (one definition each, in the
        # core) validate them before anything is loaded.
        args = locals()
        check_stream_index(stream_index)
        self.stream_index, self.apply_rotation = stream_index, bool(apply_rotation)
        self.plan = build(SamplePlan, args)
        self.pairs, self.multi_prompt = parse_prompts(prompt)
        check_reduce_mode(reduce_mode)
        self.reduce_mode = reduce_mode
        clip = build(ClipSettings, args)
        self.clip_settings = clip.resolved(DEFAULT_QUALITY_MODEL, resolve_device(device))
        self.model_path, self.clip_model_name = self.clip_settings.model_path, self.clip_settings.clip_model_name
        self.device, self.dtype = self.clip_settings.device, self.clip_settings.dtype
        self.batch_size = self.clip_settings.batch_size
        self.default_video_format = default_video_format
        decode = build(DecodeSettings, args)
        self.decode_workers, self.decode_processes = decode.workers, decode.decode_processes
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
        return [r.score for r in self.results(video_paths, video_binaries, video_formats, progress)]

    def score_details(self, video_paths: Sequence[Any] | None = None, video_binaries: Sequence[Any] | None = None,
                      video_formats: Sequence[str | None] | None = None,
                      progress: ProgressArg = None) -> list[dict]:
        """Per input, in order: ``score`` (float, list of floats for a prompt list, or None), ``frame_scores``,
        ``frame_indices``, ``timestamps``, ``error`` (None when fine), plus ``video_id``, ``source``,
        ``truncated``, ``warnings``, ``prompts``, ``scored_at``. ``progress``: as in the constructor (None:
        the constructor's). The dict form of :meth:`results`."""
        return [r.as_dict() for r in self.results(video_paths, video_binaries, video_formats, progress)]

    def results(self, video_paths: Sequence[Any] | None = None, video_binaries: Sequence[Any] | None = None,
                video_formats: Sequence[str | None] | None = None,
                progress: ProgressArg = None) -> list[QualityResult]:
        """:meth:`score_details` as typed :class:`~video_assets.operators.results.QualityResult` s."""
        if (video_paths is None) == (video_binaries is None):
            raise ValueError("pass exactly one of video_paths or video_binaries")
        kind = "video_url" if video_paths is not None else "auto"
        inputs = make_inputs(video_paths if video_paths is not None else video_binaries, video_formats,
                             self.default_video_format, kind, bytes_go="as video_binaries=")
        decode, loop = self._decode(inputs, progress)
        return [r for (r,) in decode.run(inputs, **loop)]

    def details(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                progress: ProgressArg = None) -> list[dict]:
        """:meth:`score_details` for URIs/paths, with the same signature as the keyframes operator's
        ``details``."""
        return self.score_details(video_paths=videos, video_formats=video_formats, progress=progress)

    def iter_details(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                     progress: ProgressArg = None, *, ordered: bool = True,
                     window: int | None = None) -> Iterator[dict] | Iterator[tuple[int, dict]]:
        """The rows of :meth:`score_details`, yielded one by one as videos finish, so that a call over any
        number of videos holds only a few results at once. ``videos``: paths/URIs or bytes.

        ``ordered=True``: rows in input order; at most ``window`` videos (default ``max(8, 4 x decoders)``:
        the call's decode processes, or its ``decode_workers`` threads) are started ahead of the oldest row not
        yet yielded, so one slow video holds back at most that many finished rows. ``ordered=False``:
        ``(input index, row)`` pairs in the order videos finish. Closing the iterator early (``break``) stops
        the decode workers."""
        rows = self.iter_results(videos, video_formats, progress, ordered=ordered, window=window)
        return _as_dicts(rows, ordered)

    def iter_results(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                     progress: ProgressArg = None, *, ordered: bool = True,
                     window: int | None = None) -> Iterator[QualityResult] | Iterator[tuple[int, QualityResult]]:
        """:meth:`iter_details` as typed results (what compute backends and the Daft UDFs use)."""
        inputs = make_inputs(videos, video_formats, self.default_video_format, "auto")
        return self._iter_results(inputs, progress, ordered, window)

    def failed_result(self, video: Any, error: str) -> QualityResult:
        """The result of ``video`` when it could not be run at all (a backend's worker died on it)."""
        [item] = make_inputs([video], None, self.default_video_format, "auto")
        return QualityResult.failed(item.video_id, item.description, error, prompts=tuple(self.prompt_labels),
                                    multi_prompt=self.multi_prompt)

    def _iter_results(self, inputs: list[VideoInput], progress: ProgressArg, ordered: bool, window: int | None):
        decode, loop = self._decode(inputs, progress)
        for pos, (r,) in decode.iter(inputs, **loop, ordered=ordered, window=window):
            yield r if ordered else (pos, r)

    def _decode(self, inputs: list[VideoInput], progress: ProgressArg) -> tuple[SharedDecode, dict]:
        """This operator's one-stage decode for a call over ``inputs``, and the loop's arguments."""
        model = self.model
        self.last_run_stats = RunStats()
        decode = SharedDecode(self.opener, [self.stage(model)])
        return decode, self.in_processes(decode, [model], dict(
            embeds=[model.encode_pixels], batch_sizes=[self.batch_size], decode_workers=self.decode_workers,
            item_timeout_sec=self.limits.timeout_sec, stats=self.last_run_stats,
            progress=resolve_progress(self.progress if progress is None else progress, len(inputs), "quality")))

    def stage(self, model: ClipModel | None = None) -> QualityStage:
        """This operator as a :class:`QualityStage` of ``model`` (default: its own; the prompts' text
        features are computed here), e.g. to share a decode with other stages
        (:class:`~video_assets.operators.stage.SharedDecode`)."""
        model = model if model is not None else self.model
        return QualityStage(self.plan, preprocessor(model), model.encode_text([t for pair in self.pairs for t in pair]),
                            model.logit_scale, self.reduce_mode, tuple(self.prompt_labels), self.multi_prompt)


def _as_dicts(rows, ordered: bool):
    for r in rows:
        yield r.as_dict() if ordered else (r[0], r[1].as_dict())


class QualityStage(Stage):
    """CLIP-IQA as a stage: the plan's frames, scored against the prompt pairs and reduced to one score."""

    name = "quality"
    parent_only = ("text_features",)

    def __init__(self, plan: SamplePlan, preprocess, text_features: torch.Tensor | None, logit_scale: float,
                 reduce_mode: str, prompts: tuple[str, ...], multi_prompt: bool):
        self.plan, self.preprocess = plan, preprocess
        self.text_features, self.logit_scale = text_features, logit_scale
        self.reduce_mode, self.prompts, self.multi_prompt = reduce_mode, prompts, multi_prompt

    def positions(self, reader: VideoReader) -> np.ndarray:
        return select_positions(self.plan, reader.index.times, reader.duration)

    def meta(self, state: StageState, report: DecodeReport) -> SampledFrames:
        """The sample's metadata (what :func:`~video_assets.video.sample_frames` returns, without pixels)."""
        return state.buffer.result(report=(report.truncated, report.warnings))

    def per_frame(self, features: torch.Tensor) -> torch.Tensor:
        """Each frame's probabilities (b, prompts), computed per batch: a video held at every frame keeps a
        few bytes a frame, not its features (768 float32 per frame for ViT-L/14: 660 MB for 2 hours at 30 fps)."""
        return clip_iqa_probs(features, self.text_features, self.logit_scale)

    def finish(self, item: VideoInput, sample: SampledFrames, probs: torch.Tensor) -> tuple:
        if len(sample.indices) == 0:
            raise ValueError(f"{sample.source}: no frames in the sampling window "
                             f"(duration {sample.duration:.2f}s, start {self.plan.start_time_sec}s)")
        probs = probs.cpu().numpy().astype(np.float64)  # (n, prompts), from per_frame
        return sample, probs, reduce_scores(probs, self.reduce_mode)

    def result(self, item: VideoInput, out: Outcome) -> QualityResult:
        if out.value is None:
            return QualityResult.failed(item.video_id, item.description, out.error, prompts=self.prompts,
                                        multi_prompt=self.multi_prompt)
        sample, probs, scores = out.value
        return QualityResult(item.video_id, item.description, self.prompts, self.multi_prompt,
                             scores=tuple(float(x) for x in scores),
                             frame_scores=tuple(map(tuple, probs.tolist())), frame_indices=tuple(sample.indices),
                             timestamps=tuple(sample.timestamps), truncated=sample.truncated,
                             warnings=tuple(sample.warnings))
