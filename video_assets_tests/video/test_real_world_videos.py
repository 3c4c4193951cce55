"""Recorded-video traits: display rotation, cover pictures and other streams, every codec of the issue, in
the containers PyAV muxes them in, fragmented/non-faststart MP4 over HTTP, edit lists, one-frame and VFR
video.

Each clip is encoded here with PyAV. The ground truth is an exhaustive decode of the same stream by plain PyAV
(every frame, no seeking, no skipping), turned for display with numpy's own rotation; the sampler must return
exactly those frames (indices, pixels, timestamps) through a path, bytes and an http URL.
"""

from __future__ import annotations

import warnings

import av
import numpy as np
import pytest

from video_assets.errors import LimitExceededError, VideoDecodeError
from video_assets.video import ReadLimits, TruncatedVideoWarning, VideoReader, fetch, open_source, sample_frames
from video_assets_tests.servers import http_file_server
from video_assets_tests.video.test_sampler import expected_positions
from video_assets_tests.videos import (
    HEIGHT,
    WIDTH,
    cover_image,
    displayed_picture,
    encode_cover_only,
    encode_pictures_only,
    encode_video,
    read_index,
)

X265 = "bframes=2:keyint=15:min-keyint=15:log-level=error"
PTS_WRAP_SEC = (1 << 33) / 90000  # where MPEG-TS timestamps wrap
# the clips whose first timestamps FFmpeg reports below 0, and the seconds of their first frame
NEGATIVE_START_TS = {"ts_crosses_pts_wrap.ts": -0.5, "ts_before_pts_wrap.ts": -30.0, "ts_negative_start.ts": -0.5}
# name -> encode_video arguments, plus (not passed to it) "stream": the video stream's index, "cw": the
# clockwise rotation a player applies, "first": the pattern index of the first shown frame (an edit list hides
# frames), "output_order": the frames' timestamps are in decode order
CORPUS = {
    # codecs x containers
    "h264.mov": dict(codec="libx264", bframes=2),
    "h264.mkv": dict(codec="libx264", bframes=3, gop=30),
    "h264.avi": dict(codec="libx264", bframes=0),
    # AVI stores no presentation times; FFmpeg stamps H.264 packets in decode order, so with B-frames the
    # frames' own timestamps are not their presentation order: the truth is the decoder's output order
    "h264_bframes.avi": dict(codec="libx264", bframes=2, output_order=True),
    "hevc.mp4": dict(codec="libx265", bframes=2),
    "hevc.ts": dict(codec="libx265", bframes=2),
    "hevc10.mkv": dict(codec="libx265", pix_fmt="yuv420p10le", bframes=2),
    "hevc10.mp4": dict(codec="libx265", pix_fmt="yuv420p10le", bframes=2),
    "hevc_open_gop.mp4": dict(codec="libx265", options={"x265-params": X265 + ":open-gop=1"}),
    "hevc_open_gop.mkv": dict(codec="libx265", options={"x265-params": X265 + ":open-gop=1"}),
    "vp8.webm": dict(codec="libvpx", gop=15, bframes=None),
    "vp8.mkv": dict(codec="libvpx", gop=15, bframes=None),
    "vp9.mp4": dict(codec="libvpx-vp9", gop=15, bframes=None),
    "av1.mp4": dict(codec="libsvtav1", gop=30, bframes=None),  # the file: SVT-AV1 GOP 30, 60 frames
    "av1.mkv": dict(codec="libsvtav1", gop=30, bframes=None),
    "av1.webm": dict(codec="libsvtav1", gop=30, bframes=None),
    "mpeg4_bframes.avi": dict(codec="mpeg4", gop=12, bframes=None, options={"bf": "2"}),
    "mpeg4.mp4": dict(codec="mpeg4", gop=12, bframes=None, options={"bf": "2"}),
    "mpeg2.ts": dict(codec="mpeg2video", gop=12, bframes=None, options={"bf": "2"}),
    "mpeg2.mpg": dict(codec="mpeg2video", gop=12, bframes=None, options={"bf": "2"}, container_format="vob"),
    "mpeg2.mkv": dict(codec="mpeg2video", gop=12, bframes=None, options={"bf": "2"}),
    "prores.mov": dict(codec="prores_ks", pix_fmt="yuv422p10le", bframes=None),
    "mjpeg.avi": dict(codec="mjpeg", pix_fmt="yuvj420p", bframes=None),
    "mjpeg.mov": dict(codec="mjpeg", pix_fmt="yuvj420p", bframes=None),
    # display rotation (a phone's portrait video is stored on its side with a 90-degree clockwise matrix)
    "portrait_cw90.mp4": dict(display_rotation=-90, width=HEIGHT, height=WIDTH, cw=90),
    "rot180.mp4": dict(display_rotation=180, cw=180),
    "rot_cw270.mp4": dict(display_rotation=90, width=HEIGHT, height=WIDTH, cw=270),
    "portrait_cw90.mov": dict(display_rotation=-90, width=HEIGHT, height=WIDTH, cw=90),
    "portrait_cw90.mkv": dict(display_rotation=-90, width=HEIGHT, height=WIDTH, cw=90),
    "mirrored.mp4": dict(hflip=True, cw=0),
    # turned a quarter and flipped: a pure transpose (ffmpeg's transpose=cclock_flip), i.e. mirrored, then 270
    "transposed.mp4": dict(display_rotation=90, vflip=True, width=HEIGHT, height=WIDTH, cw=270),
    "portrait_hevc.mp4": dict(codec="libx265", display_rotation=-90, width=HEIGHT, height=WIDTH, cw=90),
    # other streams
    "cover_first.mkv": dict(cover_track_first=True, stream=1),  # stream 0: a one-frame 64x64 MJPEG picture
    # stream 0: a one-frame PNG picture, which FFmpeg's own choice (av_find_best_stream) prefers
    "png_cover_first.mov": dict(cover_track_first="png", stream=1),
    "cover_attached.mkv": dict(cover_attached=True),
    "cover_attached.mp4": dict(cover_attached=True),
    "audio_first.mp4": dict(audio_first=True, stream=1),
    "audio_first.mkv": dict(audio_first=True, stream=1),
    # timing and layout
    "ts_start_10s.ts": dict(start_seconds=10.0),
    # MPEG-TS timestamps are 33 bits of 90 kHz and wrap every 26.5 h; FFmpeg unwraps a stream that starts
    # within 60 s before the wrap (a capture of a 24/7 broadcast, an HLS segment) to negative timestamps
    "ts_crosses_pts_wrap.ts": dict(start_seconds=PTS_WRAP_SEC - 0.5),
    "ts_before_pts_wrap.ts": dict(start_seconds=PTS_WRAP_SEC - 30.0),  # 2 s, all of it before the wrap
    "ts_negative_start.ts": dict(start_seconds=-0.5, container_options={"avoid_negative_ts": "disabled"}),
    "fragmented.mp4": dict(container_options={"movflags": "frag_keyframe+empty_moov"}),
    "faststart.mp4": dict(container_options={"movflags": "faststart"}),
    "edit_list.mp4": dict(first_frame=-3, first=3),  # 3 frames before t=0, hidden by the edit list
    "one_frame.mp4": dict(n_frames=1),
    "one_frame.mkv": dict(n_frames=1),
    "vfr.mp4": dict(bframes=2, pts_seconds=[i * 0.04 if i < 20 else 0.8 + (i - 20) * 0.1 for i in range(60)]),
}
_META = ("stream", "cw", "first", "output_order")

