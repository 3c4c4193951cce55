"""Both sensors with build_sensor_context, against a local folder and against moto's S3 server: new files,
restart with the saved cursor, lost cursor, duplicate uploads, changed manifests, 10,000 existing objects."""

import time

import dagster as dg
import pytest

from video_assets.orchestration.partitions import PARTITIONS_NAME
from video_assets.orchestration.resources import WarehouseResource
from video_assets.orchestration.sensors import manifest_sensor, video_upload_sensor
from video_assets.pipeline.manifests import read_manifest
from video_assets.storage import filesystem_for, join_uri, write_bytes
from video_assets_tests.pipeline_helpers import SensorDaemon, make_videos, s3_client


@pytest.fixture(scope="module")
def video_bytes(tmp_path_factory):
    vids = make_videos(tmp_path_factory.mktemp("sensor_videos"), names=("a.mp4", "b.mp4"))
    return {n: p.read_bytes() for n, p in vids.items()}


@pytest.fixture(params=["local", "s3"])
def inbox(request, tmp_path):
    """(warehouse resource, inbox base URI) on a local folder or on a moto bucket."""
    if request.param == "local":
        base = str(tmp_path)
    else:
        request.getfixturevalue("s3_endpoint")  # starts moto's server, sets AWS_ENDPOINT_URL_S3
        bucket = request.getfixturevalue("s3_bucket")
        base = f"s3://{bucket}"
    wh = WarehouseResource(warehouse=join_uri(base, "wh"), inbox=join_uri(base, "inbox"), settle_seconds=0,
                           upload_batch_size=2)
    return wh, join_uri(base, "inbox")


def _put(uri: str, data: bytes):
    write_bytes(uri, data)


def test_manifest_sensor(inbox):
    wh, base = inbox
    mdir = join_uri(base, "manifests")
    with dg.instance_for_test() as instance:
        t = SensorDaemon(manifest_sensor, instance, wh)
        assert t.tick() == []  # no inbox yet

        _put(join_uri(mdir, "Day 1.csv"), b"uri\n../videos/a.mp4\n")
        _put(join_uri(mdir, ".hidden.csv"), b"uri\nx.mp4\n")
        _put(join_uri(mdir, "notes.md"), b"not a manifest")
        reqs = t.tick()
        assert [(r.partition_key, r.run_key.split("@")[0]) for r in reqs] == [("day_1", "day_1")]
        assert instance.get_dynamic_partitions(PARTITIONS_NAME) == ["day_1"]
        first_key = reqs[0].run_key
        assert wh.registry().get("day_1")["rows"] == 1
        assert t.tick() == []  # nothing new

        saved = t.cursor  # restart: a new evaluation from the saved cursor
        assert SensorDaemon(manifest_sensor, instance, wh).tick(cursor=saved) == []

        time.sleep(1.05)  # S3 timestamps have one-second resolution
        _put(join_uri(mdir, "Day 1.csv"), b"uri\n../videos/a.mp4\n")  # same content again
        assert t.tick() == []
        _put(join_uri(mdir, "Day 1.csv"), b"uri\n../videos/a.mp4\n../videos/b.mp4\n")  # changed
        reqs = t.tick()
        assert [r.partition_key for r in reqs] == ["day_1"] and reqs[0].run_key != first_key
        assert instance.get_dynamic_partitions(PARTITIONS_NAME) == ["day_1"]

        _put(join_uri(mdir, "sub/day_1.jsonl"), b'{"uri": "s3://elsewhere/x.mp4"}\n')  # name collision
        _put(join_uri(mdir, "broken.csv"), b"uri,label\na.mp4,x,y\n")  # malformed: skipped, logged
        reqs = t.tick()
        assert len(reqs) == 1 and reqs[0].partition_key.startswith("day_1-")
        assert t.tick() == []  # the malformed manifest is not retried until it changes
        time.sleep(1.05)
        _put(join_uri(mdir, "broken.csv"), b"uri,label\na.mp4,x\n")
        assert [r.partition_key for r in t.tick()] == ["broken"]

        # the cursor lost (sensor reset): nothing already registered runs again
        assert SensorDaemon(manifest_sensor, instance, wh).tick(cursor=None) == []


