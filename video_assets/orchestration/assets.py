"""The four assets, one Parquet file per manifest partition. Each asset resolves its configuration, calls
:mod:`video_assets.pipeline.runner`, writes its table and reports what a person wants to see in the UI."""

import functools
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict

import dagster as dg
import pandas as pd
import pyarrow as pa
from pydantic import Field

from video_assets.errors import ModelLoadError
from video_assets.orchestration import checks
from video_assets.orchestration.partitions import video_manifests
from video_assets.orchestration.resources import ClipModelResource, ComputeResource, WarehouseResource
from video_assets.pipeline import report
from video_assets.pipeline.manifests import ManifestError
from video_assets.pipeline.runner import (
    build_manifest_table,
    extract_keyframes_and_embeddings,
    quality_keyframes_and_embeddings,
    remove_orphan_keyframes,
    score_quality,
    shared_decode_problem,
)
from video_assets.pipeline.settings import KeyframeSettings, ManifestSettings, ModelSettings, QualitySettings
from video_assets.pipeline.tables import (
    EMBEDDINGS_ASSET,
    KEYFRAMES_ASSET,
    MANIFEST_ASSET,
    QUALITY_ASSET,
    read_frame,
    table_exists,
    write_table,
)
from video_assets.storage import describe_uri
from video_assets.storage.fs import is_remote_uri

log = logging.getLogger(__name__)

PROGRESS_ENV = "VIDEO_ASSETS_PROGRESS_EVERY_SEC"
GROUP = "video"

# Transient storage/network errors are retried; configuration, manifest and model errors fail at once
# (they are raised as dg.Failure(allow_retries=False)).
STORAGE_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL,
                               jitter=dg.Jitter.PLUS_MINUS)


# ----------------------------------------------------------------------------------------------------------
# run configuration (Launchpad): mirrors the operators' parameters


class ManifestConfig(dg.Config):
    probe: bool = Field(default=True, description="Open every video and record duration, fps, size, codec "
                                                  "(a packet scan, no decoding).")
    probe_workers: int | None = Field(default=None, description="Parallel probes; empty: min(4, CPUs).")

    def to_settings(self) -> ManifestSettings:
        return ManifestSettings(probe=self.probe, probe_workers=self.probe_workers)


_Q = QualitySettings()


class QualityConfig(dg.Config):
    """VideoQualityScore (CLIP-IQA) parameters."""

    prompt: str = Field(default=_Q.prompt, description=(
        "A named antonym pair (quality, sharpness, brightness, noisiness, contrast, colorfullness, ...) or "
        "'positive text|negative text'."))
    sample_mode: str = Field(default=_Q.sample_mode, description=(
        "by_count_uniform | by_interval_time | by_fps | by_interval_frames | by_timestamps"))
    start_time_sec: float = Field(default=_Q.start_time_sec, description="Window start (seconds).")
    end_time_sec: float | None = Field(default=_Q.end_time_sec, description="Window end; empty: the end.")
    count_k: int | None = Field(default=_Q.count_k, description="by_count_uniform: frames per video.")
    interval_sec: float | None = Field(default=_Q.interval_sec, description="by_interval_time: seconds.")
    interval_frames: int | None = Field(default=_Q.interval_frames, description="by_interval_frames: n.")
    target_fps: float | None = Field(default=_Q.target_fps, description="by_fps: frames per second.")
    timestamps_sec: list[float] | None = Field(default=None, description="by_timestamps: times (s).")
    max_frames: int | None = Field(default=_Q.max_frames, description="Cap on sampled frames per video.")
    reduce_mode: str = Field(default=_Q.reduce_mode, description="avg | max | min | median over frames.")
    default_video_format: str = Field(default=_Q.default_video_format, description="Container hint.")

    def to_settings(self) -> QualitySettings:
        d = self.model_dump()
        d["timestamps_sec"] = tuple(d["timestamps_sec"]) if d["timestamps_sec"] is not None else None
        return QualitySettings(**d)


_K = KeyframeSettings()


