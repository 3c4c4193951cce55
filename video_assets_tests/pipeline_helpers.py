"""Helpers shared by the pipeline tests: tiny videos, manifests, S3 uploads."""

from __future__ import annotations

import os
import time
from pathlib import Path

from video_assets_tests.videos import encode_video

# Tiny videos: 24 frames at 12 fps (2 s), 96x64, libx264. Encoding them takes a few milliseconds each.
TINY = dict(n_frames=24, fps=12, codec="libx264", bframes=0)


def make_videos(folder: Path, names=("a.mp4", "b.mp4", "c.mp4")) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, name in enumerate(names):
        # a different keyframe interval per video: distinct bytes, same frames
        out[name] = encode_video(folder / name, options={"preset": "ultrafast"}, gop=6 + i, **TINY)
    broken = folder / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(512))
    out["broken.mp4"] = broken
    return out


DEMO_CSV = (
    "video_id,uri,label,score_hint\n"
    "a,videos/a.mp4,clean,1\n"
    "b,videos/b.mp4,clean,2\n"
    ",videos/c.mp4,other,3\n"
    "bad,videos/broken.mp4,corrupt,4\n"
    "a_again,./videos/../videos/a.mp4,dup,5\n"
)


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write like a well-behaved uploader: temporary name, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path


def touch_later(path: Path, seconds: float = 1.0) -> None:
    """Move a file's mtime forward (a re-upload) without waiting."""
    st = path.stat()
    os.utime(path, (st.st_atime + seconds, st.st_mtime + seconds))


def s3_client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def upload_tree(client, bucket: str, prefix: str, files: dict[str, bytes | Path]) -> None:
    for rel, data in files.items():
        body = data.read_bytes() if isinstance(data, Path) else data
        client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}".lstrip("/"), Body=body)


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def materialize_partition(warehouse, manifest_uri: str, instance, run_config=None, selection=None, compute=None):
    """Register the manifest, add its partition, materialize the three assets and their checks (``compute``: a
    ComputeResource; default: from the environment)."""
    import dagster as dg

    from video_assets.orchestration.assets import ASSETS
    from video_assets.orchestration.partitions import PARTITIONS_NAME
    from video_assets.orchestration.resources import ClipModelResource, default_resources

    key, _ = warehouse.registry().register_file(manifest_uri)
    if not instance.has_dynamic_partition(PARTITIONS_NAME, key):
        instance.add_dynamic_partitions(PARTITIONS_NAME, [key])
    result = dg.materialize(ASSETS, partition_key=key, instance=instance, raise_on_error=False,
                            resources=default_resources(warehouse=warehouse, clip=ClipModelResource(decode_workers=2),
                                                        **({"compute": compute} if compute is not None else {})),
                            run_config=run_config, selection=selection)
    return key, result


def launch_like_daemon(instance, run_requests, sensor_name: str = "manifest_sensor") -> list:
    """What the sensor daemon does with a tick's run requests, minus running them: a request whose run key
    already has a run is skipped; the others are recorded as (not started) runs carrying their run key. Returns the
    requests that became runs."""
    import dagster as dg
    from dagster._core.utils import make_new_run_id

    launched = []
    for req in run_requests:
        tags = {"dagster/run_key": req.run_key, "dagster/sensor_name": sensor_name, **(req.tags or {})}
        if req.run_key and instance.get_run_records(dg.RunsFilter(tags={"dagster/run_key": req.run_key}),
                                                    limit=1):
            continue
        if req.partition_key:
            tags["dagster/partition"] = req.partition_key
        instance.add_run(dg.DagsterRun(job_name="video_assets_job", run_id=make_new_run_id(), tags=tags,
                                       status=dg.DagsterRunStatus.NOT_STARTED))
        launched.append(req)
    return launched


class SensorDaemon:
    """Evaluates one sensor as the daemon does: keeps the cursor, applies partition requests, records the runs
    (:func:`launch_like_daemon`). State survives only what a completed evaluation returned: an exception in the
    sensor (an injected crash) leaves the cursor, partitions and runs as they were."""

    def __init__(self, sensor, instance, warehouse):
        self.sensor, self.instance, self.warehouse, self.cursor = sensor, instance, warehouse, None

    def tick(self, cursor="keep") -> list:
        import dagster as dg

        ctx = dg.build_sensor_context(instance=self.instance, resources={"warehouse": self.warehouse},
                                      cursor=self.cursor if cursor == "keep" else cursor)
        result = self.sensor(ctx)
        if isinstance(result, dg.SkipReason):
            return []
        assert isinstance(result, dg.SensorResult)
        for req in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        launched = launch_like_daemon(self.instance, result.run_requests or [], self.sensor.name)
        self.cursor = result.cursor
        return launched