PLANS = [
    ("by_count_uniform", dict(count_k=4)),
    ("by_count_uniform", dict(count_k=8)),
    ("by_interval_frames", dict(interval_frames=5)),
    ("by_timestamps", dict(timestamps_sec=[0.05, 0.9, 1.51])),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("real_world")
    for name, spec in CORPUS.items():
        encode_video(d / name, **{k: v for k, v in spec.items() if k not in _META})
    encode_cover_only(d / "cover_only.mp4")
    encode_pictures_only(d / "two_pictures.mkv")
    return d


@pytest.fixture(scope="module")
def corpus_http(corpus):
    with http_file_server(corpus) as server:
        yield server


def exhaustive(path, stream_index: int, spec: dict):
    """(times from the first frame, displayed RGB frames) of every frame of the stream, in presentation order
    (the decoder's output order, which is the order of the frames' timestamps unless ``output_order``)."""
    with av.open(str(path)) as c:
        st = c.streams[stream_index]
        decoded = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(st)]
        if spec.get("output_order"):  # timestamps in decode order: output order is presentation order
            pts = sorted(p for p, _ in decoded)
            decoded = [(p, img) for p, (_, img) in zip(pts, decoded)]
        decoded.sort(key=lambda d: d[0])
        times = [float((p - decoded[0][0]) * st.time_base) for p, _ in decoded]
    rot, hflip, vflip = spec.get("display_rotation") or 0, spec.get("hflip", False), spec.get("vflip", False)
    return times, [displayed_picture(img, rot, hflip, vflip) for _, img in decoded]


def _duration(times):
    step = float(np.median(np.diff(times[-32:]))) if len(times) > 1 else 1 / 30
    return times[-1] + step


def _sample(source, mode, kw, **extra):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact file must never be reported truncated
        return sample_frames(source, mode, **kw, **extra)


@pytest.mark.parametrize("name", list(CORPUS))
def test_sampled_frames_equal_the_exhaustive_decode(corpus, corpus_http, name):
    spec = CORPUS[name]
    path = corpus / name
    times, frames = exhaustive(path, spec.get("stream", 0), spec)
    assert len(times) == spec.get("n_frames", 60)  # the clip is what it claims (nothing hidden or lost)
    duration = _duration(times)
    w, h = spec.get("width", WIDTH), spec.get("height", HEIGHT)
    sources = {"path": str(path), "bytes": path.read_bytes(), "http": corpus_http.url(name)}
    for mode, kw in PLANS:
        want = expected_positions(times, duration, mode, **kw)
        for kind, source in sources.items():
            s = _sample(source, mode, kw, video_format=path.suffix[1:])
            where = f"{name} via {kind}, {mode} {kw}"
            assert s.indices == want, where
            assert not s.truncated and s.num_frames == len(times), where
            assert s.timestamps == pytest.approx([times[i] for i in want], abs=1e-6), where
            assert s.frames.shape == (len(want), h, w, 3) and (s.width, s.height) == (w, h), where
            for i, frame in zip(want, s.frames):
                np.testing.assert_array_equal(frame, frames[i], err_msg=where)
            # upright: the pattern reads back as the frame's own index (a sideways or mirrored frame cannot)
            assert [read_index(f) for f in s.frames] == [i + spec.get("first", 0) for i in want], where
            assert s.rotation == spec.get("cw", 0) and s.stream_index == spec.get("stream", 0), where


