"""CLIP models: one open_clip-based loader for every CLIP the project uses (no Dagster imports).

>>> clip = load_clip("video-assets/tiny-clip", device="cpu")
>>> image_features = clip.encode_images(frames_uint8)          # (N, D) float32, unit norm, on clip.device
>>> text_features = clip.encode_text(["Good photo.", "Bad photo."])  # cached per prompt

See :mod:`video_assets.models.clip` for where weights come from and :mod:`video_assets.models.names` for the
accepted ``clip_model_name`` forms.
"""

from video_assets.models.clip import (ClipModel, clear_clip_cache, clip_cache_key, load_clip, resolve_device,
                                      resolve_dtype)
from video_assets.models.names import (ACCEPTED_FORMS, HF_OPENAI_ALIASES, TINY_CLIP_NAME, ResolvedClipName,
                                       resolve_clip_model_name)
from video_assets.models.preprocess import PreprocessSpec, preprocess_frames

__all__ = [
    "ACCEPTED_FORMS",
    "HF_OPENAI_ALIASES",
    "TINY_CLIP_NAME",
    "ClipModel",
    "PreprocessSpec",
    "ResolvedClipName",
    "clear_clip_cache",
    "clip_cache_key",
    "load_clip",
    "preprocess_frames",
    "resolve_clip_model_name",
    "resolve_device",
    "resolve_dtype",
]
