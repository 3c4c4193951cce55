"""Keyframe selection from per-candidate relevance scores (pure numpy; no torch, no Dagster)."""

from video_assets.keyframes.aks import aks_select

__all__ = ["aks_select"]
