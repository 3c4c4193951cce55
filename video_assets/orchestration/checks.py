"""Asset checks, evaluated per partition inside the step that produces the tables.

The checks are ``check_specs`` of the ``video_quality_and_keyframes`` multi_asset (:data:`CHECK_SPECS`): the
step yields their ``AssetCheckResult``s from the tables it has just written and still holds in memory, so a
run has no extra check steps (each a step of its own with its events and a table read). The logic lives here
as plain functions of the frames; :func:`evaluate` yields the results of the selected checks of one asset.
Selecting only checks in the UI (no asset) runs the same step as a subset that reads the tables back from the
warehouse and evaluates them (see ``assets.video_quality_and_keyframes``).
"""

import io
import random
import warnings
from collections.abc import Callable, Collection, Iterator

import dagster as dg
import numpy as np
import pandas as pd
from PIL import Image

from video_assets.orchestration.env import env_number
from video_assets.orchestration.partitions import video_manifests
from video_assets.orchestration.resources import WarehouseResource
from video_assets.pipeline import report
from video_assets.pipeline.manifests import INVALID_URI, unique_rows
from video_assets.pipeline.tables import KEYFRAMES_ASSET, MANIFEST_ASSET, QUALITY_ASSET
from video_assets.storage import describe_uri, filesystem_for

# Partitioned asset checks (one result per partition) are a "preview" feature in Dagster 1.13; they are what
# these checks need, so the warning is acknowledged here instead of printed at every load.
warnings.filterwarnings("ignore",
                        message="Specifying a partitions_def on an AssetCheckSpec is currently in preview")

MAX_FAILED_SHARE_ENV = "VIDEO_ASSETS_MAX_FAILED_SHARE"
DEFAULT_MAX_FAILED_SHARE = 0.1
# Above this share of failed videos the partition is an error, not a warning: a blocking ERROR check, and the
# step fails without materialising the asset (see assets._report).
ERROR_FAILED_SHARE_ENV = "VIDEO_ASSETS_ERROR_FAILED_SHARE"
DEFAULT_ERROR_FAILED_SHARE = 0.5
IMAGE_SAMPLE = 5  # keyframe images opened and decoded per check

QUALITY_KEY, KEYFRAMES_KEY = dg.AssetKey(QUALITY_ASSET), dg.AssetKey(KEYFRAMES_ASSET)
MANIFEST_KEY = dg.AssetKey(MANIFEST_ASSET)

QUALITY_RANGE, ROW_COUNT = "quality_scores_in_range", "row_count_matches_manifest"
FAILED_SHARE, KEYFRAME_FILES = "failed_share_below_threshold", "keyframe_files_exist"
MOSTLY_FAILED = "failed_share_below_error_threshold"


def max_failed_share() -> float:
    return env_number(MAX_FAILED_SHARE_ENV, DEFAULT_MAX_FAILED_SHARE, minimum=0)


def error_failed_share() -> float:
    return env_number(ERROR_FAILED_SHARE_ENV, DEFAULT_ERROR_FAILED_SHARE, minimum=0)


def missing(asset: dg.AssetKey, check_name: str, uri: str) -> dg.AssetCheckResult:
    """The result of a check whose table (or the manifest table) does not exist."""
    return dg.AssetCheckResult(asset_key=asset, check_name=check_name, passed=False,
                               description=f"{describe_uri(uri)} does not exist", metadata={"path": uri})


# ----------------------------------------------------------------------------------------------------------
# the checks: plain functions of the frames


def quality_scores_in_range(quality: pd.DataFrame) -> dg.AssetCheckResult:
    scores = quality["quality_score"].dropna().to_numpy(dtype=float)
    frames = np.asarray([x for v in quality["frame_scores"].dropna() for x in v], dtype=float)
    bad = int(((scores < 0) | (scores > 1) | ~np.isfinite(scores)).sum())
    bad_frames = int(((frames < 0) | (frames > 1) | ~np.isfinite(frames)).sum())
    return dg.AssetCheckResult(
        asset_key=QUALITY_KEY, check_name=QUALITY_RANGE,
        passed=bad == 0 and bad_frames == 0,
        metadata={"scores": len(scores), "out_of_range": bad, "frame_scores": len(frames),
                  "frame_scores_out_of_range": bad_frames,
                  "min": float(scores.min()) if len(scores) else 0.0,
                  "max": float(scores.max()) if len(scores) else 0.0})


