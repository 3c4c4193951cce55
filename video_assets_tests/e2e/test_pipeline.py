"""End to end through the real server: ``dagster dev`` with a temporary DAGSTER_HOME (the project's
dagster.yaml), a run launched like the UI's Materialize button, then a manifest dropped into the inbox and the
sensor's run. Everything on 127.0.0.1; the processes started here are stopped by their process group."""

import os
import time

import pytest

from video_assets.pipeline.registry import ManifestRegistry
from video_assets.pipeline.tables import (
    KEYFRAMES_ASSET,
    MANIFEST_ASSET,
    QUALITY_ASSET,
    read_frame,
    table_uri,
    user_values,
)
from video_assets_tests.dagster_dev import dagster_dev
from video_assets_tests.pipeline_helpers import make_videos, wait_for, write_atomic

ASSET_PATHS = [[MANIFEST_ASSET], [QUALITY_ASSET], [KEYFRAMES_ASSET]]


def _tables(warehouse, key):
    return [read_frame(table_uri(str(warehouse), a, key))
            for a in (MANIFEST_ASSET, QUALITY_ASSET, KEYFRAMES_ASSET)]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dagster_dev_materialize_button_and_manifest_sensor(tmp_path):
    media = tmp_path / "media"
    make_videos(media, names=("a.mp4", "b.mp4"))
    warehouse, inbox = tmp_path / "warehouse", tmp_path / "inbox"
    # a manifest registered by hand (what a person does before pressing Materialize in the UI)
    manual = write_atomic(tmp_path / "manual" / "first.csv",
                          f"uri,tag\n{media}/a.mp4,x\n{media}/broken.mp4,y\n")
    key, _ = ManifestRegistry(str(warehouse)).register_file(str(manual))
    env = {"VIDEO_ASSETS_WAREHOUSE": str(warehouse), "VIDEO_ASSETS_INBOX": str(inbox),
           "VIDEO_ASSETS_CLIP_MODEL": "video-assets/tiny-clip", "VIDEO_ASSETS_SENSOR_INTERVAL": "2",
           "VIDEO_ASSETS_PROGRESS_EVERY_SEC": "1", "HF_HUB_OFFLINE": "1", "AWS_EC2_METADATA_DISABLED": "true",
           "DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    with dagster_dev(tmp_path / "dagster_home", env) as server:
        server.wait_loaded()
        started = time.monotonic() - t0

        # 1. the UI's "Add partition" and "Materialize" on that partition
        server.add_partition("video_manifests", key)
        run_id = server.materialize(ASSET_PATHS, key)
        status = server.wait_run(run_id)
        assert status == "SUCCESS", server.run_failure_messages(run_id)
        first_run = time.monotonic() - t0 - started
        m, q, k = _tables(warehouse, key)
        assert len(m) == 2 and len(q) == 2 and len(k) == 2
        assert q["quality_score"].notna().tolist() == [True, False]
        assert user_values(q)["tag"].tolist() == ["x", "y"]
        assert all(os.path.exists(p) for p in k["keyframe_paths"].iloc[0])

        # 2. a manifest dropped into the inbox: the sensor registers it and its run succeeds
        write_atomic(inbox / "manifests" / "Dropped Batch.csv", f"uri\n{media}/b.mp4\n{media}/a.mp4\n")

        def sensor_run():
            runs = server.runs({"dagster/sensor_name": "manifest_sensor"})
            done = [r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
            return done[0] if done else None

        run = wait_for(sensor_run, timeout=150, interval=1, what="the manifest sensor's run")
        assert run["status"] == "SUCCESS", server.run_failure_messages(run["runId"])
        assert run["tags"]["dagster/partition"] == "dropped_batch"
        m, q, k = _tables(warehouse, "dropped_batch")
        assert len(q) == 2 and q["quality_score"].between(0, 1).all() and k["error"].isna().all()
        assert len(server.runs({"dagster/sensor_name": "manifest_sensor"})) == 1  # exactly one run
    total = time.monotonic() - t0
    print(f"\ndagster dev: loaded in {started:.1f}s, UI-style run {first_run:.1f}s, total {total:.1f}s")
    assert server.proc.poll() is not None  # stopped
