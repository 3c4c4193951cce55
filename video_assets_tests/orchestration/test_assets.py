"""materialize() of the three assets (with their checks) for one partition: local warehouse and an s3://
warehouse on moto's server. The tables are read back and checked."""

import dagster as dg
import pyarrow as pa
import pytest

from video_assets.compute.settings import DecodeSettings
from video_assets.orchestration.assets import ASSETS, MODEL_STEP, QUALITY_CODE_VERSION
from video_assets.orchestration.jobs import video_assets_job
from video_assets.orchestration.partitions import PARTITIONS_NAME
from video_assets.orchestration.resources import WarehouseResource, default_resources
from video_assets.pipeline.tables import (
    KEYFRAMES_ASSET,
    KEYFRAMES_SCHEMA,
    MANIFEST_ASSET,
    MANIFEST_SCHEMA,
    QUALITY_ASSET,
    QUALITY_SCHEMA,
    read_table,
    user_values,
)
from video_assets.storage import filesystem_for
from video_assets_tests.pipeline_helpers import DEMO_CSV, make_videos, materialize_partition, s3_client, upload_tree

USER_COLUMNS = ["label", "score_hint"]


@pytest.fixture(scope="module")
def tiny_videos(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("tiny") / "videos")


_materialize = materialize_partition


def _check_tables(warehouse: WarehouseResource, key: str):
    m = read_table(warehouse.table_uri(MANIFEST_ASSET, key))
    q = read_table(warehouse.table_uri(QUALITY_ASSET, key))
    k = read_table(warehouse.table_uri(KEYFRAMES_ASSET, key))
    # schemas: exactly the explicit schema; the user columns are the JSON object in `user`
    for table, schema in ((m, MANIFEST_SCHEMA), (q, QUALITY_SCHEMA), (k, KEYFRAMES_SCHEMA)):
        assert table.schema.names == schema.names and table.schema.names[-1] == "user"
        for f in schema:
            assert table.schema.field(f.name).type == f.type, f.name
        assert list(user_values(table.to_pandas()).columns) == USER_COLUMNS
    assert m.num_rows == 5 and q.num_rows == 4 and k.num_rows == 4  # the duplicated row is scored once
    mf, qf, kf = m.to_pandas(), q.to_pandas(), k.to_pandas()
    assert mf["duplicate_of"].notna().sum() == 1
    assert mf["readable"].tolist() == [True, True, True, False, True]
    good = mf[mf["readable"] & mf["duplicate_of"].isna()]
    assert (good["duration_sec"].round(2) == 2.0).all() and (good["width"] == 96).all()
    assert (good["codec"] == "h264").all() and (good["num_frames"] == 24).all() and good["error"].isna().all()
    bad_m = mf[mf["video_id"] == "bad"].iloc[0]
    assert "broken.mp4" in bad_m["error"] and bad_m["size_bytes"] > 0

    assert qf["video_id"].tolist() == ["a", "b", mf["video_id"].iloc[2], "bad"]
    ok = qf[qf["video_id"] != "bad"]
    assert ok["quality_score"].between(0, 1).all() and ok["error"].isna().all()
    assert all(len(v) == 8 and all(0 <= x <= 1 for x in v) for v in ok["frame_scores"])
    assert all(len(v) == 8 for v in ok["frame_indices"]) and all(len(v) == 8 for v in ok["timestamps"])
    bad_q = qf[qf["video_id"] == "bad"].iloc[0]
    assert pa.compute.is_null(q["quality_score"][3]).as_py() and q["frame_scores"][3].as_py() is None
    assert "not a readable video" in bad_q["error"]
    assert (qf["model"] == "video-assets/tiny-clip").all() and (qf["prompt"] == "quality").all()
    assert user_values(qf)["label"].tolist() == ["clean", "clean", "other", "corrupt"]
    assert user_values(mf)["score_hint"].tolist() == ["1", "2", "3", "4", "5"]  # CSV values are text

    okk = kf[kf["video_id"] != "bad"]
    assert okk["error"].isna().all() and (okk["num_keyframes"] == 2).all()  # 2 s at 1 fps: 2 candidates
    bad_k = kf[kf["video_id"] == "bad"].iloc[0]
    assert bad_k["keyframe_paths"] is None and "not a readable video" in bad_k["error"]
    paths = [p for v in okk["keyframe_paths"] for p in v]
    assert len(paths) == 6
    for p in paths:
        fs, path = filesystem_for(p)
        assert p.startswith(warehouse.keyframes_dir(key)) and fs.exists(path) and fs.size(path) > 100
    return mf, qf, kf


