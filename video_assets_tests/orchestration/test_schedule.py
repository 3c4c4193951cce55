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


def _evaluate(instance):
    ctx = dg.build_schedule_context(instance=instance,
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
