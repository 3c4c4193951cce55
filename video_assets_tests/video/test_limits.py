"""ReadLimits: per-video bytes, duration, frame size, decoded frames, wall-clock time and HTTP timeouts. Each
limit ends that video with a LimitExceededError naming the source, the limit and the value."""

from __future__ import annotations

import resource
import struct
import threading
import time

import numpy as np
import pytest
import torch

from video_assets.errors import LimitExceededError, VideoDecodeError, VideoSourceError
from video_assets.operators.batching import hard_timeout, run_overlapped
from video_assets.storage.policy import SourcePolicy
from video_assets.video import ReadLimits, sample_frames
from video_assets.video.reader import VideoReader
from video_assets_tests.videos import encode_video

LOOPBACK = SourcePolicy(allow_private_networks=True)


def _mkv_claiming(tmp_path, width: int, height: int, codec: str = "ffv1"):
    """A real 272x256 Matroska file whose track header is patched to claim ``width`` x ``height``.

    ffv1 frames carry no size of their own, so FFmpeg takes the container's: the claim is what a decoder
    would allocate for."""
    p = tmp_path / f"claims_{width}x{height}.mkv"
    encode_video(p, n_frames=5, codec=codec, bframes=None, width=272, height=256)
    data = bytearray(p.read_bytes())
    for element, old, new in ((0xB0, 272, width), (0xBA, 256, height)):  # PixelWidth, PixelHeight
        at = data.find(bytes([element, 0x82]) + struct.pack(">H", old))
        assert at >= 0
        struct.pack_into(">H", data, at + 2, new)
    p.write_bytes(bytes(data))
    return p


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_huge_frame_size_header_errors_before_allocation(tmp_path):
    big = _mkv_claiming(tmp_path, 16000, 16000)  # 256 Mpx: FFmpeg accepts it, our default limit does not
    huge = _mkv_claiming(tmp_path, 30000, 30000)  # beyond FFmpeg's own limit: it reports no usable size
    before = _max_rss_mib()
    with pytest.raises(LimitExceededError, match=r"frame size 16000x16000 \(256000000 pixels\) exceeds the "
                                                 r"limit max_pixels=67108864") as info:
        sample_frames(str(big), count_k=8)
    assert str(big) in str(info.value)
    with pytest.raises((LimitExceededError, VideoDecodeError), match="frame size") as info:
        sample_frames(str(huge), count_k=8)
    assert str(huge) in str(info.value)
    # One 16000x16000 RGB frame is 768 MB, eight of them 6 GB: nothing of that size was ever allocated.
    assert _max_rss_mib() - before < 100


def test_frame_size_checked_before_any_decoding(videos, monkeypatch):
    decoded = []
    monkeypatch.setattr(VideoReader, "fetch", lambda self, *a, **k: decoded.append(1) or iter(()))
    with pytest.raises(LimitExceededError, match=r"frame size 96x64 \(6144 pixels\).*max_pixels=6000"):
        sample_frames(str(videos["h264_bframes.mp4"]), count_k=2, limits=ReadLimits(max_pixels=6000))
    assert decoded == []


def test_duration_limit(videos):
    path = str(videos["long_gop.mp4"])  # 300 frames at 30 fps: 10 s
    with pytest.raises(LimitExceededError, match=r"duration 10\.0s exceeds the limit max_duration_sec=5"):
        sample_frames(path, count_k=2, limits=ReadLimits(max_duration_sec=5))
    assert len(sample_frames(path, count_k=2, limits=ReadLimits(max_duration_sec=11))) == 2


def test_decoded_frames_limit(videos):
    path = str(videos["long_gop.mp4"])  # one keyframe every 250 frames: the last frame needs many decoded
    with pytest.raises(LimitExceededError, match=r"decoded frames 11 exceed the limit max_decoded_frames=10"):
        sample_frames(path, "by_timestamps", timestamps_sec=[9.9], limits=ReadLimits(max_decoded_frames=10))
    s = sample_frames(path, "by_timestamps", timestamps_sec=[9.9], limits=ReadLimits(max_decoded_frames=400))
    assert s.stats.frames_decoded <= 400


