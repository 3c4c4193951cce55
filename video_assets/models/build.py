"""Building an open_clip model from a config as data: the module (random init, no download), its tokenizer,
the architecture's config (with QuickGELU where the weights need it), and :func:`finish`, which loads a state
dict and records the preprocessing.

Every weight source (:mod:`video_assets.models.sources`) ends in :func:`finish` and returns a :class:`Built`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.model import set_model_preprocess_cfg
from open_clip.transform import PreprocessCfg, merge_preprocess_dict

from video_assets.errors import ModelLoadError
from video_assets.models.checkpoints import apply_state_dict
from video_assets.models.names import ResolvedClipName

logger = logging.getLogger(__name__)


def instantiate(model_cfg: Mapping[str, Any]) -> torch.nn.Module:
    """An open_clip model (float32, CPU, random init) for a config dict, without fetching any weights."""
    cfg = deepcopy(dict(model_cfg))
    text_cfg = cfg.setdefault("text_cfg", {})
    vision_cfg = cfg.setdefault("vision_cfg", {})
    if "timm_model_name" in vision_cfg:
        vision_cfg["timm_model_pretrained"] = False
    hf_text = "hf_model_name" in text_cfg
    if hf_text:
        text_cfg["hf_model_pretrained"] = False
    custom_text = cfg.pop("custom_text", False) or hf_text
    if custom_text:
        cls = open_clip.CoCa if "multimodal_cfg" in cfg else open_clip.CustomTextCLIP
    else:
        cls = open_clip.CLIP
    try:
        return cls(**cfg)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(
            f"cannot build open_clip {cls.__name__} from config: {type(e).__name__}: {e}") from e


def tokenizer_for(model_cfg: Mapping[str, Any], folder: Path | None = None,
                  cache_dir: str | None = None):
    """The tokenizer a model config names: open_clip's BPE tokenizer, or a Hugging Face one (from ``folder``
    when it holds the tokenizer files)."""
    text_cfg = model_cfg.get("text_cfg", {})
    context_length = int(text_cfg.get("context_length", 77))
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    hf_name = text_cfg.get("hf_tokenizer_name")
    if hf_name:
        from open_clip.tokenizer import HFTokenizer
        local = folder is not None and any((folder / f).is_file()
                                           for f in ("tokenizer.json", "tokenizer_config.json"))
        source = str(folder) if local else hf_name
        try:
            return HFTokenizer(source, context_length=context_length, cache_dir=cache_dir,
                               tokenizer_mode=text_cfg.get("tokenizer_mode"), **kwargs)
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"cannot load tokenizer {source!r}: {type(e).__name__}: {e}") from e
    return open_clip.SimpleTokenizer(context_length=context_length, **kwargs)


@dataclass
class Built:
    """A model ready for its device: module, tokenizer, preprocessing, and where the weights came from."""

    model: torch.nn.Module  # float32, CPU, eval
    tokenizer: Callable
    preprocess_cfg: dict[str, Any]
    source: str


def finish(model_cfg: Mapping[str, Any], sd: dict[str, torch.Tensor] | None,
           preprocess_overrides: Mapping, tokenizer, source: str, seed: int | None = None) -> Built:
    """Instantiate ``model_cfg`` (from ``seed`` when given), load ``sd`` strictly, set the preprocessing."""
    if seed is not None:
        with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
            torch.manual_seed(seed)
            model = instantiate(model_cfg)
    else:
        model = instantiate(model_cfg)
    if sd is not None:
        apply_state_dict(model, sd, source)
    pp = merge_preprocess_dict(PreprocessCfg(), dict(preprocess_overrides))
    pp["size"] = model.visual.image_size
    set_model_preprocess_cfg(model, pp)
    model.eval().requires_grad_(False)
    return Built(model=model, tokenizer=tokenizer, preprocess_cfg=pp, source=source)


def with_name_quick_gelu(model_cfg: dict[str, Any], resolved: ResolvedClipName,
                         source: str) -> dict[str, Any]:
    """``model_cfg`` with QuickGELU on when the weights ``resolved`` names were trained with it."""
    if resolved.quick_gelu and not model_cfg.get("quick_gelu", False):
        logger.info("%s: %s weights were trained with QuickGELU: quick_gelu=True", source, resolved.name)
        model_cfg = {**model_cfg, "quick_gelu": True}
    return model_cfg


def arch_config(resolved: ResolvedClipName) -> dict[str, Any]:
    """open_clip's config of the architecture ``resolved`` names."""
    cfg = open_clip.get_model_config(resolved.arch)
    if cfg is None:
        raise ModelLoadError(f"open_clip has no config for architecture {resolved.arch!r}")
    return with_name_quick_gelu(cfg, resolved, resolved.name)

