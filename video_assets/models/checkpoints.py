"""Checkpoint formats: reading a state dict (safetensors, torch pickle, TorchScript), finding the open_clip
checkpoint and config in a folder, and fitting a state dict onto an open_clip model.

Transformers CLIP folders are converted by :mod:`video_assets.models.hf_convert`.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

from video_assets.errors import ModelLoadError

# open_clip's own file names, preferred in this order over any other weight file in a folder
OPEN_CLIP_PREFERRED = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                        "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, a torch pickle (weights_only) or TorchScript (the OpenAI ``.pt``)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            ckpt: Any = load_file(str(path), device="cpu")
        else:
            try:
                ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001
                if not zipfile.is_zipfile(path):
                    raise
                try:  # the original OpenAI checkpoints are TorchScript archives
                    ckpt = torch.jit.load(str(path), map_location="cpu").state_dict()
                except Exception:  # noqa: BLE001
                    raise e from None
                for k in ("input_resolution", "context_length", "vocab_size"):
                    ckpt.pop(k, None)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e
    if isinstance(ckpt, Mapping) and isinstance(ckpt.get("state_dict"), Mapping):
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, Mapping) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ModelLoadError(f"checkpoint {path} does not hold a state dict of tensors")
    sd = dict(ckpt)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _looks_open_clip(keys) -> bool:
    return any(k.startswith("visual.") for k in keys)


def _looks_hf(keys) -> bool:
    return any(k.startswith("vision_model.") for k in keys)



def apply_state_dict(model: torch.nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """Load an open_clip state dict strictly, with open_clip's usual compatibility fix-ups."""
    sd = dict(sd)
    if "positional_embedding" in sd and not hasattr(model, "positional_embedding"):
        sd = convert_to_custom_text_state_dict(sd)
    if "logit_scale" in sd and model.logit_scale.ndim != sd["logit_scale"].ndim:
        sd["logit_scale"] = sd["logit_scale"].reshape(model.logit_scale.shape)
    if getattr(model, "logit_bias", None) is not None and "logit_bias" not in sd:
        sd["logit_bias"] = torch.zeros_like(model.logit_bias)
    elif "logit_bias" in sd and model.logit_bias.ndim != sd["logit_bias"].ndim:
        sd["logit_bias"] = sd["logit_bias"].reshape(model.logit_bias.shape)
    sd.pop("text.transformer.embeddings.position_ids", None)
    try:
        resize_pos_embed(sd, model)
        resize_text_pos_embed(sd, model)
        result = model.load_state_dict(sd, strict=False)
    except Exception as e:  # noqa: BLE001 - shape mismatches
        raise ModelLoadError(f"weights in {source} do not fit the model: {type(e).__name__}: {e}") from e
    if result.missing_keys or result.unexpected_keys:
        raise ModelLoadError(
            f"weights in {source} do not fit the model: missing {result.missing_keys[:8]}, "
            f"unexpected {result.unexpected_keys[:8]}")



def read_open_clip_config(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read open_clip config {path}: {e}") from e
    model_cfg = raw.get("model_cfg", raw)
    if not all(k in model_cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ModelLoadError(
            f"{path} is not an open_clip config (needs model_cfg with embed_dim, vision_cfg, text_cfg)")
    return model_cfg, raw.get("preprocess_cfg", {})


def find_open_clip_checkpoint(folder: Path) -> tuple[Path | None, dict | None, bool]:
    """(path, state dict) of the first open_clip checkpoint in ``folder``; third: saw transformers keys."""
    files = [folder / n for n in OPEN_CLIP_PREFERRED if (folder / n).is_file()]
    files += sorted(p for p in folder.iterdir()
                    if p.is_file() and p.suffix in _WEIGHT_SUFFIXES and p not in files)
    saw_hf = False
    for path in files:
        if path.suffix == ".safetensors":
            try:
                from safetensors import safe_open
                with safe_open(str(path), framework="pt") as f:
                    keys = list(f.keys())
            except Exception:  # noqa: BLE001
                continue
            if not _looks_open_clip(keys):
                saw_hf = saw_hf or _looks_hf(keys)
                continue
        sd = read_state_dict(path)
        if _looks_open_clip(sd):
            return path, sd, saw_hf
        saw_hf = saw_hf or _looks_hf(sd)
    return None, None, saw_hf