def test_av1_seek_plan_is_exact_and_not_truncated(corpus):
    """The issue's numbers: SVT-AV1 GOP 30, 60 frames, libdav1d; count_k=4 returned [22, 52] "truncated"."""
    path = corpus / "av1.mp4"
    with open_source(path) as opened, VideoReader(opened) as reader:
        assert reader.codec == "libdav1d"
    for k, want in ((4, [7, 22, 37, 52]), (8, [3, 11, 18, 26, 33, 41, 48, 56])):
        s = _sample(path, "by_count_uniform", dict(count_k=k))
        assert s.indices == want and [read_index(f) for f in s.frames] == want and not s.truncated


def test_open_gop_hevc_really_has_leading_pictures(corpus):
    """The open-GOP clips must contain what makes them open: after a later keyframe, in decode order, pictures
    shown before it (RASL), which need the previous GOP."""
    for name in ("hevc_open_gop.mp4", "hevc_open_gop.mkv"):
        with av.open(str(corpus / name)) as c:
            packets = [(p.pts, p.is_keyframe) for p in c.demux(video=0) if p.size]
        key_positions = [i for i, (_, k) in enumerate(packets) if k][1:]
        assert any(packets[i + 1][0] < packets[i][0] for i in key_positions), name


def test_ts_clips_really_start_before_zero(corpus):
    """What the negative-start clips are: FFmpeg reports their first frame before 0 (the 33-bit wrap unwrapped
    to negative timestamps, or negative timestamps written as they are); one crosses 0 (the wrap), one ends
    before it."""
    for name, first_sec in NEGATIVE_START_TS.items():
        with av.open(str(corpus / name)) as c:
            st = c.streams.video[0]
            pts = sorted(p.pts for p in c.demux(st) if p.size)
            assert float(st.start_time * st.time_base) == pytest.approx(first_sec, abs=1 / 30), name
        assert len(pts) == 60 and pts[0] * st.time_base == pytest.approx(first_sec, abs=1 / 30), name
        assert (pts[-1] < 0) == (name == "ts_before_pts_wrap.ts"), name


def test_flv_with_negative_timestamps_is_read_whole(tmp_path, monkeypatch):
    """FFmpeg's FLV muxer writes timestamps in 31 bits: the frames before 0 of a stream with negative timestamps
    are read 2^31 ms (24.9 days) before those after 0, so a 2 s clip lasted 2,147,484 s and failed the duration
    limit. The jump is a wrap: every frame is there, at its own time, by seeks too."""
    path = encode_video(tmp_path / "negative.flv", start_seconds=-0.5,
                        container_options={"avoid_negative_ts": "disabled"})
    with av.open(str(path)) as c:
        pts = sorted(p.pts for p in c.demux(video=0) if p.size)
        jumps = [b - a for a, b in zip(pts, pts[1:]) if b - a > 1000]
        assert len(jumps) == 1 and 0 < jumps[0] - (1 << 31) < 100  # what FFmpeg reads: one jump of 2^31 ms
    with av.open(str(path)) as c:  # the decoder's output order is the presentation order
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert [read_index(f) for f in frames] == list(range(60))
    times = [(round((i - 15) * 100 / 3) + 500) / 1000 for i in range(60)]  # 1 ms timestamps from -0.5 s
    for mode, kw in PLANS + [("by_fps", dict(target_fps=3.0))]:
        want = expected_positions(times, 2.0, mode, **kw)
        for source in (str(path), path.read_bytes()):
            s = _sample(source, mode, kw, video_format="flv")
            assert s.indices == want and s.num_frames == 60 and not s.truncated and s.warnings == [], (mode, kw)
            assert s.duration == pytest.approx(2.0) and s.fps == 30.0
            assert s.timestamps == pytest.approx([times[i] for i in want], abs=1e-6)
            for i, frame in zip(want, s.frames):
                np.testing.assert_array_equal(frame, frames[i])
    monkeypatch.setattr(fetch, "HOP_MAX_FRAMES", 0)  # seeks, not hops (video.fetch), across the wrap
    with open_source(path) as opened, VideoReader(opened) as reader:
        assert [read_index(f) for _, f in reader.fetch(np.array([2, 40, 55]))] == [2, 40, 55]
        assert reader.stats.seeks >= 2 and not reader.truncated  # sought past the wrap


