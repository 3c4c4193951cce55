"""The frame sampler: exact frame choice, every container/codec, every source kind, and bad input."""

from __future__ import annotations

import base64
from fractions import Fraction

import av
import numpy as np
import pytest

from video_assets.errors import VideoDecodeError, VideoSourceError
from video_assets.video import TruncatedVideoWarning, sample_frames
from video_assets_tests.conftest import VIDEO_SPECS
from video_assets_tests.videos import encode_audio_only, encode_video, read_index, stream_times


def expected_positions(times, duration, mode, start=0.0, end=None, count_k=8, interval_sec=None,
                       interval_frames=None, target_fps=None, timestamps_sec=None, max_frames=None):
    """The issue's rules written out literally, loop by loop, independent of the implementation."""
    end = duration if end is None else end

    def shown_at(t):
        best = 0
        for i, ti in enumerate(times):
            if ti <= t + 1e-6:
                best = i
        return best

    if mode == "by_interval_frames":
        window = [i for i, t in enumerate(times) if start <= t < end]
        chosen = window[::interval_frames]
    else:
        if mode == "by_count_uniform":
            targets = [start + (j + 0.5) * (end - start) / count_k for j in range(count_k)]
        elif mode == "by_interval_time":
            targets, j = [], 0
            while start + j * interval_sec < end:
                targets.append(start + j * interval_sec)
                j += 1
        elif mode == "by_fps":
            targets, j = [], 0
            while start + j / target_fps < end:
                targets.append(start + j / target_fps)
                j += 1
        else:
            targets = [t for t in timestamps_sec if start <= t < end]
        chosen = sorted({shown_at(t) for t in targets})
    if max_frames is not None and len(chosen) > max_frames:
        n = len(chosen)
        chosen = [chosen[(j * n) // max_frames] for j in range(max_frames)]
    return chosen


def truth(path):
    times = stream_times(path)
    step = float(np.median(np.diff(times[-32:])))
    return times, times[-1] + step


MODES = [
    ("by_count_uniform", dict(count_k=8)),
    ("by_count_uniform", dict(count_k=3, start_time_sec=0.5, end_time_sec=1.5)),
    ("by_count_uniform", dict(count_k=500)),  # more targets than frames: duplicates collapse
    ("by_interval_time", dict(interval_sec=0.25)),
    ("by_interval_time", dict(interval_sec=0.3, start_time_sec=0.2, max_frames=3)),
    ("by_fps", dict(target_fps=2.0)),
    ("by_fps", dict(target_fps=7.5, start_time_sec=1.0, end_time_sec=1.9)),
    ("by_interval_frames", dict(interval_frames=7)),
    ("by_interval_frames", dict(interval_frames=4, start_time_sec=0.3, end_time_sec=1.2, max_frames=2)),
    ("by_timestamps", dict(timestamps_sec=[1.5, 0.0, 0.51, 99.0, 0.5])),
    ("by_timestamps", dict(timestamps_sec=[0.1, 0.9, 1.1], start_time_sec=0.5, end_time_sec=1.0)),
]


def _check(path, mode, kw):
    times, duration = truth(path)
    s = sample_frames(path, mode, **kw)
    exp_kw = {("start" if k == "start_time_sec" else "end" if k == "end_time_sec" else k): v for k, v in kw.items()}
    assert s.indices == expected_positions(times, duration, mode, **exp_kw)
    assert s.frames.dtype == np.uint8 and s.frames.shape[1:] == (64, 96, 3)
    assert len(s.frames) == len(s.indices) == len(s.timestamps)
    assert [read_index(f) for f in s.frames] == s.indices  # the right pixels, not just the right count
    assert s.timestamps == pytest.approx([times[i] for i in s.indices], abs=1e-6)
    assert not s.truncated
    return s


@pytest.mark.parametrize("name", list(VIDEO_SPECS))
@pytest.mark.parametrize("mode,kw", MODES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(MODES)])
def test_exact_frames_every_format_and_mode(videos, name, mode, kw):
    _check(videos[name], mode, kw)


def test_first_timestamp_is_zero_for_offset_streams(videos):
    for name in ("start_offset.ts", "start_offset.mp4"):
        s = sample_frames(videos[name], "by_timestamps", timestamps_sec=[0.0, 1.0])
        assert s.timestamps[0] == 0.0 and s.indices == [0, 30]
        assert s.duration == pytest.approx(2.0, abs=1e-3)


def test_variable_frame_rate_uses_real_timestamps(videos):
    # frames 0..19 are 40 ms apart, then 100 ms apart: time 1.0 s shows frame 22 (t=1.0), not frame 30
    s = sample_frames(videos["vfr.mkv"], "by_timestamps", timestamps_sec=[0.5, 1.0, 1.05])
    assert s.indices == [12, 22]
    assert s.timestamps == pytest.approx([0.48, 1.0])


def test_long_gop_sparse_plan_does_not_decode_everything(videos):
    s = sample_frames(videos["long_gop.mp4"], "by_timestamps", timestamps_sec=[0.1, 9.0])
    assert s.indices == [3, 270]
    assert s.stats.seeks >= 2  # jumped to the second keyframe instead of decoding 250 frames forward
    assert s.stats.frames_decoded < 150


def test_short_gop_seeks_to_keyframes(videos):
    s = sample_frames(videos["short_gop.mp4"], "by_interval_frames", interval_frames=30)
    assert s.indices == [0, 30]
    assert s.stats.frames_decoded < 10


def test_hops_to_near_keyframes_without_seeking(tmp_path, monkeypatch):
    """At 1 fps on a GOP of 1 s every wanted frame is a keyframe: the packets between them are read and not
    sent, and the decoder is neither flushed nor drained (its threads work on several frames at once). The
    frames are those of seeks; a remote source seeks (a range request skips the bytes)."""
    from video_assets.video import fetch
    from video_assets_tests.servers import http_file_server

    path = encode_video(tmp_path / "gop30.mp4", n_frames=150, gop=30, bframes=2)
    hopped = sample_frames(str(path), "by_fps", target_fps=1)
    assert hopped.indices == [0, 30, 60, 90, 120] and [read_index(f) for f in hopped.frames] == hopped.indices
    assert hopped.stats.seeks == 1 and hopped.stats.packets_hopped > 0
    assert hopped.stats.frames_decoded < 5 + 4 * 4  # the wanted ones, and a few before each comes out
    with http_file_server(tmp_path) as server:
        remote = sample_frames(server.url("gop30.mp4"), "by_fps", target_fps=1)
    assert remote.stats.packets_hopped == 0 and remote.stats.seeks == 5 and remote.indices == hopped.indices
    dense = sample_frames(str(path), "by_interval_frames", interval_frames=7)  # hops and decodes forward
    monkeypatch.setattr(fetch, "HOP_MAX_FRAMES", 0)  # seeks only
    sought = sample_frames(str(path), "by_fps", target_fps=1)
    dense_sought = sample_frames(str(path), "by_interval_frames", interval_frames=7)
    assert sought.stats.packets_hopped == 0 and sought.stats.seeks == 5
    for a, b in ((hopped, sought), (remote, sought), (dense, dense_sought)):
        assert a.indices == b.indices
        for x, y in zip(a.frames, b.frames, strict=True):
            np.testing.assert_array_equal(x, y)


def test_skips_non_reference_frames_on_the_way(videos):
    # dense-ish plan inside one long GOP: B-frames before each wanted frame are not decoded
    s = sample_frames(videos["long_gop.mp4"], "by_interval_frames", interval_frames=50)
    assert s.indices == list(range(0, 300, 50))
    assert s.stats.frames_decoded < 250


# ---- every source kind ----------------------------------------------------------------------------------

def test_source_kinds_local(videos):
    path = videos["h264_bframes.mp4"]
    ref = sample_frames(path, count_k=4)
    data = path.read_bytes()
    for src, fmt in [(str(path), None), (path, None), ("file://" + str(path), None), (data, "mp4"),
                     (bytearray(data), None), (base64.b64encode(data).decode(), "mp4"),
                     ("data:video/mp4;base64," + base64.b64encode(data).decode(), None),
                     (base64.urlsafe_b64encode(data).decode().rstrip("="), "mp4")]:
        s = sample_frames(src, count_k=4, video_format=fmt)
        assert s.indices == ref.indices
        assert np.array_equal(s.frames, ref.frames)


def test_bytes_need_no_hint_for_probeable_formats(videos):
    for name in ("vp9.webm", "hevc.mkv", "mpeg4.avi"):
        s = sample_frames(videos[name].read_bytes(), count_k=2, default_video_format="mp4")
        assert [read_index(f) for f in s.frames] == s.indices


def test_http_source(videos, http_base):
    s = sample_frames(f"{http_base}/long_gop.mp4", "by_timestamps", timestamps_sec=[0.5, 9.5])
    assert [read_index(f) for f in s.frames] == s.indices == [15, 285]


def test_s3_and_tos_sources(videos, s3_bucket, s3_endpoint, monkeypatch):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.put_object(Bucket=s3_bucket, Key="in/v.webm", Body=videos["vp9.webm"].read_bytes())
    s = sample_frames(f"s3://{s3_bucket}/in/v.webm", count_k=5)
    assert [read_index(f) for f in s.frames] == s.indices and len(s.indices) == 5
    monkeypatch.setenv("VIDEO_ASSETS_TOS_ENDPOINT", s3_endpoint)
    t = sample_frames(f"tos://{s3_bucket}/in/v.webm", count_k=5)
    assert t.indices == s.indices


# ---- parameters ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,param", [
    (dict(sample_mode="sometimes"), "sample_mode"),
    (dict(count_k=0), "count_k"),
    (dict(count_k=2.5), "count_k"),
    (dict(sample_mode="by_interval_time"), "interval_sec"),
    (dict(sample_mode="by_interval_time", interval_sec=0), "interval_sec"),
    (dict(sample_mode="by_fps", target_fps=-1), "target_fps"),
    (dict(sample_mode="by_fps"), "target_fps"),
    (dict(sample_mode="by_interval_frames", interval_frames=0), "interval_frames"),
    (dict(sample_mode="by_timestamps"), "timestamps_sec"),
    (dict(sample_mode="by_timestamps", timestamps_sec=[1.0, float("nan")]), "timestamps_sec"),
    (dict(start_time_sec=2.0, end_time_sec=1.0), "end_time_sec"),
    (dict(start_time_sec=-1.0), "start_time_sec"),
    (dict(max_frames=0), "max_frames"),
])
def test_wrong_parameters_raise_before_io(kw, param):
    with pytest.raises(ValueError, match=param):
        sample_frames("/nonexistent/never-opened.mp4", **kw)  # a ValueError, not a source error: no I/O


