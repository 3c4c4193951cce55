"""The refresh schedule: partitions with missing or stale (code version changed, upstream newer) assets."""

from datetime import datetime, timezone

import dagster as dg

from video_assets.orchestration.assets import CODE_VERSIONS
from video_assets.orchestration.partitions import PARTITIONS_NAME
from video_assets.orchestration.resources import WarehouseResource
from video_assets.orchestration.schedules import refresh_stale_partitions, stale_assets
from video_assets_tests.pipeline_helpers import make_videos, materialize_partition

M, Q, K, E = (dg.AssetKey(n) for n in ("video_manifest", "video_quality_scores", "video_keyframes",
                                       "video_frame_embeddings"))


def _evaluate(instance, warehouse=None):
    warehouse = warehouse or WarehouseResource(warehouse="/nonexistent/wh")  # an empty registry
    ctx = dg.build_schedule_context(instance=instance, resources={"warehouse": warehouse},
                                    scheduled_execution_time=datetime(2026, 11, 22, 3, tzinfo=timezone.utc))
    result = refresh_stale_partitions(ctx)
    if isinstance(result, dg.SkipReason):
        return {}
    return {r.partition_key: set(r.asset_selection) for r in result}


def test_schedule_requests_missing_and_stale_partitions(tmp_path, monkeypatch):
    make_videos(tmp_path / "videos", names=("a.mp4",))
    (tmp_path / "done.csv").write_text("uri\nvideos/a.mp4\n")
    wh = WarehouseResource(warehouse=str(tmp_path / "wh"), inbox=str(tmp_path / "inbox"))
    with dg.instance_for_test() as instance:
        assert _evaluate(instance) == {}  # no partitions
        key, result = materialize_partition(wh, str(tmp_path / "done.csv"), instance)
        assert result.success and key == "done"
        assert _evaluate(instance) == {}  # everything fresh
        instance.add_dynamic_partitions(PARTITIONS_NAME, ["todo"])
        assert _evaluate(instance) == {"todo": {M, Q, K, E}}

        # a changed default setting / model / pipeline version changes the code version: only that asset
        monkeypatch.setitem(CODE_VERSIONS, Q, "changed")
        assert stale_assets(instance, "done")[Q].startswith("code version ")
        assert _evaluate(instance) == {"todo": {M, Q, K, E}, "done": {Q}}
        monkeypatch.undo()

        # the manifest table rebuilt after the downstream tables: both downstream are stale
        _, result = materialize_partition(wh, str(tmp_path / "done.csv"), instance, selection=[M])
        assert result.success
        assert stale_assets(instance, "done") == {Q: "video_manifest is newer", K: "video_manifest is newer",
                                                  E: "video_manifest is newer"}
        assert _evaluate(instance)["done"] == {Q, K, E}