@pytest.mark.parametrize("start, bframes", [(-0.5, 2), (0.0, 2)])
def test_flv_without_a_declared_duration_is_read_across_the_wrap(tmp_path, start, bframes):
    """Without a duration in its metadata (a live recording; ``flvflags=no_duration_filesize``) FFmpeg measures
    an FLV's duration over its raw timestamps, across the 31-bit wrap of those before 0: 2,147,483.6 s. That
    failed the duration limit before the scan unwrapped them, for negative timestamps and for a plain 2 s clip
    whose B-frames put its first decode times before 0."""
    path = encode_video(tmp_path / "live.flv", start_seconds=start, bframes=bframes,
                        container_options={"avoid_negative_ts": "disabled", "flvflags": "no_duration_filesize"})
    with av.open(str(path)) as c:
        assert c.duration / 1e6 == pytest.approx((1 << 31) / 1000, abs=1)  # what FFmpeg declares
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert [read_index(f) for f in frames] == list(range(60))
    k = round(start * 30)  # the first frame's number at 30 fps; FLV stores times in 1 ms
    times = [(round((i + k) * 100 / 3) - round(k * 100 / 3)) / 1000 for i in range(60)]
    for mode, kw in PLANS + [("by_fps", dict(target_fps=3.0))]:
        want = expected_positions(times, 2.0, mode, **kw)
        for source in (str(path), path.read_bytes()):
            s = _sample(source, mode, kw, video_format="flv")
            assert s.indices == want and s.num_frames == 60 and not s.truncated and s.warnings == [], (mode, kw)
            assert s.duration == pytest.approx(2.0) and s.timestamps == pytest.approx([times[i] for i in want])
            for i, frame in zip(want, s.frames):
                np.testing.assert_array_equal(frame, frames[i])
    with pytest.raises(LimitExceededError, match=r"live\.flv: duration 1\.\ds exceeds the limit max_duration_sec=1"):
        sample_frames(path, limits=ReadLimits(max_duration_sec=1.0))  # unwrapped, by the scan


def test_flv_pause_is_not_taken_for_a_wrap(tmp_path):
    """A recording paused for 10 minutes at a keyframe jumps forward by the pause: only a jump within 60 s of a
    wrap's size is unwrapped, so the frames after it keep their own times, by seeks too."""
    pause_ms = 600_000
    src = encode_video(tmp_path / "a.flv", bframes=2)
    path = tmp_path / "paused.flv"
    with av.open(str(src)) as i, av.open(str(path), "w") as o:
        out = o.add_stream_from_template(i.streams.video[0])
        packets = [p for p in i.demux(video=0) if p.size]
        resume = [k for k, p in enumerate(packets) if p.is_keyframe][2]  # frame 24 (GOP 12) starts after it
        for k, p in enumerate(packets):
            if k >= resume:
                p.pts, p.dts = p.pts + pause_ms, p.dts + pause_ms
            p.stream = out
            o.mux(p)
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    times = [round(i * 100 / 3) / 1000 + (pause_ms / 1000 if i >= 24 else 0) for i in range(60)]
    for mode, kw in PLANS + [("by_timestamps", dict(timestamps_sec=[0.77, 600.79, 600.8, 601.9]))]:
        want = expected_positions(times, times[-1] + 1 / 30, mode, **kw)
        s = _sample(path, mode, kw)
        assert s.indices == want and s.num_frames == 60 and s.warnings == [], (mode, kw)
        assert s.timestamps == pytest.approx([times[i] for i in want], abs=1e-6)
        for i, frame in zip(want, s.frames):
            np.testing.assert_array_equal(frame, frames[i])


def test_rotation_off_gives_the_stored_picture(corpus):
    path = corpus / "portrait_cw90.mp4"
    s = _sample(path, "by_interval_frames", dict(interval_frames=20), apply_rotation=False)
    # stored on its side: landscape, as the phone's sensor wrote it
    assert s.frames.shape == (3, HEIGHT, WIDTH, 3) and (s.width, s.height) == (WIDTH, HEIGHT)
    with av.open(str(path)) as c:
        stored = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    for i, frame in zip(s.indices, s.frames):
        np.testing.assert_array_equal(frame, stored[i])
    assert s.rotation == 0
    with open_source(path) as opened, VideoReader(opened) as reader:
        assert (reader.width, reader.height, reader.stored_width, reader.stored_height) == (HEIGHT, WIDTH,
                                                                                            WIDTH, HEIGHT)
        assert reader.rotation == 90


def test_cover_picture_is_never_read(corpus):
    s = _sample(corpus / "cover_first.mkv", "by_count_uniform", dict(count_k=4))
    assert s.stream_index == 1 and s.indices == [7, 22, 37, 52] and s.frames.shape[1:] == (HEIGHT, WIDTH, 3)
    with av.open(str(corpus / "cover_attached.mkv")) as c:  # the clip really carries a flagged cover
        covers = [bool(st.disposition & av.stream.Disposition.attached_pic) for st in c.streams]
        assert covers == [False, True]