def test_window_past_the_end_returns_no_frames(videos):
    s = sample_frames(videos["h264_bframes.mp4"], start_time_sec=50.0)
    assert s.indices == [] and s.frames.shape == (0, 64, 96, 3)


# ---- bad input -----------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(VideoSourceError, match=r"nope\.mp4.*not found"):
        sample_frames(tmp_path / "nope.mp4")


def test_directory(tmp_path):
    with pytest.raises(VideoSourceError, match="directory"):
        sample_frames(tmp_path)


def test_404(http_base):
    with pytest.raises(VideoSourceError, match=r"missing\.mp4.*not found"):
        sample_frames(f"{http_base}/missing.mp4")


def test_unreachable_url():
    with pytest.raises(VideoSourceError, match=r"127\.0\.0\.1:9/v\.mp4"):
        sample_frames("http://127.0.0.1:9/v.mp4")


def test_missing_s3_object(s3_bucket):
    with pytest.raises(VideoSourceError, match=r"s3://.*/nothing\.mp4.*not found"):
        sample_frames(f"s3://{s3_bucket}/nothing.mp4")


def test_empty_inputs(tmp_path, s3_bucket, s3_endpoint):
    import boto3

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoSourceError, match=r"empty\.mp4.*empty"):
        sample_frames(empty)
    with pytest.raises(VideoSourceError, match="empty"):
        sample_frames(b"")
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=s3_bucket, Key="zero.mp4", Body=b"")
    with pytest.raises(VideoSourceError, match=r"zero\.mp4.*empty"):
        sample_frames(f"s3://{s3_bucket}/zero.mp4")


