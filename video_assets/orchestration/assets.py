"""The four assets, one Parquet file per manifest partition (two steps: the manifest, and the GPU step that
writes the other three). Each step resolves its configuration (:mod:`.config`), calls
:mod:`video_assets.pipeline.runner`, writes its tables and reports them (:mod:`.metadata`, :mod:`.checks`).

The code versions are re-exported here (``QUALITY_CODE_VERSION``, ``CODE_VERSIONS``) for the schedule."""

import functools
import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import pandas as pd

from video_assets.compute.gpu_busy import GpuBusy
from video_assets.compute.settings import DecodeSettings
from video_assets.errors import ModelLoadError
from video_assets.operators.common import resolve_device
from video_assets.orchestration import checks, metadata
from video_assets.orchestration.config import (
    EMBEDDINGS_CODE_VERSION,
    KEYFRAMES_CODE_VERSION,
    MANIFEST_CODE_VERSION,
    QUALITY_CODE_VERSION,
    ManifestConfig,
    QualityKeyframesConfig,
    check_step_config,
)
from video_assets.orchestration.env import env_number
from video_assets.orchestration.partitions import video_manifests
from video_assets.orchestration.resources import ClipModelResource, ComputeResource, WarehouseResource
from video_assets.pipeline.manifests import ManifestError, unique_rows
from video_assets.pipeline.runner import (
    build_manifest_table,
    extract_keyframes_and_embeddings,
    quality_keyframes_and_embeddings,
    remove_orphan_keyframes,
    score_quality,
    shared_decode_problem,
)
from video_assets.pipeline.settings import ModelSettings
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

log = logging.getLogger(__name__)

PROGRESS_ENV = "VIDEO_ASSETS_PROGRESS_EVERY_SEC"
GROUP = "video"
MODEL_STEP = "video_quality_and_keyframes"

# Transient storage/network errors are retried; configuration, manifest and model errors fail at once
# (they are raised as dg.Failure(allow_retries=False)).
STORAGE_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL,
                               jitter=dg.Jitter.PLUS_MINUS)


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
    return env_number(PROGRESS_ENV, 10.0, minimum=0)


def _read_manifest_table(warehouse: WarehouseResource, key: str) -> pd.DataFrame:
    uri = warehouse.table_uri(MANIFEST_ASSET, key)
    if not table_exists(uri):
        raise dg.Failure(description=f"{describe_uri(uri)} does not exist: materialise video_manifest for "
                                     f"partition {key!r} first", allow_retries=False)
    return read_frame(uri)


def _read_if_exists(uri: str) -> pd.DataFrame | None:
    return read_frame(uri) if table_exists(uri) else None


def _check_run_config(context: dg.AssetExecutionContext, clip: ClipModelResource,
                      compute: ComputeResource) -> None:
    """The whole run's settings, built (and so validated) by the run's first step before it writes anything:
    a wrong value for the model step (``reduce_mode: mean``, ``device: tpu``, compute ``num_workers: 0``) fails
    the run here instead of after video_manifest was rebuilt, which would turn a healthy partition red and its
    downstream stale."""
    try:
        check_step_config(QualityKeyframesConfig, context.run.run_config, MODEL_STEP)
        clip.settings()
        compute.settings()
    except ValueError as e:
        raise dg.Failure(description=f"run config refused, nothing written: {e}", allow_retries=False) from e


# ----------------------------------------------------------------------------------------------------------
# assets