def test_stream_index_picks_a_stream_and_names_the_problem(corpus):
    path = corpus / "cover_first.mkv"
    s = _sample(path, "by_count_uniform", dict(count_k=4), stream_index=1)
    assert s.stream_index == 1 and s.indices == [7, 22, 37, 52] and s.frames.shape[1:] == (HEIGHT, WIDTH, 3)
    # stream 0 is the one-frame MJPEG cover the automatic choice passes over: refused by number too
    with pytest.raises(VideoDecodeError, match=r"cover_first\.mkv: stream 0 is a cover picture \(a one-frame "
                                               r"mjpeg track\), not a video \(streams: 0: cover picture, 1: video"):
        sample_frames(path, stream_index=0)
    with av.open(str(path)) as c:  # it really is a one-frame 64x64 picture of its own, with no cover flag
        st = c.streams[0]
        assert (st.codec_context.name, st.width, st.height, st.disposition) == ("mjpeg", 64, 64, 0)
        pictures = [f.to_ndarray(format="rgb24") for f in c.decode(st)]
        assert len(pictures) == 1 and np.abs(pictures[0].astype(int) - cover_image()).max() < 8
    s = _sample(corpus / "mjpeg.avi", "by_count_uniform", dict(count_k=4), stream_index=0)  # an MJPEG video
    assert s.stream_index == 0 and s.indices == [7, 22, 37, 52]
    with pytest.raises(VideoDecodeError, match=r"audio_first\.mp4: stream 0 is audio, not video"):
        sample_frames(corpus / "audio_first.mp4", stream_index=0)
    with pytest.raises(VideoDecodeError, match=r"cover_first\.mkv: stream_index 5 out of range .*2 streams"):
        sample_frames(path, stream_index=5)
    with pytest.raises(VideoDecodeError, match=r"cover_attached\.mp4: stream 1 is a cover picture"):
        sample_frames(corpus / "cover_attached.mp4", stream_index=1)
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="stream_index"):
            sample_frames(corpus / "nope.mp4", stream_index=bad)  # before any I/O: the file does not exist


def test_cover_only_file_is_not_a_video(corpus):
    with pytest.raises(VideoDecodeError, match=r"cover_only\.mp4: no video stream, only a cover picture"):
        sample_frames(corpus / "cover_only.mp4")
    # two one-frame MJPEG tracks: each is a cover by the rule that refuses it by number, so neither is read
    path = corpus / "two_pictures.mkv"
    with av.open(str(path)) as c:
        assert [st.codec_context.name for st in c.streams] == ["mjpeg", "mjpeg"]
        assert sorted(p.stream.index for p in c.demux() if p.size) == [0, 1]  # one picture each
    with pytest.raises(VideoDecodeError, match=r"two_pictures\.mkv: no video stream, only a cover picture "
                                               r"\(streams: 0: cover picture, 1: cover picture\)"):
        sample_frames(path)
    for index in (0, 1):
        with pytest.raises(VideoDecodeError, match=rf"two_pictures\.mkv: stream {index} is a cover picture"):
            sample_frames(path, stream_index=index)


def test_cover_rule_is_one_for_the_default_choice_and_stream_index(corpus):
    """A one-frame PNG track before the H.264 video: FFmpeg's own choice is the picture (it is first and
    flagged default); the default choice passes over it by the rule that refuses it by number."""
    path = corpus / "png_cover_first.mov"
    with av.open(str(path)) as c:
        assert c.streams.best("video").index == 0 and c.streams[0].codec_context.name == "png"
        assert len(list(c.decode(c.streams[0]))) == 1
    with open_source(path) as opened, VideoReader(opened) as reader:
        assert reader.stream_index == 1 and reader.codec == "h264" and len(reader.index) == 60
        assert reader.warnings == [] and not reader.truncated
    with pytest.raises(VideoDecodeError, match=r"png_cover_first\.mov: stream 0 is a cover picture \(a one-frame "
                                               r"png track\)"):
        sample_frames(path, stream_index=0)


def test_cover_track_larger_than_max_pixels_does_not_refuse_the_video(tmp_path):
    """FFmpeg's own choice is a one-frame picture track flagged default (the MP4 muxer flags each kind's first
    track; a Matroska's can be flagged so): its header was held to the limits before it was known to be a
    cover, so a cover larger than ``max_pixels`` refused the video beside it."""
    limits = ReadLimits(max_pixels=WIDTH * HEIGHT)
    mkv = encode_video(tmp_path / "unflagged.mkv", cover_track_first=True, cover_size=128)
    with av.open(str(mkv)) as i, av.open(str(tmp_path / "cover.mkv"), "w") as o:  # the cover flagged default
        streams = [o.add_stream_from_template(st) for st in i.streams]
        streams[0].disposition, streams[1].disposition = av.stream.Disposition.default, 0
        for packet in i.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                o.mux(packet)
    paths = [encode_video(tmp_path / "cover.mp4", cover_track_first=True, cover_size=128),
             encode_video(tmp_path / "cover.mov", cover_track_first="png", cover_size=128), tmp_path / "cover.mkv"]
    for path in paths:
        with av.open(str(path)) as c:
            assert c.streams.best("video").index == 0 and c.streams[0].width * c.streams[0].height == 128 * 128
        s = _sample(path, "by_count_uniform", dict(count_k=4), limits=limits)
        assert s.stream_index == 1 and s.indices == [7, 22, 37, 52], path.name
        assert [read_index(f) for f in s.frames] == s.indices and s.warnings == [], path.name
        with pytest.raises(LimitExceededError, match=rf"{path.name}: frame size 96x64 \(6144 pixels\) exceeds"):
            sample_frames(path, limits=ReadLimits(max_pixels=WIDTH * HEIGHT - 1))  # the video's own size counts
        with pytest.raises(VideoDecodeError, match=rf"{path.name}: stream 0 is a cover picture"):
            sample_frames(path, stream_index=0, limits=limits)  # by number too, by the same rule