def test_empty_http_object_is_named_empty_and_read_once(tmp_path, caplog):
    """A server that answers 0 bytes (Content-Length: 0) makes fsspec return a stream file; the object is
    reported empty, as on S3, and read to its end once (aiohttp warns, with a stack trace on stderr, when a
    finished stream is read again and again)."""
    import logging

    from video_assets_tests.servers import http_file_server

    (tmp_path / "empty.mp4").write_bytes(b"")
    with http_file_server(tmp_path) as server, caplog.at_level(logging.WARNING):
        url = server.url("empty.mp4")
        with pytest.raises(VideoSourceError) as err:
            sample_frames(url)
    assert str(err.value) == f"{url}: empty object (0 bytes)"
    assert not [r for r in caplog.records if r.name.startswith("aiohttp")], caplog.text


def test_random_bytes(tmp_path):
    p = tmp_path / "noise.mp4"
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError, match=r"noise\.mp4"):
        sample_frames(p)
    with pytest.raises(VideoDecodeError, match="bytes"):
        sample_frames(p.read_bytes())


def test_invalid_base64():
    with pytest.raises(VideoSourceError, match="base64"):
        sample_frames("A" * 65 + "=A", video_format="mp4")  # padding in the middle


def test_base64_of_garbage():
    garbage = base64.b64encode(b"not a video at all " * 10).decode()
    with pytest.raises(VideoDecodeError, match="base64"):
        sample_frames(garbage, video_format="mp4")