@dg.asset(
    partitions_def=video_manifests, group_name=GROUP, code_version=MANIFEST_CODE_VERSION,
    retry_policy=STORAGE_RETRY, kinds={"parquet"}, check_specs=checks.MANIFEST_CHECK_SPECS,
    description="The manifest, normalised (resolved URIs, video ids, duplicates marked, user columns kept), "
                "with probed metadata: duration, fps, width, height, frames, codec, size, readable, warnings, error.",
)
def video_manifest(context: dg.AssetExecutionContext, config: ManifestConfig,
                   warehouse: WarehouseResource, clip: ClipModelResource,
                   compute: ComputeResource) -> dg.MaterializeResult:
    key = context.partition_key
    t0 = time.monotonic()
    with fail_fast():
        _check_run_config(context, clip, compute)
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
    # the videos, counted as the model step counts them: a malformed line is not a video (counted apart)
    videos = unique_rows(frame)
    failed = int(videos["error"].notna().sum())
    md = metadata.common_metadata(table, videos, uri, elapsed, failed,
                          ["row", "video_id", "source_uri", "duration_sec", "fps", "width", "height", "codec",
                           "size_bytes", "readable", "warnings", "error", "user"])
    md["failed_share"] = dg.MetadataValue.float(round(failed / len(videos), 4) if len(videos) else 0.0)
    md.update({
        "videos": dg.MetadataValue.int(len(videos)),
        "malformed_lines": dg.MetadataValue.int(manifest.num_invalid),
        "duplicates": dg.MetadataValue.int(manifest.num_duplicates),
        "manifest": metadata.path_value(manifest.uri),
        "manifest_format": manifest.format,
        "manifest_sha256": manifest.sha256,
        "user_columns": dg.MetadataValue.json(manifest.user_names),  # the keys of the JSON column `user`
        "total_duration_s": dg.MetadataValue.float(round(float(videos["duration_sec"].fillna(0).sum()), 3)),
        "bytes_written": dg.MetadataValue.int(size),
    })
    if manifest.warnings:
        md["warnings"] = dg.MetadataValue.md("\n".join(f"- {w}" for w in manifest.warnings))
    metadata.log_common_cause(context, MANIFEST_ASSET, md)
    return dg.MaterializeResult(metadata=md, check_results=list(checks.evaluate(
        checks.MANIFEST_KEY, videos, lambda: frame, context.selected_asset_check_keys, warehouse, key)))


QUALITY_KEY, KEYFRAMES_KEY = checks.QUALITY_KEY, checks.KEYFRAMES_KEY
EMBEDDINGS_KEY = dg.AssetKey(EMBEDDINGS_ASSET)


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
        load_s = _load_models(clip, compute, quality=want_q, keyframes=want_k or want_e)
        passes = dict(keyframes=want_k, embeddings=want_e)  # what the keyframes pass must produce
        busy = _gpu_busy(models, compute)  # GPU busy while the models run, for the metadata
        with busy:
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
    gpu = busy.metadata()  # the same figures on every table the step wrote
    # shared_decode: both tables came from one decode; elapsed_s is then the time of the shared step
    mostly_failed = []
    if want_q:
        uri = warehouse.table_uri(QUALITY_ASSET, key)
        write_table(q_table, uri)
        q_frame = q_table.to_pandas()
        md = metadata.quality_metadata(q_table, q_frame, uri, time.monotonic() - t0, q_settings, load_s)
        md.update(shared_decode=shared, decoder=_decoder(models, compute, q_frame), **gpu)
        yield from _report(context, QUALITY_KEY, q_frame, md, manifest,
                           selected_checks, warehouse, mostly_failed)
    if want_k:
        uri = warehouse.table_uri(KEYFRAMES_ASSET, key)
        t_write = time.monotonic()
        write_table(k_table, uri)
        k_frame = k_table.to_pandas()
        keep = {p for paths in k_frame["keyframe_paths"].dropna() for p in paths}
        removed = remove_orphan_keyframes(warehouse.warehouse_uri, key, keep)
        if removed:
            context.log.info(f"removed {removed} keyframe image(s) of an earlier materialisation")
        md = metadata.keyframes_metadata(k_table, k_frame, uri, compute_s + time.monotonic() - t_write,
                                         k_settings, warehouse.keyframes_dir(key), load_s)
        md.update(shared_decode=shared, decoder=_decoder(models, compute, k_frame), **gpu)
        yield from _report(context, KEYFRAMES_KEY, k_frame, md, manifest,
                           selected_checks, warehouse, mostly_failed)
    if want_e:
        uri = warehouse.table_uri(EMBEDDINGS_ASSET, key)
        size = write_table(e_table, uri)
        e_frame = e_table.drop_columns(["embeddings"]).to_pandas()
        md = metadata.common_metadata(e_table, e_frame, uri, compute_s, int(e_frame["error"].notna().sum()),
                              ["video_id", "uri", "embed_dim", "error"], load_s)
        frames = int(sum(len(f) for f in e_frame["frame_ids"] if f is not None))
        md.update({"frames": frames, "model": str(e_frame["model"].iloc[0]) if len(e_frame) else "",
                   "embed_dim": int(e_frame["embed_dim"].iloc[0]) if len(e_frame) else 0,
                   "bytes": size, "bytes_per_frame": round(size / frames, 1) if frames else 0.0,
                   "shared_decode": shared, "decoder": _decoder(models, compute, e_frame), **gpu})
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
    metadata.log_common_cause(context, asset.path[-1], md)
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


