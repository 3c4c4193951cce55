"""VideoAdaptiveKeyframesSampling: score 1-fps candidates against a text query with CLIP, select with AKS,
export the selected frames as images.

This file is the operator's front door (parameters, the calls and their result forms); the work on one video
is its stage (:mod:`video_assets.operators.keyframes_stage`), the image writing
:mod:`video_assets.operators.export`."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from video_assets.compute.settings import DecodeSettings
from video_assets.errors import VideoSourceError
from video_assets.fields import build
from video_assets.keyframes.settings import KeyframeExport, KeyframeSelection, check_src_type
from video_assets.models import DEFAULT_KEYFRAMES_MODEL, ClipModel
from video_assets.models.settings import ClipSettings
from video_assets.operators.batching import RunStats
from video_assets.operators.common import (
    ClipOperator,
    VideoInput,
    make_inputs,
    resolve_device,
    resolve_limits,
    resolve_source_policy,
)
from video_assets.operators.export import KeyframeExporter
from video_assets.operators.export import absolute_dir as _absolute_dir
from video_assets.operators.export import check_output_dir as _check_output_dir
from video_assets.operators.keyframes_stage import (
    KEYFRAMES_WARN_ENV,
    KeyframesBudget,
    KeyframesMemoryWarning,
    KeyframesStage,
    Queries,
    check_texts,
)
from video_assets.operators.results import KeyframesResult, as_dicts
from video_assets.operators.stage import SharedDecode, preprocessor
from video_assets.progress import ProgressArg, resolve_progress
from video_assets.storage.policy import SourcePolicy
from video_assets.video.limits import ReadLimits
from video_assets.video.reader import check_stream_index

__all__ = ["KEYFRAMES_WARN_ENV", "KeyframesMemoryWarning", "VideoAdaptiveKeyframesSampling"]

log = logging.getLogger(__name__)

_SEL, _EXP = KeyframeSelection(), KeyframeExport()  # the defaults of the LAS keywords

# A list-returning call warns once when the keyframe arrays it returns would exceed this many MB.
DEFAULT_KEYFRAMES_WARN_MB = 2048.0


class VideoAdaptiveKeyframesSampling(ClipOperator):
    """Select query-relevant keyframes with Adaptive Keyframe Sampling (AKS, CVPR 2025).

    Parameter names, defaults and meanings are those of the LAS "视频自适应关键帧抽取" operator:

    - ``text``: the query. Each candidate's score is the cosine similarity between the CLIP embedding of
      ``text`` and of the frame. An empty ``text`` is allowed: it is then the similarity to the embedding of an
      empty caption, a content-agnostic prior, so selection is driven mostly by AKS's time segmentation (frames
      spread over the video, the most "typical" frame of each segment).
    - ``model_path``/``clip_model_name`` (default ``openai/clip-vit-base-patch32``; ``$VIDEO_ASSETS_CLIP_MODEL``
      overrides the default), ``dtype`` (float16 on GPU; on a machine without GPU it runs on the CPU in float32
      and says so once in the log), ``batch_size``, ``rank`` (cuda:rank when ``device`` is not given).
    - ``video_src_type``: "video_url" (path/URL/URI), "video_base64" or "video_binary"; ``video_format`` the
      container hint for base64/binary inputs.
    - ``fps``: candidate sampling rate; ``max_candidates`` caps the candidate count of long videos by lowering
      the effective fps.
    - ``max_num_frames``, ``t1``, ``t2``, ``all_depth``, ``budget``: the AKS rule (see
      :func:`video_assets.keyframes.aks_select`; ``budget="exact"`` always returns min(max_num_frames, n)).
    - ``img_type`` (".jpg" or ".png") and ``output_tos_dir`` (local folder, file://, s3:// or tos://): selected
      frames are written to ``{output_tos_dir}/{video_id}/{frame_id:06d}-{hash}{img_type}``
      (``hash``: 10 hex digits of SHA-1 over the image bytes); ``video_id`` is the first 16
      hex digits of SHA-1 over the source URI (or over the bytes for base64/binary inputs), so writes are
      idempotent. ``return_keyframes`` (default True, as in LAS): include the frames as HxWx3 uint8 arrays under
      ``"keyframes"`` (printing such a result prints every array). They are full size: 32 keyframes of
      720p are 88 MB per video, so a list-returning call over 1,000 videos holds 88 GB. Over many videos pass
      ``return_keyframes=False`` (and read the images from ``output_tos_dir``) or use :meth:`iter_details`.
      ``keyframes_warn_mb`` (default ``$VIDEO_ASSETS_KEYFRAMES_WARN_MB`` or 2048): a ``details``/``__call__``
      call whose keyframe arrays would exceed this many MB (projected from the videos finished so far) warns
      once (KeyframesMemoryWarning).
    - ``decode_workers`` (decode threads, default min(4, CPUs)) and ``decode_processes`` (None: auto, 0:
      threads, N: N decode processes kept until :meth:`close`) as in :class:`VideoQualityScore`.
    - ``progress``: the default for every call: None (a tqdm bar on stderr when interactive, else quiet),
      True, False, or a callable(done, total, rate) called after every video; see :mod:`video_assets.progress`.
    - ``stream_index`` (default: the stream FFmpeg plays, never a cover picture) and ``apply_rotation``
      (default True: candidates are scored and exported as displayed) — see
      :func:`video_assets.video.sample_frames`.

    ``op(videos=[...])`` returns per input a dict ``{"tos_paths", "frame_ids", "timestamps", "scores",
    "keyframes"?}`` or None when the video cannot be read; :meth:`details` gives the error, and
    :meth:`iter_details` yields the same rows one by one as videos finish. ``last_run_stats`` counts what the
    latest call held at once.
    """

    def __init__(self, text: str = "", model_path: str | None = None, clip_model_name: str | None = None,
                 dtype: str = "float16", video_src_type: str = "video_url", fps: float = _SEL.fps,
                 max_num_frames: int = _SEL.max_num_frames, t1: float = _SEL.t1, t2: float = _SEL.t2,
                 all_depth: int = _SEL.all_depth, img_type: str = _EXP.img_type,
                 output_tos_dir: str = _EXP.output_tos_dir, return_keyframes: bool = _EXP.return_keyframes,
                 batch_size: int = 16, rank: int = 0, video_format: str = "mp4", budget: str = _SEL.budget,
                 max_candidates: int | None = _SEL.max_candidates, device: str | None = None,
                 decode_workers: int | None = None, decode_processes: int | None = None,
                 jpeg_quality: int = _EXP.jpeg_quality,
                 storage_options: dict | None = None, source_policy: SourcePolicy | None = None,
                 limits: ReadLimits | None = None, progress: ProgressArg = None,
                 keyframes_warn_mb: float | None = None, stream_index: int | None = None,
                 apply_rotation: bool = True, return_embeddings: bool = False):
        # A thin front door: the keywords are those of LAS; the settings objects (one definition each, in the
        # core) validate them before anything is loaded.
        args = locals()
        check_stream_index(stream_index)
        self.stream_index, self.apply_rotation = stream_index, bool(apply_rotation)
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, got {type(text).__name__}")
        check_src_type(video_src_type)
        export = build(KeyframeExport, args)
        clip = build(ClipSettings, args)
        self.selection = build(KeyframeSelection, args)
        self.text, self.fps, self.max_candidates = text, self.selection.fps, self.selection.max_candidates
        self.aks = self.selection.aks
        self.video_src_type, self.video_format = video_src_type, video_format
        self.img_type = export.img_type
        self.output_tos_dir = _absolute_dir(output_tos_dir) if output_tos_dir else ""
        _check_output_dir(self.output_tos_dir)
        self.export = dataclasses.replace(export, output_tos_dir=self.output_tos_dir)
        self.return_keyframes = return_keyframes
        self.return_embeddings = bool(return_embeddings)
        self.clip_settings = clip.resolved(DEFAULT_KEYFRAMES_MODEL, resolve_device(device, rank))
        self.model_path, self.clip_model_name = self.clip_settings.model_path, self.clip_settings.clip_model_name
        self.device, self.dtype = self.clip_settings.device, self.clip_settings.dtype
        self.batch_size = self.clip_settings.batch_size
        decode = build(DecodeSettings, args)
        self.decode_workers, self.decode_processes = decode.workers, decode.decode_processes
        self.jpeg_quality = export.jpeg_quality
        self.storage_options = storage_options
        # where sources may point and what one video may cost (None: permissive policy, default limits)
        self.source_policy = resolve_source_policy(source_policy)
        self.limits = resolve_limits(limits)
        resolve_progress(progress, 0, "keyframes")  # validates it
        self.progress = progress
        if keyframes_warn_mb is None:
            keyframes_warn_mb = os.environ.get(KEYFRAMES_WARN_ENV) or DEFAULT_KEYFRAMES_WARN_MB
        try:
            self.keyframes_warn_mb = float(keyframes_warn_mb)
        except ValueError:
            raise ValueError(f"keyframes_warn_mb (or ${KEYFRAMES_WARN_ENV}) must be a number of MB, "
                             f"got {keyframes_warn_mb!r}") from None
        self.last_run_stats = RunStats()

    def __call__(self, videos: Sequence[Any], progress: ProgressArg = None,
                 texts: Sequence[str | Sequence[str] | None] | None = None) -> list:
        def public(d: dict) -> dict | None:
            return None if d["error"] else {k: d[k] for k in self._public_keys()}

        return [[public(x) for x in d] if isinstance(d, list) else public(d)
                for d in self.details(videos, progress=progress, texts=texts)]

    def _public_keys(self) -> list[str]:
        return ["tos_paths", "frame_ids", "timestamps", "scores"] + (["keyframes"] if self.return_keyframes else [])

    def details(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                progress: ProgressArg = None, texts: Sequence[str | Sequence[str] | None] | None = None) -> list:
        """Per input, in order: the output keys plus ``video_id``, ``source``, ``query``, ``error`` (None when
        fine), ``num_candidates``, ``effective_fps``, ``truncated``, ``warnings``; with ``return_embeddings``
        also ``candidate_frame_ids``, ``candidate_timestamps`` and ``embeddings`` (float16, one unit-norm vector
        per candidate). ``progress``: as in the constructor (None: the constructor's).

        ``texts``: one query per video (None: the constructor's ``text``), or a list of queries for a video: its
        entry is then a list of rows, one per query, in that order, all from one decode and one image-embedding
        pass of the video (each distinct query's text embedding is computed once per call). The dict form of
        :meth:`results`."""
        return as_dicts(self.results(videos, video_formats, progress, texts))

    def results(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                progress: ProgressArg = None, texts: Sequence[str | Sequence[str] | None] | None = None
                ) -> list[KeyframesResult | list[KeyframesResult]]:
        """:meth:`details` as typed :class:`~video_assets.operators.results.KeyframesResult` s."""
        inputs = make_inputs(videos, video_formats, self.video_format, self.video_src_type)
        model = self.model
        with ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="export") as export_pool:
            decode = SharedDecode(self.opener, [self.stage(model, inputs, texts, export_pool, listing=True)])
            return [r for (r,) in decode.run(inputs, **self._loop_args(decode, model, len(inputs), progress))]

    def iter_details(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                     progress: ProgressArg = None, *, ordered: bool = True, window: int | None = None,
                     texts: Sequence[str | Sequence[str] | None] | None = None
                     ) -> Iterator[dict] | Iterator[tuple[int, dict]]:
        """The rows of :meth:`details`, yielded one by one as videos finish (their images exported), so that a
        call over any number of videos holds only a few results, keyframe arrays included, at once.

        ``ordered=True``: rows in input order; at most ``window`` videos (default ``max(8, 4 x decoders)``:
        the call's decode processes, or its ``decode_workers`` threads) are started ahead of the oldest row not
        yet yielded, so one slow video holds back at most that many finished rows. ``ordered=False``:
        ``(input index, row)`` pairs in the order videos finish. Closing the iterator early (``break``) stops
        the decode workers. ``texts``: as in :meth:`details`."""
        rows = self.iter_results(videos, video_formats, progress, ordered=ordered, window=window, texts=texts)
        return (as_dicts(r) for r in rows) if ordered else ((pos, as_dicts(r)) for pos, r in rows)

    def iter_results(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                     progress: ProgressArg = None, *, ordered: bool = True, window: int | None = None,
                     texts: Sequence[str | Sequence[str] | None] | None = None) -> Iterator:
        """:meth:`iter_details` as typed results."""
        inputs = make_inputs(videos, video_formats, self.video_format, self.video_src_type)
        check_texts(texts, len(inputs))  # before the generator starts: wrong arguments fail at the call
        return self._iter_results(inputs, progress, ordered, window, texts)

    def _iter_results(self, inputs: list[VideoInput], progress: ProgressArg, ordered: bool, window: int | None,
                      texts=None):
        model = self.model
        with ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="export") as export_pool:
            decode = SharedDecode(self.opener, [self.stage(model, inputs, texts, export_pool)])
            loop = self._loop_args(decode, model, len(inputs), progress)
            for pos, (r,) in decode.iter(inputs, **loop, ordered=ordered, window=window):
                yield r if ordered else (pos, r)

    def _loop_args(self, decode: SharedDecode, model: ClipModel, total: int, progress: ProgressArg) -> dict:
        self.last_run_stats = RunStats()
        return self.in_processes(decode, [model], dict(
            embeds=[model.encode_pixels], batch_sizes=[self.batch_size], decode_workers=self.decode_workers,
            item_timeout_sec=self.limits.timeout_sec, stats=self.last_run_stats,
            progress=resolve_progress(self.progress if progress is None else progress, total, "keyframes")))

    def stage(self, model: ClipModel, inputs: list[VideoInput], texts=None,
              export_pool: ThreadPoolExecutor | None = None, listing: bool = False) -> KeyframesStage:
        """This operator as a :class:`KeyframesStage` of ``model`` for a call over ``inputs`` (``texts``: as
        in :meth:`details`; their text features are computed here), exporting in ``export_pool`` (None: no
        export); ``listing``: a list-returning call, which warns when its keyframe arrays grow too large."""
        budget = KeyframesBudget(len(inputs), self.keyframes_warn_mb) if listing and self.return_keyframes else None
        return KeyframesStage(self.fps, self.max_candidates, self.aks, preprocessor(model),
                              Queries(inputs, texts, self.text, model), self.exporter, self.opener,
                              self.return_embeddings, export_pool, budget)

    def failed_result(self, video: Any, error: str) -> KeyframesResult:
        """The result of ``video`` (for the constructor's ``text``) when it could not be run at all."""
        [item] = make_inputs([video], None, self.video_format, self.video_src_type)
        return KeyframesResult.failed(item.video_id, item.description, error, query=self.text)

    @property
    def exporter(self) -> KeyframeExporter:
        return KeyframeExporter(self.output_tos_dir, self.img_type, self.jpeg_quality, self.storage_options,
                                self.return_keyframes)

    @property
    def exporting(self) -> bool:
        return self.exporter.exporting

    def export_frames(self, video: Any, frame_ids: Sequence[int], video_format: str | None = None
                      ) -> tuple[list[str], list[np.ndarray]]:
        """Decode only ``frame_ids`` of one video (a seek each) and write them as this operator writes its
        keyframes (``output_tos_dir``, ``img_type``); returns (paths, arrays when ``return_keyframes``). For
        frames chosen without this operator, e.g. by
        :func:`video_assets.keyframes.select_from_embeddings`. Raises for an unreadable video."""
        [item] = make_inputs([video], [video_format] if video_format else None, self.video_format,
                             self.video_src_type)
        if item.error:
            raise VideoSourceError(item.error)
        return self.exporter.export(self.opener, item, sorted(set(int(f) for f in frame_ids)))

    def encode_image(self, rgb: np.ndarray) -> bytes:
        return self.exporter.encode_image(rgb)
