"""QualityAndKeyframes: quality scores and keyframes from one decode of each video.

Run separately, VideoQualityScore and VideoAdaptiveKeyframesSampling each open and decode every video. Here
each video is opened once, the union of both operators' frame positions (the quality plan's frames and the
keyframe candidates) is decoded in one ascending pass, and every frame goes to the model(s) that need it: the
two models run on their own cross-video batches (they usually differ: ViT-L/14 and ViT-B/32). The operators'
own steps do the rest, so the results are those of two separate passes. Both sides stream: each gets its
frames in chunks as the pass decodes them, so memory does not grow with the frames either plan chooses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from video_assets.errors import VideoSourceError
from video_assets.models import ClipModel
from video_assets.operators.batching import Outcome, RunStats, error_message, iter_overlapped, run_overlapped
from video_assets.operators.common import VideoInput, default_window, make_inputs
from video_assets.operators.keyframes import VideoAdaptiveKeyframesSampling, _KeyframesBudget, _Queries
from video_assets.operators.quality import _CHUNK_FRAMES, VideoQualityScore
from video_assets.operators.slabs import FeatureSlabs
from video_assets.progress import ProgressArg, resolve_progress
from video_assets.video import FrameBuffer
from video_assets.video.reader import missing_frames_warning

log = logging.getLogger(__name__)

_QUALITY, _KEYFRAMES = 0, 1  # model streams of run_overlapped
# Settings that decide how a video is opened: both operators must agree on them to share one decode.
_READ_SETTINGS = ("storage_options", "source_policy", "limits", "stream_index", "apply_rotation")


def shared_decode_mismatch(quality: VideoQualityScore, keyframes: VideoAdaptiveKeyframesSampling) -> str | None:
    """Why the two operators cannot share a decode (they would read the videos differently), or None."""
    if keyframes.video_src_type != "video_url":
        return f"keyframes video_src_type is {keyframes.video_src_type!r}; a shared decode takes paths/URIs"
    if quality.default_video_format != keyframes.video_format:
        return (f"container hints differ (quality default_video_format={quality.default_video_format!r}, "
                f"keyframes video_format={keyframes.video_format!r})")
    for name in _READ_SETTINGS:
        if getattr(quality, name, None) != getattr(keyframes, name, None):
            return f"{name} differs between the two operators"
    return None


def _attempt(fn: Callable[[], Any]) -> tuple[Any, Exception | None]:
    try:
        return fn(), None
    except Exception as e:  # noqa: BLE001 - one operator's failure must not fail the other
        return None, e


class QualityAndKeyframes:
    """Both operators over the same videos, each video decoded once.

    ``quality`` / ``keyframes``: a :class:`VideoQualityScore` / :class:`VideoAdaptiveKeyframesSampling`, or a
    dict of its constructor arguments (so ``functools.partial(QualityAndKeyframes, quality={...},
    keyframes={...})`` is a picklable factory for compute backends). Both must read videos the same way (same
    container hint, storage options; keyframes ``video_src_type="video_url"``), else ValueError.

    :meth:`details` returns per input, in order, the pair (quality detail dict, keyframes detail dict): what
    ``quality.details`` and ``keyframes.details`` return for that video; :meth:`iter_details` yields the pairs
    one by one as videos finish. ``progress``: the default for every call (see :mod:`video_assets.progress`;
    the two operators' own ``progress`` settings are not used here).
    """

    def __init__(self, quality: VideoQualityScore | dict, keyframes: VideoAdaptiveKeyframesSampling | dict,
                 progress: ProgressArg = None):
        self.quality = quality if isinstance(quality, VideoQualityScore) else VideoQualityScore(**quality)
        self.keyframes = (keyframes if isinstance(keyframes, VideoAdaptiveKeyframesSampling)
                          else VideoAdaptiveKeyframesSampling(**keyframes))
        why = shared_decode_mismatch(self.quality, self.keyframes)
        if why:
            raise ValueError(f"quality and keyframes cannot share one decode: {why}")
        self.decode_workers = max(self.quality.decode_workers, self.keyframes.decode_workers)
        resolve_progress(progress, 0, "quality+keyframes")  # validates it
        self.progress = progress
        self.last_run_stats = RunStats()

    def details(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                progress: ProgressArg = None, texts=None) -> list[tuple[dict, dict | list[dict]]]:
        """``texts``: the keyframes side's queries per video, as in
        :meth:`VideoAdaptiveKeyframesSampling.details` (a list of queries gives a list of keyframe rows)."""
        inputs = make_inputs(videos, video_formats, self.quality.default_video_format, "video_url")
        budget = self.keyframes._keyframes_budget(len(inputs))
        workers = self.keyframes.decode_workers
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export") as pool:
            args, queries = self._run_args(inputs, progress, pool, budget, texts)
            outcomes = run_overlapped(inputs, **args)
            return [self._rows(item, out, queries) for item, out in zip(inputs, outcomes)]

    def iter_details(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                     progress: ProgressArg = None, *, ordered: bool = True, window: int | None = None,
                     texts=None) -> Iterator[tuple[dict, dict]] | Iterator[tuple[int, tuple]]:
        """The pairs of :meth:`details`, yielded one by one as videos finish; ``ordered`` and ``window`` as in
        :meth:`VideoQualityScore.iter_details`, ``texts`` as in :meth:`details`."""
        inputs = make_inputs(videos, video_formats, self.quality.default_video_format, "video_url")
        _Queries.check(texts, len(inputs))
        return self._iter_rows(inputs, progress, ordered, window, texts)

    def _iter_rows(self, inputs: list[VideoInput], progress: ProgressArg, ordered: bool, window: int | None,
                   texts=None):
        workers = self.keyframes.decode_workers
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export") as pool:
            args, queries = self._run_args(inputs, progress, pool, None, texts)
            run = iter_overlapped(inputs, **args, ordered=ordered,
                                  window=window or default_window(self.decode_workers), pending=_export_of)
            try:
                for pos, out in run:
                    rows = self._rows(inputs[pos], out, queries)
                    yield rows if ordered else (pos, rows)
            finally:
                run.close()

    def _run_args(self, inputs: list[VideoInput], progress: ProgressArg, export_pool: ThreadPoolExecutor,
                  budget: _KeyframesBudget | None, texts=None) -> tuple[dict, _Queries]:
        q, k = self.quality, self.keyframes
        q_model, k_model = q.model, k.model
        q_text, k_queries = q._text_features(q_model), k.queries_for(k_model, inputs, texts)
        pool = export_pool if k.exporting else None
        self.last_run_stats = RunStats()
        return dict(
            describe=lambda it: it.description,
            prepare=lambda it, emit: self._prepare(q_model, k_model, it, emit),
            embed=(FeatureSlabs(q_model.encode_pixels), FeatureSlabs(k_model.encode_pixels)),
            finish=lambda it, meta, feats: self._finish(it, meta, feats, q_text, q_model.logit_scale, k_queries,
                                                        pool, budget),
            batch_size=(q.batch_size, k.batch_size), decode_workers=self.decode_workers,
            item_timeout_sec=k.limits.timeout_sec,  # the same limits on both sides (shared_decode_mismatch)
            stats=self.last_run_stats,
            progress=resolve_progress(self.progress if progress is None else progress, len(inputs),
                                      "quality+keyframes")), k_queries

    # -- steps -----------------------------------------------------------------------------------------------
    def _prepare(self, q_model: ClipModel, k_model: ClipModel, item: VideoInput, emit) -> tuple[Any, Any]:
        """Decode the union of both operators' frames once; returns (quality meta, keyframes meta), either of
        which is the exception that operator's own pass would have raised."""
        if item.error:
            raise VideoSourceError(item.error)
        q, k = self.quality, self.keyframes
        with k._reader(item) as reader:
            q_pos, q_err = _attempt(lambda: q._positions(reader))
            k_cand, k_err = _attempt(lambda: k._candidates(reader))
            k_pos, fps = k_cand if k_cand is not None else (None, None)
            empty = np.empty(0, np.int64)
            q_pos, k_pos = (empty if q_err else q_pos), (empty if k_err else k_pos)
            opened_truncated, opened_warnings = reader.truncated, list(reader.warnings)
            q_set, k_set = set(q_pos.tolist()), set(k_pos.tolist())
            # The quality plan's frames go to its model in chunks as the pass decodes them.
            q_buf = FrameBuffer(reader, _CHUNK_FRAMES, len(q_pos), reuse=True)
            q_fail: Exception | None = None
            got: set[int] = set()  # every position the pass decoded
            fetch_failed = False

            def q_emit(px: torch.Tensor) -> None:
                emit(px, _QUALITY)

            def candidates():
                nonlocal fetch_failed, q_fail
                try:
                    for pos, frame in reader.fetch(np.union1d(q_pos, k_pos), rgb=False):
                        got.add(pos)
                        rgb = reader.rgb_array(frame)
                        if pos in q_set and q_fail is None:
                            try:
                                q._emit_chunk(q_model, q_buf.add(pos, rgb), q_emit)
                            except Exception as e:  # noqa: BLE001 - quality fails alone, as in its own pass
                                q_fail = e
                        if pos in k_set:
                            yield pos, rgb
                except Exception:
                    fetch_failed = True  # a decode error: both separate passes would have failed on it
                    raise

            frames = candidates()
            k_got, e = _attempt(lambda: k._emit_candidates(k_model, reader, frames,
                                                           lambda px: emit(px, _KEYFRAMES)))
            if e is not None:
                if fetch_failed:
                    raise e
                k_err = k_err or e
                for _ in frames:  # keyframes failed on its own: finish the pass for quality
                    if q_fail is not None or q_err is not None:
                        break  # nobody needs the rest

            # fetch() reported on the union; give each side what a pass of its own would have reported.
            fetched_warnings = reader.warnings[len(opened_warnings):]
            if (q_set | k_set) - got:
                fetched_warnings = fetched_warnings[:-1]  # fetch's summary of the union's missing frames

            def own_state(wanted: set[int]) -> None:
                missing = sorted(wanted - got)
                reader.truncated = opened_truncated or bool(missing)
                reader.warnings = opened_warnings + (
                    fetched_warnings + [missing_frames_warning(missing)] if missing else [])

            k_meta = k_err
            if k_err is None:
                own_state(k_set)
                k_meta = k._candidates_meta(reader, k_got, fps)
            q_meta = q_err or q_fail
            if q_meta is None:
                own_state(q_set)

                def q_end():
                    q._emit_chunk(q_model, q_buf.flush(), q_emit)
                    return q_buf.result()

                q_meta, e = _attempt(q_end)
                q_meta = e or q_meta
            return q_meta, k_meta

    def _finish(self, item: VideoInput, meta: tuple[Any, Any], feats: tuple[torch.Tensor, torch.Tensor],
                q_text: torch.Tensor, logit_scale: float, k_queries: _Queries,
                export_pool: ThreadPoolExecutor | None,
                budget: _KeyframesBudget | None = None) -> tuple[Outcome, Outcome]:
        q_meta, k_meta = meta
        return (self._outcome(item, q_meta, lambda: self.quality._finish(q_meta, feats[_QUALITY], q_text,
                                                                         logit_scale)),
                self._outcome(item, k_meta, lambda: self.keyframes._finish(item, k_meta, feats[_KEYFRAMES], k_queries,
                                                                           export_pool, budget)))

    @staticmethod
    def _outcome(item: VideoInput, meta: Any, finish: Callable[[], Any]) -> Outcome:
        """What run_overlapped makes of one operator's step: its value, or its error naming the video."""
        value, e = (None, meta) if isinstance(meta, Exception) else _attempt(finish)
        if e is not None:
            out = Outcome(error=error_message(item.description, e))
            log.warning("%s", out.error)
            return out
        return Outcome(value=value)

    def _rows(self, item: VideoInput, out: Outcome, k_queries: _Queries) -> tuple[dict, dict | list[dict]]:
        q_out, k_out = (out.value if out.error is None else (Outcome(error=out.error), Outcome(error=out.error)))
        return self.quality._row(item, q_out), self.keyframes._row(item, k_out, k_queries)


def _export_of(value: tuple[Outcome, Outcome]):
    """The keyframes side's image export, which a streamed pair waits for (None when there is none)."""
    k_out = value[1]
    return k_out.value.get("export") if k_out.value is not None else None