def row_count_matches_manifest(asset: dg.AssetKey, table: pd.DataFrame,
                               manifest: pd.DataFrame) -> dg.AssetCheckResult:
    """One row per distinct video (quality), or per distinct (video, query) (keyframes: a row without a query
    asks the step's ``text``)."""
    distinct_ids = unique_rows(manifest)["video_id"]  # malformed lines are not videos
    expected_keys = sorted(distinct_ids)
    got_keys = sorted(table["video_id"])
    if asset == KEYFRAMES_KEY and "query" in table.columns and "query" in manifest.columns:
        default = table["text"].iloc[0] if len(table) else ""
        rows = manifest[manifest["uri"] != INVALID_URI]
        ids = rows["duplicate_of"].where(rows["duplicate_of"].notna(), rows["video_id"])
        asked = [q if isinstance(q, str) and q.strip() else default for q in rows["query"]]
        expected_keys = sorted(set(zip(ids, asked)))
        got_keys = sorted(zip(table["video_id"], table["query"]))
    same = got_keys == expected_keys
    return dg.AssetCheckResult(asset_key=asset, check_name=ROW_COUNT,
                               passed=len(table) == len(expected_keys) and same,
                               metadata={"rows": len(table), "expected_rows": len(expected_keys),
                                         "manifest_videos": len(distinct_ids), "manifest_rows": len(manifest),
                                         "same_video_ids": same})


def failed_share_below_threshold(asset: dg.AssetKey, table: pd.DataFrame,
                                 error: bool = False) -> dg.AssetCheckResult:
    """The share of failed videos against the warning threshold, or (``error``) the error threshold."""
    failed = int(table["error"].notna().sum())
    share = failed / len(table) if len(table) else 0.0
    limit = error_failed_share() if error else max_failed_share()
    passed = share <= limit
    cause = report.common_cause(table)
    env = ERROR_FAILED_SHARE_ENV if error else MAX_FAILED_SHARE_ENV
    description = f"{failed} of {len(table)} videos failed ({share:.1%}; threshold {limit:.1%}, ${env})"
    if cause and not passed:
        description += f". {cause}"
    metadata = {"failed": failed, "rows": len(table), "failed_share": round(share, 4), "threshold": limit,
                "top_errors": dg.MetadataValue.md(report.errors_markdown(table))}
    if cause:
        metadata["common_cause"] = cause
    return dg.AssetCheckResult(
        asset_key=asset, check_name=MOSTLY_FAILED if error else FAILED_SHARE, passed=passed,
        severity=dg.AssetCheckSeverity.ERROR if error else dg.AssetCheckSeverity.WARN,
        description=description, metadata=metadata)


def keyframe_files_exist(keyframes: pd.DataFrame, warehouse: WarehouseResource,
                         partition_key: str) -> dg.AssetCheckResult:
    paths = [p for v in keyframes["keyframe_paths"].dropna() for p in v]
    folder = warehouse.keyframes_dir(partition_key)
    fs, root = filesystem_for(folder)
    if hasattr(fs, "invalidate_cache"):
        fs.invalidate_cache(root)
    try:
        present = set(fs.find(root, withdirs=False))
    except FileNotFoundError:
        present = set()
    missing_paths = [p for p in paths if filesystem_for(p)[1] not in present]
    rng = random.Random(partition_key)
    missing_set = set(missing_paths)
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
        asset_key=KEYFRAMES_KEY, check_name=KEYFRAME_FILES,
        passed=not missing_paths and not unreadable,
        metadata={"keyframe_paths": len(paths), "missing": len(missing_paths), "images_decoded": len(sample),
                  "unreadable": len(unreadable),
                  "examples": dg.MetadataValue.json([describe_uri(p) for p in missing_paths[:5]]
                                                    + unreadable[:5])})


# ----------------------------------------------------------------------------------------------------------
# specs (declared on the multi_asset) and their evaluation


def _spec(asset: dg.AssetKey, name: str, description: str, **kwargs) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, description=description, partitions_def=video_manifests,
                             **kwargs)