def _check_results(result):
    assert result.success
    checks = {(c.asset_key.to_user_string(), c.check_name): c for c in result.get_asset_check_evaluations()}
    assert len(checks) == 10
    # the manifest's own checks: 1 of its 4 videos fails to probe (above 10 %, not above 50 %)
    assert not checks[("video_manifest", "failed_share_below_threshold")].passed
    assert checks[("video_manifest", "failed_share_below_error_threshold")].passed
    for name in ("quality_scores_in_range", "row_count_matches_manifest"):
        assert checks[("video_quality_scores", name)].passed
    assert checks[("video_keyframes", "keyframe_files_exist")].passed
    assert checks[("video_keyframes", "row_count_matches_manifest")].passed
    share = checks[("video_quality_scores", "failed_share_below_threshold")]
    assert not share.passed and share.severity == dg.AssetCheckSeverity.WARN  # 1 of 4 > 10 %
    mostly = checks[("video_quality_scores", "failed_share_below_error_threshold")]
    assert mostly.passed and mostly.severity == dg.AssetCheckSeverity.ERROR  # 1 of 4 <= 50 %
    md = {m.asset_key.to_user_string(): m.metadata for m in result.get_asset_materialization_events()
          and [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]}
    q, k, m = md["video_quality_scores"], md["video_keyframes"], md["video_manifest"]
    assert q["dagster/row_count"].value == 4 and q["failed"].value == 1
    # the UI shows markdown inline below 1,000 characters: the small histogram inline, the rest in a dialog
    assert q["score_histogram"].value.startswith("![histogram](data:image/png;base64,")
    assert len(q["score_histogram"].value) < 1000 and "(n=3)" in q["score_histogram"].value
    assert q["score_histogram_large"].value.startswith("![quality score histogram](data:image/png;base64,")
    assert k["contact_sheet"].value.startswith("![keyframes](data:image/png;base64,")
    assert "not a readable video container" in q["top_errors"].value
    assert q["throughput_videos_per_s"].value > 0
    # which decoder ran: the clip resource's decode settings resolved for the step's device on this machine
    assert q["decoder"].value == k["decoder"].value == "cpu, " + DecodeSettings().describe("cpu")
    assert q["decoder"].value.endswith(("decode thread", "decode threads", "decode process", "decode processes"))
    assert "gpu_busy_pct" not in q and "gpu_busy_pct" not in k  # no GPU ran
    preview = q["preview"].value  # TableMetadataValue
    ids = [r.data["video_id"] for r in preview.records]
    assert ids[:2] == ["a", "b"] and ids[3] == "bad" and len(ids) == 4
    assert preview.records[3].data["error"].startswith("not a readable video container")
    assert m["videos"].value == 4 and m["duplicates"].value == 1 and m["dagster/row_count"].value == 5
    mats = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    tags = {m.asset_key.to_user_string(): m for m in mats}
    assert tags["video_quality_scores"].tags["dagster/code_version"] == QUALITY_CODE_VERSION


def _demo_warehouse(tmp_path, tiny_videos):
    """A local warehouse under ``tmp_path`` and the demo manifest beside the tiny videos it names."""
    manifest = tiny_videos["a.mp4"].parent.parent / "demo.csv"
    manifest.write_text(DEMO_CSV)
    return WarehouseResource(warehouse=str(tmp_path / "wh"), inbox=str(tmp_path / "inbox")), manifest


def _quality_metadata(tmp_path, tiny_videos):
    """Materialise the manifest and the quality table of the demo manifest; the quality table's metadata."""
    warehouse, manifest = _demo_warehouse(tmp_path, tiny_videos)
    with dg.instance_for_test() as instance:
        _, result = _materialize(warehouse, str(manifest), instance,
                                 selection=[dg.AssetKey(MANIFEST_ASSET), dg.AssetKey(QUALITY_ASSET)])
    assert result.success
    (q,) = [e.event_specific_data.materialization.metadata for e in result.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey(QUALITY_ASSET)]
    return q


def test_gpu_busy_reaches_the_metadata_when_the_step_runs_on_a_gpu(tmp_path, tiny_videos, fake_nvidia_smi,
                                                                   monkeypatch):
    """The step samples its GPU (compute/gpu_busy.py) while the models run. Here the model runs on the CPU:
    the sampler is told the step's device is cuda:0, and a stand-in nvidia-smi answers for it."""
    from video_assets.orchestration import assets

    monkeypatch.setattr(assets, "resolve_device", lambda device: "cuda:0")
    q = _quality_metadata(tmp_path, tiny_videos)
    assert 80 <= q["gpu_busy_pct"].value <= 90 and 10 <= q["nvdec_busy_pct"].value <= 30
    assert q["gpu_busy_samples"].value >= 1
    assert "--query-gpu=utilization.gpu,utilization.decoder" in fake_nvidia_smi.read_text()


