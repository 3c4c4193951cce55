"""A schedule that re-runs partitions whose assets are missing or stale.

Stale means: the latest materialisation of the partition was made by another code version (the assets'
``code_version`` follows the default settings, the default model and the pipeline version), or an upstream
asset of the partition was materialised after it. Only the missing/stale assets (plus what depends on them)
are requested.
"""

import os
from collections.abc import Mapping

import dagster as dg

from video_assets.orchestration.assets import CODE_VERSIONS
from video_assets.orchestration.jobs import video_assets_job
from video_assets.orchestration.partitions import PARTITIONS_NAME
from video_assets.pipeline.tables import EMBEDDINGS_ASSET, KEYFRAMES_ASSET, MANIFEST_ASSET, QUALITY_ASSET

SCHEDULE_CRON_ENV = "VIDEO_ASSETS_SCHEDULE_CRON"
SCHEDULE_MAX_RUNS_ENV = "VIDEO_ASSETS_SCHEDULE_MAX_RUNS"
DEFAULT_CRON = "0 3 * * *"  # daily, 03:00
CODE_VERSION_TAG = "dagster/code_version"

MANIFEST_KEY = dg.AssetKey(MANIFEST_ASSET)
DOWNSTREAM = (dg.AssetKey(QUALITY_ASSET), dg.AssetKey(KEYFRAMES_ASSET), dg.AssetKey(EMBEDDINGS_ASSET))


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str):
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1, ascending=False)
    return result.records[0] if result.records else None


def stale_assets(instance: dg.DagsterInstance, partition: str,
                 code_versions: Mapping[dg.AssetKey, str] = CODE_VERSIONS) -> dict[dg.AssetKey, str]:
    """{asset key: why} for the assets of ``partition`` that are missing or stale."""
    out: dict[dg.AssetKey, str] = {}
    latest = {k: _latest(instance, k, partition) for k in (MANIFEST_KEY, *DOWNSTREAM)}
    for key, rec in latest.items():
        if rec is None:
            out[key] = "missing"
            continue
        tags = rec.asset_materialization.tags or {}
        if tags.get(CODE_VERSION_TAG) != code_versions[key]:
            out[key] = f"code version {tags.get(CODE_VERSION_TAG)} -> {code_versions[key]}"
    m = latest[MANIFEST_KEY]
    for key in DOWNSTREAM:
        rec = latest[key]
        if key not in out and m is not None and rec is not None and m.storage_id > rec.storage_id:
            out[key] = "video_manifest is newer"
    if MANIFEST_KEY in out:  # a new manifest table makes both downstream tables stale
        for key in DOWNSTREAM:
            out.setdefault(key, "video_manifest is rebuilt")
    return out


def _max_runs() -> int:
    try:
        return int(os.environ.get(SCHEDULE_MAX_RUNS_ENV, "100"))
    except ValueError:
        return 100


@dg.schedule(job=video_assets_job, cron_schedule=os.environ.get(SCHEDULE_CRON_ENV) or DEFAULT_CRON,
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Re-run partitions whose assets are missing or stale (code version changed).")
def refresh_stale_partitions(context: dg.ScheduleEvaluationContext):
    partitions = sorted(context.instance.get_dynamic_partitions(PARTITIONS_NAME))
    requests = []
    tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
    for p in partitions:
        stale = stale_assets(context.instance, p)
        if not stale:
            continue
        reasons = ", ".join(f"{k.to_user_string()} {why}" for k, why in stale.items())
        context.log.info(f"partition {p!r}: {reasons}")
        requests.append(dg.RunRequest(partition_key=p, run_key=f"refresh:{p}:{tick}",
                                      asset_selection=sorted(stale, key=lambda k: k.to_user_string()),
                                      tags={"video_assets/reason": "stale-or-missing"}))
        if len(requests) >= _max_runs():
            break
    if not requests:
        return dg.SkipReason(f"all {len(partitions)} partitions are up to date")
    return requests


SCHEDULES = [refresh_stale_partitions]
