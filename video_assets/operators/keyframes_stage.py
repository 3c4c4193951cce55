"""Adaptive Keyframe Sampling as a stage (:class:`KeyframesStage`): the candidates of a video, their CLIP
relevance to each query, AKS per query and the export of the chosen frames; plus the per-call pieces it
needs: the queries of a call (:class:`Queries`) and the memory warning of a list-returning call
(:class:`KeyframesBudget`)."""

from __future__ import annotations

import logging
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from video_assets.errors import OutputWriteError
from video_assets.keyframes import aks_select
from video_assets.keyframes.embeddings import relevance, stored_embeddings
from video_assets.operators.batching import Outcome, error_message
from video_assets.operators.common import VideoInput, VideoOpener
from video_assets.operators.export import KeyframeExporter
from video_assets.operators.results import KeyframesResult
from video_assets.operators.stage import DecodeReport, Stage, StageState
from video_assets.storage.uri import describe_uri
from video_assets.video import VideoReader, make_plan, select_positions

log = logging.getLogger(__name__)

KEYFRAMES_WARN_ENV = "VIDEO_ASSETS_KEYFRAMES_WARN_MB"


class KeyframesMemoryWarning(UserWarning):
    """One call is about to return more keyframe arrays (``return_keyframes=True``) than the configured size."""


class KeyframesStage(Stage):
    """Candidates at ``fps`` (capped at ``max_candidates``), scored against each query of the video, AKS
    (``aks``: its parameters) per query; the union of the chosen frames is exported once, in ``export_pool``.
    The decode side (:meth:`positions`, :meth:`meta`) needs only the sampling settings and ``preprocess``."""

    name = "keyframes"
    parent_only = ("queries", "export_pool", "budget", "output_failures")

    def __init__(self, fps: float, max_candidates: int | None, aks: dict, preprocess, queries: Queries,
                 exporter: KeyframeExporter, opener: VideoOpener, return_embeddings: bool = False,
                 export_pool: ThreadPoolExecutor | None = None, budget: KeyframesBudget | None = None):
        self.fps, self.max_candidates, self.aks, self.preprocess = fps, max_candidates, dict(aks), preprocess
        self.queries, self.exporter, self.opener = queries, exporter, opener
        self.return_embeddings = return_embeddings
        self.export_pool = export_pool if exporter.exporting else None
        self.budget = budget
        self.output_failures: set[str] = set()  # the output problems this call has logged (each once)

    def candidate_fps(self, duration: float) -> float:
        """The sampling rate of the candidates: ``fps``, lowered so that ``max_candidates`` are not exceeded."""
        if self.max_candidates and duration * self.fps > self.max_candidates:
            return self.max_candidates / duration
        return self.fps

    def positions(self, reader: VideoReader) -> np.ndarray:
        plan = make_plan("by_fps", target_fps=self.candidate_fps(reader.duration), max_frames=self.max_candidates)
        return select_positions(plan, reader.index.times, reader.duration)

    def meta(self, state: StageState, report: DecodeReport) -> dict:
        reader, got = state.reader, list(state.got)
        return {"frame_ids": got, "times": [float(reader.index.times[p]) for p in got],
                "effective_fps": self.candidate_fps(reader.duration), "truncated": report.truncated,
                "warnings": list(report.warnings), "source": reader.description,
                "frame_bytes": reader.width * reader.height * 3}

    def finish(self, item: VideoInput, meta: dict, feats: torch.Tensor) -> dict:
        """AKS per query on the candidates' relevance; the union of the chosen frames is exported once."""
        if not meta["frame_ids"]:
            raise ValueError(f"{meta['source']}: no candidate frames could be decoded")
        # Scored from the float16 embeddings the frame-embedding table stores, so that a new query answered
        # from the table (select_from_embeddings) gives exactly the frames this pass would.
        embeddings = stored_embeddings(feats)
        selections = []
        for query in self.queries.of(item):
            scores = relevance(embeddings, self.queries.feature(query))
            chosen = aks_select(scores, **self.aks)
            selections.append({"frame_ids": [meta["frame_ids"][i] for i in chosen],
                               "timestamps": [meta["times"][i] for i in chosen],
                               "scores": [float(scores[i]) for i in chosen]})
        out = {"selections": selections, "num_candidates": len(embeddings),
               "effective_fps": meta["effective_fps"], "truncated": meta["truncated"], "warnings": meta["warnings"]}
        if self.return_embeddings:
            out.update(candidate_frame_ids=list(meta["frame_ids"]), candidate_timestamps=list(meta["times"]),
                       embeddings=embeddings)
        union = sorted({f for sel in selections for f in sel["frame_ids"]})
        if self.export_pool is not None and union:
            out["export"] = self.export_pool.submit(
                lambda: (union, self.exporter.export(self.opener, item, union)))
        if self.budget is not None:
            self.budget.add(len(union) * meta["frame_bytes"])
        return out

    def pending(self, value: Any) -> Future | None:
        return value.get("export")

    def result(self, item: VideoInput, out: Outcome) -> KeyframesResult | list[KeyframesResult]:
        """The result of one video, or its list of results (one per query) when it was given a list; waits
        for its export (a failed export fails this video's results only)."""
        asked = self.queries.of(item)
        if out.value is None:
            rows = [KeyframesResult.failed(item.video_id, item.description, out.error, query=q) for q in asked]
            return rows if self.queries.listed(item) else rows[0]
        value = out.value
        export: Future | None = value.get("export")
        paths: dict[int, str] = {}
        frames: dict[int, np.ndarray] = {}
        error = None
        if export is not None:
            try:
                ids, (written, arrays) = export.result()
                paths, frames = dict(zip(ids, written)), dict(zip(ids, arrays))
            except Exception as e:  # noqa: BLE001 - this video fails, the batch goes on
                error = error_message(item.description, e)
                self.log_export_failure(e, error)
        exported = export is not None and error is None
        common = dict(num_candidates=value["num_candidates"], effective_fps=value["effective_fps"],
                      truncated=value["truncated"], warnings=tuple(value["warnings"]))
        if "embeddings" in value:
            common.update(candidate_frame_ids=tuple(value["candidate_frame_ids"]),
                          candidate_timestamps=tuple(value["candidate_timestamps"]), embeddings=value["embeddings"])
        rows = []
        for q, sel in zip(asked, value["selections"]):
            ids = sel["frame_ids"]
            rows.append(KeyframesResult(
                item.video_id, item.description, q, error=error,
                tos_paths=tuple(paths[f] for f in ids) if exported and paths else (),
                frame_ids=tuple(ids), timestamps=tuple(sel["timestamps"]), scores=tuple(sel["scores"]),
                keyframes=tuple(frames[f] for f in ids) if exported and self.exporter.return_keyframes else None,
                **common))
        return rows if self.queries.listed(item) else rows[0]

    def log_export_failure(self, e: BaseException, error: str) -> None:
        """A failed export is logged with its row's error; an output that cannot be written (the same for
        every video, e.g. a missing bucket) is logged once per call, naming the output folder."""
        if not isinstance(e, OutputWriteError):
            log.warning("%s", error)
        elif e.reason not in self.output_failures:
            self.output_failures.add(e.reason)
            log.warning("keyframes cannot be written to output_tos_dir %s: %s. Every video of this call whose "
                        "images fail alike has this error in its row (logged once)", describe_uri(e.output),
                        e.reason)
        else:
            log.debug("%s", error)