def test_materialize_local_warehouse(tmp_path, tiny_videos):
    warehouse, manifest = _demo_warehouse(tmp_path, tiny_videos)
    with dg.instance_for_test() as instance:
        key, result = _materialize(warehouse, str(manifest), instance)
        assert key == "demo"
        _check_results(result)
        _, _, kf = _check_tables(warehouse, key)
        first_paths = {p for v in kf["keyframe_paths"].dropna() for p in v}

        # re-materialise the keyframes with other settings: the table is replaced, old images removed
        _, result = _materialize(warehouse, str(manifest), instance,
                                 run_config={"ops": {MODEL_STEP: {"config": {"keyframes": {"max_num_frames": 1}}}}},
                                 selection=[dg.AssetKey(KEYFRAMES_ASSET)])
        assert result.success
        kf2 = read_table(warehouse.table_uri(KEYFRAMES_ASSET, key)).to_pandas()
        assert kf2["num_keyframes"].dropna().tolist() == [1, 1, 1]
        left = {p for v in kf2["keyframe_paths"].dropna() for p in v}
        fs, root = filesystem_for(warehouse.keyframes_dir(key))
        assert set(fs.find(root)) == left and left < first_paths

        # only checks selected (a check's "Execute" in the UI): the step computes nothing and evaluates the
        # stored tables; a keyframe image deleted since is reported
        gone = sorted(left)[0]
        fs.rm_file(filesystem_for(gone)[1])
        files_check = dg.AssetCheckKey(dg.AssetKey(KEYFRAMES_ASSET), "keyframe_files_exist")
        rows_check = dg.AssetCheckKey(dg.AssetKey(QUALITY_ASSET), "row_count_matches_manifest")
        job = dg.Definitions(assets=ASSETS, jobs=[video_assets_job],
                             resources=default_resources(warehouse=warehouse)).resolve_job_def(video_assets_job.name)
        result = job.get_subset(asset_selection=set(), asset_check_selection={files_check, rows_check}
                                ).execute_in_process(instance=instance, partition_key=key, raise_on_error=False)
        assert result.success and not result.get_asset_materialization_events()
        checks = {dg.AssetCheckKey(c.asset_key, c.check_name): c for c in result.get_asset_check_evaluations()}
        assert set(checks) == {files_check, rows_check}
        assert checks[rows_check].passed and checks[rows_check].metadata["manifest_videos"].value == 4
        assert not checks[files_check].passed and checks[files_check].metadata["missing"].value == 1
    assert not list((tmp_path / "wh").rglob("*.tmp-*"))  # atomic writes left no temporary files


def test_materialize_s3_warehouse(s3_endpoint, s3_bucket, tiny_videos, tmp_path):
    client = s3_client(s3_endpoint)
    upload_tree(client, s3_bucket, "inbox", {f"videos/{n}": p for n, p in tiny_videos.items()})
    # relative paths resolve against the manifest's prefix: ../videos/a.mp4 from inbox/manifests/
    upload_tree(client, s3_bucket, "inbox", {"manifests/demo.csv": DEMO_CSV.replace(",videos/", ",../videos/")
                .replace("./videos/../videos/a.mp4", "../manifests/../videos/a.mp4").encode()})
    warehouse = WarehouseResource(warehouse=f"s3://{s3_bucket}/wh", inbox=f"s3://{s3_bucket}/inbox")
    with dg.instance_for_test() as instance:
        key, result = _materialize(warehouse, f"s3://{s3_bucket}/inbox/manifests/demo.csv", instance)
        _check_results(result)
        mf, _, kf = _check_tables(warehouse, key)
    assert mf["uri"].iloc[0] == f"s3://{s3_bucket}/inbox/videos/a.mp4"  # videos were read from S3 too
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket, Prefix="wh/")["Contents"]}
    assert {f"wh/{a}/{key}.parquet" for a in (MANIFEST_ASSET, QUALITY_ASSET, KEYFRAMES_ASSET)} <= keys
    assert sum(k.startswith(f"wh/keyframes/{key}/") for k in keys) == 6
    assert f"wh/_registry/manifests/{key}.json" in keys


