"""Scoring rules on CLIP embeddings (no Dagster).

The CLIP-IQA rule (``clip_iqa_probs``) needs torch and is imported on first use, so the prompts and reduce
modes can be checked (the pipeline's settings, when the code location loads) without loading torch."""

from video_assets.scoring.prompts import NAMED_PROMPTS, parse_prompts, prompt_label
from video_assets.scoring.reduce import REDUCE_MODES, reduce_scores

__all__ = ["NAMED_PROMPTS", "REDUCE_MODES", "clip_iqa_probs", "parse_prompts", "prompt_label", "reduce_scores"]


def __getattr__(name: str):
    if name == "clip_iqa_probs":
        from video_assets.scoring.clip_iqa import clip_iqa_probs

        return clip_iqa_probs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
