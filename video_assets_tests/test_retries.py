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
    url = fault_server.reset("h264_bframes.mp4", times=1)
    s = sample_frames(url, count_k=2, policy=LOOPBACK, limits=ReadLimits(max_retries=2, **FAST))
    assert len(s) == 2


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
    from multidict import CIMultiDictProxy, CIMultiDict
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