def test_bad_settings_and_unknown_partition_fail_fast_without_retries(tmp_path, tiny_videos):
    warehouse, manifest = _demo_warehouse(tmp_path, tiny_videos)
    with dg.instance_for_test() as instance:
        bad = {"ops": {MODEL_STEP: {"config": {"quality": {"sample_mode": "by_count_uniform", "count_k": 0}}}}}
        _, result = _materialize(warehouse, str(manifest), instance, run_config=bad)
        assert not result.success
        failures = [e for e in result.all_events if e.is_step_failure]
        assert [e.step_key for e in failures] == [MANIFEST_ASSET]  # the run's first step refuses it
        assert "count_k" in failures[0].event_specific_data.error.message
        assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        # the model step alone: its config is refused when the step starts, without a retry
        _, result = _materialize(warehouse, str(manifest), instance, selection=[dg.AssetKey(QUALITY_ASSET)],
                                 run_config=bad)
        failures = [e for e in result.all_events if e.is_step_failure]
        assert [e.step_key for e in failures] == [MODEL_STEP]
        assert "count_k" in str(failures[0].event_specific_data.error.to_string())
        assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        assert not result.get_asset_materialization_events()

        instance.add_dynamic_partitions(PARTITIONS_NAME, ["ghost"])
        result = dg.materialize(ASSETS, partition_key="ghost", instance=instance, raise_on_error=False,
                                resources=default_resources(warehouse=warehouse))
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert "no manifest is registered for partition 'ghost'" in failure.event_specific_data.error.message
        assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_transient_storage_error_is_retried_and_progress_is_logged(tmp_path, tiny_videos, monkeypatch):
    import video_assets.orchestration.assets as assets_mod

    warehouse, manifest = _demo_warehouse(tmp_path, tiny_videos)
    real_write, calls = assets_mod.write_table, []

    def flaky_write(table, uri, *a, **kw):
        calls.append(uri)
        if len(calls) == 1:
            raise ConnectionError("simulated: connection reset by the object store")
        return real_write(table, uri, *a, **kw)

    monkeypatch.setattr(assets_mod, "write_table", flaky_write)
    monkeypatch.setenv("VIDEO_ASSETS_PROGRESS_EVERY_SEC", "0")
    with dg.instance_for_test() as instance:
        _, result = _materialize(warehouse, str(manifest), instance, selection=[dg.AssetKey(MANIFEST_ASSET)])
        assert result.success
        retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        err = retries[0].event_specific_data.error.cause  # the policy's retry request wraps the error
        assert len(retries) == 1 and err.cls_name == "ConnectionError" and "connection reset" in err.message
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
        assert any("probe: 4/4 videos" in m and "videos/s" in m and "ETA" in m for m in logs)


def test_manifest_counts_videos_as_the_model_step_does_and_its_checks_fail_when_most_fail(tmp_path, tiny_videos):
    """A malformed line is not a video: video_manifest counts 3 failed of 4 videos (and 1 malformed line), as
    the model step does, not 4 of 5; its failed-share checks fail instead of staying green."""
    folder = tiny_videos["a.mp4"].parent
    manifest = folder.parent / "mostly_bad.jsonl"
    manifest.write_text('{"uri": "videos/a.mp4"}\n{"uri": "videos/broken.mp4"}\n{"uri": "videos/gone1.mp4"}\n'
                        '{"uri": "videos/gone2.mp4"}\n{"uri": "videos/c.mp4"\n')
    warehouse = WarehouseResource(warehouse=str(tmp_path / "wh"), inbox=str(tmp_path / "inbox"))
    with dg.instance_for_test() as instance:
        _, result = _materialize(warehouse, str(manifest), instance)
    assert not result.success  # 75 % failed: above the error threshold, the model step fails the partition
    (m,) = [e.event_specific_data.materialization.metadata for e in result.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey(MANIFEST_ASSET)]
    assert m["videos"].value == 4 and m["malformed_lines"].value == 1 and m["dagster/row_count"].value == 5
    assert m["failed"].value == 3 and m["failed_share"].value == 0.75
    evals = {(c.asset_key.to_user_string(), c.check_name): c for c in result.get_asset_check_evaluations()}
    model = evals[(QUALITY_ASSET, "failed_share_below_error_threshold")]
    assert model.metadata["failed"].value == 3 and model.metadata["failed_share"].value == 0.75
    mostly = evals[(MANIFEST_ASSET, "failed_share_below_error_threshold")]
    assert not mostly.passed and mostly.severity == dg.AssetCheckSeverity.ERROR
    assert mostly.metadata["failed_share"].value == 0.75 and mostly.description.startswith("3 of 4 videos failed")
    share = evals[(MANIFEST_ASSET, "failed_share_below_threshold")]
    assert not share.passed and share.severity == dg.AssetCheckSeverity.WARN


def test_throughput_leaves_out_the_model_load(tmp_path, tiny_videos):
    """The model step loads its models first and reports that time apart (model_load_s); the throughput is
    over the rest (processing_s), the time the videos took."""
    from video_assets.models.clip import clear_clip_cache

    clear_clip_cache()  # this process may have loaded the model already: then the load would take no time
    q = _quality_metadata(tmp_path, tiny_videos)
    elapsed, load, processing = (q[k].value for k in ("elapsed_s", "model_load_s", "processing_s"))
    assert load > 0 and processing > 0
    assert processing == pytest.approx(elapsed - load, abs=0.002)
    # processing_s is rounded to 1 ms, a large share of the few ms four tiny videos take
    assert 4 / (processing + 0.0005) <= q["throughput_videos_per_s"].value <= 4 / (processing - 0.0005)
