"""The CLIP-IQA rule: probability of the positive prompt of an antonym pair (shared/reference/clip-iqa.md)."""

from __future__ import annotations

import torch

from video_assets.scoring.reduce import REDUCE_MODES, reduce_scores  # noqa: F401 - re-exported


def clip_iqa_probs(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """Per-image, per-pair probability of the positive prompt.

    image_features: (n, d) unit-normalised; text_features: (2p, d) unit-normalised, rows ordered
    positive_0, negative_0, positive_1, negative_1, ...; returns (n, p) in (0, 1).
    """
    cos = image_features.float() @ text_features.float().T  # (n, 2p)
    logits = logit_scale * cos.view(cos.shape[0], -1, 2)
    return torch.softmax(logits, dim=-1)[..., 0]