def test_truncated_without_index(videos, tmp_path):
    data = videos["h264_bframes.mp4"].read_bytes()  # moov atom at the end: cutting it loses the index
    p = tmp_path / "cut.mp4"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match=r"cut\.mp4"):
        sample_frames(p)


def test_truncated_with_index_returns_what_it_has(tmp_path):
    full = encode_video(tmp_path / "fast.mp4", n_frames=60, gop=12, container_options={"movflags": "faststart"})
    data = full.read_bytes()
    p = tmp_path / "fast_cut.mp4"
    p.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.warns(TruncatedVideoWarning, match="fast_cut"):
        s = sample_frames(p, "by_interval_frames", interval_frames=5)
    assert s.truncated and s.warnings
    assert 0 < len(s.indices) < 12
    assert [read_index(f) for f in s.frames] == s.indices


def test_audio_only(tmp_path):
    p = encode_audio_only(tmp_path / "tone.m4a")
    with pytest.raises(VideoDecodeError, match=r"tone\.m4a.*no video stream.*audio"):
        sample_frames(p)


def test_still_image(tmp_path):
    from PIL import Image

    p = tmp_path / "photo.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(p)
    with pytest.raises(VideoDecodeError, match=r"photo\.png.*still image"):
        sample_frames(p)
    j = tmp_path / "photo.mp4"  # wrong extension does not fool it
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(j, format="JPEG")
    with pytest.raises(VideoDecodeError, match=r"photo\.mp4.*still image"):
        sample_frames(j)


@pytest.mark.parametrize("seconds", [1, 5, 7])
def test_whole_seconds_of_matroska_give_one_frame_per_second(tmp_path, seconds):
    path = encode_video(tmp_path / "clip.mkv", n_frames=30 * seconds, bframes=0)  # 1 ms time base
    assert sample_frames(path, "by_fps", target_fps=1.0).indices == list(range(0, 30 * seconds, 30))
    assert len(sample_frames(path, "by_interval_time", interval_sec=0.5).indices) == 2 * seconds
    assert sample_frames(path, count_k=1).fps == pytest.approx(30.0, abs=1e-9)