_ROW_COUNT_DESCRIPTION = "One row per distinct video of the manifest (duplicated rows count once)."
_FAILED_SHARE_DESCRIPTION = (f"The share of videos with an error is at most ${MAX_FAILED_SHARE_ENV} "
                             f"(default {DEFAULT_MAX_FAILED_SHARE}); a warning, not an error.")
_MOSTLY_FAILED_DESCRIPTION = (f"The share of videos with an error is at most ${ERROR_FAILED_SHARE_ENV} "
                              f"(default {DEFAULT_ERROR_FAILED_SHARE}). Above it the step fails without "
                              "materialising the asset, so a partition of mostly bad videos shows as failed, "
                              "never green; the table is still written.")

# on video_manifest (its own step): how many of the manifest's videos failed to probe, against the same two
# thresholds. Not blocking: the model step still runs and writes every video's error, and fails the partition
# above the error threshold itself (see _MOSTLY_FAILED_DESCRIPTION).
MANIFEST_CHECK_SPECS = [
    _spec(MANIFEST_KEY, FAILED_SHARE, _FAILED_SHARE_DESCRIPTION.replace("with an error", "that fail to probe")),
    _spec(MANIFEST_KEY, MOSTLY_FAILED,
          f"The share of videos that fail to probe is at most ${ERROR_FAILED_SHARE_ENV} (default "
          f"{DEFAULT_ERROR_FAILED_SHARE}); an error. Malformed manifest lines are not videos: they are counted "
          "apart (metadata malformed_lines)."),
]

CHECK_SPECS = [
    _spec(QUALITY_KEY, QUALITY_RANGE, "Every quality score and per-frame score lies in [0, 1]."),
    _spec(QUALITY_KEY, ROW_COUNT, _ROW_COUNT_DESCRIPTION, additional_deps=[MANIFEST_KEY]),
    _spec(KEYFRAMES_KEY, ROW_COUNT, _ROW_COUNT_DESCRIPTION, additional_deps=[MANIFEST_KEY]),
    _spec(QUALITY_KEY, FAILED_SHARE, _FAILED_SHARE_DESCRIPTION),
    _spec(KEYFRAMES_KEY, FAILED_SHARE, _FAILED_SHARE_DESCRIPTION),
    _spec(QUALITY_KEY, MOSTLY_FAILED, _MOSTLY_FAILED_DESCRIPTION, blocking=True),
    _spec(KEYFRAMES_KEY, MOSTLY_FAILED, _MOSTLY_FAILED_DESCRIPTION, blocking=True),
    _spec(KEYFRAMES_KEY, KEYFRAME_FILES,
          "Every keyframe path in the table exists (one listing of the partition's keyframe folder), and a "
          f"sample of {IMAGE_SAMPLE} images opens as pictures."),
]


def evaluate(asset: dg.AssetKey, table: pd.DataFrame | None, manifest: Callable[[], pd.DataFrame | None],
             selected: Collection[dg.AssetCheckKey], warehouse: WarehouseResource,
             partition_key: str) -> Iterator[dg.AssetCheckResult]:
    """The results of ``asset``'s checks that are in ``selected`` (a step yields only its selected checks).
    ``table``: the asset's table for the partition, None when it does not exist; ``manifest``: returns the
    manifest table (called only when a selected check needs it), None when it does not exist. For
    video_manifest ``table`` is its videos (:func:`unique_rows`: no duplicates, no malformed lines)."""
    for spec in (*MANIFEST_CHECK_SPECS, *CHECK_SPECS):
        if spec.asset_key != asset or spec.key not in selected:
            continue
        if table is None:
            yield missing(asset, spec.name, warehouse.table_uri(asset.path[-1], partition_key))
        elif spec.name == QUALITY_RANGE:
            yield quality_scores_in_range(table)
        elif spec.name == ROW_COUNT:
            m = manifest()
            yield (missing(asset, spec.name, warehouse.table_uri(MANIFEST_ASSET, partition_key)) if m is None
                   else row_count_matches_manifest(asset, table, m))
        elif spec.name in (FAILED_SHARE, MOSTLY_FAILED):
            yield failed_share_below_threshold(asset, table, error=spec.name == MOSTLY_FAILED)
        elif spec.name == KEYFRAME_FILES:
            yield keyframe_files_exist(table, warehouse, partition_key)
        else:  # pragma: no cover - a spec without an evaluation is a programming error
            raise AssertionError(f"no evaluation for check {spec.key}")
