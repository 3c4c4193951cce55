"""VideoAdaptiveKeyframesSampling: score 1-fps candidates against a text query with CLIP, select with AKS,
export the selected frames as images."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image

from video_assets.errors import VideoSourceError
from video_assets.keyframes import aks_select
from video_assets.keyframes.embeddings import relevance, stored_embeddings
from video_assets.models import DEFAULT_KEYFRAMES_MODEL, ClipModel
from video_assets.operators.batching import Outcome, RunStats, error_message, iter_overlapped, run_overlapped
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
from video_assets.storage import join_uri, write_bytes
from video_assets.storage.policy import SourcePolicy
from video_assets.storage.uri import scheme_of, strip_file_scheme
from video_assets.video import DEFAULT_CHUNK_FRAMES, FrameBuffer, VideoReader, make_plan, select_positions
from video_assets.video.limits import ReadLimits
from video_assets.video.reader import check_stream_index

log = logging.getLogger(__name__)

SRC_TYPES = ("video_url", "video_base64", "video_binary")
IMG_TYPES = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
# Candidates are preprocessed in chunks as they are decoded, so a long video never sits in memory at full size.
_CHUNK_FRAMES = DEFAULT_CHUNK_FRAMES
# A list-returning call warns once when the keyframe arrays it returns would exceed this many MB.
KEYFRAMES_WARN_ENV = "VIDEO_ASSETS_KEYFRAMES_WARN_MB"
DEFAULT_KEYFRAMES_WARN_MB = 2048.0


class KeyframesMemoryWarning(UserWarning):
    """One call is about to return more keyframe arrays (``return_keyframes=True``) than the configured size."""


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
                 dtype: str = "float16", video_src_type: str = "video_url", fps: float = 1.0,
                 max_num_frames: int = 32, t1: float = 0.8, t2: float = -100, all_depth: int = 5,
                 img_type: str = ".jpg", output_tos_dir: str = "", return_keyframes: bool = True,
                 batch_size: int = 16, rank: int = 0, video_format: str = "mp4", budget: str = "exact",
                 max_candidates: int | None = None, device: str | None = None, decode_workers: int | None = None,
                 jpeg_quality: int = 95, storage_options: dict | None = None,
                 source_policy: SourcePolicy | None = None, limits: ReadLimits | None = None,
                 progress: ProgressArg = None, keyframes_warn_mb: float | None = None,
                 stream_index: int | None = None, apply_rotation: bool = True, return_embeddings: bool = False):
        check_stream_index(stream_index)
        self.stream_index, self.apply_rotation = stream_index, bool(apply_rotation)
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, got {type(text).__name__}")
        if video_src_type not in SRC_TYPES:
            raise ValueError(f"video_src_type must be one of {', '.join(SRC_TYPES)}; got {video_src_type!r}")
        if img_type.lower() not in IMG_TYPES:
            raise ValueError(f"img_type must be one of .jpg, .png; got {img_type!r}")
        if max_candidates is not None and (isinstance(max_candidates, bool) or int(max_candidates) < 1):
            raise ValueError(f"max_candidates must be >= 1, got {max_candidates!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < float("inf"):
            raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
        aks_select([0.0], max_num_frames, t1, t2, all_depth, budget)  # validates the AKS parameters
        self.text, self.fps, self.max_candidates = text, float(fps), max_candidates
        self.aks = dict(max_num_frames=max_num_frames, t1=t1, t2=t2, all_depth=all_depth, budget=budget)
        self.video_src_type, self.video_format = video_src_type, video_format
        self.img_type = img_type.lower()
        self.output_tos_dir = _absolute_dir(output_tos_dir) if output_tos_dir else ""
        _check_writable(self.output_tos_dir)
        self.return_keyframes = return_keyframes
        self.return_embeddings = bool(return_embeddings)
        self.model_path = default_model_path(model_path)
        self.clip_model_name = default_model_name(clip_model_name, DEFAULT_KEYFRAMES_MODEL)
        self.device = resolve_device(device, rank)
        self.dtype = dtype if self.device.startswith("cuda") else "float32"
        self.batch_size = batch_size
        self.decode_workers = decode_workers or default_decode_workers()
        self.jpeg_quality = jpeg_quality
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
        pass of the video (each distinct query's text embedding is computed once per call)."""
        inputs = make_inputs(videos, video_formats, self.video_format, self.video_src_type)
        budget = self._keyframes_budget(len(inputs))
        with ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="export") as export_pool:
            args, queries = self._run_args(inputs, progress, export_pool, budget, texts)
            outcomes = run_overlapped(inputs, **args)
            return [self._row(item, out, queries) for item, out in zip(inputs, outcomes)]

    def iter_details(self, videos: Sequence[Any], video_formats: Sequence[str | None] | None = None,
                     progress: ProgressArg = None, *, ordered: bool = True, window: int | None = None,
                     texts: Sequence[str | Sequence[str] | None] | None = None
                     ) -> Iterator[dict] | Iterator[tuple[int, dict]]:
        """The rows of :meth:`details`, yielded one by one as videos finish (their images exported), so that a
        call over any number of videos holds only a few results, keyframe arrays included, at once.

        ``ordered=True``: rows in input order; at most ``window`` videos (default ``max(8, 4 *
        decode_workers)``) are started ahead of the oldest row not yet yielded, so one slow video holds back
        at most that many finished rows. ``ordered=False``: ``(input index, row)`` pairs in the order videos
        finish. Closing the iterator early (``break``) stops the decode workers. ``texts``: as in
        :meth:`details`."""
        inputs = make_inputs(videos, video_formats, self.video_format, self.video_src_type)
        _Queries.check(texts, len(inputs))  # before the generator starts: wrong arguments fail at the call
        return self._iter_rows(inputs, progress, ordered, window, texts)

    def _iter_rows(self, inputs: list[VideoInput], progress: ProgressArg, ordered: bool, window: int | None,
                   texts=None):
        with ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="export") as export_pool:
            args, queries = self._run_args(inputs, progress, export_pool, None, texts)
            run = iter_overlapped(inputs, **args, ordered=ordered, window=window or default_window(self.decode_workers),
                                  pending=lambda value: value.get("export"))
            try:
                for pos, out in run:
                    row = self._row(inputs[pos], out, queries)
                    yield row if ordered else (pos, row)
            finally:
                run.close()

    def _run_args(self, inputs: list[VideoInput], progress: ProgressArg, export_pool: ThreadPoolExecutor,
                  budget: _KeyframesBudget | None, texts=None) -> tuple[dict, _Queries]:
        """The arguments of run_overlapped/iter_overlapped for one call over ``inputs``, and its queries."""
        model = self.model
        queries = self.queries_for(model, inputs, texts)
        pool = export_pool if self.exporting else None
        self.last_run_stats = RunStats()
        return dict(
            describe=lambda it: it.description, prepare=lambda it, emit: self._prepare(model, it, emit),
            embed=FeatureSlabs(model.encode_pixels),
            finish=lambda it, meta, feats: self._finish(it, meta, feats, queries, pool, budget),
            batch_size=self.batch_size, decode_workers=self.decode_workers,
            item_timeout_sec=self.limits.timeout_sec, stats=self.last_run_stats,
            progress=resolve_progress(self.progress if progress is None else progress, len(inputs),
                                      "keyframes")), queries

    def queries_for(self, model: ClipModel, inputs: list[VideoInput], texts) -> _Queries:
        """The queries of one call over ``inputs`` (see :meth:`details`), their text features computed."""
        return _Queries(inputs, texts, self.text, model)

    def _keyframes_budget(self, total: int) -> _KeyframesBudget | None:
        """The size check of a list-returning call (None when it returns no arrays)."""
        return _KeyframesBudget(total, self.keyframes_warn_mb) if self.return_keyframes else None

    @property
    def exporting(self) -> bool:
        return bool(self.output_tos_dir) or self.return_keyframes

    def _row(self, item: VideoInput, out: Outcome, queries: _Queries) -> dict | list[dict]:
        """The detail dict of one video, or its list of dicts (one per query) when it was given a list; waits
        for its export (a failed export fails this video's rows only)."""
        base = {"video_id": item.video_id, "source": item.description, "error": out.error,
                "tos_paths": [], "frame_ids": [], "timestamps": [], "scores": [], "num_candidates": 0,
                "effective_fps": None, "truncated": False, "warnings": []}
        asked = queries.of(item)
        rows = [dict(base, query=q) for q in asked]
        if out.value is not None:
            value = dict(out.value)
            export: Future | None = value.pop("export", None)
            selections = value.pop("selections")
            paths: dict[int, str] = {}
            frames: dict[int, np.ndarray] = {}
            error = None
            if export is not None:
                try:
                    ids, (written, arrays) = export.result()
                    paths = dict(zip(ids, written))
                    frames = dict(zip(ids, arrays))
                except Exception as e:  # noqa: BLE001 - this video fails, the batch goes on
                    error = error_message(item.description, e)
                    log.warning("%s", error)
            for row, sel in zip(rows, selections):
                row.update(value, **sel)
                if export is not None:
                    row["error"] = error
                    if error is None:
                        row["tos_paths"] = [paths[f] for f in sel["frame_ids"]] if paths else []
                        if self.return_keyframes:
                            row["keyframes"] = [frames[f] for f in sel["frame_ids"]]
        return rows if queries.listed(item) else rows[0]

    # -- steps -----------------------------------------------------------------------------------------------
    def _candidates(self, reader: VideoReader) -> tuple[np.ndarray, float]:
        fps = self.fps
        if self.max_candidates and reader.duration * fps > self.max_candidates:
            fps = self.max_candidates / reader.duration
        plan = make_plan("by_fps", target_fps=fps, max_frames=self.max_candidates)
        return select_positions(plan, reader.index.times, reader.duration), fps

    def _prepare(self, model: ClipModel, item: VideoInput, emit) -> dict:
        if item.error:
            raise VideoSourceError(item.error)
        with self._reader(item) as reader:
            positions, fps = self._candidates(reader)
            got = self._emit_candidates(model, reader, reader.fetch(positions), emit)
            return self._candidates_meta(reader, got, fps)

    def _emit_candidates(self, model: ClipModel, reader: VideoReader, frames: Iterable[tuple[int, np.ndarray]],
                         emit) -> list[int]:
        """Preprocess ``(position, rgb)`` pairs in chunks as they are decoded; return the positions."""
        buf = FrameBuffer(reader, _CHUNK_FRAMES, reuse=True)
        for pos, rgb in frames:
            chunk = buf.add(pos, rgb)
            if chunk is not None:
                emit(model.preprocess(chunk.frames))
        chunk = buf.flush()
        if chunk is not None:
            emit(model.preprocess(chunk.frames))
        return buf.indices

    def _candidates_meta(self, reader: VideoReader, got: list[int], fps: float) -> dict:
        return {"frame_ids": got, "times": [float(reader.index.times[p]) for p in got], "effective_fps": fps,
                "truncated": reader.truncated, "warnings": list(reader.warnings), "source": reader.description,
                "frame_bytes": reader.width * reader.height * 3}

    def _finish(self, item: VideoInput, meta: dict, feats: torch.Tensor, queries: _Queries,
                export_pool: ThreadPoolExecutor | None, budget: _KeyframesBudget | None = None) -> dict:
        """AKS per query on the candidates' relevance; the union of the chosen frames is exported once."""
        if not meta["frame_ids"]:
            raise ValueError(f"{meta['source']}: no candidate frames could be decoded")
        # Scored from the float16 embeddings the frame-embedding table stores, so that a new query answered
        # from the table (select_from_embeddings) gives exactly the frames this pass would.
        embeddings = stored_embeddings(feats)
        selections = []
        for query in queries.of(item):
            scores = relevance(embeddings, queries.feature(query))
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
        if export_pool is not None and union:
            out["export"] = export_pool.submit(lambda: (union, self._export(item, union)))
        if budget is not None:
            budget.add(len(union) * meta["frame_bytes"])
        return out

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
        return self._export(item, sorted(set(int(f) for f in frame_ids)))

    def _export(self, item: VideoInput, frame_ids: list[int]) -> tuple[list[str], list[np.ndarray]]:
        """Fetch the selected frames again (a seek each; cheaper than holding every candidate at full size),
        encode and write them."""
        frames: dict[int, np.ndarray] = {}
        with self._reader(item) as reader:
            for pos, rgb in reader.fetch(np.asarray(frame_ids)):
                frames[pos] = rgb
        missing = [f for f in frame_ids if f not in frames]
        if missing:
            raise VideoSourceError(f"{item.description}: selected frames {missing[:5]} could not be decoded again")
        paths = []
        if self.output_tos_dir:
            for fid in frame_ids:
                data = self.encode_image(frames[fid])
                # Content-addressed name: rewriting the same image gives the same path, but other bytes (other
                # jpeg_quality, a re-uploaded video under the same URI) never overwrite an image that an older
                # table still points at, e.g. when a re-materialisation is killed half-way.
                name = f"{fid:06d}-{hashlib.sha1(data).hexdigest()[:10]}{self.img_type}"
                uri = join_uri(self.output_tos_dir, item.video_id, name)
                write_bytes(uri, data, self.storage_options)
                paths.append(uri)
        return paths, [frames[f] for f in frame_ids] if self.return_keyframes else []

    def encode_image(self, rgb: np.ndarray) -> bytes:
        buf = io.BytesIO()
        fmt = IMG_TYPES[self.img_type]
        kwargs = {"quality": self.jpeg_quality} if fmt == "JPEG" else {"optimize": False}
        Image.fromarray(rgb).save(buf, format=fmt, **kwargs)
        return buf.getvalue()


