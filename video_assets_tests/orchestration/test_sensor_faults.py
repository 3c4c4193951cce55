"""Sensor faults: an evaluation that crashes half-way (after some manifests or ledger entries were written, before
the cursor advanced) and a daemon restart (a fresh evaluation with the old cursor) neither lose an upload nor
run one twice. The daemon is simulated faithfully: the cursor and partition requests of a tick are applied only
when the evaluation returns, and run requests become runs unless their run key already has one
(``launch_like_daemon``)."""

import os
import time
import uuid

import dagster as dg
import pytest

from video_assets.orchestration import sensors
from video_assets.orchestration.partitions import PARTITIONS_NAME
from video_assets.orchestration.resources import WarehouseResource
from video_assets.orchestration.sensors import manifest_sensor, video_upload_sensor
from video_assets.pipeline.inbox import InboxCursor
from video_assets.pipeline.manifests import read_manifest
from video_assets.pipeline.registry import ManifestRegistry
from video_assets.storage import filesystem_for, join_uri, write_bytes
from video_assets_tests.pipeline_helpers import SensorDaemon


class Crash(RuntimeError):
    """The injected fault (a bug, an OOM kill seen from inside, a lost connection)."""


def _runs(instance) -> list[dg.DagsterRun]:
    return [r.dagster_run for r in instance.get_run_records()]


def _run_keys(instance) -> list[str]:
    return sorted(r.tags["dagster/run_key"] for r in _runs(instance))


@pytest.fixture(params=["local", "s3"])
def base(request, tmp_path):
    if request.param == "local":
        return str(tmp_path)
    request.getfixturevalue("s3_endpoint")
    # s3_bucket names buckets after the first 40 characters of the test id, which parametrized ids share
    return f"s3://{request.getfixturevalue('s3_bucket')}/{uuid.uuid4().hex[:8]}"


def _warehouse(base: str, **kw) -> WarehouseResource:
    return WarehouseResource(warehouse=join_uri(base, "wh"), inbox=join_uri(base, "inbox"), settle_seconds=0,
                             **kw)


def test_manifest_sensor_crash_after_registering_then_restart(base, monkeypatch):
    """A tick registers m1, crashes on m2; the restarted tick (old cursor) requests both, exactly once."""
    wh = _warehouse(base)
    mdir = join_uri(base, "inbox", "manifests")
    write_bytes(join_uri(mdir, "m1.csv"), b"uri\na.mp4\n")
    write_bytes(join_uri(mdir, "m2.csv"), b"uri\nb.mp4\n")
    real = ManifestRegistry.register
    calls = []

    def flaky(self, *a, **kw):
        calls.append(a[0])
        if len(calls) == 2:
            raise Crash("injected crash while registering the second manifest")
        return real(self, *a, **kw)

    with dg.instance_for_test() as instance:
        d = SensorDaemon(manifest_sensor, instance, wh)
        monkeypatch.setattr(ManifestRegistry, "register", flaky)
        with pytest.raises(Crash):
            d.tick()
        assert wh.registry().get("m1") is not None  # the side effect of the crashed tick is there
        assert d.cursor is None and _runs(instance) == [] and \
            instance.get_dynamic_partitions(PARTITIONS_NAME) == []
        monkeypatch.setattr(ManifestRegistry, "register", real)

        launched = d.tick()  # the daemon evaluates again with the cursor it had
        assert sorted(r.partition_key for r in launched) == ["m1", "m2"]
        assert sorted(instance.get_dynamic_partitions(PARTITIONS_NAME)) == ["m1", "m2"]
        assert d.tick() == []
        assert SensorDaemon(manifest_sensor, instance, wh).tick(cursor=None) == []  # cursor lost: nothing again
        assert len(_run_keys(instance)) == 2


def test_changed_manifest_crash_before_the_run_request_is_not_lost(base, monkeypatch):
    """The registry already holds the new content when the tick dies; 'registered' must not count as 'run'."""
    wh = _warehouse(base)
    muri = join_uri(base, "inbox", "manifests", "day.csv")
    write_bytes(muri, b"uri\na.mp4\n")
    with dg.instance_for_test() as instance:
        d = SensorDaemon(manifest_sensor, instance, wh)
        assert [r.partition_key for r in d.tick()] == ["day"]
        time.sleep(1.05)  # S3 timestamps have one-second resolution
        write_bytes(muri, b"uri\na.mp4\nb.mp4\n")  # changed content, same partition

        # crash after the registry was updated, before the result reached the daemon
        monkeypatch.setattr(InboxCursor, "prune", lambda self, s: (_ for _ in ()).throw(Crash("injected")))
        with pytest.raises(Crash):
            d.tick()
        monkeypatch.undo()
        assert wh.registry().get("day")["rows"] == 2

        launched = d.tick()  # restart with the old cursor
        assert [r.partition_key for r in launched] == ["day"], "the changed manifest was lost"
        assert d.tick() == [] and SensorDaemon(manifest_sensor, instance, wh).tick(cursor=None) == []
        keys = _run_keys(instance)
        assert len(keys) == 2 and len(set(keys)) == 2  # one run per content, none twice


