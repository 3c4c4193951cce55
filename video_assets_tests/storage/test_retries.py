"""Transient errors are retried with bounded backoff; permanent ones fail at once. Requests are counted on a
real local server."""

from __future__ import annotations

import time

import numpy as np
import pytest

from video_assets.errors import VideoSourceError
from video_assets.storage.fs import filesystem_for
from video_assets.storage.policy import SourcePolicy
from video_assets.storage.retry import backoff_delay, call_with_retries, is_transient
from video_assets.video import ReadLimits, sample_frames
from video_assets.video.reader import VideoReader
from video_assets.video.source import open_source

LOOPBACK = SourcePolicy(allow_private_networks=True)
FAST = dict(retry_backoff_sec=0.01)


def _requests_for_one_attempt(server, name: str) -> int:
    """fsspec asks for the size with HEAD and, when that fails, GET: what one open attempt costs."""
    server.always(name, 404)
    with pytest.raises(VideoSourceError):
        sample_frames(server.url(name), count_k=2, policy=LOOPBACK, limits=ReadLimits(max_retries=0))
    n = server.count(name)
    server.clear()
    return n


def test_503_twice_then_served(fault_server):
    per_attempt = _requests_for_one_attempt(fault_server, "h264_bframes.mp4")
    url = fault_server.fail("h264_bframes.mp4", times=2 * per_attempt, status=503)  # two failed attempts
    s = sample_frames(url, count_k=4, policy=LOOPBACK, limits=ReadLimits(max_retries=3, **FAST))
    assert len(s) == 4
    assert fault_server.count("h264_bframes.mp4") > 2 * per_attempt


def test_404_fails_once_without_retries(fault_server):
    per_attempt = _requests_for_one_attempt(fault_server, "absent.mp4")
    url = fault_server.always("absent.mp4", 404)
    with pytest.raises(VideoSourceError, match=r"absent.mp4: not found \(404"):
        sample_frames(url, count_k=2, policy=LOOPBACK, limits=ReadLimits(max_retries=5, **FAST))
    assert fault_server.count("absent.mp4") == per_attempt <= 2


def test_403_is_permanent(fault_server):
    url = fault_server.always("h264_bframes.mp4", 403)
    with pytest.raises(VideoSourceError, match="access denied"):
        sample_frames(url, count_k=2, policy=LOOPBACK, limits=ReadLimits(max_retries=5, **FAST))
    assert fault_server.count("h264_bframes.mp4") <= 2


def test_persistent_503_gives_up_after_the_retry_budget(fault_server):
    per_attempt = _requests_for_one_attempt(fault_server, "h264_bframes.mp4")
    url = fault_server.fail("h264_bframes.mp4", times=1000, status=503)
    with pytest.raises(VideoSourceError, match="HTTP 503"):
        sample_frames(url, count_k=2, policy=LOOPBACK, limits=ReadLimits(max_retries=2, **FAST))
    assert fault_server.count("h264_bframes.mp4") == 3 * per_attempt


def test_connection_reset_is_retried(fault_server):
    name = "h264_bframes.mp4"
    clean = sample_frames(fault_server.url(name), count_k=2, policy=LOOPBACK, limits=ReadLimits(**FAST))
    # aiohttp retries a reset request once and fsspec falls back from HEAD to GET: count what one attempt that
    # is reset on every request costs
    url = fault_server.reset(name, times=10**6)
    with pytest.raises(VideoSourceError, match="reset"):
        sample_frames(url, count_k=2, policy=LOOPBACK, limits=ReadLimits(max_retries=0, **FAST))
    per_attempt = fault_server.count(name)
    fault_server.clear()
    url = fault_server.reset(name, times=per_attempt)  # the first attempt fails, a second one is served
    s = sample_frames(url, count_k=2, policy=LOOPBACK, limits=ReadLimits(max_retries=2, **FAST))
    assert fault_server.count(name) > per_attempt and fault_server.rules["/" + name]["left"] == 0
    assert s.indices == clean.indices and np.array_equal(s.frames, clean.frames)


def test_transient_error_mid_read_is_retried_from_the_same_position(fault_server):
    name = "long_gop.mp4"
    with open_source(fault_server.url(name), storage_options={"block_size": 8192}, policy=LOOPBACK,
                     limits=ReadLimits(max_retries=3, **FAST)) as opened:
        fault_server.fail(name, times=2, status=500)  # the next two range requests fail
        with VideoReader(opened) as reader:
            frames = list(reader.fetch(np.asarray([0, 150, 299])))
    assert [p for p, _ in frames] == [0, 150, 299]
    assert not reader.truncated