__all__ = ["ASSETS", "CODE_VERSIONS", "CODE_VERSIONS_TAG", "EMBEDDINGS_KEY", "KEYFRAMES_KEY", "MODEL_STEP",
           "QUALITY_CODE_VERSION", "QUALITY_KEY", "code_versions_fingerprint", "video_manifest",
           "video_quality_and_keyframes"]

ASSETS = [video_manifest, video_quality_and_keyframes]
CODE_VERSIONS = {dg.AssetKey(MANIFEST_ASSET): MANIFEST_CODE_VERSION,
                 dg.AssetKey(QUALITY_ASSET): QUALITY_CODE_VERSION,
                 dg.AssetKey(KEYFRAMES_ASSET): KEYFRAMES_CODE_VERSION,
                 EMBEDDINGS_KEY: EMBEDDINGS_CODE_VERSION}
# every run of video_assets_job carries the code versions it ran with (one tag), so the schedule can tell a
# partition that failed with this code from one that failed before a change that may fix it
CODE_VERSIONS_TAG = "video_assets/code_versions"


def code_versions_fingerprint(versions: dict[dg.AssetKey, str] = CODE_VERSIONS) -> str:
    blob = ",".join(f"{k.to_user_string()}={v}" for k, v in sorted(versions.items(), key=lambda kv: kv[0].path))
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _load_models(clip: ClipModelResource, compute: ComputeResource, *, quality: bool, keyframes: bool
                 ) -> float | None:
    """Load the step's models before its videos, and the seconds it took (the metadata's ``model_load_s``,
    left out of its throughput). The models are cached per process, so the operators get these very models.
    On Ray each worker loads its own: None (not measured here)."""
    if compute.settings().backend != "local":
        return None
    t0 = time.monotonic()
    for which, wanted in (("quality", quality), ("keyframes", keyframes)):
        if wanted:
            clip.load(which)
    return time.monotonic() - t0


def _gpu_busy(models: ModelSettings, compute: ComputeResource) -> GpuBusy:
    """The sampler of the step's GPU: the models' device in this process (on Ray the GPUs are the workers',
    not sampled here; on the CPU nothing is sampled)."""
    if compute.settings().backend != "local":
        return GpuBusy("cpu")
    return GpuBusy(resolve_device(models.device))


def _decoder(models: ModelSettings, compute: ComputeResource, frame) -> str:
    """Which decoder the step ran, for its metadata: "cpu, 4 decode threads" / "cpu, 15 decode processes"
    (decode_processes resolved on this machine for the step's device); on Ray each worker decides for its own
    cores."""
    if compute.settings().backend != "local":
        return "cpu, decided by each Ray worker (decode_processes; auto: by its cores)"
    device = str(frame["device"].iloc[0]) if "device" in frame and len(frame) else "cpu"
    return "cpu, " + models.group(DecodeSettings).describe(device)
