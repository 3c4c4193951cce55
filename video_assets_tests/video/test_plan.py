"""Plan selection without video: ``select_positions`` on synthetic frame times, against the rule it implements
("the frame shown at time t is the last frame with t_i <= t") written out literally."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from video_assets.video.plan import make_plan, select_positions, target_times

FPS10 = np.arange(100) / 10.0  # 10 s at 10 fps, times computed as pts / rate


def positions(times, duration, **plan) -> list[int]:
    return select_positions(make_plan(**plan), np.asarray(times, dtype=np.float64), duration).tolist()


def shown_at(times: list[float], t: float, eps: float = 1e-6) -> int:
    """The literal rule: the last frame whose time is <= t (the first frame before the first time)."""
    shown = [i for i, ti in enumerate(times) if ti <= t + eps]
    return shown[-1] if shown else 0


def test_count_uniform_takes_the_middle_of_k_equal_parts():
    # targets 1.25, 3.75, 6.25, 8.75 s -> the frames shown then
    assert positions(FPS10, 10.0, count_k=4) == [12, 37, 62, 87]
    assert positions(FPS10, 10.0, count_k=4, start_time_sec=2.0, end_time_sec=4.0) == [22, 27, 32, 37]


def test_variable_frame_rate_picks_the_frame_on_screen():
    times = [0.0, 0.5, 0.6, 2.0, 3.0]
    assert positions(times, 4.0, sample_mode="by_interval_time", interval_sec=1.0) == [0, 2, 3, 4]
    got = positions(times, 4.0, sample_mode="by_timestamps", timestamps_sec=[0.55, 1.99, 2.0, 3.9])
    assert got == [1, 2, 3, 4]


def test_a_target_on_a_frame_time_is_that_frame_despite_float_rounding():
    # frame times i / 24 (pts / rate) and targets i * (1 / 24) differ in the last bit for 1 in 3 frames; the
    # target is then a hair before its frame, which must still be the one chosen
    times = np.arange(240) / 24
    assert int((np.arange(240) * (1 / 24) < times).sum()) > 50  # the case this test is about
    assert positions(times, 10.0, sample_mode="by_fps", target_fps=24.0) == list(range(240))
    assert positions(FPS10, 10.0, sample_mode="by_interval_time", interval_sec=0.3) == list(range(0, 100, 3))


def test_a_target_at_the_end_within_float_rounding_is_out_of_the_window():
    # 5 s at 30 fps in Matroska's 1 ms time base: the reader's duration is 4.967 + 0.033 = 5.000000000000001
    times = np.round(np.arange(150) * 1000 / 30) * 0.001  # pts * time_base, as the frame index computes them
    duration = float(times[-1] + np.median(np.diff(times[-32:])))
    assert duration > 5.0  # the case this test is about
    assert positions(times, duration, sample_mode="by_fps", target_fps=1.0) == [0, 30, 60, 90, 120]
    assert len(positions(times, duration, sample_mode="by_interval_time", interval_sec=0.5)) == 10
    assert positions(times, duration, sample_mode="by_timestamps", timestamps_sec=[4.9, 5.0]) == [147]


def test_an_end_past_the_video_is_the_videos_end():
    # 3 s at 30 fps: an end_time_sec of 100 must not spread count_k's targets over 100 s
    times = np.arange(90) / 30
    for plan in (dict(count_k=3), dict(count_k=4, start_time_sec=2.5),
                 dict(sample_mode="by_timestamps", timestamps_sec=[1.0, 10.0])):
        assert positions(times, 3.0, **plan, end_time_sec=100.0) == positions(times, 3.0, **plan), plan
    assert positions(times, 3.0, count_k=3, end_time_sec=100.0) == [15, 45, 75]
    assert positions(times, 3.0, count_k=3, end_time_sec=1.5) == [7, 22, 37]  # an earlier end still counts


def test_duplicates_collapse_and_out_of_window_timestamps_are_dropped():
    got = positions(FPS10, 10.0, sample_mode="by_timestamps", timestamps_sec=[5.0, 0.05, 0.05, 99.0, 10.0])
    assert got == [0, 50]
    # more frames asked for than exist: each frame once
    assert positions([0.0, 1.0, 2.0], 3.0, count_k=10) == [0, 1, 2]
    assert positions(FPS10, 10.0, sample_mode="by_timestamps", timestamps_sec=[2.0, 3.0],
                     start_time_sec=2.5) == [30]


def test_interval_frames_counts_frames_inside_the_window():
    assert positions(FPS10, 10.0, sample_mode="by_interval_frames", interval_frames=3, start_time_sec=1.0,
                     end_time_sec=2.0) == [10, 13, 16, 19]
    assert positions(FPS10, 10.0, sample_mode="by_interval_frames", interval_frames=40) == [0, 40, 80]


def test_max_frames_thins_evenly_and_keeps_the_first():
    assert positions(FPS10, 10.0, sample_mode="by_fps", target_fps=1.0) == list(range(0, 100, 10))
    assert positions(FPS10, 10.0, sample_mode="by_fps", target_fps=1.0, max_frames=4) == [0, 20, 50, 70]
    assert positions(FPS10, 10.0, count_k=3, max_frames=5) == positions(FPS10, 10.0, count_k=3)


def test_nothing_to_select():
    assert positions([], 10.0, count_k=4) == []
    assert positions(FPS10, 10.0, count_k=4, start_time_sec=20.0) == []  # window after the end
    assert positions(FPS10, 10.0, sample_mode="by_timestamps", timestamps_sec=[]) == []


def test_result_is_int64_positions():
    got = select_positions(make_plan(count_k=4), FPS10, 10.0)
    assert got.dtype == np.int64


times_strategy = st.lists(st.floats(0.0, 100.0, allow_nan=False), min_size=1, max_size=60).map(
    lambda xs: sorted(set(round(x, 3) for x in xs)))
plans = st.one_of(
    st.builds(dict, count_k=st.integers(1, 40)),
    st.builds(dict, sample_mode=st.just("by_interval_time"), interval_sec=st.floats(0.05, 20.0)),
    st.builds(dict, sample_mode=st.just("by_fps"), target_fps=st.floats(0.05, 30.0)),
    st.builds(dict, sample_mode=st.just("by_timestamps"),
              timestamps_sec=st.lists(st.floats(-5.0, 120.0, allow_nan=False), max_size=30)),
)


@settings(max_examples=300, deadline=None)
@given(times=times_strategy, plan=plans, window=st.tuples(st.floats(0, 50), st.floats(0.01, 80)),
       max_frames=st.none() | st.integers(1, 20))
def test_time_modes_follow_the_literal_rule(times, plan, window, max_frames):
    start, length = window
    duration = times[-1] + 0.5
    p = make_plan(**plan, start_time_sec=start, end_time_sec=start + length, max_frames=max_frames)
    got = select_positions(p, np.asarray(times), duration).tolist()
    expected = sorted({shown_at(times, float(t)) for t in target_times(p, duration)})
    if max_frames is not None and len(expected) > max_frames:
        expected = [expected[(i * len(expected)) // max_frames] for i in range(max_frames)]
    assert got == expected
    assert got == sorted(set(got)) and all(0 <= i < len(times) for i in got)


@pytest.mark.parametrize("plan", [dict(sample_mode="by_fps", target_fps=0), dict(count_k=0),
                                  dict(sample_mode="by_interval_frames", interval_frames=1.5),
                                  dict(start_time_sec=3.0, end_time_sec=2.0)])
def test_bad_plans_are_refused_before_any_selection(plan):
    with pytest.raises(ValueError):
        make_plan(**plan)
