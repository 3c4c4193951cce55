"""Tests of the AKS selection rule (``video_assets.keyframes.aks_select``).

Reference semantics: shared/reference/aks.md (ncTimTang/AKS ``frame_select.py``, described in words).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from video_assets.keyframes import aks_select

# ----------------------------------------------------------------------------------------------------------
# an independent, deliberately plain re-implementation of aks.md, used as an oracle for budget="reference"


def literal_aks(scores, M, t1, t2, L):
    """aks.md, step by step, with python lists, recursion and loops."""
    n = len(scores)
    # 1. fewer candidates than the budget: all of them
    if n < M:
        return list(range(n))
    # 2. normalise once over the whole video (constant scores: all equal, here zeros, instead of NaN)
    lo, hi = min(scores), max(scores)
    if hi == lo:
        x = [0.0] * n
    else:
        x = [(float(s) - float(lo)) / (float(hi) - float(lo)) for s in scores]

    # 3. segments
    leaves = []  # (list of positions, depth)

    def visit(positions, depth):
        seg = [x[p] for p in positions]
        if len(seg) == 0:
            mean_diff = std = float("nan")  # the reference's np.mean([]) -> nan; nan > t never holds
        else:
            mu = np.mean(seg)
            sd = np.std(seg)  # population std
            top = sorted(seg, reverse=True)[:M]  # always M values (or the whole segment when shorter)
            mean_diff = np.mean(top) - mu
            std = sd
        if mean_diff > t1 and std > t2:
            leaves.append((positions, depth))
        elif depth < L:
            h = len(positions) // 2
            visit(positions[:h], depth + 1)
            visit(positions[h:], depth + 1)
        else:
            leaves.append((positions, depth))

    visit(list(range(n)), 0)

    # 4. each leaf at depth d: its floor(M / 2**d) best, ties to the earlier frame
    out = []
    for positions, depth in leaves:
        k = M // (2**depth)
        ranked = sorted(positions, key=lambda p: (-x[p], p))
        out.extend(ranked[:k])
    # 5. ascending
    return sorted(out)


def no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            return fn(*args, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# reference mode, hand-computed


def test_reference_clear_peak_is_a_leaf_at_depth_0():
    # four frames at 1, the rest at 0: mean(top-4) - mean = 1 - 0.04 = 0.96 > 0.8 -> one leaf, its top 4
    s = np.zeros(100)
    s[[10, 30, 50, 70]] = 1.0
    assert aks_select(s, max_num_frames=4, all_depth=5, budget="reference") == [10, 30, 50, 70]
    assert aks_select(s, max_num_frames=4, all_depth=5, budget="exact") == [10, 30, 50, 70]


def test_reference_without_a_peak_is_equal_bins_with_top_k_each():
    # t1 = 2 cannot be passed (normalised scores are in [0, 1]): 4 bins of 16 at depth 2, top 8/4 = 2 each
    rng = np.random.default_rng(0)
    s = rng.permutation(64).astype(float)
    got = aks_select(s, max_num_frames=8, t1=2.0, all_depth=2, budget="reference")
    want = []
    for b in range(4):
        seg = s[16 * b: 16 * (b + 1)]
        want += sorted(16 * b + int(i) for i in np.argsort(-seg)[:2])
    assert got == want
    assert len(got) == 8


def test_reference_mixed_depths_hand_computed():
    # n=16, M=4, L=2, t1=0.4, t2=0.45.
    # whole: top-4 mean 1, mean 0.38125 -> diff 0.61875 > 0.4, but std ~0.375 < 0.45 -> split.
    # left [0,8): 0/1 half and half: diff 0.5 > 0.4 and std 0.5 > 0.45 -> leaf at depth 1, 4>>1 = 2 frames:
    #     the ones are at 1, 3, 4, 6; ties go to the earlier -> 1, 3.
    # right [8,16): diff 0.05 -> split to depth 2 = L; leaves of 4, 4>>2 = 1 frame each:
    #     [8,12) = .2 .3 .25 .35 -> 11;  [12,16) = .3 .2 .3 .2 -> tie between 12 and 14 -> 12.
    x = [0, 1, 0, 1, 1, 0, 1, 0, 0.2, 0.3, 0.25, 0.35, 0.3, 0.2, 0.3, 0.2]
    s = [10 + 2 * v for v in x]  # normalisation undoes the affine map
    assert aks_select(s, max_num_frames=4, t1=0.4, t2=0.45, all_depth=2, budget="reference") == [1, 3, 11, 12]
    assert literal_aks(s, 4, 0.4, 0.45, 2) == [1, 3, 11, 12]
    # t2 is a condition for "peaked": lowering it makes the whole video one leaf (its top 4: the four ones)
    assert aks_select(s, max_num_frames=4, t1=0.4, t2=0.0, all_depth=2, budget="reference") == [1, 3, 4, 6]


def test_reference_m_not_a_power_of_two_returns_fewer_frames():
    # n=64, t1 impossible, L=5: 32 leaves of 2 frames at depth 5, floor(48/32) = 1 each -> 32 frames, not 48
    rng = np.random.default_rng(1)
    s = rng.random(64)
    got = aks_select(s, max_num_frames=48, t1=2.0, all_depth=5, budget="reference")
    assert got == [2 * i + int(s[2 * i + 1] > s[2 * i]) for i in range(32)]
    assert len(got) == 32
    # L=4: 16 leaves of 4 at depth 4, floor(48/16) = 3 each -> 48
    got4 = aks_select(s, max_num_frames=48, t1=2.0, all_depth=4, budget="reference")
    assert len(got4) == 48
    assert got4 == literal_aks(list(s), 48, 2.0, -100.0, 4)
    # exact mode: 48
    assert len(aks_select(s, max_num_frames=48, t1=2.0, all_depth=5)) == 48


def test_reference_m_smaller_than_leaf_count_returns_nothing():
    rng = np.random.default_rng(2)
    s = rng.random(64)
    assert aks_select(s, max_num_frames=4, t1=2.0, all_depth=5, budget="reference") == []
    # exact mode: the 4 best frames (the floors are all 0, leaves get frames anyway)
    got = aks_select(s, max_num_frames=4, t1=2.0, all_depth=5, budget="exact")
    assert got == sorted(int(i) for i in np.argsort(-s)[:4])


def test_default_parameters_m4_l5_exact_returns_4():
    rng = np.random.default_rng(3)
    s = rng.normal(size=500)
    assert len(aks_select(s, max_num_frames=4, all_depth=5)) == 4


def test_fewer_candidates_than_budget_returns_everything():
    for budget in ("exact", "reference"):
        assert aks_select([0.3, 0.1, 0.2, 0.9, 0.5], max_num_frames=8, budget=budget) == [0, 1, 2, 3, 4]
        assert aks_select([], max_num_frames=8, budget=budget) == []
    # n == M == 1 is not "fewer": the rule runs, the one frame is split down to depth 5 where
    # floor(1/32) = 0 -> the reference returns nothing; exact returns it
    assert aks_select([0.5], max_num_frames=1, budget="reference") == []
    assert aks_select([0.5], max_num_frames=1, budget="exact") == [0]


def test_ties_go_to_the_earlier_frame():
    s = [1, 3, 3, 0, 3, 2, 1, 0]
    assert aks_select(s, max_num_frames=2, all_depth=0, budget="reference") == [1, 2]
    assert aks_select(s, max_num_frames=2, all_depth=0, budget="exact") == [1, 2]
    s2 = [5, 5, 5, 5, 5, 5, 5, 9]
    assert aks_select(s2, max_num_frames=3, all_depth=0, budget="reference") == [0, 1, 7]


def test_constant_scores_take_each_leaf_earliest_frames_without_nan_or_warning():
    s = np.full(64, 0.27)
    # default t1: nothing passes, 8 bins of 8 at depth 3, one frame each: the first of each bin
    got = no_warnings(aks_select, s, max_num_frames=8, all_depth=3, budget="reference")
    assert got == list(range(0, 64, 8))
    assert no_warnings(aks_select, s, max_num_frames=8, all_depth=3, budget="exact") == got
    # L=5 with M=8: floor(8/32) = 0 -> reference returns nothing; exact returns the 8 earliest frames
    assert no_warnings(aks_select, s, max_num_frames=8, all_depth=5, budget="reference") == []
    assert no_warnings(aks_select, s, max_num_frames=8, all_depth=5, budget="exact") == list(range(8))
    # M=48, L=5 on 64 frames: 32 leaves of 2, one frame each (the first);
    # exact then adds the 16 earliest others
    assert no_warnings(aks_select, s, max_num_frames=48, budget="reference") == list(range(0, 64, 2))
    exact = no_warnings(aks_select, s, max_num_frames=48, budget="exact")
    assert exact == sorted(set(range(0, 64, 2)) | set(range(1, 32, 2)))


def test_single_candidate_segments_and_n_equal_m():
    # n == M goes through the rule (aks.md step 1 only short-cuts n < M)
    s = [0.1, 0.9, 0.4, 0.2]
    assert aks_select(s, max_num_frames=4, budget="reference") == literal_aks(s, 4, 0.8, -100.0, 5)
    assert aks_select(s, max_num_frames=4, budget="exact") == [0, 1, 2, 3]
    # t1 < 0 and t2 < 0: a one-frame segment (mean diff 0, std 0) is a leaf where it stands
    s = [0.0, 1.0, 0.5]
    for t1 in (-0.1, 0.0, 0.3):
        for t2 in (-1.0, 0.0):
            for L in (0, 1, 2, 5):
                assert aks_select(s, 2, t1, t2, L, budget="reference") == literal_aks(s, 2, t1, t2, L)


def test_returns_python_ints():
    got = aks_select(np.arange(40, dtype=np.float32), max_num_frames=6)
    assert all(type(i) is int for i in got)


def test_huge_range_scores_do_not_overflow():
    s = [-1e308, 1e308, 0.0, 5.0, -3.0, 1e307]
    got = no_warnings(aks_select, s, max_num_frames=2, all_depth=0, budget="reference")
    assert got == [1, 5]


def test_large_input_is_fast():
    rng = np.random.default_rng(4)
    s = rng.random(100_000)
    t0 = time.perf_counter()
    got = aks_select(s, max_num_frames=64, all_depth=6)
    ref = aks_select(s, max_num_frames=64, all_depth=6, budget="reference")
    # deep all_depth is bounded by log2(n): one-frame segments are not split down to depth L
    deep = aks_select(s, max_num_frames=64, all_depth=10_000, budget="reference")
    elapsed = time.perf_counter() - t0
    assert len(got) == 64 and set(ref) <= set(got)
    assert deep == []
    assert elapsed < 5.0


# ----------------------------------------------------------------------------------------------------------
# properties

score_values = st.one_of(
    st.floats(min_value=-1.0, max_value=1.0, allow_nan=False),
    st.sampled_from([0.0, 0.25, 0.5, 1.0]),  # duplicates
)


@st.composite
def score_lists(draw):
    n = draw(st.integers(0, 300))
    kind = draw(st.sampled_from(["random", "few_values", "constant", "peaked"]))
    if kind == "random":
        return draw(st.lists(score_values, min_size=n, max_size=n))
    if kind == "few_values":
        return draw(st.lists(st.sampled_from([0.1, 0.2, 0.3]), min_size=n, max_size=n))
    if kind == "constant":
        return [draw(score_values)] * n
    # mostly low with a few high frames: exercises leaves above depth L
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    s = rng.random(n) * 0.1
    if n:
        s[rng.integers(0, n, size=max(1, n // 20))] += 1.0
    return s.tolist()


params = dict(
    max_num_frames=st.integers(1, 64),
    all_depth=st.integers(0, 6),
    t1=st.one_of(st.floats(-0.5, 1.5), st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.8])),
    t2=st.one_of(st.floats(-1.0, 0.6), st.sampled_from([-100.0, 0.0, 0.1, 0.3])),
)


@settings(max_examples=200, deadline=None)
@given(scores=score_lists(), **params)
def test_exact_returns_min_m_n_distinct_sorted_positions(scores, max_num_frames, all_depth, t1, t2):
    got = aks_select(scores, max_num_frames=max_num_frames, t1=t1, t2=t2, all_depth=all_depth)
    n = len(scores)
    assert len(got) == min(max_num_frames, n)
    assert got == sorted(set(got))
    assert all(type(i) is int and 0 <= i < n for i in got)


@settings(max_examples=200, deadline=None)
@given(scores=score_lists(), **params)
def test_exact_contains_reference(scores, max_num_frames, all_depth, t1, t2):
    kw = dict(max_num_frames=max_num_frames, t1=t1, t2=t2, all_depth=all_depth)
    ref = aks_select(scores, budget="reference", **kw)
    exact = aks_select(scores, budget="exact", **kw)
    assert set(ref) <= set(exact)
    assert len(ref) <= min(max_num_frames, len(scores))


@settings(max_examples=200, deadline=None)
@given(scores=score_lists(), **params)
def test_reference_matches_literal_reimplementation(scores, max_num_frames, all_depth, t1, t2):
    kw = dict(max_num_frames=max_num_frames, t1=t1, t2=t2, all_depth=all_depth)
    got = aks_select(scores, budget="reference", **kw)
    assert got == literal_aks(scores, max_num_frames, t1, t2, all_depth)


@settings(max_examples=200, deadline=None)
@given(scores=score_lists(), **params)
def test_exact_extras_are_the_best_left_over_frames(scores, max_num_frames, all_depth, t1, t2):
    # exact = reference floors + the highest-scoring frames left over (ties: earlier), one at a time
    kw = dict(max_num_frames=max_num_frames, t1=t1, t2=t2, all_depth=all_depth)
    ref = aks_select(scores, budget="reference", **kw)
    exact = aks_select(scores, budget="exact", **kw)
    n = len(scores)
    if n < max_num_frames:
        assert exact == list(range(n))
        return
    # ranked by NORMALISED score: distinct raw scores can normalise to the same float (e.g. -1e-258 and 0.0
    # next to -1.0), and then the earlier frame wins
    lo, hi = min(scores), max(scores)
    x = [0.0] * n if hi == lo else [(s - lo) / (hi - lo) for s in scores]
    extras = sorted(set(exact) - set(ref))
    rest = sorted((p for p in range(n) if p not in set(ref)), key=lambda p: (-x[p], p))
    assert extras == sorted(rest[: max_num_frames - len(ref)])


# ----------------------------------------------------------------------------------------------------------
# parameter validation


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(max_num_frames=0), "max_num_frames"),
        (dict(max_num_frames=-3), "max_num_frames"),
        (dict(max_num_frames=2.5), "max_num_frames"),
        (dict(max_num_frames=True), "max_num_frames"),
        (dict(max_num_frames="8"), "max_num_frames"),
        (dict(all_depth=-1), "all_depth"),
        (dict(all_depth=1.0), "all_depth"),
        (dict(t1=float("nan")), "t1"),
        (dict(t1=float("inf")), "t1"),
        (dict(t1="0.8"), "t1"),
        (dict(t2=float("-inf")), "t2"),
        (dict(t2=None), "t2"),
        (dict(budget="approx"), "budget"),
        (dict(budget=None), "budget"),
    ],
)
def test_invalid_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        aks_select([0.1, 0.2, 0.3], **kwargs)


@pytest.mark.parametrize(
    "scores",
    [
        [0.1, float("nan"), 0.3],
        [0.1, float("inf")],
        np.zeros((4, 2)),
        np.float64(0.5),
        ["a", "b"],
        [[0.1, 0.2], [0.3]],
        [1 + 2j, 3j],
    ],
)
def test_invalid_scores(scores):
    with pytest.raises(ValueError, match="scores"):
        aks_select(scores)


def test_numpy_integer_parameters_are_accepted():
    s = np.linspace(0, 1, 50)
    got = aks_select(s, max_num_frames=np.int64(5), all_depth=np.int32(1), t1=np.float32(0.5))
    assert got == aks_select(s, max_num_frames=5, all_depth=1, t1=0.5)  # same as with Python numbers
    assert len(got) == 5 and all(type(i) is int for i in got)  # plain ints, not numpy scalars
    assert got == sorted(set(got)) and 0 <= got[0] and got[-1] < len(s)