class KeyframesBudget:
    """Warns once per call when the keyframe arrays one list-returning call holds would exceed ``limit_mb``,
    projected from the videos finished so far."""

    def __init__(self, total: int, limit_mb: float):
        self.total, self.limit_mb = total, limit_mb
        self.videos, self.bytes, self.warned = 0, 0, False

    def add(self, nbytes: int) -> None:
        self.videos += 1
        self.bytes += nbytes
        projected_mb = self.bytes / self.videos * self.total / 1e6
        if self.warned or projected_mb <= self.limit_mb:
            return
        self.warned = True
        msg = (f"keyframes: this call returns about {projected_mb:,.0f} MB of keyframe arrays "
               f"({self.total} videos x ~{self.bytes / self.videos / 1e6:.0f} MB, return_keyframes=True), "
               f"more than keyframes_warn_mb={self.limit_mb:g} (${KEYFRAMES_WARN_ENV}); iterate with "
               "iter_details(), or pass return_keyframes=False and read the images from output_tos_dir")
        log.warning("%s", msg)
        warnings.warn(msg, KeyframesMemoryWarning, stacklevel=2)


def check_texts(texts, n: int) -> None:
    """Wrong ``texts`` (the per-video queries of a call) raise ValueError before any work."""
    if texts is None:
        return
    if isinstance(texts, str):
        raise ValueError("texts must be a list with one query (or list of queries) per video, not a string")
    texts = list(texts)
    if len(texts) != n:
        raise ValueError(f"texts has {len(texts)} entries for {n} videos")
    for i, t in enumerate(texts):
        for q in (t if isinstance(t, (list, tuple)) else [t]):
            if q is not None and not isinstance(q, str):
                raise ValueError(f"texts[{i}]: a query must be a string or None, got {type(q).__name__}")


class Queries:
    """The questions of one call: per input, its queries (``None`` stands for the operator's ``text``) and
    whether it was given a list (its result is then a list of rows); the text feature of each distinct query is
    computed once, as a float64-ready array."""

    def __init__(self, inputs: list[VideoInput], texts, default: str, model):
        check_texts(texts, len(inputs))
        per = [None] * len(inputs) if texts is None else list(texts)
        self._of: dict[int, tuple[str, ...]] = {}
        self._listed: set[int] = set()
        self.default = default
        for item, t in zip(inputs, per):
            if isinstance(t, (list, tuple)):
                self._listed.add(id(item))
                self._of[id(item)] = tuple(default if q is None else q for q in t)
            else:
                self._of[id(item)] = (default if t is None else t,)
        distinct = list(dict.fromkeys(q for qs in self._of.values() for q in qs))
        feats = model.encode_text(distinct).float().cpu().numpy() if distinct else []
        self._feature = dict(zip(distinct, feats))

    def of(self, item: VideoInput) -> tuple[str, ...]:
        return self._of.get(id(item), (self.default,))

    def listed(self, item: VideoInput) -> bool:
        return id(item) in self._listed

    def feature(self, query: str) -> np.ndarray:
        return self._feature[query]
