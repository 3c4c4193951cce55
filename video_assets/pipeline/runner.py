"""The pipeline's steps as plain functions (no Dagster): what the Dagster assets call, and what another
backend (Ray, a script) can call the same way.

- :func:`build_manifest_table`: read a manifest, probe its videos, return the ``video_manifest`` table;
- :func:`score_quality`: run :class:`VideoQualityScore` over the manifest's distinct videos, return the
  ``video_quality_scores`` table;
- :func:`extract_keyframes`: run :class:`VideoAdaptiveKeyframesSampling`, writing images under
  ``{warehouse}/keyframes/{partition_key}/``, return the ``video_keyframes`` table.
- :func:`score_quality_and_extract_keyframes`: both tables from one decode of each video.

A bad video never fails a step: its row has nulls and an ``error``. Progress (videos done / total, videos/s,
ETA) goes to ``progress_callback(done, total, rate)`` every ``progress_every_sec`` seconds and at the end.
The model steps run on a :mod:`video_assets.compute` backend (this process by default, or Ray); the rows and
tables are built here, the same way for every backend.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import datetime, timezone
from functools import partial

import pandas as pd
import pyarrow as pa

from video_assets.compute import ComputeBackend, LocalBackend
from video_assets.keyframes.embeddings import EMBEDDINGS_COLUMN, embeddings_array
from video_assets.pipeline.manifests import CORE_COLUMNS, Manifest, manifest_identity, read_manifest, unique_rows
from video_assets.pipeline.probe import PROBE_FIELDS, probe_videos
from video_assets.pipeline.settings import KeyframeSettings, ManifestSettings, ModelSettings, QualitySettings
from video_assets.pipeline.tables import (
    KEYFRAMES_SCHEMA,
    MANIFEST_SCHEMA,
    QUALITY_SCHEMA,
    USER_COLUMN,
    build_table,
    embeddings_schema,
    keyframes_dir,
    user_columns_of,
    user_json,
)
from video_assets.progress import Progress, ProgressCallback
from video_assets.storage import filesystem_for
from video_assets.storage.policy import SourcePolicy
from video_assets.video.limits import ReadLimits

log = logging.getLogger(__name__)

def _progress(total: int, label: str, callback: ProgressCallback | None, every_sec: float) -> Progress:
    return Progress(total, label, every_sec=every_sec, callback=callback)


def build_manifest_table(manifest_uri: str, partition_key: str,
                         settings: ManifestSettings = ManifestSettings(), *, data: bytes | None = None,
                         storage_options: dict | None = None,
                         progress_callback: ProgressCallback | None = None,
                         progress_every_sec: float = 10.0, source_policy: SourcePolicy | None = None,
                         limits: ReadLimits | None = None) -> tuple[pa.Table, Manifest]:
    """The normalised manifest (every row, duplicates marked) with probed metadata; raises ManifestError for a
    malformed manifest. ``source_policy``/``limits`` apply to the probes (a row the policy rejects is
    ``readable=False`` with the reason, and is never opened)."""
    manifest = read_manifest(manifest_uri, data=data, storage_options=storage_options)
    frame = manifest.frame
    uniq = manifest.unique
    probes: dict[str, dict] = {}
    if settings.probe:
        rows = probe_videos(list(uniq["uri"]), settings.probe_workers, storage_options,
                            _progress(len(uniq), "probe", progress_callback, progress_every_sec),
                            policy=source_policy, limits=limits)
        probes = dict(zip(uniq["uri"], rows))
    out = []
    ident = manifest_identity(manifest.uri)
    for rec in frame[list(CORE_COLUMNS)].to_dict("records"):
        p = probes.get(rec["uri"], {})
        out.append({**rec, **{k: p.get(k) for k in PROBE_FIELDS}, "partition_key": partition_key,
                    "manifest_uri": ident, "manifest_sha256": manifest.sha256,
                    "readable": p.get("readable") if settings.probe else None})
        if rec["error"]:  # a malformed manifest line: kept with its reason, never probed or processed
            out[-1].update(error=rec["error"], readable=False)
    user = user_json(frame[manifest.user_columns], manifest.user_names)
    return build_table(MANIFEST_SCHEMA, out, user), manifest


def _distinct(manifest_df: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """The distinct videos of a manifest table and their ``user`` values (JSON text): a ``video_manifest``
    table's ``user`` column as it is, or a plain frame's other columns (``uri``, ``video_id`` aside)."""
    if "duplicate_of" in manifest_df.columns:
        uniq = unique_rows(manifest_df)
    else:
        uniq = manifest_df.reset_index(drop=True)
    if USER_COLUMN in uniq.columns:
        return uniq, [v if isinstance(v, str) else None for v in uniq[USER_COLUMN]]
    return uniq, user_json(uniq[user_columns_of(uniq, MANIFEST_SCHEMA)])


def _access_kwargs(source_policy: SourcePolicy | None, limits: ReadLimits | None) -> dict:
    """Where sources may point and what one video may cost, for the operators (None: their defaults)."""
    return dict(source_policy=source_policy, limits=limits)


def _quality_kwargs(settings: QualitySettings, models: ModelSettings, storage_options: dict | None) -> dict:
    return dict(model_path=models.model_path, clip_model_name=models.quality_model, device=models.device,
                dtype=models.dtype, batch_size=models.quality_batch_size, decode_workers=models.decode_workers,
                decode_processes=models.decode_processes,
                storage_options=storage_options, **settings.operator_kwargs())


def _keyframes_kwargs(settings: KeyframeSettings, warehouse: str, partition_key: str, models: ModelSettings,
                      storage_options: dict | None) -> dict:
    kwargs = settings.operator_kwargs()
    if models.dtype:
        kwargs["dtype"] = models.dtype
    return dict(model_path=models.model_path, clip_model_name=models.keyframes_model, device=models.device,
                batch_size=models.keyframes_batch_size, decode_workers=models.decode_workers,
                decode_processes=models.decode_processes,
                storage_options=storage_options, output_tos_dir=keyframes_dir(warehouse, partition_key),
                return_keyframes=False, **kwargs)


def _quality_table(uniq: pd.DataFrame, user: list, details: list[dict], settings: QualitySettings,
                   op, partition_key: str) -> pa.Table:
    sample = json.dumps(settings.sample_settings(), sort_keys=True)
    fp = settings.fingerprint(op.clip_model_name)
    rows = []
    for (vid, uri), d in zip(zip(uniq["video_id"], uniq["uri"]), details):
        ok = d["error"] is None
        rows.append({
            "partition_key": partition_key, "video_id": vid, "uri": uri, "quality_score": d["score"],
            "frame_scores": d["frame_scores"] if ok else None,
            "frame_indices": d["frame_indices"] if ok else None,
            "timestamps": d["timestamps"] if ok else None,
            "truncated": d["truncated"], "warnings": d["warnings"], "model": op.clip_model_name,
            "device": d.get("device") or op.device,  # where the model ran (a Ray worker's GPU, say)
            "prompt": op.prompt_labels[0], "reduce_mode": settings.reduce_mode,
            "sample_mode": settings.sample_mode, "sample_settings": sample, "settings_hash": fp,
            "error": d["error"], "scored_at": datetime.fromisoformat(d["scored_at"]),
        })
    return build_table(QUALITY_SCHEMA, rows, user)


def _video_queries(manifest_df: pd.DataFrame, uniq: pd.DataFrame, user: list, default_text: str
                   ) -> tuple[list[list[str]], list[list[str | None]]]:
    """Per distinct video: its distinct queries, over every manifest row that names it, in row order (a row
    without one asks the step's ``text``), and the user values of the first row asking each."""
    if "query" not in manifest_df.columns:
        return [[default_text] for _ in range(len(uniq))], [[u] for u in user]
    first_user: dict[tuple[str, str], str | None] = {}
    asked: dict[str, list[str]] = {}
    users = manifest_df[USER_COLUMN] if USER_COLUMN in manifest_df.columns else [None] * len(manifest_df)
    for uri, q, u in zip(manifest_df["uri"], manifest_df["query"], users):
        q = q if isinstance(q, str) and q.strip() else default_text
        if (uri, q) not in first_user:
            first_user[(uri, q)] = u if isinstance(u, str) else None
            asked.setdefault(uri, []).append(q)
    queries = [asked.get(uri, [default_text]) for uri in uniq["uri"]]
    users_of = [[first_user.get((uri, q), u) for q in qs] for uri, qs, u in zip(uniq["uri"], queries, user)]
    return queries, users_of


def _per_query(detail: dict | list[dict], queries: list[str]) -> list[dict]:
    """A video's keyframe rows, one per query: a failed video may come back as one row for all of them."""
    if isinstance(detail, list):
        return detail
    return [dict(detail, query=q) for q in queries]


def _keyframes_table(uniq: pd.DataFrame, user: list, details: list, settings: KeyframeSettings,
                     op, partition_key: str, queries: list[list[str]]) -> pa.Table:
    """One row per (distinct video, query); ``user``: per video, the user values of each query's row."""
    settings_json = json.dumps(asdict(settings), sort_keys=True)
    fp = settings.fingerprint(op.clip_model_name)
    now = datetime.now(timezone.utc)
    rows, row_user = [], []
    for (vid, uri), per_video, qs, users in zip(zip(uniq["video_id"], uniq["uri"]), details, queries, user):
        for d, u in zip(_per_query(per_video, qs), users):
            rows.append(_keyframes_row(partition_key, vid, uri, d, settings, settings_json, fp, op, now))
            row_user.append(u)
    return build_table(KEYFRAMES_SCHEMA, rows, row_user)


def _keyframes_row(partition_key: str, vid: str, uri: str, d: dict, settings: KeyframeSettings,
                   settings_json: str, fp: str, op, now: datetime) -> dict:
    ok = d["error"] is None
    return {
        "partition_key": partition_key, "video_id": vid, "uri": uri,
        "keyframe_paths": d["tos_paths"] if ok else None, "frame_ids": d["frame_ids"] if ok else None,
        "timestamps": d["timestamps"] if ok else None, "scores": d["scores"] if ok else None,
        "num_keyframes": len(d["frame_ids"]) if ok else None,
        "num_candidates": d["num_candidates"] if ok else None, "effective_fps": d["effective_fps"],
        "truncated": d["truncated"], "warnings": d["warnings"], "text": settings.text,
        "query": d.get("query", settings.text),
        "model": op.clip_model_name, "device": d.get("device") or op.device, "settings": settings_json,
        "settings_hash": fp,
        "error": d["error"], "extracted_at": now,
    }


def score_quality(manifest_df: pd.DataFrame, settings: QualitySettings = QualitySettings(),
                  models: ModelSettings = ModelSettings(), *, partition_key: str,
                  storage_options: dict | None = None, progress_callback: ProgressCallback | None = None,
                  progress_every_sec: float = 10.0, backend: ComputeBackend | None = None,
                  source_policy: SourcePolicy | None = None, limits: ReadLimits | None = None) -> pa.Table:
    """One row per distinct video of ``manifest_df`` (a ``video_manifest`` table or a frame with ``uri``,
    ``video_id``): CLIP-IQA score, per-frame scores, frame indices, timestamps, settings, error."""
    from video_assets.operators.quality import VideoQualityScore

    uniq, user = _distinct(manifest_df)
    factory = partial(VideoQualityScore, **_quality_kwargs(settings, models, storage_options),
                      **_access_kwargs(source_policy, limits))
    op = factory()  # validates the settings here, before any work; the model loads lazily where it runs
    progress = _progress(len(uniq), "quality", progress_callback, progress_every_sec)
    details = (backend or LocalBackend()).map_details(factory, list(uniq["uri"]), progress)
    return _quality_table(uniq, user, details, settings, op, partition_key)


def extract_keyframes(manifest_df: pd.DataFrame, settings: KeyframeSettings = KeyframeSettings(),
                      warehouse: str = "data/warehouse", partition_key: str = "default",
                      models: ModelSettings = ModelSettings(), **kwargs) -> pa.Table:
    """One row per (distinct video, query): keyframe image paths (under
    ``{warehouse}/keyframes/{partition_key}/``), frame ids, timestamps, scores, the query, settings, error. A
    manifest's ``query`` column gives each row's question (the step's ``text`` when it has none); every
    question about one video is answered from one decode of it. Keyword arguments as for
    :func:`extract_keyframes_and_embeddings`."""
    return extract_keyframes_and_embeddings(manifest_df, settings, warehouse, partition_key, models,
                                            embeddings=False, **kwargs)[0]


def extract_keyframes_and_embeddings(
        manifest_df: pd.DataFrame, settings: KeyframeSettings = KeyframeSettings(),
        warehouse: str = "data/warehouse", partition_key: str = "default", models: ModelSettings = ModelSettings(),
        *, keyframes: bool = True, embeddings: bool = True, storage_options: dict | None = None,
        progress_callback: ProgressCallback | None = None, progress_every_sec: float = 10.0,
        backend: ComputeBackend | None = None, source_policy: SourcePolicy | None = None,
        limits: ReadLimits | None = None) -> tuple[pa.Table | None, pa.Table | None]:
    """The ``video_keyframes`` table (when ``keyframes``) and the ``video_frame_embeddings`` table (when
    ``embeddings``) from one keyframes pass. Without ``keyframes`` no image is exported: only the candidates
    are decoded."""
    from video_assets.operators.keyframes import VideoAdaptiveKeyframesSampling

    uniq, user = _distinct(manifest_df)
    queries, users = _video_queries(manifest_df, uniq, user, settings.text)
    kwargs = _keyframes_kwargs(settings, warehouse, partition_key, models, storage_options)
    if not keyframes:
        kwargs["output_tos_dir"] = ""
    factory = partial(VideoAdaptiveKeyframesSampling, **kwargs, return_embeddings=embeddings,
                      **_access_kwargs(source_policy, limits))
    op = factory()  # validates the settings here, before any work; the model loads lazily where it runs
    progress = _progress(len(uniq), "keyframes", progress_callback, progress_every_sec)
    details = (backend or LocalBackend()).map_details(factory, list(uniq["uri"]), progress, texts=queries)
    return (_keyframes_table(uniq, users, details, settings, op, partition_key, queries) if keyframes else None,
            _embeddings_table(uniq, user, details, settings, op, partition_key) if embeddings else None)


def _embeddings_table(uniq: pd.DataFrame, user: list, details: list, settings: KeyframeSettings, op,
                      partition_key: str) -> pa.Table:
    """One row per distinct video: its candidates and their stored (float16) embeddings."""
    firsts = [d[0] if isinstance(d, list) and d else d for d in details]  # every query's row has them
    dim = next((d["embeddings"].shape[1] for d in firsts
                if isinstance(d, dict) and d.get("error") is None and "embeddings" in d), None)
    if dim is None:  # no video gave embeddings: the model says its size (loaded here only in that case)
        dim = int(op.model.embed_dim)
    fp = settings.fingerprint(op.clip_model_name)
    now = datetime.now(timezone.utc)
    rows, arrays = [], []
    for (vid, uri), d in zip(zip(uniq["video_id"], uniq["uri"]), firsts):
        ok = isinstance(d, dict) and d.get("error") is None and "embeddings" in d
        arrays.append(d["embeddings"] if ok else None)
        rows.append({"partition_key": partition_key, "video_id": vid, "uri": uri,
                     "frame_ids": d["candidate_frame_ids"] if ok else None,
                     "timestamps": d["candidate_timestamps"] if ok else None, "model": op.clip_model_name,
                     "embed_dim": dim, "effective_fps": d.get("effective_fps"),
                     "device": d.get("device") or op.device, "settings_hash": fp,
                     "error": d.get("error") if isinstance(d, dict) else "no result", "extracted_at": now})
    schema = embeddings_schema(dim)
    table = build_table(schema.remove(schema.get_field_index(EMBEDDINGS_COLUMN)), rows, user)
    at = schema.get_field_index(EMBEDDINGS_COLUMN)
    return table.add_column(at, schema.field(at), embeddings_array(arrays, dim)).replace_schema_metadata(
        schema.metadata)


def shared_decode_problem(quality_settings: QualitySettings, keyframe_settings: KeyframeSettings,
                          models: ModelSettings = ModelSettings(), *,
                          storage_options: dict | None = None) -> str | None:
    """Why :func:`score_quality_and_extract_keyframes` would decode twice with these settings, or None when
    it decodes each video once. Raises ValueError for invalid settings."""
    from video_assets.operators.combined import shared_decode_mismatch
    from video_assets.operators.keyframes import VideoAdaptiveKeyframesSampling
    from video_assets.operators.quality import VideoQualityScore

    return shared_decode_mismatch(
        VideoQualityScore(**_quality_kwargs(quality_settings, models, storage_options)),
        VideoAdaptiveKeyframesSampling(**_keyframes_kwargs(keyframe_settings, "unused", "unused", models,
                                                           storage_options)))


def score_quality_and_extract_keyframes(
        manifest_df: pd.DataFrame, quality_settings: QualitySettings, keyframe_settings: KeyframeSettings,
        warehouse: str, partition_key: str, models: ModelSettings = ModelSettings(),
        **kwargs) -> tuple[pa.Table, pa.Table]:
    """:func:`score_quality` and :func:`extract_keyframes` in one pass: each video is decoded once (the union of
    both operators' frames) and feeds both models. Same tables as the two functions. When the settings read
    videos differently (see :func:`shared_decode_problem`) it runs the two steps one after the other."""
    q, k, _ = quality_keyframes_and_embeddings(manifest_df, quality_settings, keyframe_settings, warehouse,
                                               partition_key, models, embeddings=False, **kwargs)
    return q, k


def quality_keyframes_and_embeddings(
        manifest_df: pd.DataFrame, quality_settings: QualitySettings, keyframe_settings: KeyframeSettings,
        warehouse: str, partition_key: str, models: ModelSettings = ModelSettings(), *, keyframes: bool = True,
        embeddings: bool = True, storage_options: dict | None = None,
        progress_callback: ProgressCallback | None = None, progress_every_sec: float = 10.0,
        backend: ComputeBackend | None = None, source_policy: SourcePolicy | None = None,
        limits: ReadLimits | None = None) -> tuple[pa.Table, pa.Table | None, pa.Table | None]:
    """The quality table, and the keyframes (``keyframes``) and frame-embedding (``embeddings``) tables of the
    keyframes pass, from one decode of each video (see :func:`score_quality_and_extract_keyframes`)."""
    from video_assets.operators.combined import QualityAndKeyframes

    q_kwargs = {**_quality_kwargs(quality_settings, models, storage_options), **_access_kwargs(source_policy, limits)}
    k_kwargs = {**_keyframes_kwargs(keyframe_settings, warehouse, partition_key, models, storage_options),
                **_access_kwargs(source_policy, limits), "return_embeddings": embeddings}
    if not keyframes:
        k_kwargs["output_tos_dir"] = ""
    why = shared_decode_problem(quality_settings, keyframe_settings, models, storage_options=storage_options)
    if why:
        log.info("quality and keyframes decode separately: %s", why)
        common = dict(storage_options=storage_options, progress_callback=progress_callback,
                      progress_every_sec=progress_every_sec, backend=backend, source_policy=source_policy,
                      limits=limits)
        return (score_quality(manifest_df, quality_settings, models, partition_key=partition_key, **common),
                *extract_keyframes_and_embeddings(manifest_df, keyframe_settings, warehouse, partition_key, models,
                                                  keyframes=keyframes, embeddings=embeddings, **common))
    uniq, user = _distinct(manifest_df)
    queries, users = _video_queries(manifest_df, uniq, user, keyframe_settings.text)
    factory = partial(QualityAndKeyframes, quality=q_kwargs, keyframes=k_kwargs)
    op = factory()  # validates both settings before any work; the models load lazily where they run
    progress = _progress(len(uniq), "quality+keyframes", progress_callback, progress_every_sec)
    pairs = (backend or LocalBackend()).map_details(factory, list(uniq["uri"]), progress, texts=queries)
    k_details = [p[1] for p in pairs]
    return (_quality_table(uniq, user, [p[0] for p in pairs], quality_settings, op.quality, partition_key),
            _keyframes_table(uniq, users, k_details, keyframe_settings, op.keyframes, partition_key, queries)
            if keyframes else None,
            _embeddings_table(uniq, user, k_details, keyframe_settings, op.keyframes, partition_key)
            if embeddings else None)


def remove_orphan_keyframes(warehouse: str, partition_key: str, keep: set[str],
                            storage_options: dict | None = None) -> int:
    """Delete images under the partition's keyframe folder that the current table does not list (left by an
    earlier materialisation with other settings or videos). Call after the new table is written."""
    folder = keyframes_dir(warehouse, partition_key)
    fs, root = filesystem_for(folder, storage_options)
    try:
        found = fs.find(root, withdirs=False)
    except FileNotFoundError:
        return 0
    keep_paths = {filesystem_for(p, storage_options)[1] for p in keep}
    stale = [p for p in found if p not in keep_paths]
    for p in stale:
        try:
            fs.rm_file(p)
        except FileNotFoundError:
            pass
    return len(stale)
