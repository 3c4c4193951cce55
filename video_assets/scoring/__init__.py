"""Scoring rules on CLIP embeddings (no Dagster)."""

from video_assets.scoring.clip_iqa import REDUCE_MODES, clip_iqa_probs, reduce_scores
from video_assets.scoring.prompts import NAMED_PROMPTS, parse_prompts, prompt_label

__all__ = ["NAMED_PROMPTS", "REDUCE_MODES", "clip_iqa_probs", "parse_prompts", "prompt_label", "reduce_scores"]
