"""The CLIP-IQA rule: probability of the positive prompt of an antonym pair (shared/reference/clip-iqa.md)."""

from __future__ import annotations

import numpy as np
import torch

REDUCE_MODES = ("avg", "max", "min", "median")


def clip_iqa_probs(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """Per-image, per-pair probability of the positive prompt.

    image_features: (n, d) unit-normalised; text_features: (2p, d) unit-normalised, rows ordered
    positive_0, negative_0, positive_1, negative_1, ...; returns (n, p) in (0, 1).
    """
    cos = image_features.float() @ text_features.float().T  # (n, 2p)
    logits = logit_scale * cos.view(cos.shape[0], -1, 2)
    return torch.softmax(logits, dim=-1)[..., 0]


def reduce_scores(frame_scores: np.ndarray, reduce_mode: str) -> np.ndarray:
    """Reduce (frames, prompts) scores over frames with avg/max/min/median."""
    if reduce_mode not in REDUCE_MODES:
        raise ValueError(f"reduce_mode must be one of {', '.join(REDUCE_MODES)}; got {reduce_mode!r}")
    fn = {"avg": np.mean, "max": np.max, "min": np.min, "median": np.median}[reduce_mode]
    return fn(frame_scores, axis=0)
