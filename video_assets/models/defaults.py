"""The operators' default models and the environment variables that override them (no torch, no open_clip).

The Dagster code location reads these when it loads (settings fingerprints, Launchpad defaults); keeping them
here lets it load without importing torch.
"""

from __future__ import annotations

import os

# The LAS operators' defaults: CLIP-IQA on ViT-L/14, AKS on ViT-B/32.
DEFAULT_QUALITY_MODEL = "openai/clip-vit-large-patch14"
DEFAULT_KEYFRAMES_MODEL = "openai/clip-vit-base-patch32"

# Overrides both operators' default model (e.g. "video-assets/tiny-clip" for offline machines and tests).
MODEL_ENV = "VIDEO_ASSETS_CLIP_MODEL"
MODEL_PATH_ENV = "VIDEO_ASSETS_MODEL_PATH"


def default_model_name(explicit: str | None, default: str) -> str:
    """``explicit``, else ``$VIDEO_ASSETS_CLIP_MODEL``, else ``default``."""
    return explicit or os.environ.get(MODEL_ENV) or default


def default_model_path(explicit: str | None) -> str:
    """``explicit`` (even empty), else ``$VIDEO_ASSETS_MODEL_PATH``, else "" (no local folder)."""
    return explicit if explicit is not None else os.environ.get(MODEL_PATH_ENV, "")