class KeyframesConfig(dg.Config):
    """VideoAdaptiveKeyframesSampling (AKS) parameters."""

    text: str = Field(default=_K.text, description="The query; empty: spread keyframes over the video.")
    fps: float = Field(default=_K.fps, description="Candidate sampling rate (frames per second).")
    max_num_frames: int = Field(default=_K.max_num_frames, description="Keyframes per video (AKS budget M).")
    t1: float = Field(default=_K.t1, description="AKS split threshold t1.")
    t2: float = Field(default=_K.t2, description="AKS split threshold t2.")
    all_depth: int = Field(default=_K.all_depth, description="AKS recursion depth.")
    budget: str = Field(default=_K.budget, description="'exact': always min(max_num_frames, candidates).")
    max_candidates: int | None = Field(default=_K.max_candidates, description="Cap on candidates (long "
                                                                                 "videos get a lower fps).")
    img_type: str = Field(default=_K.img_type, description=".jpg or .png")
    jpeg_quality: int = Field(default=_K.jpeg_quality, description="JPEG quality of the exported keyframes.")
    video_src_type: str = Field(default=_K.video_src_type, description="video_url (manifests hold URIs).")
    video_format: str = Field(default=_K.video_format, description="Container hint.")

    def to_settings(self) -> KeyframeSettings:
        return KeyframeSettings(**self.model_dump())


class QualityKeyframesConfig(dg.Config):
    """Run config of the step that materialises video_quality_scores and/or video_keyframes."""

    quality: QualityConfig = Field(default_factory=QualityConfig,
                                   description="video_quality_scores: VideoQualityScore (CLIP-IQA) parameters.")
    keyframes: KeyframesConfig = Field(default_factory=KeyframesConfig,
                                       description="video_keyframes: VideoAdaptiveKeyframesSampling (AKS) "
                                                   "parameters.")


# code_version: default settings + default model (from the environment) + the pipeline version; changing
# any of them marks materialised partitions stale in the UI and for the refresh schedule.
_DEFAULT_MODELS = ModelSettings()
MANIFEST_CODE_VERSION = ManifestSettings().fingerprint()
QUALITY_CODE_VERSION = QualitySettings().fingerprint(_DEFAULT_MODELS.quality_model)
KEYFRAMES_CODE_VERSION = KeyframeSettings().fingerprint(_DEFAULT_MODELS.keyframes_model)
# the embeddings are the keyframes pass's candidates: the same settings and model decide them
EMBEDDINGS_CODE_VERSION = KEYFRAMES_CODE_VERSION


# ----------------------------------------------------------------------------------------------------------
# helpers


@contextmanager
def fail_fast() -> Iterator[None]:
    """Errors that a retry cannot fix become a non-retriable Failure with the original message."""
    try:
        yield
    except (ManifestError, ModelLoadError) as e:
        raise dg.Failure(description=str(e), allow_retries=False) from e
    except (ValueError, TypeError) as e:
        raise dg.Failure(description=f"{type(e).__name__}: {e}", allow_retries=False) from e


def _progress_logger(context: dg.AssetExecutionContext, label: str):
    def cb(done: int, total: int, rate: float) -> None:
        eta = (total - done) / rate if rate > 0 else float("inf")
        context.log.info(f"{label}: {done}/{total} videos, {rate:.2f} videos/s, ETA {eta:.0f}s")
    return cb


def _progress_every() -> float:
    try:
        return float(os.environ.get(PROGRESS_ENV, "10"))
    except ValueError:
        return 10.0


def _path_value(uri: str) -> dg.MetadataValue:
    return dg.MetadataValue.url(uri) if is_remote_uri(uri) else dg.MetadataValue.path(uri)


def _column_schema(table: pa.Table) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in table.schema])


def _preview(frame: pd.DataFrame, columns: list[str], limit: int = 10) -> dg.MetadataValue:
    """The first rows as a table the UI renders inline."""
    records = report.preview_records(frame, columns, limit)
    cols = [c for c in columns if c in frame.columns]

    def kind(c: str) -> str:
        vals = [r[c] for r in records if r[c] is not None]
        if vals and all(isinstance(v, bool) for v in vals):
            return "bool"
        if vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            return "int"
        if vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            return "float"
        return "string"

    return dg.MetadataValue.table(
        records=[dg.TableRecord(r) for r in records],
        schema=dg.TableSchema(columns=[dg.TableColumn(name=c, type=kind(c)) for c in cols]))


