"""Asset checks, evaluated per partition on the Parquet files the assets wrote (in the same run by default, or
on their own from the UI)."""

import io
import os
import random
import warnings

import dagster as dg
import numpy as np
from PIL import Image

from video_assets.orchestration.assets import KEYFRAMES_KEY, QUALITY_KEY, video_manifest
from video_assets.orchestration.partitions import video_manifests
from video_assets.orchestration.resources import WarehouseResource
from video_assets.pipeline import report
from video_assets.pipeline.manifests import unique_rows
from video_assets.pipeline.tables import (KEYFRAMES_ASSET, MANIFEST_ASSET, QUALITY_ASSET, read_frame,
                                          table_exists)
from video_assets.storage import describe_uri, filesystem_for

# Partitioned asset checks (one result per partition) are a "preview" feature in Dagster 1.13; they are what
# these checks need, so the warning is acknowledged here instead of printed at every load.
warnings.filterwarnings("ignore",
                        message="Specifying a partitions_def on an AssetCheckSpec is currently in preview")

MAX_FAILED_SHARE_ENV = "VIDEO_ASSETS_MAX_FAILED_SHARE"
DEFAULT_MAX_FAILED_SHARE = 0.1
IMAGE_SAMPLE = 5  # keyframe images opened and decoded per check


def max_failed_share() -> float:
    try:
        return float(os.environ.get(MAX_FAILED_SHARE_ENV, DEFAULT_MAX_FAILED_SHARE))
    except ValueError:
        return DEFAULT_MAX_FAILED_SHARE


def _missing(uri: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description=f"{describe_uri(uri)} does not exist",
                               metadata={"path": uri})


@dg.asset_check(asset=QUALITY_KEY, partitions_def=video_manifests,
                description="Every quality score and per-frame score lies in [0, 1].")
def quality_scores_in_range(context: dg.AssetCheckExecutionContext,
                            warehouse: WarehouseResource) -> dg.AssetCheckResult:
    uri = warehouse.table_uri(QUALITY_ASSET, context.partition_key)
    if not table_exists(uri):
        return _missing(uri)
    df = read_frame(uri)
    scores = df["quality_score"].dropna().to_numpy(dtype=float)
    frames = np.asarray([x for v in df["frame_scores"].dropna() for x in v], dtype=float)
    bad = int(((scores < 0) | (scores > 1) | ~np.isfinite(scores)).sum())
    bad_frames = int(((frames < 0) | (frames > 1) | ~np.isfinite(frames)).sum())
    return dg.AssetCheckResult(
        passed=bad == 0 and bad_frames == 0,
        metadata={"scores": len(scores), "out_of_range": bad, "frame_scores": len(frames),
                  "frame_scores_out_of_range": bad_frames,
                  "min": float(scores.min()) if len(scores) else 0.0,
                  "max": float(scores.max()) if len(scores) else 0.0})


def _row_count_check(asset: dg.AssetKey, asset_name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name="row_count_matches_manifest", partitions_def=video_manifests,
                    additional_deps=[video_manifest],
                    description="One row per distinct video of the manifest (duplicated rows count once).")
    def check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        key = context.partition_key
        muri, turi = warehouse.table_uri(MANIFEST_ASSET, key), warehouse.table_uri(asset_name, key)
        for u in (muri, turi):
            if not table_exists(u):
                return _missing(u)
        manifest = read_frame(muri)
        distinct_ids = unique_rows(manifest)["video_id"]  # malformed lines are not videos
        expected = len(distinct_ids)
        table = read_frame(turi)
        same_ids = sorted(table["video_id"]) == sorted(distinct_ids)
        return dg.AssetCheckResult(passed=len(table) == expected and same_ids,
                                   metadata={"rows": len(table), "manifest_videos": expected,
                                             "manifest_rows": len(manifest), "same_video_ids": same_ids})
    return check


def _failed_share_check(asset: dg.AssetKey, asset_name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name="failed_share_below_threshold", partitions_def=video_manifests,
                    description=f"The share of videos with an error is at most ${MAX_FAILED_SHARE_ENV} "
                                f"(default {DEFAULT_MAX_FAILED_SHARE}); a warning, not an error.")
    def check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        uri = warehouse.table_uri(asset_name, context.partition_key)
        if not table_exists(uri):
            return _missing(uri)
        df = read_frame(uri)
        failed = int(df["error"].notna().sum())
        share = failed / len(df) if len(df) else 0.0
        limit = max_failed_share()
        return dg.AssetCheckResult(
            passed=share <= limit, severity=dg.AssetCheckSeverity.WARN,
            description=f"{failed} of {len(df)} videos failed ({share:.1%}; threshold {limit:.1%})",
            metadata={"failed": failed, "rows": len(df), "failed_share": round(share, 4), "threshold": limit,
                      "top_errors": dg.MetadataValue.md(report.errors_markdown(df))})
    return check


@dg.asset_check(asset=KEYFRAMES_KEY, partitions_def=video_manifests,
                description="Every keyframe path in the table exists (one listing of the partition's "
                            f"keyframe folder), and a sample of {IMAGE_SAMPLE} images opens as pictures.")
def keyframe_files_exist(context: dg.AssetCheckExecutionContext,
                         warehouse: WarehouseResource) -> dg.AssetCheckResult:
    key = context.partition_key
    uri = warehouse.table_uri(KEYFRAMES_ASSET, key)
    if not table_exists(uri):
        return _missing(uri)
    df = read_frame(uri)
    paths = [p for v in df["keyframe_paths"].dropna() for p in v]
    folder = warehouse.keyframes_dir(key)
    fs, root = filesystem_for(folder)
    if hasattr(fs, "invalidate_cache"):
        fs.invalidate_cache(root)
    try:
        present = set(fs.find(root, withdirs=False))
    except FileNotFoundError:
        present = set()
    missing = [p for p in paths if filesystem_for(p)[1] not in present]
    rng = random.Random(key)
    missing_set = set(missing)
    present_paths = [p for p in paths if p not in missing_set]
    sample = rng.sample(present_paths, min(IMAGE_SAMPLE, len(present_paths)))
    unreadable = []
    for p in sample:
        try:
            with fs.open(filesystem_for(p)[1], "rb") as f:
                Image.open(io.BytesIO(f.read())).verify()
        except Exception as e:  # noqa: BLE001 - reported by the check
            unreadable.append(f"{describe_uri(p)}: {e}")
    return dg.AssetCheckResult(
        passed=not missing and not unreadable,
        metadata={"keyframe_paths": len(paths), "missing": len(missing), "images_decoded": len(sample),
                  "unreadable": len(unreadable),
                  "examples": dg.MetadataValue.json([describe_uri(p) for p in missing[:5]] + unreadable[:5])})


CHECKS = [
    quality_scores_in_range,
    _row_count_check(QUALITY_KEY, QUALITY_ASSET),
    _row_count_check(KEYFRAMES_KEY, KEYFRAMES_ASSET),
    _failed_share_check(QUALITY_KEY, QUALITY_ASSET),
    _failed_share_check(KEYFRAMES_KEY, KEYFRAMES_ASSET),
    keyframe_files_exist,
]