def test_mov_cover_track_is_known_from_its_sample_table(corpus, corpus_http, av_opens):
    """The PNG track's one frame is listed in the MOV's sample table. Counting it by a scan read the whole file
    (over HTTP every byte, where the video's own index comes from the header; 1.5 MB read for a 1.5 MB file
    whose plan needs 0.5 MB) and then opened it a second time."""
    for source in (str(corpus / "png_cover_first.mov"), corpus_http.url("png_cover_first.mov")):
        av_opens.clear()
        with open_source(source) as opened, VideoReader(opened) as reader:
            assert reader.stream_index == 1 and len(reader.index) == 60 and reader.warnings == []
        assert len(av_opens) == 1, source

def test_remote_mp4_whose_sample_table_lists_nothing_is_an_error_naming_it(tmp_path):
    """Over HTTP an MP4 is indexed from its sample table; one that lists no video sample (its count zeroed) has
    nothing FFmpeg can seek by, and the seek back to the start for the full scan raised PyAV's own
    PermissionError ('Operation not permitted', as if access were denied, naming no input). Read from a path,
    the same file is 'video stream has no frames'; over HTTP it must be too."""
    path = encode_video(tmp_path / "empty_stsz.mp4")
    data = bytearray(path.read_bytes())
    at = data.find(b"stsz") + 12  # after the box type, version/flags and the common sample size
    data[at:at + 4] = bytes(4)  # sample count 0
    path.write_bytes(bytes(data))
    with av.open(str(path)) as c, pytest.raises(av.error.PermissionError):
        c.seek(0)  # what FFmpeg answers
    with http_file_server(tmp_path) as server:
        for source in (str(path), server.url(path.name)):
            with pytest.raises(VideoDecodeError, match=r"empty_stsz\.mp4: video stream has no frames"):
                sample_frames(source)


# ---- Matroska/WebM cut short -------------------------------------------------------------------------------

# The demuxer ends a cut Matroska at its last complete block without an error; the Segment's declared size
# (FFmpeg writes it once the file is complete: the file's own size) says the file ended early.
CUT = {"cut.webm": dict(codec="libvpx-vp9", gop=15, bframes=None), "cut.mkv": dict(codec="libx264", bframes=2)}