@pytest.mark.parametrize("n_frames, fps", [(10, 30), (10, 60), (11, 30), (7, 30), (2, 30), (10, 30000 / 1001)])
def test_matroska_frame_rate_is_exact_for_any_length(tmp_path, n_frames, fps):
    """1 ms timestamps are rounded: 10 frames at 30 fps end at 300 ms, so frames over duration (10 / 0.333 s)
    said 30.03, and 59.88 for 10 frames at 60 fps. The declared rate, which every timestamp keeps, is exact."""
    rate = Fraction(30000, 1001) if fps != int(fps) else int(fps)
    path = encode_video(tmp_path / "clip.mkv", n_frames=n_frames, fps=rate, bframes=0)
    with av.open(str(path)) as c:
        assert c.streams.video[0].time_base == Fraction(1, 1000)
    assert sample_frames(path, count_k=1).fps == pytest.approx(fps, abs=1e-9)
    from video_assets.pipeline.probe import probe_video  # the manifest's fps column

    assert probe_video(str(path))["fps"] == pytest.approx(fps, abs=1e-9)


@pytest.mark.parametrize("rate, timescale", [(Fraction(30000, 1001), 15360), (Fraction(24000, 1001), 90000),
                                             (Fraction(60000, 1001), 30000), (Fraction(30000, 1001), 600)])
def test_mp4_frame_rate_is_exact_whatever_its_timescale(tmp_path, rate, timescale):
    """An MP4's average_rate is measured (samples over the rounded sum of their durations), not declared: 90
    frames of 29.97 fps at 1/15360 gave 29.9694, of 23.976 fps at 1/90000 23.97599, of 59.94 at 1/30000 59.9387,
    of 29.97 at 1/600 (iPhones) 29.9667. The rate FFmpeg derives from the timestamps, which they keep, is exact."""
    path = encode_video(tmp_path / "clip.mp4", n_frames=90, fps=rate, bframes=2,
                        container_options={"video_track_timescale": str(timescale)})
    with av.open(str(path)) as c:
        assert c.streams.video[0].time_base == Fraction(1, timescale)
        assert c.streams.video[0].average_rate != rate  # what the previous choice returned
    assert sample_frames(path, count_k=1).fps == pytest.approx(float(rate), abs=1e-9)


@pytest.mark.parametrize("pts_seconds, fps", [
    ([i * 0.04 if i < 20 else 0.8 + (i - 20) * 0.1 for i in range(60)], 60 / 4.8),  # 25 fps, then 10 fps
    ([i / 25 for i in range(30)], 25.0),  # declared 30 fps, stamped at 25 fps
    ([round(i / 30, 3) for i in range(40) if i not in (10, 11, 25)], 30.0),  # 30 fps, three frames dropped
])
def test_frame_rate_of_variable_or_misdeclared_timing(tmp_path, pts_seconds, fps):
    """Timestamps that do not keep the declared rate give the average (frames over the duration); a dropped
    frame keeps it."""
    for name in ("vfr.mkv", "vfr.mp4"):
        path = encode_video(tmp_path / name, n_frames=len(pts_seconds), pts_seconds=pts_seconds, bframes=0)
        assert sample_frames(path, count_k=1).fps == pytest.approx(fps, rel=1e-9), name


# ---- remote MP4: indexed from the header, read in parts ------------------------------------------------

@pytest.mark.parametrize("name", ["h264_bframes.mp4", "start_offset.mp4", "short_gop.mp4", "long_gop.mp4"])
def test_remote_mp4_indexed_from_header_gives_the_same_frames(videos, http_base, name):
    local = sample_frames(videos[name], "by_interval_frames", interval_frames=7)
    remote = sample_frames(f"{http_base}/{name}", "by_interval_frames", interval_frames=7)
    assert remote.stats.indexed_from_header and not local.stats.indexed_from_header
    assert remote.indices == local.indices and remote.timestamps == pytest.approx(local.timestamps)
    assert remote.duration == pytest.approx(local.duration)
    assert np.array_equal(remote.frames, local.frames)


