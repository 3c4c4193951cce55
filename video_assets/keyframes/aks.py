"""Adaptive Keyframe Sampling (AKS): the selection rule, as a pure function of the per-candidate scores.

Reference: "Adaptive Keyframe Sampling for Long Video Understanding" (CVPR 2025) and its public code,
ncTimTang/AKS ``frame_select.py``; the rule is described in words in ``shared/reference/aks.md``.

The rule, in short (``x`` = scores min-max normalised once over the whole video, ``M`` = max_num_frames,
``L`` = all_depth):

* if there are fewer than ``M`` candidates, all of them are returned;
* a segment (the whole video at depth 0) is a *leaf* when ``mean(top-M of x) - mean(x) > t1`` and
  ``std(x) > t2`` (population std; top-M is always ``M`` values, or the whole segment when it is shorter);
  otherwise it is split at ``h = len // 2`` into ``[0, h)`` and ``[h, len)`` until depth ``L``, where
  every segment is a leaf;
* a leaf at depth ``d`` contributes its ``floor(M / 2**d)`` highest-scoring candidates, ties going to the
  earlier candidate.

Two budgets
-----------
``budget="reference"`` reproduces that rule exactly, quirks included. Because of the ``floor`` the reference
returns FEWER than ``M`` frames whenever leaves sit at a depth ``d`` with ``2**d`` not dividing ``M``
(``M=48, L=5`` gives 32), when a leaf is shorter than its share, and NOTHING AT ALL when every leaf reaches a
depth with ``2**d > M`` (``M=4, L=5``: ``floor(4/32) = 0`` per leaf). Users of the reference code reported
this; a downstream model that was promised ``M`` frames gets far fewer, or none.

``budget="exact"`` (the default) keeps the reference's segmentation (the same leaves) and the reference's
per-leaf floors, so its result always CONTAINS the reference result; then the frames the floors leave out,
``min(M, n) - (frames already chosen)``, are handed out one at a time to the leaf whose best not-yet-chosen
frame has the highest normalised score (ties: the earlier frame). A leaf may receive frames even when its
floor share is 0. Because the leaves partition the candidates, handing out one frame at a time this way is
the same as taking the highest-scoring not-yet-chosen candidates over the whole video, which is how it is
computed. The result always has exactly ``min(M, n)`` distinct positions.

Departure from the reference in both modes: constant scores (``max == min``) make the reference divide by
zero (NaN everywhere; every leaf test fails and each leaf ends up taking its earliest frames). Here the
normalised scores are then all zeros, so no NaN and no warning arise and, with the default thresholds, each
leaf takes its earliest frames, as in the reference. (With ``t1 < 0`` and ``t2 < 0`` all-zero scores pass the
leaf test at depth 0, so the whole video is one leaf and its first ``M`` frames are returned.)

Implementation notes: segments are processed level by level (no recursion). All segments of one level have
one of two lengths, so a level is one or two batched numpy computations (``np.partition`` along rows), about
O(n) work, and the number of levels is at most ``min(L, log2(n) + 2)``: a one-candidate segment has mean
difference 0 and std 0 exactly, so where it ends up as a leaf is known without splitting it down to depth
``L`` (its other half is always empty, and empty segments, whose NaN statistics never pass the leaf test in
the reference, contain nothing to select). The statistics are computed with the same numpy reductions over
the same values in the same order as the reference, so threshold comparisons agree bit for bit.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

__all__ = ["aks_select"]

BUDGETS = ("exact", "reference")


def aks_select(
    scores: Sequence[float] | np.ndarray,
    max_num_frames: int = 32,
    t1: float = 0.8,
    t2: float = -100.0,
    all_depth: int = 5,
    budget: str = "exact",
) -> list[int]:
    """Select keyframes from per-candidate relevance scores with the AKS rule.

    Parameters
    ----------
    scores:
        1-D, finite relevance scores of the candidates, in time order.
    max_num_frames:
        ``M``, the frame budget (integer >= 1).
    t1:
        Leaf threshold on ``mean(top-M) - mean`` of the normalised scores of a segment (finite).
    t2:
        Leaf threshold on the population std of a segment (finite; the default -100 disables it).
    all_depth:
        ``L``, the maximum split depth (integer >= 0).
    budget:
        ``"exact"`` (default): exactly ``min(M, n)`` positions. ``"reference"``: the reference rule as
        published, which may return fewer (even none). See the module docstring.

    Returns
    -------
    list[int]
        Positions into ``scores``, ascending, distinct, as python ints.

    Raises
    ------
    ValueError
        A parameter is out of range or of the wrong kind; the message names it.
    """
    m = _check_int("max_num_frames", max_num_frames, minimum=1)
    depth_max = _check_int("all_depth", all_depth, minimum=0)
    t1f = _check_finite("t1", t1)
    t2f = _check_finite("t2", t2)
    if not isinstance(budget, str) or budget not in BUDGETS:
        raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}")
    s = _check_scores(scores)

    n = s.shape[0]
    if n == 0:
        return []
    if n < m:
        return list(range(n))

    x = _normalise(s)
    chosen: list[np.ndarray] = []
    for starts, q, d in _segment(x, m, t1f, t2f, depth_max):
        k = m >> d  # floor(M / 2**d)
        if k > 0:
            chosen.append(_leaf_picks(x, starts, q, k))
    picked = np.concatenate(chosen) if chosen else np.empty(0, dtype=np.intp)

    if budget == "exact":
        missing = min(m, n) - picked.size
        if missing > 0:
            free = np.ones(n, dtype=bool)
            free[picked] = False
            free_pos = np.flatnonzero(free)  # ascending, so "earlier first" survives the indexing
            picked = np.concatenate([picked, free_pos[_top_k(x[free_pos], missing)]])

    return np.sort(picked).tolist()


# ----------------------------------------------------------------------------------------------------------
# validation


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def _check_finite(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def _check_scores(scores) -> np.ndarray:
    try:
        arr = np.asarray(scores)
    except (TypeError, ValueError) as exc:  # ragged nested sequences and the like
        raise ValueError(f"scores must be a 1-D sequence of finite numbers: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"scores must be a 1-D sequence of finite numbers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"scores must be 1-D, got an array of shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if arr.size and not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"scores must be finite (no NaN or inf); scores[{bad}] is {arr[bad]}")
    return arr


# ----------------------------------------------------------------------------------------------------------
# the rule


def _normalise(s: np.ndarray) -> np.ndarray:
    """Min-max normalise once over the whole video, exactly as the reference does; constant -> all zeros."""
    lo = s.min()
    hi = s.max()
    if hi == lo:
        return np.zeros_like(s)
    with np.errstate(over="ignore"):
        span = hi - lo
    if np.isfinite(span):
        return (s - lo) / span  # same operations, in the same order, as the reference
    # finite scores whose range overflows float64 (|scores| near 1e308): halve first
    with np.errstate(under="ignore"):
        return (s / 2 - lo / 2) / (hi / 2 - lo / 2)


def _segment(
    x: np.ndarray, m: int, t1: float, t2: float, depth_max: int
) -> list[tuple[np.ndarray, int, int]]:
    """The reference's leaves, grouped as ``(starts, length, depth)``; empty segments are left out.

    Works level by level. All segments of one level have one of two lengths (``floor`` and ``ceil`` of
    ``n / 2**depth``), so each level is one or two batched numpy computations, not one per segment.
    """
    groups: list[tuple[np.ndarray, int, int]] = []
    # a one-candidate segment has mean difference 0 and std 0, exactly
    single_is_leaf = 0.0 > t1 and 0.0 > t2
    starts = np.zeros(1, dtype=np.intp)
    lengths = np.full(1, x.shape[0], dtype=np.intp)
    depth = 0
    while starts.size:
        next_starts: list[np.ndarray] = []
        next_lengths: list[np.ndarray] = []
        for q in np.unique(lengths).tolist():
            st_q = starts[lengths == q]
            if q == 0:
                continue  # its statistics are NaN in the reference: never a leaf, split into more nothing
            if q == 1:
                # the reference splits it into [] and itself until depth L, where it becomes a leaf
                groups.append((st_q, 1, depth if single_is_leaf else depth_max))
                continue
            if depth >= depth_max:
                groups.append((st_q, q, depth))  # leaf whatever the test says
                continue
            leaf = _leaf_test(x, st_q, q, m, t1, t2)
            if leaf.any():
                groups.append((st_q[leaf], q, depth))
            rest = st_q[~leaf]
            if rest.size:
                h = q // 2
                next_starts += [rest, rest + h]
                next_lengths += [
                    np.full(rest.size, h, dtype=np.intp),
                    np.full(rest.size, q - h, dtype=np.intp),
                ]
        starts = np.concatenate(next_starts) if next_starts else np.empty(0, dtype=np.intp)
        lengths = np.concatenate(next_lengths) if next_lengths else np.empty(0, dtype=np.intp)
        depth += 1
    return groups


def _leaf_test(x: np.ndarray, starts: np.ndarray, q: int, m: int, t1: float, t2: float) -> np.ndarray:
    """``mean(top-M) - mean > t1 and std > t2`` for the segments ``x[s:s+q]``, ``s`` in ``starts``.

    The reductions are the reference's (numpy mean / population std, top values in descending order), over
    the same values in the same order, so the comparisons with ``t1`` / ``t2`` agree bit for bit.
    """
    if starts.size == 1:
        rows = x[int(starts[0]): int(starts[0]) + q][None, :]
    else:
        rows = x[starts[:, None] + np.arange(q)]
    mean = np.mean(rows, axis=1)
    std = np.std(rows, axis=1)
    top = rows if q <= m else np.partition(rows, q - m, axis=1)[:, q - m:]
    top = np.ascontiguousarray(np.sort(top, axis=1)[:, ::-1])
    mean_diff = np.mean(top, axis=1) - mean
    return (mean_diff > t1) & (std > t2)


def _leaf_picks(x: np.ndarray, starts: np.ndarray, q: int, k: int) -> np.ndarray:
    """The ``k`` best positions of each segment ``x[s:s+q]`` (ties: earlier first), flattened."""
    if k >= q:
        return (starts[:, None] + np.arange(q)).ravel()
    if starts.size == 1:
        s0 = int(starts[0])
        return s0 + _top_k(x[s0: s0 + q], k)
    rows = x[starts[:, None] + np.arange(q)]
    order = np.argsort(-rows, axis=1, kind="stable")[:, :k]  # stable: equal scores keep time order
    return (starts[:, None] + order).ravel()


def _top_k(v: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest values of ``v`` (ties: earlier position first), in any order."""
    size = v.shape[0]
    if k >= size:
        return np.arange(size)
    kth = np.partition(v, size - k)[size - k]  # the k-th largest value
    above = np.flatnonzero(v > kth)
    at = np.flatnonzero(v == kth)[: k - above.size]
    return np.concatenate([above, at])