def test_daemon_restart_after_runs_were_launched_but_cursor_not_saved(tmp_path):
    """The daemon launched the runs of a tick and died before it stored the cursor: the re-evaluation with the
    old cursor launches nothing twice (run keys + registry), and a manifest started by hand counts as run."""
    wh = _warehouse(str(tmp_path))
    mdir = tmp_path / "inbox" / "manifests"
    mdir.mkdir(parents=True)
    (mdir / "x.csv").write_text("uri\na.mp4\n")
    with dg.instance_for_test() as instance:
        d = SensorDaemon(manifest_sensor, instance, wh)
        old = d.cursor
        assert len(d.tick()) == 1
        assert SensorDaemon(manifest_sensor, instance, wh).tick(cursor=old) == []
        assert len(_runs(instance)) == 1

        # a video_manifest table built from this content (a run from the UI, no run key) also counts
        from video_assets.pipeline.runner import build_manifest_table
        from video_assets.pipeline.settings import ManifestSettings
        from video_assets.pipeline.tables import MANIFEST_ASSET, write_table

        (mdir / "y.csv").write_text("uri\nb.mp4\n")
        key, _ = wh.registry().register_file(str(mdir / "y.csv"))
        instance.add_dynamic_partitions(PARTITIONS_NAME, [key])
        table, _ = build_manifest_table(str(mdir / "y.csv"), key, ManifestSettings(probe=False))
        write_table(table, wh.table_uri(MANIFEST_ASSET, key))
        assert SensorDaemon(manifest_sensor, instance, wh).tick(cursor=None) == []


def _manifest_uris(wh: WarehouseResource) -> list[str]:
    fs, root = filesystem_for(wh.manifests_uri)
    if hasattr(fs, "invalidate_cache"):
        fs.invalidate_cache()
    prefix = "s3://" if wh.manifests_uri.startswith("s3://") else ""
    return sorted(prefix + p for p in fs.find(root) if p.endswith(".csv")) if fs.exists(root) else []


def _batched(wh: WarehouseResource) -> list[str]:
    """Every upload URI listed by the generated manifests, with repetitions."""
    return sorted(u for m in _manifest_uris(wh) for u in read_manifest(m).frame["uri"])


@pytest.mark.parametrize("crash_at", ["first_manifest", "second_manifest", "end_of_tick"])
def test_upload_sensor_crash_mid_tick_then_restart(base, monkeypatch, crash_at):
    """5 uploads, batches of 2: a crash before the first manifest is written, between two manifests, or after
    all of them; one more upload arrives late (older mtime) before the restart, which could shift the batches.
    Afterwards every upload is in exactly one manifest and each manifest runs once."""
    if base.startswith("s3://") and crash_at != "second_manifest":
        pytest.skip("one crash point on S3 is enough to cover its listing and timestamps (test time)")
    wh = _warehouse(base, upload_batch_size=2)
    vdir = join_uri(base, "inbox", "videos")
    uploads = [join_uri(vdir, f"v{i}.mp4") for i in range(5)]
    for i, u in enumerate(uploads):
        write_bytes(u, f"video {i}".encode() + os.urandom(64))
    real_write = sensors.write_upload_manifest
    writes = []

    def flaky_write(manifests_uri, batch):
        writes.append(batch)
        if (crash_at == "first_manifest" and len(writes) == 1) or \
                (crash_at == "second_manifest" and len(writes) == 2):
            raise Crash(f"injected crash writing manifest #{len(writes)}")
        return real_write(manifests_uri, batch)

    monkeypatch.setattr(sensors, "write_upload_manifest", flaky_write)
    if crash_at == "end_of_tick":
        monkeypatch.setattr(InboxCursor, "prune", lambda self, s: (_ for _ in ()).throw(Crash("injected")))
    with dg.instance_for_test() as instance:
        up = SensorDaemon(video_upload_sensor, instance, wh)
        ms = SensorDaemon(manifest_sensor, instance, wh)
        with pytest.raises(Crash):
            up.tick()
        monkeypatch.undo()
        assert up.cursor is None
        written_before = len(_manifest_uris(wh))
        assert written_before == {"first_manifest": 0, "second_manifest": 1, "end_of_tick": 3}[crash_at]

        if base.startswith("s3://"):
            time.sleep(1.05)
        late = join_uri(vdir, "a_late.mp4")  # sorts first by name; given the oldest mtime where we can
        write_bytes(late, b"late video" + os.urandom(64))
        if not base.startswith("s3://"):
            os.utime(late, (time.time() - 60, time.time() - 60))

        up.tick()  # the restart: old cursor
        up.tick()
        assert up.tick() == []
        batched = _batched(wh)
        assert batched == sorted(uploads + [late]), "an upload was lost or batched twice"

        launched = ms.tick()
        assert len(launched) == len(_manifest_uris(wh)) == len(set(r.partition_key for r in launched))
        assert ms.tick() == [] and SensorDaemon(manifest_sensor, instance, wh).tick(cursor=None) == []
        assert len(_runs(instance)) == len(_manifest_uris(wh))