def test_video_upload_sensor(inbox, video_bytes):
    wh, base = inbox
    vdir, mdir = join_uri(base, "videos"), join_uri(base, "manifests")
    fs, mroot = filesystem_for(mdir)

    def manifests():
        if hasattr(fs, "invalidate_cache"):
            fs.invalidate_cache()
        return sorted(p for p in fs.find(mroot) if p.endswith(".csv")) if fs.exists(mroot) else []

    with dg.instance_for_test() as instance:
        up = SensorDaemon(video_upload_sensor, instance, wh)
        ms = SensorDaemon(manifest_sensor, instance, wh)
        assert up.tick() == [] and manifests() == []
        for name in ("a.mp4", "b.mp4", "broken.mp4"):
            _put(join_uri(vdir, name), video_bytes[name])
        _put(join_uri(vdir, "readme.txt"), b"not a video")
        assert up.tick() == []  # writes manifests, requests no runs itself
        first = manifests()
        assert len(first) == 2  # batches of 2
        prefix = "s3://" if base.startswith("s3://") else ""
        rows = [u for m in first for u in read_manifest(prefix + m).frame["uri"]]
        assert sorted(rows) == sorted(join_uri(vdir, n) for n in ("a.mp4", "b.mp4", "broken.mp4"))
        saved = up.cursor
        assert SensorDaemon(video_upload_sensor, instance, wh).tick(cursor=saved) == [] and manifests() == first

        time.sleep(1.05)
        _put(join_uri(vdir, "a.mp4"), video_bytes["a.mp4"])  # duplicate upload: same key, same content
        _put(join_uri(vdir, "copy_of_a.mp4"), video_bytes["a.mp4"])  # same content, another name
        up.tick()
        assert manifests() == first
        _put(join_uri(vdir, "b.mp4"), video_bytes["a.mp4"][:-1] + b"\x01")  # new content under an old name
        up.tick()
        new = [m for m in manifests() if m not in first]
        assert len(new) == 1
        assert read_manifest(prefix + new[0]).frame["uri"].tolist() == [join_uri(vdir, "b.mp4")]

        # the manifest sensor turns the generated manifests into partitions and runs
        reqs = ms.tick()
        assert len(reqs) == 3 and all(r.partition_key.startswith("uploads-") for r in reqs)
        assert len(set(instance.get_dynamic_partitions(PARTITIONS_NAME))) == 3


def _bulk_put(endpoint: str, bucket: str, keys: list[str]) -> None:
    """10,000 objects quickly: moto's in-process backend (the server runs in this process), else threads."""
    try:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backends = s3_backends[DEFAULT_ACCOUNT_ID]
        backend = backends["aws"] if "aws" in backends else backends["global"]
        for k in keys:
            backend.put_object(bucket, k, f"video {k}".encode())
    except (ImportError, KeyError, AttributeError, TypeError):
        from concurrent.futures import ThreadPoolExecutor

        client = s3_client(endpoint)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=f"video {k}".encode()),
                          keys))


@pytest.mark.timeout(240)
def test_upload_sensor_with_10000_existing_objects(s3_endpoint, s3_bucket):
    t0 = time.monotonic()
    _bulk_put(s3_endpoint, s3_bucket, [f"inbox/videos/v{i:05d}.mp4" for i in range(10_000)])
    put_s = time.monotonic() - t0
    assert put_s < 60, f"creating the objects took {put_s:.0f}s"
    wh = WarehouseResource(warehouse=f"s3://{s3_bucket}/wh", inbox=f"s3://{s3_bucket}/inbox",
                           settle_seconds=0, upload_batch_size=500, max_manifests_per_tick=20)
    with dg.instance_for_test() as instance:
        up = SensorDaemon(video_upload_sensor, instance, wh)
        t0 = time.monotonic()
        up.tick()  # all 10,000 are new: 20 manifests of 500
        first_s = time.monotonic() - t0
        client = s3_client(s3_endpoint)
        listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="inbox/manifests/")["Contents"]
        assert len(listed) == 20
        assert len(up.cursor) < 250_000, len(up.cursor)

        client.put_object(Bucket=s3_bucket, Key="inbox/videos/new/late.mp4", Body=b"one more")
        t0 = time.monotonic()
        up.tick(cursor=up.cursor)  # a restart with the saved cursor: only the new object is batched
        second_s = time.monotonic() - t0
        listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="inbox/manifests/")["Contents"]
        assert len(listed) == 21
        newest = max(listed, key=lambda o: o["LastModified"])["Key"]
        assert read_manifest(f"s3://{s3_bucket}/{newest}").frame["uri"].tolist() == \
            [f"s3://{s3_bucket}/inbox/videos/new/late.mp4"]
        t0 = time.monotonic()
        up.tick()
        idle_s = time.monotonic() - t0
    print(f"\n10,000 objects: put {put_s:.1f}s, first tick {first_s:.1f}s, tick with 1 new {second_s:.1f}s, "
          f"idle tick {idle_s:.1f}s")
    # Dagster's default sensor time limit is 60 s; moto lists ~1,000 keys per 0.3-1 s (real S3: ~50 ms).
    assert first_s < 60 and second_s < 30 and idle_s < 30
