"""Shared fixtures. Environment first: tests must never reach a cloud metadata address or the model hub."""

import os

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("VIDEO_ASSETS_CLIP_MODEL", "video-assets/tiny-clip")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from video_assets_tests.servers import http_file_server, moto_s3_server  # noqa: E402
from video_assets_tests.videos import encode_video  # noqa: E402

# name -> encode_video keyword arguments; every video has 60 frames unless it says otherwise
VIDEO_SPECS = {
    "h264_bframes.mp4": dict(codec="libx264", gop=12, bframes=3),
    "hevc.mkv": dict(codec="libx265", gop=15, bframes=2),
    "vp9.webm": dict(codec="libvpx-vp9", gop=15, bframes=None),
    "mpeg4.avi": dict(codec="mpeg4", gop=10, bframes=None),
    "start_offset.ts": dict(codec="libx264", gop=12, bframes=2, start_seconds=3.0),
    "start_offset.mp4": dict(codec="libx264", gop=12, bframes=2, start_seconds=2.0),
    "vfr.mkv": dict(codec="libx264", gop=12, bframes=2,
                    pts_seconds=[i * 0.04 if i < 20 else 0.8 + (i - 20) * 0.1 for i in range(60)]),
    "short_gop.mp4": dict(codec="libx264", gop=3, bframes=2),
    "long_gop.mp4": dict(codec="libx264", gop=250, bframes=3, n_frames=300),
}


@pytest.fixture(scope="session", autouse=True)
def allow_test_folders(tmp_path_factory):
    """The pipeline's strict source policy allows the inbox tree and data/ only; test videos live in pytest's
    temporary folders, which are allowed as a deployment would allow a mounted media folder."""
    old = os.environ.get("VIDEO_ASSETS_ALLOWED_ROOTS")
    os.environ["VIDEO_ASSETS_ALLOWED_ROOTS"] = str(tmp_path_factory.getbasetemp())
    yield
    if old is None:
        os.environ.pop("VIDEO_ASSETS_ALLOWED_ROOTS", None)
    else:
        os.environ["VIDEO_ASSETS_ALLOWED_ROOTS"] = old


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("videos")
    for name, spec in VIDEO_SPECS.items():
        encode_video(d / name, **spec)
    return d


@pytest.fixture(scope="session")
def videos(video_dir) -> dict[str, Path]:
    return {name: video_dir / name for name in VIDEO_SPECS}


@pytest.fixture(scope="session")
def http_server(video_dir):
    with http_file_server(video_dir) as server:
        yield server


@pytest.fixture(scope="session")
def http_base(http_server) -> str:
    host, port = http_server.server_address[:2]
    return f"http://{host}:{port}"


@pytest.fixture(scope="session")
def s3_endpoint():
    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    """A fresh bucket on moto's server; yields its name."""
    import boto3

    name = "test-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40]
    name = "".join(ch for ch in name if ch.isalnum() or ch == "-").strip("-")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    yield name


@pytest.fixture
def fault_server(video_dir):
    """A fresh HTTP file server over the test videos, for scripting faults (servers.FaultHTTPServer)."""
    with http_file_server(video_dir) as server:
        yield server


@pytest.fixture
def loopback_policy():
    """Tests that read from a server on 127.0.0.1 opt in to private networks explicitly."""
    from video_assets.storage.policy import SourcePolicy

    return SourcePolicy(allow_private_networks=True)


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch) -> Path:
    """A stand-in ``nvidia-smi`` first on PATH (this machine has no GPU): it records its arguments in the file
    returned and prints what the real one prints for compute/gpu_busy.py's query (one "[N/A]" line, then
    samples) until it is stopped."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    args = tmp_path / "nvidia-smi.args"
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"""#!/bin/sh
echo "$@" > {args}
echo "[N/A], [N/A]"
while true; do echo "80, 10"; echo "90, 30"; sleep 0.02; done
""")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return args


@pytest.fixture
def av_opens(monkeypatch) -> list:
    """What ``av.open`` is called with from now on (each call appends its source): how often a video is opened."""
    import av

    opens = []
    real_open = av.open

    def counting_open(*args, **kwargs):
        opens.append(args[0])
        return real_open(*args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    return opens
