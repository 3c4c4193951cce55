"""How per-frame scores become one score per video (numpy only, no torch: the pipeline's settings check
``reduce_mode`` with it when the code location loads)."""

from __future__ import annotations

import numpy as np

REDUCE_MODES = ("avg", "max", "min", "median")


def check_reduce_mode(reduce_mode: str) -> None:
    if reduce_mode not in REDUCE_MODES:
        raise ValueError(f"reduce_mode must be one of {', '.join(REDUCE_MODES)}; got {reduce_mode!r}")


def reduce_scores(frame_scores: np.ndarray, reduce_mode: str) -> np.ndarray:
    """Reduce (frames, prompts) scores over frames with avg/max/min/median."""
    check_reduce_mode(reduce_mode)
    fn = {"avg": np.mean, "max": np.max, "min": np.min, "median": np.median}[reduce_mode]
    return fn(frame_scores, axis=0)