def test_schedule_holds_back_a_partition_that_keeps_failing(tmp_path, monkeypatch):
    """Real failed runs in a temporary instance: a partition without a manifest fails in video_manifest every
    time. After $VIDEO_ASSETS_SCHEDULE_MAX_FAILURES failed runs with the current code versions the schedule
    stops requesting it and says so; a code change, new manifest content, or a run that succeeds releases
    it."""
    from video_assets.orchestration.assets import ASSETS, CODE_VERSIONS_TAG
    from video_assets.orchestration.jobs import video_assets_job
    from video_assets.orchestration.resources import ClipModelResource, default_resources
    from video_assets.orchestration.schedules import SCHEDULE_MAX_FAILURES_ENV, held_back

    make_videos(tmp_path / "inbox" / "manifests" / "videos", names=("a.mp4",))
    wh = WarehouseResource(warehouse=str(tmp_path / "wh"), inbox=str(tmp_path / "inbox"))
    job = dg.Definitions(assets=ASSETS, jobs=[video_assets_job],
                         resources=default_resources(warehouse=wh, clip=ClipModelResource(decode_workers=2))
                         ).resolve_job_def(video_assets_job.name)
    monkeypatch.setenv(SCHEDULE_MAX_FAILURES_ENV, "2")
    ctx = dict(scheduled_execution_time=datetime(2026, 11, 22, 3, tzinfo=timezone.utc), resources={"warehouse": wh})

    def run(request):  # what the daemon launches for a request (job tags + the request's)
        return job.execute_in_process(instance=instance, partition_key=request.partition_key, tags=request.tags,
                                      asset_selection=request.asset_selection, raise_on_error=False)

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(PARTITIONS_NAME, ["ghost", "other"])
        for day in range(2):
            requests = refresh_stale_partitions(dg.build_schedule_context(instance=instance, **ctx))
            assert sorted(r.partition_key for r in requests) == ["ghost", "other"], f"day {day}"
            (ghost,) = [r for r in requests if r.partition_key == "ghost"]
            result = run(ghost)
            assert not result.success and CODE_VERSIONS_TAG in result.dagster_run.tags
        # two failures of "ghost" with this code: held back; "other" has one and is still requested
        result = refresh_stale_partitions(dg.build_schedule_context(instance=instance, **ctx))
        assert [r.partition_key for r in result] == ["other"]
        why = held_back(instance, "ghost")
        assert why.startswith("its last 2 runs failed with the current code versions")
        assert held_back(instance, "ghost", limit=3) is None  # the count is the setting
        # with nothing else to do the tick is skipped, naming the partition held back and why
        instance.delete_dynamic_partition(PARTITIONS_NAME, "other")
        skip = refresh_stale_partitions(dg.build_schedule_context(instance=instance, **ctx))
        assert isinstance(skip, dg.SkipReason)
        assert "0 of 1 partitions are up to date; held back after repeated failures: 'ghost': its last 2 runs " \
               "failed" in skip.skip_message
        # a run with other config (Launchpad overrides) says nothing about the schedule's runs: still held
        other_config = job.execute_in_process(instance=instance, partition_key="ghost", raise_on_error=False,
                                              run_config={"ops": {"video_manifest": {"config": {"probe": False}}}})
        assert not other_config.success and held_back(instance, "ghost") == why
        # nor does one with a resource override from the Launchpad (another device, other limits)
        other_resources = job.execute_in_process(instance=instance, partition_key="ghost", raise_on_error=False,
                                                 run_config={"resources": {"clip": {"config": {"device": "tpu"}}}})
        assert not other_resources.success and held_back(instance, "ghost") == why

        # a code change may fix it: requested again
        deployed = CODE_VERSIONS[M]
        monkeypatch.setitem(CODE_VERSIONS, M, "changed")
        assert _evaluate(instance, wh) == {"ghost": {M, Q, K, E}}
        monkeypatch.setitem(CODE_VERSIONS, M, deployed)
        assert held_back(instance, "ghost") is not None

        # new manifest content (as manifest_sensor registers it) may fix it: only runs since then count. This
        # one is registered but not there (deleted after upload), so the next two runs fail and hold it again.
        from video_assets.orchestration.schedules import content_since

        wh.registry().register(str(tmp_path / "inbox" / "manifests" / "ghost.csv"), "0" * 64, key="ghost")
        since = content_since(wh, "ghost")
        assert since is not None and held_back(instance, "ghost", since=since) is None
        for day in range(2):
            (ghost,) = refresh_stale_partitions(dg.build_schedule_context(instance=instance, **ctx))
            assert ghost.partition_key == "ghost", f"day {day}"
            assert not run(ghost).success
        assert held_back(instance, "ghost", since=since).startswith("its last 2 runs failed")
        assert isinstance(refresh_stale_partitions(dg.build_schedule_context(instance=instance, **ctx)),
                          dg.SkipReason)

        # the manifest arrives and a run (by hand) succeeds: released
        (tmp_path / "inbox" / "manifests" / "ghost.csv").write_text("uri\nvideos/a.mp4\n")
        assert wh.registry().register_file(str(tmp_path / "inbox" / "manifests" / "ghost.csv"))[0] == "ghost"
        assert job.execute_in_process(instance=instance, partition_key="ghost").success
        assert held_back(instance, "ghost") is None and _evaluate(instance, wh) == {}
