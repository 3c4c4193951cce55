"""Keyframe selection: the AKS rule on per-candidate relevance scores (pure numpy), and selection from stored
frame embeddings without decoding (the query is embedded with the stored model). No Dagster."""

from video_assets.keyframes.aks import aks_select
from video_assets.keyframes.embeddings import relevance, select_from_embeddings, stored_embeddings

__all__ = ["aks_select", "relevance", "select_from_embeddings", "stored_embeddings"]
