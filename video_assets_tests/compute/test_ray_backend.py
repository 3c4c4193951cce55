"""The Ray compute backend on a local Ray instance (2 CPUs, no GPU, bound to 127.0.0.1): the same rows as the
local backend, a crashed worker replaced and its batch retried, a video that kills its worker twice recorded
as a failed row, the assets materialised through Dagster with ComputeResource(backend="ray").

Ray is imported by the backend only (its first import must see the loopback setting), never at the top here.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from video_assets.compute import BACKEND_ENV, LocalBackend, make_backend
from video_assets.compute.base import ComputeBackendError
from video_assets.operators import VideoQualityScore
from video_assets.pipeline.runner import extract_keyframes, score_quality
from video_assets.pipeline.settings import KeyframeSettings, ModelSettings, QualitySettings
from video_assets.progress import Progress
from video_assets.storage import describe_uri
from video_assets_tests.pipeline_helpers import DEMO_CSV, make_videos, materialize_partition
from video_assets_tests.ray_faults import CrashingFactory

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                 reason="the [ray] extra is not installed"),
              pytest.mark.e2e, pytest.mark.slow]

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # Ray's usage statistics would phone home
REPO = Path(__file__).resolve().parents[2]
MODELS = ModelSettings(decode_workers=2)
NAMES = ("a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4")


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module (2 CPUs, no GPU), started the way the backend starts it."""
    from video_assets.compute import ray_backend

    ray_backend.shutdown()
    ray_backend.connect("", num_cpus=2, num_gpus=0)
    import ray

    assert ray.cluster_resources().get("CPU") == 2 and not ray.cluster_resources().get("GPU")
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    yield ray_backend
    ray_backend.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Five tiny good videos and a broken one, in one folder."""
    return make_videos(tmp_path_factory.mktemp("ray") / "videos", names=NAMES)


@pytest.fixture(scope="module")
def manifest(videos) -> pd.DataFrame:
    names = [*NAMES[:3], "broken.mp4", *NAMES[3:]]  # the bad video in the middle of a batch
    return pd.DataFrame({"video_id": [n.split(".")[0] for n in names],
                         "uri": [str(videos[n]) for n in names]})


def _none(v):
    """pandas reads a null string column as NaN or None."""
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else v


def _lists(column) -> list:
    return [None if v is None else list(v) for v in column]


def _ray(**kw):
    return make_backend("ray", **{"num_workers": 2, "batch_size": 2, **kw})


def test_a_local_instance_runs_its_workers_at_normal_priority(ray_local):
    # Ray's default niceness (15) makes a worker lose every wake-up to the driver and Ray's daemons sharing the
    # machine: 14 % slower with one worker on 2 cores (bench/ray_backend.py).
    import ray

    @ray.remote(num_cpus=0)
    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, 0)

    assert ray.get(niceness.remote()) == os.getpriority(os.PRIO_PROCESS, 0)  # the driver's, not 15 more


def test_quality_rows_equal_the_local_backend(ray_local, manifest):
    settings = QualitySettings(count_k=6)
    local = score_quality(manifest, settings, MODELS, partition_key="p", backend=LocalBackend()).to_pandas()
    seen = []
    remote = score_quality(manifest, settings, MODELS, partition_key="p", backend=_ray(),
                           progress_callback=lambda done, total, rate: seen.append((done, total, rate)),
                           progress_every_sec=0.0).to_pandas()
    assert remote["video_id"].tolist() == local["video_id"].tolist() == manifest["video_id"].tolist()
    for lr, rr in zip(local.to_dict("records"), remote.to_dict("records")):
        assert _none(rr["error"]) == _none(lr["error"])
        if _none(lr["error"]) is None:
            assert rr["quality_score"] == pytest.approx(lr["quality_score"], abs=1e-5)
            assert np.allclose(rr["frame_scores"], lr["frame_scores"], atol=1e-5, rtol=0)
            assert list(rr["frame_indices"]) == list(lr["frame_indices"]) and len(rr["frame_indices"]) == 6
            assert list(rr["timestamps"]) == list(lr["timestamps"])
        else:
            assert "broken.mp4" in rr["error"] and pd.isna(rr["quality_score"])
    same = ["model", "device", "prompt", "settings_hash", "sample_settings", "truncated"]
    assert remote[same].equals(local[same]) and (remote["device"] == "cpu").all()
    # progress from the driver, batch by batch (4 batches of 2 rows on 2 workers), ending at total
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen) and seen[-1][:2] == (6, 6)
    assert len(seen) >= 3 and all(total == 6 and rate > 0 for _, total, rate in seen)


def test_keyframes_rows_and_images_equal_the_local_backend(ray_local, manifest, tmp_path):
    settings = KeyframeSettings(text="a white square", fps=4.0, max_num_frames=3)
    wh_local, wh_ray = str(tmp_path / "local"), str(tmp_path / "ray")
    local = extract_keyframes(manifest, settings, wh_local, "p", MODELS, backend=LocalBackend()).to_pandas()
    remote = extract_keyframes(manifest, settings, wh_ray, "p", MODELS, backend=_ray()).to_pandas()
    assert remote["video_id"].tolist() == local["video_id"].tolist()
    for lr, rr in zip(local.to_dict("records"), remote.to_dict("records")):
        assert _none(rr["error"]) == _none(lr["error"])
        if _none(lr["error"]) is not None:
            assert rr["keyframe_paths"] is None and "broken.mp4" in rr["error"]
            continue
        assert list(rr["frame_ids"]) == list(lr["frame_ids"]) and len(rr["frame_ids"]) == 3
        assert list(rr["timestamps"]) == list(lr["timestamps"])
        assert np.allclose(rr["scores"], lr["scores"], atol=1e-5, rtol=0)
        assert rr["num_candidates"] == lr["num_candidates"] == 8
        # same paths under each warehouse, and the workers wrote the same image bytes there
        rel_local = [os.path.relpath(p, wh_local) for p in lr["keyframe_paths"]]
        assert [os.path.relpath(p, wh_ray) for p in rr["keyframe_paths"]] == rel_local
        for path_ray, path_local in zip(rr["keyframe_paths"], lr["keyframe_paths"]):
            assert Path(path_ray).read_bytes() == Path(path_local).read_bytes()
            assert Path(path_ray).stat().st_size > 100


def test_crashed_worker_is_replaced_and_a_video_crashing_twice_becomes_a_failed_row(ray_local, videos,
                                                                                     tmp_path):
    """b.mp4 kills its worker once: Ray restarts the worker and retries the batch, which succeeds.
    d.mp4 kills it every time: its batch (c, d) dies twice, is split, and d dies twice alone; it becomes a
    failed row, c and the others are scored, the run completes."""
    paths = [str(videos[n]) for n in (*NAMES, "broken.mp4")]
    factory = partial(VideoQualityScore, decode_workers=2)
    expected = LocalBackend().map_details(factory, paths, Progress(len(paths), "local"))
    crashing = CrashingFactory(factory, tmp_path, crash_once=["b.mp4"], crash_always=["d.mp4"])
    progress = Progress(len(paths), "quality")
    got = _ray().map_details(crashing, paths, progress)

    assert sorted(crashing.crashes()) == ["b.mp4", "d.mp4", "d.mp4", "d.mp4", "d.mp4"]
    assert progress.done == len(paths)
    for path, want, row in zip(paths, expected, got):
        assert set(row) == set(want) | {"device"}  # the operator's own columns, failed or not
        if path.endswith("d.mp4"):
            assert row["score"] is None and row["frame_scores"] == []
            assert row["error"].startswith(f"worker crashed while decoding {describe_uri(path)} ")
            assert row["video_id"] == want["video_id"] and row["source"] == want["source"]
        else:
            assert row["error"] == want["error"]
            assert row["score"] == (None if want["score"] is None else pytest.approx(want["score"], abs=1e-5))
            assert row["frame_indices"] == want["frame_indices"]

    # the workers are healthy afterwards: the next call on them runs normally
    again = _ray().map_details(factory, paths[:2], Progress(2, "quality"))
    assert [r["score"] for r in again] == pytest.approx([r["score"] for r in expected[:2]], abs=1e-5)


def test_dagster_materialisation_with_the_ray_backend_gives_the_local_tables(ray_local, videos, tmp_path):
    import dagster as dg

    from video_assets.orchestration.resources import ComputeResource, WarehouseResource
    from video_assets.pipeline.tables import KEYFRAMES_ASSET, QUALITY_ASSET, read_table

    folder = videos["a.mp4"].parent.parent
    manifest = folder / "demo.csv"
    manifest.write_text(DEMO_CSV)
    tables = {}
    for backend in ("local", "ray"):
        warehouse = WarehouseResource(warehouse=str(tmp_path / backend / "wh"), inbox=str(tmp_path / backend))
        compute = ComputeResource(backend=backend, num_workers=2, batch_size=2)
        with dg.instance_for_test() as instance:
            key, result = materialize_partition(warehouse, str(manifest), instance, compute=compute)
        assert result.success
        q = read_table(warehouse.table_uri(QUALITY_ASSET, key)).to_pandas()
        k = read_table(warehouse.table_uri(KEYFRAMES_ASSET, key)).to_pandas()
        k["keyframe_paths"] = [None if v is None else [os.path.relpath(p, warehouse.warehouse_uri) for p in v]
                               for v in k["keyframe_paths"]]
        tables[backend] = (q, k)
    (ql, kl), (qr, kr) = tables["local"], tables["ray"]
    assert len(qr) == len(ql) == 4 and len(kr) == len(kl) == 4
    assert np.allclose(qr["quality_score"].astype(float), ql["quality_score"].astype(float), atol=1e-5,
                       equal_nan=True)
    for col in ("video_id", "uri", "error", "device", "settings_hash", "user"):
        assert [_none(v) for v in qr[col]] == [_none(v) for v in ql[col]], col
    assert _lists(qr["frame_indices"]) == _lists(ql["frame_indices"])
    for col in ("video_id", "error", "num_keyframes", "num_candidates", "settings_hash", "user"):
        assert [_none(v) for v in kr[col]] == [_none(v) for v in kl[col]], col
    for col in ("frame_ids", "keyframe_paths"):
        assert _lists(kr[col]) == _lists(kl[col]), col
    assert kr["error"].notna().sum() == 1 and sum(len(v) for v in kr["keyframe_paths"].dropna()) == 6


def test_env_selects_the_ray_backend_without_code_changes(monkeypatch):
    from video_assets.compute.ray_backend import RayBackend
    from video_assets.orchestration.resources import ComputeResource, default_resources

    monkeypatch.setenv(BACKEND_ENV, "ray")
    assert isinstance(make_backend(), RayBackend)
    env = {"env_vars": {"VIDEO_ASSETS_MODEL_PATH": "/models"}}
    resource = ComputeResource.from_env(num_workers=3, batch_size=4, num_gpus_per_worker=0.5, runtime_env=env)
    backend = resource.make()
    assert isinstance(backend, RayBackend) and backend.name == "ray"
    assert (backend.address, backend.num_workers, backend.batch_size) == ("", 3, 4)
    assert backend.num_gpus_per_worker == 0.5 and backend.runtime_env == env
    assert default_resources()["compute"].backend == "ray"
    monkeypatch.setenv(BACKEND_ENV, "local")
    assert isinstance(ComputeResource.from_env().make(), LocalBackend)


def test_bad_backend_name_and_bad_ray_options_are_clear_errors():
    with pytest.raises(ValueError, match="compute backend must be one of local, ray; got 'spark'"):
        make_backend("spark")
    with pytest.raises(ValueError, match="num_workers must be an int >= 1"):
        make_backend("ray", num_workers=0)
    with pytest.raises(ValueError, match="num_gpus_per_worker must be a number >= 0"):
        make_backend("ray", num_gpus_per_worker=-1)


def test_local_backend_never_imports_ray_and_an_unreachable_address_is_a_clear_error(videos):
    # A fresh process (this one is connected to Ray already); the Ray client's connection timeouts shortened.
    code = f"""
        import sys
        from functools import partial
        import pandas as pd
        from video_assets.compute import make_backend
        from video_assets.compute.base import ComputeBackendError
        from video_assets.operators import VideoQualityScore
        from video_assets.progress import Progress
        from video_assets.pipeline.runner import score_quality

        backend = make_backend()  # {BACKEND_ENV}=local
        frame = pd.DataFrame({{"video_id": ["a"], "uri": [{str(videos['a.mp4'])!r}]}})
        table = score_quality(frame, partition_key="p", backend=backend)
        assert backend.name == "local" and table.column("quality_score")[0].as_py() is not None
        print("ray imported:", "ray" in sys.modules)

        backend = make_backend("ray", address="ray://127.0.0.1:9")
        try:
            backend.map_details(partial(VideoQualityScore), [{str(videos['a.mp4'])!r}], Progress(1, "q"))
        except ComputeBackendError as e:
            print("ERROR:", e)
        """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, BACKEND_ENV: "local",
                               "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "1",
                               "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "1"})
    assert "ray imported: False" in proc.stdout, proc.stderr[-2000:]
    assert "ERROR: cannot connect to the Ray cluster at 'ray://127.0.0.1:9'" in proc.stdout, \
        proc.stderr[-2000:]


def test_missing_gpus_on_a_local_instance_fail_fast(ray_local, videos):
    with pytest.raises(ComputeBackendError,
                       match="num_gpus_per_worker=1 but the local Ray instance has 0 GPUs"):
        _ray(num_gpus_per_worker=1).map_details(partial(VideoQualityScore), [str(videos["a.mp4"])],
                                                 Progress(1, "quality"))