@pytest.fixture
def cut_clips(tmp_path):
    """name -> (whole size, cut size): 60-frame clips in ``tmp_path/whole``, their first halves in
    ``tmp_path/cut`` (same names)."""
    (tmp_path / "whole").mkdir()
    (tmp_path / "cut").mkdir()
    sizes = {}
    for name, spec in CUT.items():
        data = encode_video(tmp_path / "whole" / name, **spec).read_bytes()
        (tmp_path / "cut" / name).write_bytes(data[: len(data) // 2])
        sizes[name] = (len(data), len(data) // 2)
    return sizes


def test_cut_matroska_is_reported_truncated(tmp_path, cut_clips):
    with http_file_server(tmp_path) as server:
        for name, (whole, cut) in cut_clips.items():
            fmt = name.rsplit(".", 1)[1]
            for folder in ("whole", "cut"):
                path = tmp_path / folder / name
                for kind, source in {"path": str(path), "bytes": path.read_bytes(),
                                     "http": server.url(f"{folder}/{name}")}.items():
                    where = f"{folder} {name} via {kind}"
                    if folder == "whole":
                        s = _sample(source, "by_count_uniform", dict(count_k=4), video_format=fmt)
                        assert not s.truncated and not s.warnings and s.num_frames == 60, where
                        continue
                    with pytest.warns(TruncatedVideoWarning, match=f"file ends at byte {cut} of a Segment "
                                                                   f"declared to end at byte {whole}: cut short"):
                        s = sample_frames(source, "by_count_uniform", count_k=4, video_format=fmt)
                    assert s.truncated and len(s.warnings) == 1 and f"byte {cut} of" in s.warnings[0], where
                    assert 0 < s.num_frames < 60 and s.duration < 1.9, where  # the frames before the cut
                    assert [read_index(f) for f in s.frames] == s.indices and len(s.indices) == 4, where


# ---- MP4 cut short ------------------------------------------------------------------------------------------

def _top_level_boxes(data: bytes) -> dict[str, tuple[int, int]]:
    """box type -> (start, end) of an MP4's top-level boxes (32-bit sizes: the small test files)."""
    out, at = {}, 0
    while at < len(data):
        size, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8].decode()
        out[kind] = (at, at + size)
        at += size
    return out


def test_cut_mp4_error_says_where_the_file_ends(tmp_path):
    """PyAV's MP4 muxer (like most encoders and phones) writes the index, ``moov``, after the media: a file cut
    short has none, or half of one, and FFmpeg's own error ("Invalid data", or a "data" stream and no video)
    does not say so. The error names the box the file ends in, via a path, bytes or HTTP."""
    data = encode_video(tmp_path / "whole.mp4").read_bytes()
    boxes = _top_level_boxes(data)
    assert list(boxes)[-1] == "moov", boxes  # the index last
    mdat_end, moov_end = boxes["mdat"][1], boxes["moov"][1]
    cuts = {
        "in_media.mp4": (mdat_end // 2, rf"inside its 'mdat' box, before its index of the frames \(the 'moov' "
                                        rf"box, written after the media\) \(declared to end at byte {mdat_end}\): "
                                        r"cut short"),
        "in_index.mp4": (moov_end - 100, rf"inside its 'moov' box, its index of the frames \(declared to end at byte "
                                         rf"{moov_end}\): cut short"),
        "in_header.mp4": (mdat_end + 5, r"inside a box's header: cut short"),
        "no_index.mp4": (mdat_end, r"the MP4 has no 'moov' box \(its index of the frames\): cut short, or never "
                                   r"finished"),
    }
    (tmp_path / "cut").mkdir()
    for name, (size, _) in cuts.items():
        (tmp_path / "cut" / name).write_bytes(data[:size])
    with http_file_server(tmp_path) as server:
        for name, (size, why) in cuts.items():
            path = tmp_path / "cut" / name
            for kind, source in {"path": str(path), "bytes": path.read_bytes(),
                                 "http": server.url(f"cut/{name}")}.items():
                with pytest.raises(VideoDecodeError, match=rf"; the file ends at byte {size} {why}$"
                                   if name != "no_index.mp4" else rf"; {why}$") as err:
                    sample_frames(source, "by_count_uniform", count_k=4)
                source_named = str(err.value).split(": ", 1)[0]
                assert source_named.endswith(name) or source_named == f"<{size} bytes>", (name, kind)
        # the whole file reads, and a file that is not an MP4 keeps FFmpeg's words alone
        assert sample_frames(server.url("whole.mp4"), "by_count_uniform", count_k=4).num_frames == 60
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError) as err:
        sample_frames(str(tmp_path / "junk.mp4"), "by_count_uniform", count_k=4)
    assert "cut short" not in str(err.value) and "junk.mp4: " in str(err.value)


def test_live_matroska_makes_no_size_claim(tmp_path):
    """A live mux writes the Segment's size as unknown (all ones): nothing to check, nothing flagged."""
    path = encode_video(tmp_path / "live.webm", codec="libvpx-vp9", gop=15, bframes=None,
                        container_options={"live": "1"})
    data = path.read_bytes()
    assert data[:4] == b"\x1a\x45\xdf\xa3" and b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff" in data[:64]
    for source in (str(path), data, data[: len(data) // 2]):
        s = _sample(source, "by_count_uniform", dict(count_k=4), video_format="webm")
        assert not s.truncated and not s.warnings


# ---- through the operators and the pipeline's probe -------------------------------------------------------

TINY = "video-assets/tiny-clip"


def iqa(images) -> list[float]:
    """CLIP-IQA of ``images`` the plain way with the tiny model: cosine x logit scale, softmax over the
    quality prompt pair."""
    from video_assets.models import load_clip
    from video_assets.scoring import NAMED_PROMPTS

    clip = load_clip(TINY, device="cpu")
    txt = clip.encode_text(list(NAMED_PROMPTS["quality"])).cpu().double().numpy()
    logits = clip.logit_scale * clip.encode_images(np.stack(images)).cpu().double().numpy() @ txt.T
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e[:, 0] / e.sum(axis=1)).tolist()


def test_quality_operator_scores_the_displayed_picture(corpus):
    from video_assets.operators import VideoQualityScore

    path = corpus / "portrait_cw90.mp4"
    times, frames = exhaustive(path, 0, CORPUS["portrait_cw90.mp4"])
    with av.open(str(path)) as c:
        stored = sorted(((f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)),
                        key=lambda d: d[0])
    want = expected_positions(times, _duration(times), "by_count_uniform", count_k=4)
    for apply_rotation, pictures in ((True, frames), (False, [img for _, img in stored])):
        op = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=4, apply_rotation=apply_rotation)
        d = op.score_details(video_paths=[str(path)])[0]
        assert d["error"] is None and d["frame_indices"] == want and not d["truncated"]
        assert d["frame_scores"] == pytest.approx(iqa([pictures[i] for i in want]), abs=1e-5)


def test_quality_operator_scores_every_frame_of_a_ts_that_starts_before_zero(corpus):
    """count_k=4 on these clips scored 2 of 4 frames (crossing the wrap) or none ("no frames in the sampling
    window", all before it): the seek to the first frame landed at time 0."""
    from video_assets.operators import VideoQualityScore

    names = list(NEGATIVE_START_TS)
    op = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=4)
    for name, d in zip(names, op.score_details(video_paths=[str(corpus / n) for n in names])):
        times, frames = exhaustive(corpus / name, 0, CORPUS[name])
        want = expected_positions(times, _duration(times), "by_count_uniform", count_k=4)
        assert want == [7, 22, 37, 52], name
        assert d["error"] is None and d["frame_indices"] == want and not d["truncated"], name
        assert d["frame_scores"] == pytest.approx(iqa([frames[i] for i in want]), abs=1e-5), name