def _common_metadata(table: pa.Table, frame: pd.DataFrame, uri: str, elapsed: float, failed: int,
                     preview_cols: list[str]) -> dict:
    rows = table.num_rows
    cause = report.common_cause(frame)
    return {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/column_schema": _column_schema(table),
        "failed": dg.MetadataValue.int(failed),
        "failed_share": dg.MetadataValue.float(round(failed / rows, 4) if rows else 0.0),
        "top_errors": dg.MetadataValue.md(report.errors_markdown(frame)),
        "preview": _preview(frame, preview_cols),
        "path": _path_value(uri),
        "elapsed_s": dg.MetadataValue.float(round(elapsed, 3)),
        "throughput_videos_per_s": dg.MetadataValue.float(round(rows / elapsed, 3) if elapsed > 0 else 0.0),
        **({"common_cause": dg.MetadataValue.text(cause)} if cause else {}),
    }


def _log_common_cause(context: dg.AssetExecutionContext, asset: str, md: dict) -> None:
    """The one line that says why most videos failed, and the fix, in the run log too."""
    if "common_cause" in md:
        context.log.warning(f"{asset}: {md['common_cause'].value}")


def _read_manifest_table(warehouse: WarehouseResource, key: str) -> pd.DataFrame:
    uri = warehouse.table_uri(MANIFEST_ASSET, key)
    if not table_exists(uri):
        raise dg.Failure(description=f"{describe_uri(uri)} does not exist: materialise video_manifest for "
                                     f"partition {key!r} first", allow_retries=False)
    return read_frame(uri)


def _read_if_exists(uri: str) -> pd.DataFrame | None:
    return read_frame(uri) if table_exists(uri) else None


# ----------------------------------------------------------------------------------------------------------
# assets


@dg.asset(
    partitions_def=video_manifests, group_name=GROUP, code_version=MANIFEST_CODE_VERSION,
    retry_policy=STORAGE_RETRY, kinds={"parquet"},
    description="The manifest, normalised (resolved URIs, video ids, duplicates marked, user columns kept), "
                "with probed metadata: duration, fps, width, height, frames, codec, size, readable, error.",
)
def video_manifest(context: dg.AssetExecutionContext, config: ManifestConfig,
                   warehouse: WarehouseResource) -> dg.MaterializeResult:
    key = context.partition_key
    t0 = time.monotonic()
    with fail_fast():
        manifest_uri = warehouse.registry().manifest_uri_for(key, warehouse.manifests_uri)
        context.log.info(f"partition {key!r}: manifest {describe_uri(manifest_uri)}")
        table, manifest = build_manifest_table(manifest_uri, key, config.to_settings(),
                                               progress_callback=_progress_logger(context, "probe"),
                                               progress_every_sec=_progress_every(),
                                               source_policy=warehouse.source_policy(),
                                               limits=warehouse.read_limits())
    for w in manifest.warnings:
        context.log.warning(f"{describe_uri(manifest_uri)}: {w}")
    uri = warehouse.table_uri(MANIFEST_ASSET, key)
    size = write_table(table, uri)
    elapsed = time.monotonic() - t0
    frame = table.to_pandas()
    uniq = frame[frame["duplicate_of"].isna()]
    failed = int((uniq["readable"] == False).sum()) if config.probe else 0  # noqa: E712
    md = _common_metadata(table, uniq, uri, elapsed, failed,
                          ["row", "video_id", "source_uri", "duration_sec", "fps", "width", "height", "codec",
                           "size_bytes", "readable", "error", "user"])
    md["failed_share"] = dg.MetadataValue.float(round(failed / len(uniq), 4) if len(uniq) else 0.0)
    md.update({
        "videos": dg.MetadataValue.int(len(uniq)),
        "duplicates": dg.MetadataValue.int(manifest.num_duplicates),
        "manifest": _path_value(manifest.uri),
        "manifest_format": manifest.format,
        "manifest_sha256": manifest.sha256,
        "user_columns": dg.MetadataValue.json(manifest.user_names),  # the keys of the JSON column `user`
        "total_duration_s": dg.MetadataValue.float(round(float(uniq["duration_sec"].fillna(0).sum()), 3)),
        "bytes_written": dg.MetadataValue.int(size),
    })
    if manifest.warnings:
        md["warnings"] = dg.MetadataValue.md("\n".join(f"- {w}" for w in manifest.warnings))
    _log_common_cause(context, MANIFEST_ASSET, md)
    return dg.MaterializeResult(metadata=md)


