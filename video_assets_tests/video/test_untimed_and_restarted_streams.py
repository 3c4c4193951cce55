"""Streams whose timestamps cannot order their frames: raw Annex-B H.264/HEVC elementary streams (no timestamps
at all: raspivid, drones, CCTV exports), streams whose timestamps are mostly missing (an MPEG-PS whose small
frames FFmpeg's muxer packs several to a PES, only the first stamped) and streams whose timestamps restart or
repeat (two MPEG-TS recordings joined with ``cat``, a remux that duplicated a timestamp).

Each clip is encoded here with PyAV. The ground truth is an exhaustive decode by plain PyAV in the decoder's
output order, which is the order a player shows them (no sorting by timestamp: the timestamps are what is
wrong or missing); the sampler must return exactly those frames, through a path and through bytes, with the
times a player would give them, and say in its warnings what it did.
"""

from __future__ import annotations

import warnings

import av
import numpy as np
import pytest

from video_assets.errors import LimitExceededError, VideoDecodeError
from video_assets.video import ReadLimits, VideoReader, open_source, sample_frames
from video_assets_tests.servers import http_file_server
from video_assets_tests.video.test_sampler import expected_positions
from video_assets_tests.videos import encode_video, read_index

X265 = "bframes=3:keyint=12:min-keyint=12:log-level=error"
PLANS = [
    ("by_count_uniform", dict(count_k=4)),
    ("by_count_uniform", dict(count_k=8)),
    ("by_interval_frames", dict(interval_frames=1)),
    ("by_timestamps", dict(timestamps_sec=[0.05, 0.9, 1.51])),
]


def _packets(path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(video=0) if p.size]


