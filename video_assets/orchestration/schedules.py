"""A schedule that re-runs partitions whose assets are missing or stale.

Stale means: the latest materialisation of the partition was made by another code version (the assets'
``code_version`` follows the default settings, the default model and the pipeline version), or an upstream
asset of the partition was materialised after it. Only the missing/stale assets (plus what depends on them)
are requested.

Backoff: a partition whose last ``VIDEO_ASSETS_SCHEDULE_MAX_FAILURES`` (3) runs failed with the current code
versions and the schedule's (default) run config is held back, and the tick says which and why: re-running a
partition that fails every day fixes nothing and costs a GPU step. A run that succeeds (e.g. launched by hand
after fixing the videos), a new code version or new manifest content (registered by ``manifest_sensor``: only
runs since then count) releases it. The runs are the instance's run records of the partition (tag
``dagster/partition``); every run of ``video_assets_job`` carries its code versions as a tag.
"""

import os
from collections.abc import Mapping
from datetime import datetime

import dagster as dg

from video_assets.orchestration.assets import CODE_VERSIONS, CODE_VERSIONS_TAG, code_versions_fingerprint
from video_assets.orchestration.env import env_number
from video_assets.orchestration.jobs import video_assets_job
from video_assets.orchestration.partitions import PARTITIONS_NAME
from video_assets.orchestration.resources import WarehouseResource
from video_assets.pipeline.tables import EMBEDDINGS_ASSET, KEYFRAMES_ASSET, MANIFEST_ASSET, QUALITY_ASSET

SCHEDULE_CRON_ENV = "VIDEO_ASSETS_SCHEDULE_CRON"
SCHEDULE_MAX_RUNS_ENV = "VIDEO_ASSETS_SCHEDULE_MAX_RUNS"
SCHEDULE_MAX_FAILURES_ENV = "VIDEO_ASSETS_SCHEDULE_MAX_FAILURES"
DEFAULT_MAX_FAILURES = 3  # three days of the same failure: not a transient one
PARTITION_TAG = "dagster/partition"
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
    return env_number(SCHEDULE_MAX_RUNS_ENV, 100, int, minimum=1)


def max_failures() -> int:
    return env_number(SCHEDULE_MAX_FAILURES_ENV, DEFAULT_MAX_FAILURES, int)


def _overridden(run: dg.DagsterRun) -> bool:
    """Whether the run set step or resource config (a Launchpad override: another device, other limits): the
    schedule's runs set neither. Loggers and the executor do not change what a run does to the videos."""
    config = run.run_config or {}
    return bool(config.get("ops") or config.get("resources"))


def content_since(warehouse: WarehouseResource, partition: str) -> datetime | None:
    """When the partition's current manifest content was registered (the registry's ``updated_at``), or None
    (not registered: a partition added by hand)."""
    entry = warehouse.registry().get(partition)
    return datetime.fromisoformat(entry["updated_at"]) if entry and entry.get("updated_at") else None


def held_back(instance: dg.DagsterInstance, partition: str, limit: int | None = None,
              code_versions: Mapping[dg.AssetKey, str] = CODE_VERSIONS,
              since: datetime | None = None) -> str | None:
    """Why the schedule does not re-run ``partition`` now, or None. Held back: its ``limit`` latest finished
    runs (newest first, back to the latest success) all failed with the current code versions and the default
    run config. A success, a failure under other code versions, or one started before ``since`` (the current
    manifest content's registration) ends the count; runs in progress, cancelled ones and runs with other
    config (Launchpad overrides of ops or resources, or another job's runs, which carry no code versions) say
    nothing about what the schedule would launch and are passed over. ``limit`` <= 0: never held back."""
    limit = max_failures() if limit is None else limit
    if limit <= 0:
        return None
    current = code_versions_fingerprint(dict(code_versions))
    failed: list[dg.RunRecord] = []
    records = instance.get_run_records(dg.RunsFilter(tags={PARTITION_TAG: partition}), limit=limit * 10)
    for rec in records:  # newest first
        run = rec.dagster_run
        if run.status == dg.DagsterRunStatus.SUCCESS:
            break
        if run.status != dg.DagsterRunStatus.FAILURE or _overridden(run):
            continue
        version = run.tags.get(CODE_VERSIONS_TAG)
        if version is None:
            continue
        if version != current or (since is not None and rec.create_timestamp < since):
            break
        failed.append(rec)
        if len(failed) == limit:
            ids = ", ".join(r.dagster_run.run_id[:8] for r in failed)
            since = failed[-1].create_timestamp.strftime("%Y-%m-%d %H:%M UTC")
            return (f"its last {limit} runs failed with the current code versions ({current}) since {since} "
                    f"(runs {ids}); ${SCHEDULE_MAX_FAILURES_ENV}={limit}. A run that succeeds (fix the "
                    "videos and launch it by hand), new manifest content or a code change releases it")
    return None


@dg.schedule(job=video_assets_job, cron_schedule=os.environ.get(SCHEDULE_CRON_ENV) or DEFAULT_CRON,
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Re-run partitions whose assets are missing or stale (code version changed); a "
                         "partition that failed its last runs with this code is held back.")
def refresh_stale_partitions(context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource):
    partitions = sorted(context.instance.get_dynamic_partitions(PARTITIONS_NAME))
    requests = []
    held: dict[str, str] = {}
    tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
    for p in partitions:
        stale = stale_assets(context.instance, p)
        if not stale:
            continue
        try:
            since = content_since(warehouse, p)
        except Exception as e:  # the registry unreadable (storage down): count every run, as without one
            context.log.warning(f"partition {p!r}: manifest registry not read ({type(e).__name__}: {e})")
            since = None
        why_held = held_back(context.instance, p, since=since)
        if why_held:
            held[p] = why_held
            context.log.warning(f"partition {p!r} held back: {why_held}")
            continue
        reasons = ", ".join(f"{k.to_user_string()} {why}" for k, why in stale.items())
        context.log.info(f"partition {p!r}: {reasons}")
        requests.append(dg.RunRequest(partition_key=p, run_key=f"refresh:{p}:{tick}",
                                      asset_selection=sorted(stale, key=lambda k: k.to_user_string()),
                                      tags={"video_assets/reason": "stale-or-missing"}))
        if len(requests) >= _max_runs():
            break
    if not requests:
        if not held:
            return dg.SkipReason(f"all {len(partitions)} partitions are up to date")
        return dg.SkipReason(f"{len(partitions) - len(held)} of {len(partitions)} partitions are up to date; "
                             f"held back after repeated failures: "
                             + "; ".join(f"{p!r}: {why}" for p, why in held.items()))
    return requests


SCHEDULES = [refresh_stale_partitions]