def test_remote_variable_frame_rate_mp4_is_still_exact(tmp_path):
    from video_assets_tests.servers import http_file_server

    times = [i * 0.04 if i < 20 else 0.8 + (i - 20) * 0.1 for i in range(60)]
    path = encode_video(tmp_path / "vfr_b.mp4", pts_seconds=times, bframes=2, gop=12)
    local = sample_frames(path, "by_timestamps", timestamps_sec=[0.5, 1.0, 3.0])
    with http_file_server(tmp_path) as server:
        host, port = server.server_address[:2]
        remote = sample_frames(f"http://{host}:{port}/vfr_b.mp4", "by_timestamps", timestamps_sec=[0.5, 1.0, 3.0])
    assert remote.indices == local.indices == [12, 22, 42]
    assert [read_index(f) for f in remote.frames] == remote.indices


@pytest.mark.parametrize("times, header", [
    # B-frames, the frame duration changing after the first 64 frames (the header check's probe): scanned
    ([i / 30 for i in range(100)] + [100 / 30 + j / 24 for j in range(50)], False),
    ([i / 30 if i < 100 else (i + 5) / 30 for i in range(150)], False),  # five frames dropped after frame 100
    (None, True),  # 150 frames at a constant rate: the sample table indexes it
])
def test_remote_mp4_with_b_frames_and_a_late_change_of_frame_duration_is_exact(tmp_path, times, header):
    from video_assets_tests.servers import http_file_server

    # a time base that holds every frame time exactly (as a camera's 90 kHz clock), so the times' steps are exact
    path = encode_video(tmp_path / "late.mp4", n_frames=len(times or range(150)), pts_seconds=times, bframes=2,
                        gop=30, time_base=Fraction(1, 90000))
    plans = [dict(sample_mode="by_count_uniform", count_k=8),
             dict(sample_mode="by_timestamps", timestamps_sec=[3.0, 3.4, 4.0, 4.5])]
    with http_file_server(tmp_path) as server:
        host, port = server.server_address[:2]
        for plan in plans:
            local = sample_frames(path, **plan)
            remote = sample_frames(f"http://{host}:{port}/late.mp4", **plan)
            assert remote.stats.indexed_from_header is header
            assert remote.indices == local.indices and not remote.truncated, plan
            assert remote.timestamps == pytest.approx(local.timestamps)
            assert [read_index(f) for f in remote.frames] == remote.indices


def test_remote_variable_frame_rate_mp4_without_b_frames_is_indexed_from_the_header(tmp_path):
    from video_assets_tests.servers import http_file_server

    times = [i / 30 if i < 100 else 100 / 30 + (i - 100) / 24 for i in range(150)]  # a phone's VFR, no B-frames
    path = encode_video(tmp_path / "phone.mp4", n_frames=150, pts_seconds=times, bframes=0, gop=30,
                        time_base=Fraction(1, 90000))
    with http_file_server(tmp_path) as server:
        host, port = server.server_address[:2]
        remote = sample_frames(f"http://{host}:{port}/phone.mp4", count_k=8)
    local = sample_frames(path, count_k=8)
    assert remote.stats.indexed_from_header
    assert remote.indices == local.indices and [read_index(f) for f in remote.frames] == remote.indices


def test_sparse_plan_on_remote_mp4_reads_only_parts(tmp_path):
    import av

    from video_assets_tests.servers import http_file_server

    # 8 s of noisy 320x240 frames (several MB); faststart puts the sample table first, as streaming files do
    path = tmp_path / "big.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        st = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "18", "bf": "2"})
        st.width, st.height, st.pix_fmt, st.gop_size = 320, 240, "yuv420p", 25
        for i in range(200):
            img = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    size = path.stat().st_size
    assert size > 4_000_000, size
    with http_file_server(tmp_path) as server:
        host, port = server.server_address[:2]
        s = sample_frames(f"http://{host}:{port}/big.mp4", "by_timestamps", timestamps_sec=[7.5],
                          storage_options={"block_size": 256 * 1024})
        sent = server.bytes_sent
    local = sample_frames(path, "by_timestamps", timestamps_sec=[7.5])
    assert s.indices == local.indices == [187] and s.stats.indexed_from_header
    assert np.array_equal(s.frames, local.frames)
    assert sent < 0.5 * size, (sent, size)  # ~1 MiB probe + the sample table + one GOP, not the file