def _remux(src, dst, fmt: str, packets: slice = slice(None), repeat_pts_of: int | None = None):
    """``src``'s video packets ``packets`` into ``dst`` (container ``fmt``); ``repeat_pts_of``: that packet's
    successor gets its timestamps (a remux that duplicated a timestamp)."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format=fmt) as o:
        ist = i.streams.video[0]
        ost = o.add_stream_from_template(ist)
        previous = None
        for k, p in enumerate([p for p in i.demux(ist) if p.size][packets]):
            if repeat_pts_of is not None and k == repeat_pts_of + 1:
                p.pts = p.dts = previous
            previous = p.pts
            p.stream = ost
            o.mux(p)
    return dst


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("untimed")
    # raw elementary streams (the decoder reorders B-frames by their picture order count; no timestamps)
    encode_video(d / "bframes.h264", container_format="h264", bframes=2)
    encode_video(d / "pyramid.h264", container_format="h264", bframes=3, options={"b-pyramid": "normal"})
    encode_video(d / "bframes.hevc", container_format="hevc", codec="libx265", options={"x265-params": X265})
    # a raw stream cut mid-GOP: the 7 pictures before the next keyframe lack their parameter sets
    (d / "cut.h264").write_bytes(b"".join(_packets(d / "bframes.h264")[5:]))
    # two raw streams of different frame rates, joined
    encode_video(d / "at25.h264", container_format="h264", fps=25, n_frames=25)
    (d / "30_then_25.h264").write_bytes((d / "bframes.h264").read_bytes() + (d / "at25.h264").read_bytes())
    # two MPEG-TS recordings joined with cat: the second one's timestamps start again at 1.4 s (the TS muxer's
    # offset); its patterns continue the first one's count
    encode_video(d / "a.ts", n_frames=30, bframes=2)
    encode_video(d / "b.ts", n_frames=30, bframes=2, first_pattern=30)
    (d / "joined.ts").write_bytes((d / "a.ts").read_bytes() + (d / "b.ts").read_bytes())
    # ... the first one cut mid-GOP (its first 5 packets lost: 7 undecodable ones before the next keyframe)
    _remux(d / "a.ts", d / "a_cut.ts", "mpegts", slice(5, None))
    (d / "joined_cut.ts").write_bytes((d / "a_cut.ts").read_bytes() + (d / "b.ts").read_bytes())
    # two Matroska files joined with cat: two Segments, the second one's timestamps start again at 0
    encode_video(d / "a.mkv", n_frames=60, bframes=2)
    encode_video(d / "b.mkv", n_frames=60, bframes=2, first_pattern=60)
    (d / "joined.mkv").write_bytes((d / "a.mkv").read_bytes() + (d / "b.mkv").read_bytes())
    # Matroska written with negative timestamps: it stores none for the 15 frames before 0
    encode_video(d / "negative_ts.mkv", start_seconds=-0.5, container_options={"avoid_negative_ts": "disabled"})
    # H.264 in MPEG-PS: the muxer packs the small frames of the test pattern several to a PES, and stamps only
    # the first of each (2 of 60 frames)
    encode_video(d / "mostly_untimed.mpg", container_format="mpeg", bframes=2)
    # MJPEG remuxed into Matroska with frame 10 stamped like frame 9
    encode_video(d / "mjpeg.mkv", n_frames=30, codec="mjpeg", pix_fmt="yuvj420p", bframes=None)
    _remux(d / "mjpeg.mkv", d / "repeated_pts.mkv", "matroska", repeat_pts_of=9)
    return d


def decoder_output(path):
    """Every frame the decoder returns, in its output order: (RGB frames, their own pts)."""
    with av.open(str(path)) as c:
        decoded = [(f.to_ndarray(format="rgb24"), f.pts) for f in c.decode(video=0)]
    return [img for img, _ in decoded], [p for _, p in decoded]


# name -> (frames a player shows, first pattern, their times in seconds, what the warnings say)
CASES = {
    "bframes.h264": (60, 0, [i / 30 for i in range(60)], []),
    "pyramid.h264": (60, 0, [i / 30 for i in range(60)], []),
    "bframes.hevc": (60, 0, [i / 30 for i in range(60)], []),
    "cut.h264": (48, 12, [i / 30 for i in range(48)], ["7 packet(s) before the first keyframe were left out"]),
    "joined.ts": (60, 0, [i / 30 for i in range(60)],
                  ["30 frame(s) after 1 restart(s) of the timestamps (joined recordings?) kept"]),
    "joined_cut.ts": (48, 12, [i / 30 for i in range(48)],
                      ["7 packet(s) before the first keyframe were left out", "30 frame(s) after 1 restart"]),
    "joined.mkv": (120, 0, [round(i / 30, 3) for i in range(120)],
                   ["60 frame(s) after 1 restart(s) of the timestamps (joined recordings?) kept"]),
    "mostly_untimed.mpg": (60, 0, [i / 30 for i in range(60)],
                           ["58 of 60 frame(s) have no timestamp: frames are counted in decoding order"]),
    "repeated_pts.mkv": (30, 0, [round(i / 30, 3) if i != 10 else 0.3 for i in range(30)],
                         ["1 frame(s) with a repeated timestamp kept"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_frames_are_the_decoders_in_its_output_order(clips, name):
    n, first_pattern, times, notes = CASES[name]
    path = clips / name
    frames, own_pts = decoder_output(path)
    assert len(frames) == n  # the clip is what it claims
    assert [read_index(f) for f in frames] == list(range(first_pattern, first_pattern + n))
    if name.endswith((".h264", ".hevc")):
        assert set(own_pts) == {None}  # nothing to order or match them by
    elif name.endswith(".mpg"):
        assert own_pts.count(None) == 58  # only 2 frames to order or match by: the sampler left out the rest
    elif name.startswith("joined"):
        restart = n - 30 if name.endswith(".ts") else 60
        assert own_pts[restart - 1] > own_pts[restart]  # the second recording's timestamps start again
    else:
        assert own_pts[10] == own_pts[9]
    duration = times[-1] + 1 / 30
    for mode, kw in PLANS:
        want = expected_positions(times, duration, mode, **kw)
        for kind, source in (("path", str(path)), ("bytes", path.read_bytes())):
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # nothing is truncated
                s = sample_frames(source, mode, video_format=path.suffix[1:], **kw)
            where = f"{name} via {kind}, {mode} {kw}"
            assert s.indices == want and s.num_frames == n and not s.truncated, where
            assert s.timestamps == pytest.approx([times[i] for i in want], abs=1e-6), where
            assert s.duration == pytest.approx(duration, abs=2e-3) and s.fps == pytest.approx(30, rel=1e-3), where
            for i, frame in zip(want, s.frames):
                np.testing.assert_array_equal(frame, frames[i], err_msg=where)
            assert [read_index(f) for f in s.frames] == [first_pattern + i for i in want], where
            assert len(s.warnings) == len(notes), (where, s.warnings)
            for note in notes:
                assert any(note in w for w in s.warnings), (where, s.warnings)


@pytest.mark.parametrize("mode, kw, start", [
    ("by_timestamps", dict(timestamps_sec=[0.05, 1.9, 1.99, 2.0, 2.05, 3.5, 3.99]), 0.0),
    ("by_count_uniform", dict(count_k=10), 0.0),
    ("by_interval_frames", dict(interval_frames=7), 1.5),
    ("by_fps", dict(target_fps=3.0), 0.0),
])
def test_joined_matroska_is_decoded_into_its_second_segment(clips, mode, kw, start):
    """``cat a.mkv b.mkv``: the scan counts both Segments' frames, and so must the decode. After any seek
    (even to the start) FFmpeg's Matroska demuxer stopped at the end of the first Segment: the frames of the
    second were missing and the row said truncated."""
    path = clips / "joined.mkv"
    frames, _ = decoder_output(path)
    times = CASES["joined.mkv"][2]
    want = expected_positions(times, 4.0, mode, start=start, **kw)
    assert want[0] < 60 <= want[-1]  # the plan spans both Segments
    for source in (str(path), path.read_bytes()):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing is truncated
            s = sample_frames(source, mode, video_format="mkv", start_time_sec=start, **kw)
        assert s.indices == want and not s.truncated and s.num_frames == 120, s.warnings
        assert [read_index(f) for f in s.frames] == want
        for i, frame in zip(want, s.frames):
            np.testing.assert_array_equal(frame, frames[i])
        assert any("restart(s) of the timestamps" in w for w in s.warnings)


def test_matroska_whose_first_packets_have_no_timestamp_is_not_truncated(clips):
    """The frames before 0 of a Matroska written with negative timestamps come without any: they are left out,
    as frames without a timestamp are. The start used to be sought at the first timestamp, which lands after
    the GOP's keyframe: 9 frames could not be decoded and the row said truncated."""
    path = clips / "negative_ts.mkv"
    frames, own_pts = decoder_output(path)
    assert len(frames) == 60 and own_pts[:15] == [None] * 15 and None not in own_pts[15:]
    times = [p / 1000 for p in own_pts[15:]]
    for mode, kw in PLANS + [("by_interval_frames", dict(interval_frames=1)), ("by_fps", dict(target_fps=4))]:
        want = expected_positions(times, times[-1] + 0.033, mode, **kw)  # the median step of 1 ms timestamps
        for source in (str(path), path.read_bytes()):
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # nothing is truncated
                s = sample_frames(source, mode, video_format="mkv", **kw)
            assert s.indices == want and s.num_frames == 45 and not s.truncated, (mode, s.warnings)
            assert s.warnings == ["15 frame(s) without a timestamp were left out"]
            assert s.timestamps == pytest.approx([times[i] for i in want], abs=1e-6)
            for i, frame in zip(want, s.frames):
                np.testing.assert_array_equal(frame, frames[15 + i])
            assert [read_index(f) for f in s.frames] == [15 + i for i in want]