QUALITY_KEY, KEYFRAMES_KEY = checks.QUALITY_KEY, checks.KEYFRAMES_KEY
EMBEDDINGS_KEY = dg.AssetKey(EMBEDDINGS_ASSET)
MODEL_STEP = "video_quality_and_keyframes"


def _quality_metadata(table: pa.Table, frame: pd.DataFrame, uri: str, elapsed: float,
                      settings: QualitySettings) -> dict:
    scores = frame["quality_score"].dropna()
    failed = int(frame["quality_score"].isna().sum())
    md = _common_metadata(table, frame, uri, elapsed, failed,
                          ["video_id", "quality_score", "frame_indices", "truncated", "error"])
    md.update({
        "score_histogram": dg.MetadataValue.md(report.inline_histogram_markdown(list(scores))),
        "score_histogram_large": dg.MetadataValue.md(report.markdown_image(
            report.histogram_png(list(scores), title="quality_score"), "quality score histogram")),
        "model": str(frame["model"].iloc[0]) if len(frame) else "",
        "device": str(frame["device"].iloc[0]) if len(frame) else "",
        "settings": dg.MetadataValue.json(json.loads(json.dumps(asdict(settings), default=list))),
        "settings_hash": str(frame["settings_hash"].iloc[0]) if len(frame) else "",
    })
    if len(scores):
        md.update({f"score_{k}": dg.MetadataValue.float(round(float(getattr(scores, k)()), 4))
                   for k in ("mean", "median", "min", "max")})
    return md


def _keyframes_metadata(context: dg.AssetExecutionContext, warehouse: WarehouseResource, table: pa.Table,
                        frame: pd.DataFrame, uri: str, elapsed: float, settings: KeyframeSettings) -> dict:
    key = context.partition_key
    keep = {p for paths in frame["keyframe_paths"].dropna() for p in paths}
    removed = remove_orphan_keyframes(warehouse.warehouse_uri, key, keep)
    if removed:
        context.log.info(f"removed {removed} keyframe image(s) of an earlier materialisation")
    failed = int(frame["error"].notna().sum())
    md = _common_metadata(table, frame, uri, elapsed, failed,
                          ["video_id", "num_keyframes", "num_candidates", "timestamps", "error"])
    ok = frame[frame["error"].isna()]
    sheet = report.contact_sheet_png(
        [(vid, list(paths), list(ts)) for vid, paths, ts in zip(ok["video_id"], ok["keyframe_paths"],
                                                                ok["timestamps"]) if paths is not None])
    md.update({
        "contact_sheet": dg.MetadataValue.md(report.markdown_image(sheet, "keyframes") if sheet
                                             else "no keyframes to show"),
        "keyframes_total": dg.MetadataValue.int(int(frame["num_keyframes"].fillna(0).sum())),
        "keyframes_dir": _path_value(warehouse.keyframes_dir(key)),
        "model": str(frame["model"].iloc[0]) if len(frame) else "",
        "device": str(frame["device"].iloc[0]) if len(frame) else "",
        "settings": dg.MetadataValue.json(asdict(settings)),
        "settings_hash": str(frame["settings_hash"].iloc[0]) if len(frame) else "",
    })
    return md