def test_classification():
    import aiohttp
    from aiohttp.client_reqrep import RequestInfo
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    info = RequestInfo(URL("http://h/x"), "GET", CIMultiDictProxy(CIMultiDict()), URL("http://h/x"))

    def status(code):
        return aiohttp.ClientResponseError(info, (), status=code)

    assert all(is_transient(status(c)) for c in (500, 502, 503, 504, 429, 408))
    assert not any(is_transient(status(c)) for c in (400, 401, 403, 404, 416))
    wrapped = FileNotFoundError("http://h/x")
    wrapped.__cause__ = status(503)
    assert is_transient(wrapped)  # fsspec wraps every info() failure in FileNotFoundError
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())
    assert not is_transient(FileNotFoundError("x")) and not is_transient(ValueError("not a video"))


def test_backoff_is_exponential_and_bounded():
    assert 0.375 <= backoff_delay(1, 0.5) <= 0.625
    assert 1.5 <= backoff_delay(3, 0.5) <= 2.5
    assert backoff_delay(30, 0.5) <= 12.5
    calls = []

    def flaky():
        calls.append(time.monotonic())
        raise ConnectionResetError("reset")

    with pytest.raises(ConnectionResetError):
        call_with_retries(flaky, "x", max_retries=2, backoff_sec=0.01)
    assert len(calls) == 3


def test_s3_retries_are_bounded_by_configuration(s3_endpoint):
    fs, _ = filesystem_for("s3://bucket/key", limits=ReadLimits(max_retries=2, http_connect_timeout_sec=3,
                                                                http_read_timeout_sec=7))
    assert fs.retries == 1  # s3fs's own loop does not multiply botocore's attempts
    config = fs.config_kwargs
    assert config["retries"] == {"total_max_attempts": 3, "mode": "standard"}
    assert config["connect_timeout"] == 3 and config["read_timeout"] == 7


def test_s3_missing_object_is_not_found(s3_bucket):
    with pytest.raises(VideoSourceError, match="not found"):
        sample_frames(f"s3://{s3_bucket}/nope.mp4", count_k=2, limits=ReadLimits(**FAST))


class _ThrottlingProxy:
    """A real HTTP proxy in front of moto's S3 server that answers the first ``fail`` object reads (GET) with
    S3's throttling reply (503 SlowDown) or with ``status``, and forwards everything else; counts GETs."""

    def __init__(self, upstream: str, fail: int, status: int = 503):
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        up = urlsplit(upstream)
        self.gets, self.fail, self.status = 0, fail, status
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                if self.command == "GET" and "/" in self.path.lstrip("/").split("?")[0]:  # an object read
                    proxy.gets += 1
                    if proxy.gets <= proxy.fail:
                        code = "SlowDown" if proxy.status == 503 else "AccessDenied"
                        body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                                f"<Message>{code}</Message></Error>").encode()
                        self.send_response(proxy.status)
                        self.send_header("Content-Type", "application/xml")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                # HEAD: the object's size, as upstream said; otherwise the body forwarded here
                self.send_header("Content-Length", resp.getheader("Content-Length", "0") if self.command == "HEAD"
                                 else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status, fail, retried", [(503, 2, True), (403, 1, False)])
def test_s3_throttling_is_retried_and_access_denied_is_not(s3_endpoint, s3_bucket, video_dir, status, fail,
                                                           retried):
    import boto3

    data = (video_dir / "h264_bframes.mp4").read_bytes()
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").put_object(
        Bucket=s3_bucket, Key="clip.mp4", Body=data)
    proxy = _ThrottlingProxy(s3_endpoint, fail=fail, status=status)
    try:
        options = {"client_kwargs": {"endpoint_url": proxy.url}, "skip_instance_cache": True}
        limits = ReadLimits(max_retries=3, **FAST)
        uri = f"s3://{s3_bucket}/clip.mp4"
        if retried:
            got = sample_frames(uri, count_k=3, storage_options=options, limits=limits)
            alone = sample_frames(str(video_dir / "h264_bframes.mp4"), count_k=3)
            assert got.indices == alone.indices and np.array_equal(got.frames, alone.frames)
            assert proxy.gets > fail  # the throttled reads were retried, then served
        else:
            with pytest.raises(VideoSourceError) as e:
                sample_frames(uri, count_k=3, storage_options=options, limits=limits)
            assert s3_bucket in str(e.value)
            assert proxy.gets == 1  # a permanent error costs one request: no retries
    finally:
        proxy.close()
