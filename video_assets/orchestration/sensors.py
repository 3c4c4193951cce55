"""Sensors on the inbox (a local folder or an s3:// prefix; the same fsspec code for both).

- ``manifest_sensor``: new or changed manifests under ``{inbox}/manifests/`` -> registered in the warehouse's
  manifest registry, added as a ``video_manifests`` partition, and a run of the four assets requested.
- ``video_upload_sensor``: new videos under ``{inbox}/videos/`` -> batched (up to ``upload_batch_size`` per
  manifest) into CSV manifests written to ``{inbox}/manifests/``, which ``manifest_sensor`` then picks up.

Both keep an :class:`~video_assets.pipeline.inbox.InboxCursor` (small: newest mtime + recently seen paths), so
a restart goes on where it stopped. A manifest whose content (SHA-256) is already registered for an existing
partition is not run again; every run request carries the run key ``{partition}@{sha256[:16]}``, which Dagster
never launches twice for one sensor. An upload whose fingerprint (ETag / SHA-1) is already in the upload
ledger is not batched again.

Crashes and restarts: an evaluation that fails half-way leaves the cursor where it was, so the next one sees
the same objects again, and both sensors are written for that:

- ``manifest_sensor`` writes the registry before Dagster has the run request, so "registered" alone does not
  mean "requested": a manifest counts as done only when a run with its run key exists (or its
  ``video_manifest`` table was built from that content); otherwise the request is made again (same run key).
- ``video_upload_sensor`` saves the upload ledger (which manifest each upload goes into) before writing the
  manifests; a manifest the ledger names but the inbox lacks is written again from the ledger, with the same
  name and bytes, so no upload is lost and none lands in two manifests.
"""

import csv
import hashlib
import io
import time
from datetime import datetime, timezone

import dagster as dg

from video_assets.orchestration.env import env_number
from video_assets.orchestration.jobs import video_assets_job
from video_assets.orchestration.partitions import PARTITIONS_NAME, video_manifests
from video_assets.orchestration.resources import WarehouseResource
from video_assets.pipeline.inbox import VIDEO_SUFFIXES, InboxCursor, fingerprint, list_inbox, select_new, suffix_filter
from video_assets.pipeline.manifests import ManifestError, is_manifest_name, read_bytes, read_manifest
from video_assets.pipeline.tables import MANIFEST_ASSET, read_table, table_exists
from video_assets.storage import describe_uri, filesystem_for, join_uri, write_bytes

SENSOR_INTERVAL_ENV = "VIDEO_ASSETS_SENSOR_INTERVAL"
DEFAULT_SENSOR_INTERVAL = 30
MANIFEST_URI_TAG = "video_assets/manifest_uri"
MANIFEST_SHA_TAG = "video_assets/manifest_sha256"
RUN_KEY_TAG = "dagster/run_key"  # where Dagster records a run request's run key


def sensor_interval() -> int:
    return env_number(SENSOR_INTERVAL_ENV, DEFAULT_SENSOR_INTERVAL, int, minimum=1)


def run_key(partition_key: str, sha256: str) -> str:
    return f"{partition_key}@{sha256[:16]}"


def already_requested(instance: dg.DagsterInstance, warehouse: WarehouseResource, key: str, sha: str) -> bool:
    """Whether this content of partition ``key`` has a run (any status) or a ``video_manifest`` table built
    from it (a run launched by hand). Only asked for manifests whose content is already registered."""
    if instance.get_run_records(dg.RunsFilter(tags={RUN_KEY_TAG: run_key(key, sha)}), limit=1):
        return True
    uri = warehouse.table_uri(MANIFEST_ASSET, key)
    try:
        if not table_exists(uri):
            return False
        shas = read_table(uri, columns=["manifest_sha256"]).column(0)
        return len(shas) > 0 and shas[0].as_py() == sha
    except Exception:  # noqa: BLE001 - an unreadable table proves nothing: request the run (same run key)
        return False


@dg.sensor(job=video_assets_job, minimum_interval_seconds=sensor_interval(),
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="New or changed manifests under {inbox}/manifests/ become partitions and runs.")
def manifest_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    t0 = time.monotonic()
    cursor = InboxCursor.loads(context.cursor)
    objects = list_inbox(warehouse.manifests_uri, is_manifest_name)
    new, waiting = select_new(objects, cursor, warehouse.lookback_seconds, warehouse.settle_seconds,
                              limit=warehouse.max_runs_per_tick)
    if not new:
        where = describe_uri(warehouse.manifests_uri)
        return dg.SkipReason(f"no new manifests among {len(objects)} under {where}"
                             + (f" ({waiting} settling)" if waiting else ""))
    registry = warehouse.registry()
    existing = set(context.instance.get_dynamic_partitions(PARTITIONS_NAME))
    added: list[str] = []
    run_requests: list[dg.RunRequest] = []
    for obj in new:
        try:
            data = read_bytes(obj.uri)
        except ManifestError as e:  # vanished between listing and reading
            context.log.warning(str(e))
            cursor.mark(obj)
            continue
        sha = hashlib.sha256(data).hexdigest()
        key = registry.key_for(obj.uri)
        entry = registry.get(key)
        if entry and entry.get("sha256") == sha and key in existing and \
                already_requested(context.instance, warehouse, key, sha):
            context.log.info(f"{describe_uri(obj.uri)}: unchanged (partition {key!r} already registered)")
            cursor.mark(obj)
            continue
        try:
            manifest = read_manifest(obj.uri, data=data)
        except ManifestError as e:
            context.log.error(f"skipping malformed manifest: {e}")
            cursor.mark(obj)  # retried when the file changes
            continue
        for w in manifest.warnings:
            context.log.warning(f"{describe_uri(obj.uri)}: {w}")
        key, _, _ = registry.register(obj.uri, sha, manifest, key=key)
        if key not in existing and key not in added:
            added.append(key)
        run_requests.append(dg.RunRequest(
            partition_key=key, run_key=run_key(key, sha),
            tags={MANIFEST_URI_TAG: obj.uri, MANIFEST_SHA_TAG: sha}))
        context.log.info(f"{describe_uri(obj.uri)}: partition {key!r}, {manifest.num_rows} rows "
                         f"({len(manifest.unique)} videos) -> run requested")
        cursor.mark(obj)
    cursor.prune(warehouse.lookback_seconds)
    context.log.info(f"{len(objects)} manifests listed, {len(new)} new, {len(run_requests)} runs requested, "
                     f"{waiting} waiting, in {time.monotonic() - t0:.2f}s")
    partition_requests = [video_manifests.build_add_request(added)] if added else []
    return dg.SensorResult(run_requests=run_requests, cursor=cursor.dumps(),
                           dynamic_partitions_requests=partition_requests)


