"""CLIP models: one open_clip-based loader for every CLIP the project uses (no Dagster imports).

>>> clip = load_clip("video-assets/tiny-clip", device="cpu")
>>> image_features = clip.encode_images(frames_uint8)          # (N, D) float32, unit norm, on clip.device
>>> text_features = clip.encode_text(["Good photo.", "Bad photo."])  # cached per prompt

See :mod:`video_assets.models.clip` for where weights come from and :mod:`video_assets.models.names` for the
accepted ``clip_model_name`` forms.

The names below are imported on first use (PEP 562), so ``video_assets.models.defaults`` and the default model
names can be read without importing torch or open_clip.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# public name -> the submodule that defines it
_EXPORTS = {
    "ClipModel": "model",
    "clear_clip_cache": "clip",
    "clip_cache_key": "clip",
    "load_clip": "clip",
    "resolve_device": "device",
    "resolve_dtype": "device",
    "ACCEPTED_FORMS": "names",
    "HF_OPENAI_ALIASES": "names",
    "TINY_CLIP_NAME": "names",
    "ResolvedClipName": "names",
    "resolve_clip_model_name": "names",
    "PreprocessSpec": "preprocess",
    "preprocess_frames": "preprocess",
    "DEFAULT_KEYFRAMES_MODEL": "defaults",
    "DEFAULT_QUALITY_MODEL": "defaults",
    "MODEL_ENV": "defaults",
    "MODEL_PATH_ENV": "defaults",
    "default_model_name": "defaults",
    "default_model_path": "defaults",
}

__all__ = [
    "ACCEPTED_FORMS",
    "DEFAULT_KEYFRAMES_MODEL",
    "DEFAULT_QUALITY_MODEL",
    "HF_OPENAI_ALIASES",
    "MODEL_ENV",
    "MODEL_PATH_ENV",
    "TINY_CLIP_NAME",
    "ClipModel",
    "PreprocessSpec",
    "ResolvedClipName",
    "clear_clip_cache",
    "clip_cache_key",
    "default_model_name",
    "default_model_path",
    "load_clip",
    "preprocess_frames",
    "resolve_clip_model_name",
    "resolve_device",
    "resolve_dtype",
]

if TYPE_CHECKING:
    from video_assets.models.clip import clear_clip_cache, clip_cache_key, load_clip
    from video_assets.models.defaults import (
        DEFAULT_KEYFRAMES_MODEL,
        DEFAULT_QUALITY_MODEL,
        MODEL_ENV,
        MODEL_PATH_ENV,
        default_model_name,
        default_model_path,
    )
    from video_assets.models.device import resolve_device, resolve_dtype
    from video_assets.models.model import ClipModel
    from video_assets.models.names import (
        ACCEPTED_FORMS,
        HF_OPENAI_ALIASES,
        TINY_CLIP_NAME,
        ResolvedClipName,
        resolve_clip_model_name,
    )
    from video_assets.models.preprocess import PreprocessSpec, preprocess_frames


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