def test_quality_operator_row_says_a_cut_matroska_is_truncated(tmp_path, cut_clips):
    from video_assets.operators import VideoQualityScore

    whole, cut = cut_clips["cut.webm"]
    op = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=4)
    with pytest.warns(TruncatedVideoWarning):
        rows = op.score_details(video_paths=[str(tmp_path / "cut" / "cut.webm"), str(tmp_path / "whole" / "cut.webm")])
    cut_row, whole_row = rows
    assert cut_row["error"] is None and cut_row["truncated"] and len(cut_row["frame_scores"]) == 4
    assert cut_row["warnings"] == [f"file ends at byte {cut} of a Segment declared to end at byte {whole}: cut "
                                   "short; sampling the frames that are there"]
    assert whole_row["error"] is None and not whole_row["truncated"] and whole_row["warnings"] == []


def test_keyframes_operator_exports_upright_images(corpus, tmp_path):
    from PIL import Image

    from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore
    from video_assets.operators.combined import QualityAndKeyframes

    name = "portrait_cw90.mp4"
    _, frames = exhaustive(corpus / name, 0, CORPUS[name])
    kw = dict(text="a white square", clip_model_name=TINY, fps=10.0, max_num_frames=4, all_depth=2,
              img_type=".png", return_keyframes=True)
    op = VideoAdaptiveKeyframesSampling(output_tos_dir=str(tmp_path / "kf"), **kw)
    d = op.details([str(corpus / name)])[0]
    assert d["error"] is None and len(d["frame_ids"]) == 4 and not d["truncated"]
    for fid, uri, arr in zip(d["frame_ids"], d["tos_paths"], d["keyframes"]):
        img = np.asarray(Image.open(uri))
        assert img.shape == (WIDTH, HEIGHT, 3)  # portrait: taller than wide
        np.testing.assert_array_equal(img, frames[fid])
        np.testing.assert_array_equal(arr, frames[fid])
        assert read_index(img) == fid
    both = QualityAndKeyframes(quality=VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=4),
                               keyframes=VideoAdaptiveKeyframesSampling(**kw))
    q, k = both.details([str(corpus / name)])[0]
    assert k["frame_ids"] == d["frame_ids"] and all(np.array_equal(a, b) for a, b in zip(k["keyframes"],
                                                                                         d["keyframes"]))
    single = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=4).score_details(
        video_paths=[str(corpus / name)])[0]
    assert q["frame_scores"] == pytest.approx(single["frame_scores"], abs=1e-6)
    with pytest.raises(ValueError, match="apply_rotation differs"):
        unrotated = VideoQualityScore(clip_model_name=TINY, device="cpu", apply_rotation=False)
        QualityAndKeyframes(quality=unrotated, keyframes=VideoAdaptiveKeyframesSampling(**kw))


def test_pipeline_probe_reports_displayed_size_rotation_and_stream(corpus, tmp_path):
    from video_assets.pipeline.runner import build_manifest_table

    names = ["portrait_cw90.mp4", "rot180.mp4", "cover_first.mkv", "png_cover_first.mov", "audio_first.mp4",
             "cover_only.mp4", "av1.mp4"]
    manifest = tmp_path / "videos.txt"
    manifest.write_text("".join(f"{corpus / n}\n" for n in names))
    table, _ = build_manifest_table(str(manifest), "p1")
    rows = {r["source_uri"].rsplit("/", 1)[-1]: r for r in table.to_pylist()}
    assert table.schema.field("rotation").type == table.schema.field("stream_index").type == "int32"
    got = {n: (r["width"], r["height"], r["rotation"], r["stream_index"], r["num_frames"], r["readable"])
           for n, r in rows.items()}
    assert got == {"portrait_cw90.mp4": (HEIGHT, WIDTH, 90, 0, 60, True),
                   "rot180.mp4": (WIDTH, HEIGHT, 180, 0, 60, True),
                   "cover_first.mkv": (WIDTH, HEIGHT, 0, 1, 60, True),
                   "png_cover_first.mov": (WIDTH, HEIGHT, 0, 1, 60, True),
                   "audio_first.mp4": (WIDTH, HEIGHT, 0, 1, 60, True),
                   "cover_only.mp4": (None, None, None, None, None, False),
                   "av1.mp4": (WIDTH, HEIGHT, 0, 0, 60, True)}
    assert "no video stream, only a cover picture" in rows["cover_only.mp4"]["error"]
    assert all(r["error"] is None for n, r in rows.items() if n != "cover_only.mp4")
    assert all(r["warnings"] == [] for n, r in rows.items() if n != "cover_only.mp4")


def test_pipeline_probe_puts_a_cut_short_video_in_warnings_not_error(tmp_path):
    from video_assets.pipeline.runner import build_manifest_table

    # the sample table first (faststart, as streaming files are), then the media data, cut a third short
    data = encode_video(tmp_path / "whole.mp4", container_options={"movflags": "faststart"}).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])  # readable, with frames missing at the end
    manifest = tmp_path / "videos.txt"
    manifest.write_text(f"{cut}\n")
    table, _ = build_manifest_table(str(manifest), "p1")
    [row] = table.to_pylist()
    assert row["readable"] and row["error"] is None and 0 < row["num_frames"] <= 60
    assert row["warnings"] and any("truncated" in w or "cut short" in w for w in row["warnings"]), row["warnings"]