def test_byte_limit_local_and_http(videos, fault_server):
    path = videos["long_gop.mp4"]
    size = path.stat().st_size
    with pytest.raises(LimitExceededError, match=f"file size {size} exceeds the limit max_bytes=1000"):
        sample_frames(str(path), count_k=2, limits=ReadLimits(max_bytes=1000))
    # over http the object size is known from the server: refused before the body is read
    with pytest.raises(LimitExceededError, match=f"object size {size} exceeds the limit max_bytes=1000"):
        sample_frames(fault_server.url("long_gop.mp4"), count_k=2, limits=ReadLimits(max_bytes=1000),
                      policy=LOOPBACK)
    assert fault_server.bytes_sent == 0
    # bytes actually read are counted too (re-reads after seeks included)
    limit = size // 3
    with pytest.raises(LimitExceededError, match=r"bytes read \d+ exceeds the limit max_bytes="):
        _read_past(fault_server, limit)


def _read_past(server, limit):
    """Open with a byte budget above the object's size check but below what reading needs."""
    from video_assets.video.source import open_source

    limits = ReadLimits(max_bytes=limit)
    with open_source(server.url("long_gop.mp4"), policy=LOOPBACK, limits=ReadLimits()) as opened:
        opened.file.limits = limits  # the size check passed with the default; now read with the small budget
        with VideoReader(opened) as reader:
            list(reader.fetch(np.arange(len(reader.index))))


def test_slow_http_server_hits_the_read_timeout(fault_server):
    url = fault_server.slow_headers("h264_bframes.mp4", delay_sec=5)
    t0 = time.monotonic()
    with pytest.raises(VideoSourceError, match="h264_bframes.mp4"):
        sample_frames(url, count_k=2, policy=LOOPBACK,
                      limits=ReadLimits(http_read_timeout_sec=0.5, max_retries=0))
    assert time.monotonic() - t0 < 4


def test_slow_body_hits_the_read_timeout(fault_server):
    url = fault_server.slow("long_gop.mp4", delay_sec=5)
    t0 = time.monotonic()
    with pytest.raises(VideoSourceError, match="long_gop.mp4"):
        sample_frames(url, count_k=2, policy=LOOPBACK,
                      limits=ReadLimits(http_read_timeout_sec=0.5, max_retries=1, retry_backoff_sec=0.05))
    assert time.monotonic() - t0 < 4.5


def test_cooperative_wall_clock_deadline(videos):
    # a deadline that has passed by the time decoding starts: the reader stops at its first checkpoint
    with pytest.raises(LimitExceededError, match=r"took longer than the limit timeout_sec=1e-06"):
        sample_frames(str(videos["long_gop.mp4"]), count_k=8, limits=ReadLimits(timeout_sec=1e-6))


def test_stuck_item_does_not_hang_the_batch():
    """A prepare() stuck in one call (like a decoder wedged inside FFmpeg) is abandoned after the hard timeout;
    the other items finish; the stuck thread is a daemon and its late result is dropped."""
    release = threading.Event()

    def prepare(item, emit):
        if item == "stuck":
            release.wait(60)  # never checks a deadline
        emit(torch.zeros(2, 3, 4, 4))
        return item

    t0 = time.monotonic()
    out = run_overlapped(["a", "stuck", "b", "c"], describe=str, prepare=prepare,
                         embed=lambda x: x.flatten(1)[:, :2], finish=lambda it, meta, f: (meta, f.shape[0]),
                         batch_size=4, decode_workers=1, item_timeout_sec=0.5)
    elapsed = time.monotonic() - t0
    release.set()
    assert elapsed < hard_timeout(0.5) + 3
    assert [o.value for o in out] == [("a", 2), None, ("b", 2), ("c", 2)]
    assert "stuck: took longer than the limit timeout_sec=0.5" in out[1].error


def test_hung_http_source_does_not_hang_the_operator(videos, fault_server):
    """Through the operator: a server that never answers (no read timeout configured) is abandoned after the
    per-video limit while the other videos are scored."""
    from video_assets.operators import VideoQualityScore

    hung = fault_server.slow_headers("h264_bframes.mp4", delay_sec=30)
    op = VideoQualityScore(count_k=2, decode_workers=2, source_policy=LOOPBACK,
                           limits=ReadLimits(timeout_sec=1.0, http_read_timeout_sec=None, max_retries=0))
    t0 = time.monotonic()
    rows = op.score_details(video_paths=[str(videos["vp9.webm"]), hung, str(videos["mpeg4.avi"])])
    assert time.monotonic() - t0 < 15
    assert rows[0]["score"] is not None and rows[2]["score"] is not None
    assert rows[1]["score"] is None and "timeout_sec=1" in rows[1]["error"]


def test_limits_validate():
    with pytest.raises(ValueError, match="max_pixels"):
        ReadLimits(max_pixels=0)
    with pytest.raises(ValueError, match="max_retries"):
        ReadLimits(max_retries=-1)
    assert ReadLimits.unlimited().max_bytes is None