@dg.multi_asset(
    name=MODEL_STEP, partitions_def=video_manifests, group_name=GROUP, pool="gpu", retry_policy=STORAGE_RETRY,
    can_subset=True, check_specs=checks.CHECK_SPECS,
    description="The GPU step: video_quality_scores, video_keyframes and/or video_frame_embeddings, and their "
                "asset checks (evaluated on the tables in memory). With quality and a keyframes-pass asset "
                "selected each video is decoded once (the union of both sampling plans) and feeds both models. "
                "With only checks selected it evaluates them on the stored tables.",
    specs=[
        dg.AssetSpec(QUALITY_KEY, deps=[video_manifest], code_version=QUALITY_CODE_VERSION,
                     kinds={"pytorch", "parquet"},
                     description="CLIP-IQA quality score per video (VideoQualityScore): score in [0, 1] (null when "
                                 "the video cannot be read), per-frame scores, frame indices, timestamps, "
                                 "settings, error."),
        dg.AssetSpec(KEYFRAMES_KEY, deps=[video_manifest], code_version=KEYFRAMES_CODE_VERSION,
                     kinds={"pytorch", "parquet"},
                     description="Query-relevant keyframes per video (VideoAdaptiveKeyframesSampling, AKS with "
                                 "CLIP): image paths under {warehouse}/keyframes/{partition}/, frame ids, "
                                 "timestamps, scores, settings, error. One row per (video, query): the "
                                 "manifest's query column, else the step's text."),
        dg.AssetSpec(EMBEDDINGS_KEY, deps=[video_manifest], code_version=EMBEDDINGS_CODE_VERSION,
                     kinds={"pytorch", "parquet"},
                     description="The keyframes pass's candidate frames per video with their unit-norm CLIP "
                                 "image embeddings (float16): new questions are answered from it without "
                                 "decoding (video_assets.keyframes.select_from_embeddings, "
                                 "python -m video_assets.search)."),
    ],
)
def video_quality_and_keyframes(context: dg.AssetExecutionContext, config: QualityKeyframesConfig,
                                clip: ClipModelResource, warehouse: WarehouseResource,
                                compute: ComputeResource
                                ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    key = context.partition_key
    selected = context.selected_asset_keys
    want_q, want_k, want_e = QUALITY_KEY in selected, KEYFRAMES_KEY in selected, EMBEDDINGS_KEY in selected
    selected_checks = context.selected_asset_check_keys
    if not (want_q or want_k or want_e):  # only checks selected (e.g. from the UI): evaluate the stored tables
        manifest_uri = warehouse.table_uri(MANIFEST_ASSET, key)
        stored_manifest = functools.cache(lambda: _read_if_exists(manifest_uri))
        for asset_key in (QUALITY_KEY, KEYFRAMES_KEY):
            if any(k.asset_key == asset_key for k in selected_checks):
                table = _read_if_exists(warehouse.table_uri(asset_key.path[-1], key))
                yield from checks.evaluate(asset_key, table, stored_manifest, selected_checks, warehouse, key)
        return
    manifest = _read_manifest_table(warehouse, key)
    # progress interval, and the configured source policy and per-video limits for every model step
    # (docs/security.md)
    common = dict(progress_every_sec=_progress_every(), source_policy=warehouse.source_policy(),
                  limits=warehouse.read_limits())
    t0 = time.monotonic()
    shared = False
    with fail_fast():
        q_settings, k_settings = config.quality.to_settings(), config.keyframes.to_settings()
        models = clip.settings()
        passes = dict(keyframes=want_k, embeddings=want_e)  # what the keyframes pass must produce
        if want_q and (want_k or want_e):
            why = shared_decode_problem(q_settings, k_settings, models)
            shared = why is None
            many = "all three assets" if want_k and want_e else "both assets"
            context.log.info(f"{many} from one decode per video" if shared
                             else f"quality and keyframes decode separately: {why}")
            q_table, k_table, e_table = quality_keyframes_and_embeddings(
                manifest, q_settings, k_settings, warehouse.warehouse_uri, key, models, backend=compute.make(),
                progress_callback=_progress_logger(context, "quality+keyframes"), **passes, **common)
        elif want_q:
            q_table = score_quality(manifest, q_settings, models, partition_key=key, backend=compute.make(),
                                    progress_callback=_progress_logger(context, QUALITY_ASSET), **common)
        else:
            k_table, e_table = extract_keyframes_and_embeddings(
                manifest, k_settings, warehouse.warehouse_uri, key, models, backend=compute.make(),
                progress_callback=_progress_logger(context, KEYFRAMES_ASSET), **passes, **common)
    compute_s = time.monotonic() - t0
    # shared_decode: both tables came from one decode; elapsed_s is then the time of the shared step
    mostly_failed = []
    if want_q:
        uri = warehouse.table_uri(QUALITY_ASSET, key)
        write_table(q_table, uri)
        q_frame = q_table.to_pandas()
        md = _quality_metadata(q_table, q_frame, uri, time.monotonic() - t0, q_settings)
        yield from _report(context, QUALITY_KEY, q_frame, {**md, "shared_decode": shared}, manifest,
                           selected_checks, warehouse, mostly_failed)
    if want_k:
        uri = warehouse.table_uri(KEYFRAMES_ASSET, key)
        t_write = time.monotonic()
        write_table(k_table, uri)
        k_frame = k_table.to_pandas()
        md = _keyframes_metadata(context, warehouse, k_table, k_frame, uri,
                                 compute_s + time.monotonic() - t_write, k_settings)
        yield from _report(context, KEYFRAMES_KEY, k_frame, {**md, "shared_decode": shared}, manifest,
                           selected_checks, warehouse, mostly_failed)
    if want_e:
        uri = warehouse.table_uri(EMBEDDINGS_ASSET, key)
        size = write_table(e_table, uri)
        e_frame = e_table.drop_columns(["embeddings"]).to_pandas()
        md = _common_metadata(e_table, e_frame, uri, compute_s, int(e_frame["error"].notna().sum()),
                              ["video_id", "uri", "embed_dim", "error"])
        frames = int(sum(len(f) for f in e_frame["frame_ids"] if f is not None))
        md.update({"frames": frames, "model": str(e_frame["model"].iloc[0]) if len(e_frame) else "",
                   "embed_dim": int(e_frame["embed_dim"].iloc[0]) if len(e_frame) else 0,
                   "bytes": size, "bytes_per_frame": round(size / frames, 1) if frames else 0.0,
                   "shared_decode": shared})
        yield from _report(context, EMBEDDINGS_KEY, e_frame, md, manifest, selected_checks, warehouse,
                           mostly_failed)
    if mostly_failed:
        raise _mostly_failed_error(mostly_failed)


def _report(context: dg.AssetExecutionContext, asset: dg.AssetKey, frame: pd.DataFrame, md: dict,
            manifest: pd.DataFrame, selected_checks, warehouse: WarehouseResource, mostly_failed: list
            ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The materialisation and checks of one written table; or, when more than the error threshold of its
    videos failed, only that check's failed result: the asset is then not materialised (the step fails after
    the other asset), so the partition shows as failed. A failed blocking check after a materialisation would
    leave the partition "Materialized" (green) in the UI's partition view."""
    _log_common_cause(context, asset.path[-1], md)
    mostly = checks.failed_share_below_threshold(asset, frame, error=True)
    if mostly.passed:
        yield dg.MaterializeResult(asset_key=asset, metadata=md)
        yield from checks.evaluate(asset, frame, lambda: manifest, selected_checks, warehouse,
                                   context.partition_key)
        return
    if dg.AssetCheckKey(asset, checks.MOSTLY_FAILED) in selected_checks:
        yield mostly
    mostly_failed.append((asset, mostly, md))


def _mostly_failed_error(mostly_failed: list) -> dg.Failure:
    """The step's failure when most videos failed: which tables, how many, the common cause and its fix, and
    where the tables (written anyway, with each video's error) are."""
    names = ", ".join(a.path[-1] for a, _, _ in mostly_failed)
    description = (f"{names}: {mostly_failed[0][1].description}. The tables are written, each video with its "
                   "error; the partition counts as failed until a run passes.")
    keep = ("failed", "failed_share", "top_errors", "common_cause", "path", "dagster/row_count")
    metadata = {f"{a.path[-1]}/{k}" if len(mostly_failed) > 1 else k: v
                for a, _, m in mostly_failed for k, v in m.items() if k in keep}
    return dg.Failure(description=description, metadata=metadata, allow_retries=False)


ASSETS = [video_manifest, video_quality_and_keyframes]
CODE_VERSIONS = {dg.AssetKey(MANIFEST_ASSET): MANIFEST_CODE_VERSION,
                 dg.AssetKey(QUALITY_ASSET): QUALITY_CODE_VERSION,
                 dg.AssetKey(KEYFRAMES_ASSET): KEYFRAMES_CODE_VERSION,
                 EMBEDDINGS_KEY: EMBEDDINGS_CODE_VERSION}