def upload_manifest_name(batch: list[dict]) -> str:
    """Deterministic from the batch's content, so a repeated evaluation rewrites the same file."""
    h = hashlib.sha1("\n".join(f"{r['uri']}\t{r['fingerprint']}" for r in batch).encode()).hexdigest()[:10]
    day = datetime.fromtimestamp(batch[0]["mtime"], timezone.utc).strftime("%Y%m%d")
    return f"uploads-{day}-{h}.csv"


def _exists(uri: str) -> bool:
    fs, path = filesystem_for(uri)
    if hasattr(fs, "invalidate_cache"):
        fs.invalidate_cache(path)
    return fs.exists(path)


def write_upload_manifest(manifests_uri: str, batch: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["uri", "uploaded_at", "size_bytes", "fingerprint"])
    for r in batch:
        w.writerow([r["uri"], datetime.fromtimestamp(r["mtime"], timezone.utc).isoformat(), r["size"],
                    r["fingerprint"]])
    uri = join_uri(manifests_uri, upload_manifest_name(batch))
    write_bytes(uri, buf.getvalue().encode())
    return uri


@dg.sensor(minimum_interval_seconds=sensor_interval(), default_status=dg.DefaultSensorStatus.RUNNING,
           description="New videos under {inbox}/videos/ are batched into manifests in {inbox}/manifests/.")
def video_upload_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    t0 = time.monotonic()
    cursor = InboxCursor.loads(context.cursor)
    objects = list_inbox(warehouse.videos_uri, suffix_filter(VIDEO_SUFFIXES))
    limit = warehouse.upload_batch_size * warehouse.max_manifests_per_tick
    new, waiting = select_new(objects, cursor, warehouse.lookback_seconds, warehouse.settle_seconds,
                              limit=limit)
    if not new:
        return dg.SkipReason(f"no new videos among {len(objects)} under {describe_uri(warehouse.videos_uri)}"
                             + (f" ({waiting} waiting)" if waiting else ""))
    ledger = warehouse.upload_ledger().load()
    fresh: list[dict] = []
    batch_fps: set[str] = set()
    batched_before: set[str] = set()  # manifests the ledger puts uploads of this tick in
    for obj in new:
        try:
            fp = fingerprint(obj)
        except FileNotFoundError:
            cursor.mark(obj)
            continue
        muri = ledger.batched_into(obj.uri, fp)
        if muri:
            batched_before.add(muri)
        reason = ledger.seen(obj.uri, fp) or ("same content as another upload in this batch"
                                              if fp in batch_fps and not fp.startswith("sample:") else None)
        if reason:
            context.log.info(f"{describe_uri(obj.uri)}: {reason}; not batched again")
            continue
        batch_fps.add(fp)
        fresh.append({"uri": obj.uri, "fingerprint": fp, "mtime": obj.mtime, "size": obj.size})
    size = max(1, warehouse.upload_batch_size)
    batches = [fresh[i:i + size] for i in range(0, len(fresh), size)]
    planned = [join_uri(warehouse.manifests_uri, upload_manifest_name(b)) for b in batches]
    # Write-ahead: the ledger names each upload's manifest before the manifest exists, so a crash in between is
    # finished below by the next evaluation instead of batching the uploads again (maybe differently).
    for batch, muri in zip(batches, planned):
        ledger.add({**r, "manifest_uri": muri} for r in batch)
    if planned:
        ledger.save()
    written = []
    for muri in sorted(batched_before - set(planned)):
        rows = ledger.batch(muri)
        if rows is not None and not _exists(muri):
            write_upload_manifest(warehouse.manifests_uri, rows)
            written.append(muri)
            context.log.warning(f"wrote {describe_uri(muri)} again from the upload ledger "
                                "(an earlier evaluation stopped before writing it)")
    for batch, muri in zip(batches, planned):
        write_upload_manifest(warehouse.manifests_uri, batch)
        written.append(muri)
        context.log.info(f"wrote {describe_uri(muri)} with {len(batch)} videos")
    for obj in new:
        cursor.mark(obj)
    cursor.prune(warehouse.lookback_seconds)
    context.log.info(f"{len(objects)} videos listed, {len(new)} new, {len(fresh)} batched, "
                     f"{len(written)} manifest(s) written, {waiting} waiting, in {time.monotonic() - t0:.2f}s")
    return dg.SensorResult(cursor=cursor.dumps())


SENSORS = [manifest_sensor, video_upload_sensor]
