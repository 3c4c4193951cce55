"""Crash safety: a materialisation killed with SIGKILL half-way leaves the previous tables and the keyframe images
they reference intact and readable, and the next run completes the partition.

A first run (default settings) materialises the partition. Then a subprocess re-materialises it with other
settings (another JPEG quality, so every keyframe image gets other bytes, and another prompt) and is killed
with SIGKILL: (a) by itself in the middle of writing a keyframe image (half the bytes in the temporary file),
(b) by itself in the middle of writing the keyframes table, (c) from outside, by this test, as soon as it has
written its first new keyframe image. After each kill every table reads, the keyframes table still references
only images that exist, decode and have exactly the bytes they had, and a new run completes the partition.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest
from PIL import Image

from video_assets.orchestration.resources import WarehouseResource
from video_assets.pipeline.tables import KEYFRAMES_ASSET, MANIFEST_ASSET, QUALITY_ASSET, read_table
from video_assets_tests.pipeline_helpers import make_videos, materialize_partition

JPEG_B = 60  # the second run's keyframe JPEG quality (the default is 95)

CHILD = textwrap.dedent('''
    """Re-materialise a partition with other settings; SIGKILL this process at the point named by argv[3]."""
    import os, signal, sys
    import dagster as dg
    from video_assets.orchestration.resources import WarehouseResource
    from video_assets_tests.pipeline_helpers import materialize_partition
    from video_assets_tests.orchestration.test_crash_safety import second_run_config

    warehouse, manifest, fault = sys.argv[1], sys.argv[2], sys.argv[3]

    def killing(real, match, nth):
        calls = []

        def write_bytes(uri, data, storage_options=None, **kw):
            if match in str(uri):
                calls.append(uri)
                if len(calls) == nth:  # half the bytes in the temporary file, then the kill
                    with open(f"{uri}.tmp-{os.getpid()}-crash", "wb") as f:
                        f.write(data[:len(data) // 2])
                        f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(uri, data, storage_options, **kw)
        return write_bytes

    if fault == "keyframe_image":
        import video_assets.operators.export as K  # where the keyframes operator writes its images
        K.write_bytes = killing(K.write_bytes, "/keyframes/", 3)
    elif fault == "keyframes_table":
        import video_assets.pipeline.tables as T
        T.write_bytes = killing(T.write_bytes, "/video_keyframes/", 1)
    wh = WarehouseResource(warehouse=warehouse, inbox=os.path.dirname(os.path.dirname(manifest)))
    with dg.instance_for_test() as instance:
        key, result = materialize_partition(wh, manifest, instance, run_config=second_run_config())
    print("finished", result.success)
''')


def second_run_config() -> dict:
    """Run config of the second run, for the layout of the assets module (one model step or two assets)."""
    from video_assets.orchestration import assets

    q, k = {"prompt": "sharpness"}, {"jpeg_quality": JPEG_B}
    step = getattr(assets, "MODEL_STEP", None)
    if step:
        return {"ops": {step: {"config": {"quality": q, "keyframes": k}}}}
    return {"ops": {"video_quality_scores": {"config": q}, "video_keyframes": {"config": k}}}


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _snapshot(wh: WarehouseResource, key: str) -> dict:
    """Each table's bytes hash, and every referenced keyframe image with its bytes hash."""
    tables = {a: _sha(wh.table_uri(a, key)) for a in (MANIFEST_ASSET, QUALITY_ASSET, KEYFRAMES_ASSET)}
    kf = read_table(wh.table_uri(KEYFRAMES_ASSET, key)).to_pandas()
    images = {p: _sha(p) for paths in kf["keyframe_paths"].dropna() for p in paths}
    return {"tables": tables, "images": images, "jpeg_quality": set(kf["settings"])}


def _check_readable(wh: WarehouseResource, key: str) -> dict:
    """Every table reads; every image the keyframes table references exists and decodes."""
    for asset in (MANIFEST_ASSET, QUALITY_ASSET, KEYFRAMES_ASSET):
        assert read_table(wh.table_uri(asset, key)).num_rows > 0
    snap = _snapshot(wh, key)
    assert snap["images"]
    for p in snap["images"]:
        with Image.open(io.BytesIO(Path(p).read_bytes())) as im:
            im.load()
    return snap


def _new_images(folder: Path, old: set[str]) -> int:
    return sum(1 for p in folder.rglob("*.jpg") if str(p) not in old)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["keyframe_image", "keyframes_table", "external"])
def test_sigkill_mid_materialisation_keeps_the_previous_partition(tmp_path, fault):
    make_videos(tmp_path / "inbox" / "manifests" / "videos")
    manifest = tmp_path / "inbox" / "manifests" / "crash.csv"
    manifest.write_text("uri\nvideos/a.mp4\nvideos/b.mp4\nvideos/c.mp4\nvideos/broken.mp4\n")
    wh = WarehouseResource(warehouse=str(tmp_path / "wh"), inbox=str(tmp_path / "inbox"))
    with dg.instance_for_test() as instance:
        key, result = materialize_partition(wh, str(manifest), instance)
        assert result.success
    before = _check_readable(wh, key)
    kf_dir = Path(wh.keyframes_dir(key))

    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-c", CHILD, wh.warehouse_uri, str(manifest), fault]
    if fault == "external":
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while _new_images(kf_dir, set(before["images"])) == 0 and proc.poll() is None:
            assert time.monotonic() < deadline, "the second run wrote no keyframe image"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # kill -9 while it writes keyframes
        proc.communicate(timeout=60)
        returncode = proc.returncode
    else:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        returncode = out.returncode
        assert "finished" not in out.stdout, out.stderr[-2000:]
    assert returncode == -signal.SIGKILL

    after = _check_readable(wh, key)
    # the keyframes table was not replaced, and every image it references still has its bytes
    assert after["tables"][KEYFRAMES_ASSET] == before["tables"][KEYFRAMES_ASSET]
    assert after["images"] == before["images"]
    assert _new_images(kf_dir, set(before["images"])) >= (1 if fault != "keyframes_table" else 0)
    # the other tables are each either the old or a complete new version (both read above)

    # the next run completes the partition with the new settings and cleans up
    with dg.instance_for_test() as instance:
        key, result = materialize_partition(wh, str(manifest), instance, run_config=second_run_config())
        assert result.success
    done = _check_readable(wh, key)
    assert all(f'"jpeg_quality": {JPEG_B}' in s for s in done["jpeg_quality"])
    assert set(done["images"]).isdisjoint(before["images"])  # other bytes, other names: nothing overwritten
    on_disk = {str(p) for p in kf_dir.rglob("*") if p.is_file()}
    assert on_disk == set(done["images"]), "orphans or half-written temporary files left in the keyframe folder"
