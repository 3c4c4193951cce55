"""What a user sees: a partition of bad videos fails loudly with its cause and fix, the demo manifest works
when copied into the inbox, the tables of all partitions read as one dataset (DuckDB, pandas), ``make demo``
and ``python -m video_assets add-manifest`` record their runs in the instance the UI uses, and the smaller
messages (source policy, an empty sampling window, an unwritable keyframe folder)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from video_assets.orchestration import checks
from video_assets.orchestration.partitions import PARTITIONS_NAME
from video_assets.orchestration.resources import WarehouseResource
from video_assets.orchestration.sensors import write_upload_manifest
from video_assets.pipeline import report
from video_assets.pipeline.manifests import read_manifest
from video_assets.pipeline.tables import KEYFRAMES_ASSET, MANIFEST_ASSET, QUALITY_ASSET, read_frame, user_values
from video_assets_tests.pipeline_helpers import make_videos, materialize_partition, write_atomic

REPO = Path(__file__).resolve().parents[2]
TINY = "video-assets/tiny-clip"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("clips") / "videos", names=("a.mp4", "b.mp4"))


def _warehouse(tmp_path) -> WarehouseResource:
    return WarehouseResource(warehouse=str(tmp_path / "wh"), inbox=str(tmp_path / "inbox"))


def _failure(result) -> str:
    return next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message


# ----------------------------------------------------------------------------------------------------------
# 1. failures are loud


def test_partition_of_missing_videos_fails_with_the_cause_and_its_fix(tmp_path, monkeypatch):
    inbox_manifests = tmp_path / "inbox" / "manifests"
    manifest = write_atomic(inbox_manifests / "copied.csv", "uri,label\nclips/x.mp4,a\nclips/y.mp4,b\n"
                                                            "clips/z.mp4,c\n")
    warehouse = _warehouse(tmp_path)
    with dg.instance_for_test() as instance:
        key, result = materialize_partition(warehouse, str(manifest), instance)
        assert not result.success
        message = _failure(result)
        folder = str(inbox_manifests / "clips") + os.sep
        assert ("video_quality_scores, video_keyframes, video_frame_embeddings: 3 of 3 videos failed"
                in message)
        assert checks.ERROR_FAILED_SHARE_ENV in message and f"file not found under {folder}" in message
        assert "fix the paths in the manifest" in message
        assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        # the model assets are not materialised (the partition shows as failed); their error check failed
        assert [m.asset_key.to_user_string() for m in result.get_asset_materialization_events()] == \
            [MANIFEST_ASSET]
        evals = _evals(result)
        for asset in (QUALITY_ASSET, KEYFRAMES_ASSET):
            c = evals[(asset, checks.MOSTLY_FAILED)]
            assert not c.passed and c.severity == dg.AssetCheckSeverity.ERROR
            assert c.metadata["failed_share"].value == 1.0 and folder in c.metadata["common_cause"].value
        status = instance.get_status_by_partition(dg.AssetKey(QUALITY_ASSET), [key], _partitions_def())
        assert status[key].value == "FAILED"
        # the tables are written anyway, each video with its error
        errors = read_frame(warehouse.table_uri(QUALITY_ASSET, key))["error"]
        assert errors.str.contains("file not found").all()
        # the run log names the folder relative paths resolved against, and the common cause once per asset
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
        assert any("do not exist where they resolve" in m and str(inbox_manifests) in m for m in logs)
        assert sum(m.startswith(f"{QUALITY_ASSET}: 3 of 3 failures: file not found under") for m in logs) == 1

        # the threshold is a setting: above it the same partition materialises (the warning check still fails)
        monkeypatch.setenv(checks.ERROR_FAILED_SHARE_ENV, "1.0")
        _, result = materialize_partition(warehouse, str(manifest), instance)
        assert result.success
        evals = _evals(result)
        assert evals[(QUALITY_ASSET, checks.MOSTLY_FAILED)].passed
        assert not evals[(QUALITY_ASSET, checks.FAILED_SHARE)].passed


def _evals(result) -> dict:
    return {(c.asset_key.to_user_string(), c.check_name): c for c in result.get_asset_check_evaluations()}


def _partitions_def():
    from video_assets.orchestration.partitions import video_manifests

    return video_manifests


def test_common_cause_names_the_folder_the_policy_or_the_credentials():
    def frame(errors, uris):
        return pd.DataFrame({"error": errors, "uri": uris})

    missing = frame(["/in/m/a.mp4: file not found", "/in/m/b.mp4: file not found", "/x/c.mp4: not a video",
                     None], ["/in/m/a.mp4", "/in/m/b.mp4", "/x/c.mp4", "/x/d.mp4"])
    line = report.common_cause(missing)
    assert line.startswith("2 of 3 failures: file not found under /in/m/") and "manifest's folder" in line
    policy = frame(["/etc/a.mp4: source not allowed: local path resolves to a location outside the allowed "
                    "folders (data)"] * 2, ["/etc/a.mp4", "/etc/b.mp4"])
    assert "VIDEO_ASSETS_ALLOWED_ROOTS" in report.common_cause(policy)
    creds = frame(["s3://b/a.mp4: cannot open (NoCredentialsError: Unable to locate credentials)",
                   "s3://b/c.mp4: access denied (HTTP 403)"], ["s3://b/a.mp4", "s3://b/c.mp4"])
    assert "AWS_ACCESS_KEY_ID" in report.common_cause(creds)
    mixed = frame(["a.mp4: not a video", "b.mp4: file not found", "c.mp4: too long"],
                  ["a.mp4", "b.mp4", "c.mp4"])
    assert report.common_cause(mixed) is None
    assert report.common_cause(frame([None], ["a.mp4"])) is None


# ----------------------------------------------------------------------------------------------------------
# 2. the inbox trap


def test_demo_manifest_copied_into_the_inbox_finds_the_samples(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # data/ is relative to the working directory, like the default inbox
    inbox = tmp_path / "inbox"
    copied = inbox / "manifests" / "demo_manifest.csv"
    copied.parent.mkdir(parents=True)
    shutil.copy(REPO / "data" / "demo_manifest.csv", copied)
    m = read_manifest(str(copied))
    assert m.frame["uri"].tolist() == [str(REPO / "data" / "samples" / n) for n in
                                       ("sharp_shapes.mp4", "blurry_noisy.mp4", "dark_low_contrast.mp4",
                                        "broken.mp4")]
    assert any("found under" in w and str(copied.parent) in w for w in m.warnings)
    warehouse = WarehouseResource(warehouse=str(tmp_path / "wh"), inbox=str(inbox))
    with dg.instance_for_test() as instance:
        key, result = materialize_partition(warehouse, str(copied), instance)
    assert result.success
    q = read_frame(warehouse.table_uri(QUALITY_ASSET, key))
    assert q["quality_score"].notna().tolist() == [True, True, True, False]  # broken.mp4 is broken on purpose


# ----------------------------------------------------------------------------------------------------------
# 3. one dataset across partitions


def test_tables_of_partitions_with_different_user_columns_read_as_one(tmp_path, clips):
    import duckdb

    a, b = clips["a.mp4"], clips["b.mp4"]
    folder = tmp_path / "manifests"
    csv = write_atomic(folder / "labelled.csv",
                       f"uri,label,score_hint\n{a},clean,1\n{clips['broken.mp4']},bad,2\n")
    jsonl = write_atomic(folder / "cameras.jsonl",
                         json.dumps({"uri": str(b), "camera": "front", "n": 7}) + "\n"
                         + json.dumps({"uri": str(a), "camera": "rear"}) + "\n")
    uploads = write_upload_manifest(str(folder), [{"uri": str(b), "mtime": 1.7e9, "size": 1234,
                                                   "fingerprint": "sha1:abc"}])
    warehouse = _warehouse(tmp_path)
    keys = []
    with dg.instance_for_test() as instance:
        for m in (csv, jsonl, uploads):
            key, result = materialize_partition(warehouse, str(m), instance)
            assert result.success
            keys.append(key)
    wh = tmp_path / "wh"
    for asset, n in ((MANIFEST_ASSET, 5), (QUALITY_ASSET, 5), (KEYFRAMES_ASSET, 5)):
        glob = f"{wh}/{asset}/*.parquet"
        rows = duckdb.sql(f"select partition_key, video_id, user from '{glob}'").fetchall()
        assert len(rows) == n and {r[0] for r in rows} == set(keys)
        labels = duckdb.sql(f"select user->>'label' from '{glob}' where user->>'label' is not null"
                            ).fetchall()
        assert sorted(r[0] for r in labels) == ["bad", "clean"]
        n_values = duckdb.sql(f"select (user->>'n')::int from '{glob}' where user->>'n' is not null")
        assert n_values.fetchall() == [(7,)]
        assert duckdb.sql(f"select user->>'size_bytes' from '{glob}' where partition_key like 'uploads-%'"
                          ).fetchall() == [("1234",)]
        frame = pd.read_parquet(f"{wh}/{asset}/")
        assert len(frame) == n and set(frame["partition_key"]) == set(keys)
        user = user_values(frame)
        assert set(user.columns) >= {"label", "score_hint", "camera", "n", "uploaded_at", "size_bytes",
                                     "fingerprint"}
        assert sorted(user["camera"].dropna()) == ["front", "rear"] and user["n"].dropna().tolist() == [7]
    m = pd.read_parquet(f"{wh}/{MANIFEST_ASSET}/")
    k = pd.read_parquet(f"{wh}/{KEYFRAMES_ASSET}/")
    for col in ("width", "height", "num_frames", "size_bytes"):
        assert str(m[col].dtype) == "Int64", col
    assert str(k["num_keyframes"].dtype) == "Int64" and str(k["num_candidates"].dtype) == "Int64"
    assert m.loc[m["readable"] == False, "width"].isna().all()  # noqa: E712 - a missing width is <NA>


# ----------------------------------------------------------------------------------------------------------
# 4./5. the demo and the CLI record into the instance the UI uses


def _env(tmp_path) -> dict:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return {**os.environ, "DAGSTER_HOME": str(home), "VIDEO_ASSETS_WAREHOUSE": str(tmp_path / "wh"),
            "VIDEO_ASSETS_INBOX": str(tmp_path / "inbox"), "VIDEO_ASSETS_CLIP_MODEL": TINY}


def _materialized(home: str, asset: str, key: str):
    with dg.DagsterInstance.from_config(home) as instance:
        assert instance.has_dynamic_partition(PARTITIONS_NAME, key)
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        return event.asset_materialization if event and event.asset_materialization.partition == key else None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_materialises_into_the_dagster_home_the_ui_uses(tmp_path):
    env = _env(tmp_path)
    out = subprocess.run([sys.executable, "-m", "video_assets.demo"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=280)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "broken on purpose" in out.stdout
    assert "broken: not a readable video container (Invalid data found when processing input)" in out.stdout
    mat = _materialized(env["DAGSTER_HOME"], QUALITY_ASSET, "demo_manifest")
    assert mat is not None and mat.metadata["dagster/row_count"].value == 4
    assert mat.metadata["failed_share"].value == 0.25


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_add_manifest_registers_the_partition_and_launches_it(tmp_path, clips):
    env = _env(tmp_path)
    manifest = write_atomic(tmp_path / "m" / "From Script.csv", f"uri\n{clips['a.mp4']}\n{clips['b.mp4']}\n")
    cmd = [sys.executable, "-m", "video_assets", "add-manifest", str(manifest)]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "partition 'from_script'" in out.stdout and "dagster asset materialize" in out.stdout
    assert _materialized(env["DAGSTER_HOME"], QUALITY_ASSET, "from_script") is None
    out = subprocess.run(cmd + ["--launch"], cwd=REPO, env=env, capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "SUCCESS" in out.stdout
    assert _materialized(env["DAGSTER_HOME"], KEYFRAMES_ASSET, "from_script").metadata[
        "dagster/row_count"].value == 2
    bad = subprocess.run([sys.executable, "-m", "video_assets", "add-manifest", str(tmp_path / "nope.csv")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "nope.csv: manifest not found" in bad.stderr


def test_project_instance_defaults_to_the_repository_dagster_home(tmp_path, monkeypatch):
    from video_assets import cli

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setattr(cli, "REPO_DAGSTER_HOME", home)
    with cli.project_instance() as instance:
        assert Path(instance.root_directory) == home and os.environ["DAGSTER_HOME"] == str(home)


# ----------------------------------------------------------------------------------------------------------
# 6. the smaller points


def test_policy_message_names_the_setting_that_allows_more(tmp_path):
    from video_assets.errors import SourcePolicyError
    from video_assets.storage.policy import SourcePolicy

    with pytest.raises(SourcePolicyError, match="VIDEO_ASSETS_ALLOWED_ROOTS"):
        SourcePolicy(local_roots=(str(tmp_path / "allowed"),)).check("/etc/passwd")


def test_start_time_past_the_end_names_the_video_once(clips):
    from video_assets.operators import VideoQualityScore

    op = VideoQualityScore(clip_model_name=TINY, device="cpu", start_time_sec=100.0)
    err = op.score_details(video_paths=[str(clips["a.mp4"])])[0]["error"]
    assert err.startswith(f"{clips['a.mp4']}: no frames in the sampling window")
    assert err.count(str(clips["a.mp4"])) == 1 and "ValueError" not in err


def test_unwritable_keyframe_folder_fails_at_construction(tmp_path):
    from video_assets.operators import VideoAdaptiveKeyframesSampling

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match=r"output_tos_dir .*a_file/keyframes.* is a file, not a folder"):
        VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu",
                                       output_tos_dir=str(blocker / "keyframes"))
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="is not writable"):
            VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu",
                                           output_tos_dir=str(locked / "k"))
    VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu",
                                   output_tos_dir=str(tmp_path / "new" / "k"))