def test_repeated_frame_is_reachable_by_count(clips):
    """Both frames stamped 0.3 s are in the index (the scan used to collapse them into one)."""
    s = sample_frames(clips / "repeated_pts.mkv", "by_interval_frames", interval_frames=1, start_time_sec=0.29,
                      end_time_sec=0.31)
    assert s.indices == [9, 10] and [read_index(f) for f in s.frames] == [9, 10] and s.timestamps == [0.3, 0.3]


def test_reader_counts_and_never_seeks_into_a_counted_stream(clips):
    with open_source(clips / "joined.ts") as opened, VideoReader(opened) as reader:
        assert reader.output_order and not reader.skip_nonref
        assert int(reader.index.keyframe.sum()) == 1  # decoding starts at the first frame, every time
        got = [(pos, read_index(rgb)) for pos, rgb in reader.fetch(np.array([50, 5, 33]))]
        assert got == [(5, 5), (33, 33), (50, 50)]
        again = [(pos, read_index(rgb)) for pos, rgb in reader.fetch(np.array([2]))]  # a second fetch: from 0
        assert again == [(2, 2)] and not reader.truncated
    with open_source(clips / "joined.mkv") as opened, VideoReader(opened) as reader:
        assert reader.rotation == 0 and len(reader.index) == 120  # the first frame decoded, then from the start
        for wanted in ([119], [3, 61, 118], [60]):  # each fetch goes back to the start, into both Segments
            assert [read_index(rgb) for _, rgb in reader.fetch(np.array(wanted))] == wanted
        assert not reader.truncated
    with open_source(clips / "bframes.h264") as opened, VideoReader(opened) as reader:
        assert reader.rotation == 0  # the first frame was decoded to read it: the start is reached again
        assert [read_index(rgb) for _, rgb in reader.fetch(np.array([0, 59]))] == [0, 59]
        assert len(reader.index) == 60 and not reader.truncated