# ---- RGB conversion: the reader's own converter gives exactly PyAV's to_ndarray pixels -------------------

def _encode_pix_fmt(path, codec, pix_fmt, width, height, n_frames=24, gop=6):
    import av

    from video_assets_tests.videos import pattern_frame

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.gop_size = gop
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(pattern_frame(i, width, height), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _to_ndarray_frames(path):
    """Every frame in presentation order, decoded by plain PyAV and converted by ``frame.to_ndarray``."""
    import av

    with av.open(str(path)) as c:
        decoded = [(f.pts, f.format.name, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    decoded.sort(key=lambda d: d[0])
    return [d[1] for d in decoded], [d[2] for d in decoded]


@pytest.mark.parametrize("codec,pix_fmt,width,height,suffix", [
    ("libx264", "yuv420p", 96, 64, "mp4"),
    ("libx264", "yuv444p", 99, 67, "mp4"),  # odd width and height
    ("libx264", "yuv420p10le", 98, 66, "mkv"),  # 10-bit
    ("mjpeg", "yuvj420p", 99, 67, "avi"),  # full range, odd size
    ("ffv1", "yuv444p10le", 97, 65, "mkv"),
])
def test_rgb_frames_equal_pyav_to_ndarray(tmp_path, codec, pix_fmt, width, height, suffix):
    from video_assets.video import VideoReader, open_source

    path = _encode_pix_fmt(tmp_path / f"{pix_fmt}.{suffix}", codec, pix_fmt, width, height)
    formats, expected = _to_ndarray_frames(path)
    assert set(formats) == {pix_fmt}  # the decoder really produced the format under test
    s = sample_frames(path, "by_interval_frames", interval_frames=5)
    assert s.frames.shape == (len(s.indices), height, width, 3) and s.indices == [0, 5, 10, 15, 20]
    for pos, frame in zip(s.indices, s.frames):
        np.testing.assert_array_equal(frame, expected[pos])
    assert [read_index(f) for f in s.frames] == s.indices
    with open_source(path) as opened, VideoReader(opened) as reader:  # fetch(rgb=True), the keyframes path
        got = list(reader.fetch(np.array([0, 7, 8, 23])))
    assert [p for p, _ in got] == [0, 7, 8, 23]
    for pos, rgb in got:
        assert rgb.dtype == np.uint8 and rgb.shape == (height, width, 3)
        np.testing.assert_array_equal(rgb, expected[pos])


def test_frame_index_lookups_agree_with_their_numpy_definitions():
    from fractions import Fraction

    from video_assets.video.reader import FrameIndex

    rng = np.random.default_rng(7)
    for n in (1, 2, 37, 500):
        pts = np.cumsum(rng.integers(1, 1000, n)).astype(np.int64) - 3000  # ascending, gaps, negative start
        key = rng.random(n) < 0.1
        key[0] = n % 2 == 0  # with and without a keyframe at the start
        idx = FrameIndex(pts, key, Fraction(1, 1000))
        for pos in range(n):
            before = np.flatnonzero(key[: pos + 1])
            assert idx.keyframe_at_or_before(pos) == (int(before[-1]) if len(before) else 0)
        probes = np.concatenate([pts, pts - 1, pts + 1, [pts[0] - 10**6, pts[-1] + 10**6]])
        for ts in probes.tolist():
            assert idx.position_of(ts) == int(np.searchsorted(pts, ts))
        assert idx.keyframe_at_or_before(-1) == 0
    empty = FrameIndex(np.empty(0, np.int64), np.empty(0, bool), Fraction(1, 1))
    assert empty.keyframe_at_or_before(0) == 0 and empty.position_of(5) == 0