def _check_writable(d: str) -> None:
    """A local output folder that cannot be written fails here, naming it, instead of every video failing
    later; object stores are checked by the first write (no request is made here)."""
    if not d or scheme_of(d) not in ("", "file"):
        return
    probe = strip_file_scheme(d)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)  # the nearest existing folder: where the first image creates its own
    if not os.path.isdir(probe):
        raise ValueError(f"output_tos_dir {d!r} cannot be created: {probe!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"output_tos_dir {d!r} is not writable ({probe!r} does not allow writing)")


def _absolute_dir(d: str) -> str:
    d = os.fspath(d)
    if scheme_of(d) in ("", "file"):
        path = strip_file_scheme(d)
        path = os.path.abspath(os.path.expanduser(path))
        return "file://" + path if d.startswith("file://") else path
    return d.rstrip("/")


class _KeyframesBudget:
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


class _Queries:
    """The questions of one call: per input, its queries (``None`` stands for the operator's ``text``) and
    whether it was given a list (its result is then a list of rows); the text feature of each distinct query is
    computed once, as a float64-ready array."""

    def __init__(self, inputs: list[VideoInput], texts, default: str, model: ClipModel):
        self.check(texts, len(inputs))
        per = [None] * len(inputs) if texts is None else list(texts)
        self._of: dict[int, tuple[str, ...]] = {}
        self._listed: set[int] = set()
        for item, t in zip(inputs, per):
            if isinstance(t, (list, tuple)):
                self._listed.add(id(item))
                self._of[id(item)] = tuple(default if q is None else q for q in t)
            else:
                self._of[id(item)] = (default if t is None else t,)
        distinct = list(dict.fromkeys(q for qs in self._of.values() for q in qs))
        feats = model.encode_text(distinct).float().cpu().numpy() if distinct else []
        self._feature = dict(zip(distinct, feats))

    @staticmethod
    def check(texts, n: int) -> None:
        """Wrong ``texts`` raise ValueError before any work."""
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

    def of(self, item: VideoInput) -> tuple[str, ...]:
        return self._of[id(item)]

    def listed(self, item: VideoInput) -> bool:
        return id(item) in self._listed

    def feature(self, query: str) -> np.ndarray:
        return self._feature[query]