def test_a_source_is_opened_again_only_for_a_counted_stream_and_its_limits_hold(clips, av_opens):
    """The start of a counted stream is reached by opening the source again (see VideoReader._reopen); an
    ordinary video is opened once. Over HTTP the second open reads through the same guarded file: its bytes
    count against max_bytes with the scan's, so a budget of 1.5 times the file refuses the joined Matroska."""
    with http_file_server(clips) as server:
        for name, times in (("a.mkv", 1), ("joined.mkv", 2), ("bframes.h264", 2)):
            size = (clips / name).stat().st_size
            for source in (str(clips / name), (clips / name).read_bytes(), server.url(name)):
                av_opens.clear()
                s = sample_frames(source, count_k=4, video_format=name.split(".")[1])
                assert len(s.indices) == 4 and not s.truncated and len(av_opens) == times, (name, type(source))
            url = server.url(name)
            with open_source(url) as opened, VideoReader(opened) as reader:
                assert len(list(reader.fetch(np.array([0, len(reader.index) - 1])))) == 2
                read = opened.file.bytes_read
            assert size <= read < 1.5 * size if times == 1 else 2 * size <= read, name
            if times == 2:
                with pytest.raises(LimitExceededError, match=rf"{name}: bytes read \d+ exceeds the limit max_bytes"):
                    sample_frames(url, count_k=4, limits=ReadLimits(max_bytes=int(1.5 * size)))


def test_raw_stream_that_cannot_be_timed_exactly_is_an_error_naming_it(clips):
    """30 fps then 25 fps: one frame rate cannot give every frame its time, and there are no timestamps."""
    path = clips / "30_then_25.h264"
    assert len(decoder_output(path)[0]) == 85
    with pytest.raises(VideoDecodeError, match=r"30_then_25\.h264: a raw h264 stream without timestamps whose "
                                               r"pictures last different times"):
        sample_frames(path)


def test_raw_stream_duration_limit_applies(clips):
    from video_assets.errors import LimitExceededError
    from video_assets.video.limits import ReadLimits

    with pytest.raises(LimitExceededError, match="bframes.h264"):
        sample_frames(clips / "bframes.h264", limits=ReadLimits(max_duration_sec=1.0))


TINY = "video-assets/tiny-clip"


def test_quality_operator_rows_for_a_raw_stream_and_joined_recordings(clips):
    from video_assets.operators import VideoQualityScore

    op = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=4)
    raw, joined, mkv = op.score_details(video_paths=[str(clips / n) for n in ("bframes.h264", "joined.ts",
                                                                             "joined.mkv")])
    for row in (raw, joined, mkv):
        assert row["error"] is None and not row["truncated"] and len(row["frame_scores"]) == 4
    assert raw["frame_indices"] == joined["frame_indices"] == [7, 22, 37, 52]
    assert mkv["frame_indices"] == [15, 45, 75, 105]
    assert raw["warnings"] == []
    assert any("30 frame(s) after 1 restart(s) of the timestamps" in w for w in joined["warnings"])
    assert len(mkv["warnings"]) == 1 and "60 frame(s) after 1 restart(s) of the timestamps" in mkv["warnings"][0]
    # the same rows from the bytes
    raw_b, = op.score_details(video_binaries=[(clips / "bframes.h264").read_bytes()], video_formats=["h264"])
    assert raw_b["frame_indices"] == raw["frame_indices"]
    assert raw_b["frame_scores"] == pytest.approx(raw["frame_scores"], abs=1e-6)
