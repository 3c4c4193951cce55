"""Hugging Face transformers CLIP folder -> open_clip model config and state dict.

A transformers CLIP folder (the layout of ``openai/clip-vit-large-patch14`` on the hub) holds ``config.json``
(``model_type: clip``) and ``model.safetensors`` or ``pytorch_model.bin`` (possibly sharded with an
``*.index.json``). This module reads them without importing transformers and produces an equivalent open_clip
``CLIP``: same architecture, same activation (``hidden_act: quick_gelu`` -> ``quick_gelu=True``), same text
pooling (legacy ``eos_token_id == 2`` -> argmax of the token ids, else the first ``eos_token_id``), and
weights mapped key by key (q/k/v projections concatenated into ``in_proj_weight``; projections transposed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from video_assets.errors import ModelLoadError

HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")

# transformers' defaults for fields a config.json may leave out (CLIPTextConfig / CLIPVisionConfig)
_TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                      num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu",
                      layer_norm_eps=1e-5, eos_token_id=49407)
_VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                        num_channels=3, image_size=224, patch_size=32, hidden_act="quick_gelu",
                        layer_norm_eps=1e-5)
_ACTIVATIONS = {"quick_gelu": True, "gelu": False}  # hidden_act -> open_clip quick_gelu flag


def is_hf_clip_folder(folder: Path) -> bool:
    """True when ``folder/config.json`` describes a transformers CLIPModel."""
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        return False
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return cfg.get("model_type") == "clip" or "CLIPModel" in (cfg.get("architectures") or [])


def read_hf_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read transformers CLIP config {folder / 'config.json'}: {e}") from e


def _sub_config(cfg: Mapping[str, Any], key: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    sub = cfg.get(key) or cfg.get(f"{key}_dict") or {}
    return {**defaults, **{k: v for k, v in sub.items() if v is not None}}


def open_clip_config_from_hf(hf_config: Mapping[str, Any], source: str = "config.json") -> dict[str, Any]:
    """An open_clip ``CLIP`` model config equivalent to a transformers ``CLIPConfig`` dict."""
    text = _sub_config(hf_config, "text_config", _TEXT_DEFAULTS)
    vision = _sub_config(hf_config, "vision_config", _VISION_DEFAULTS)
    acts = {text["hidden_act"], vision["hidden_act"]}
    unsupported = acts - set(_ACTIVATIONS)
    if unsupported or len(acts) != 1:
        raise ModelLoadError(
            f"{source}: hidden_act text={text['hidden_act']!r} vision={vision['hidden_act']!r} is not "
            f"supported; open_clip needs the same activation in both towers, one of {sorted(_ACTIVATIONS)}")
    if vision["num_channels"] != 3:
        raise ModelLoadError(
            f"{source}: vision num_channels={vision['num_channels']} (only RGB, 3, is supported)")
    for name, sub in (("text", text), ("vision", vision)):
        if sub["hidden_size"] % sub["num_attention_heads"]:
            raise ModelLoadError(f"{source}: {name} hidden_size {sub['hidden_size']} is not a multiple of "
                                 f"num_attention_heads {sub['num_attention_heads']}")

    def norm_kwargs(sub):
        eps = float(sub["layer_norm_eps"])
        return None if eps == 1e-5 else {"eps": eps}

    eos = text.get("eos_token_id")
    text_cfg: dict[str, Any] = dict(
        context_length=int(text["max_position_embeddings"]),
        vocab_size=int(text["vocab_size"]),
        width=int(text["hidden_size"]),
        heads=int(text["num_attention_heads"]),
        layers=int(text["num_hidden_layers"]),
        mlp_ratio=text["intermediate_size"] / text["hidden_size"],
    )
    # transformers pools the text tower at argmax(input_ids) for legacy configs (eos_token_id == 2), otherwise
    # at the first occurrence of eos_token_id; open_clip has both rules.
    if eos is not None and int(eos) != 2:
        text_cfg.update(pool_type="eos", eos_id=int(eos))
    else:
        text_cfg.update(pool_type="argmax")
    vision_cfg: dict[str, Any] = dict(
        image_size=int(vision["image_size"]),
        patch_size=int(vision["patch_size"]),
        width=int(vision["hidden_size"]),
        head_width=int(vision["hidden_size"]) // int(vision["num_attention_heads"]),
        layers=int(vision["num_hidden_layers"]),
        mlp_ratio=vision["intermediate_size"] / vision["hidden_size"],
    )
    if norm_kwargs(text):
        text_cfg["norm_kwargs"] = norm_kwargs(text)
    if norm_kwargs(vision):
        vision_cfg["norm_kwargs"] = norm_kwargs(vision)
    projection_dim = hf_config.get("projection_dim") or text.get("projection_dim") or 512
    return dict(embed_dim=int(projection_dim), quick_gelu=_ACTIVATIONS[text["hidden_act"]],
                vision_cfg=vision_cfg, text_cfg=text_cfg)


def hf_preprocess_overrides(folder: Path) -> dict[str, Any]:
    """image_mean / image_std / interpolation from ``preprocessor_config.json`` when present."""
    f = folder / "preprocessor_config.json"
    if not f.is_file():
        return {}
    try:
        cfg = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, Any] = {}
    if cfg.get("image_mean") and len(cfg["image_mean"]) == 3:
        out["mean"] = tuple(float(v) for v in cfg["image_mean"])
    if cfg.get("image_std") and len(cfg["image_std"]) == 3:
        out["std"] = tuple(float(v) for v in cfg["image_std"])
    resample = cfg.get("resample")
    if resample in (2, 3):  # PIL.Image.BILINEAR, PIL.Image.BICUBIC
        out["interpolation"] = {2: "bilinear", 3: "bicubic"}[resample]
    return out


def find_hf_weights(folder: Path) -> list[Path]:
    """The weight file(s) of a transformers folder: safetensors preferred, shards expanded from the index."""
    for name in HF_WEIGHT_FILES:
        p = folder / name
        if p.is_file():
            if name.endswith(".index.json"):
                try:
                    index = json.loads(p.read_text(encoding="utf-8"))
                    shards = sorted(set(index["weight_map"].values()))
                except (OSError, ValueError, KeyError) as e:
                    raise ModelLoadError(f"cannot read shard index {p}: {e}") from e
                missing = [s for s in shards if not (folder / s).is_file()]
                if missing:
                    raise ModelLoadError(f"shard index {p} names missing files {missing}")
                return [folder / s for s in shards]
            return [p]
    raise ModelLoadError(
        f"transformers CLIP folder {folder} has config.json but no weights; "
        f"expected one of {list(HF_WEIGHT_FILES)}")


def convert_hf_state_dict(hf_sd: Mapping[str, torch.Tensor], model_cfg: Mapping[str, Any],
                          source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Map a transformers ``CLIPModel`` state dict onto open_clip ``CLIP`` keys (tensors as float32)."""
    sd = {k: v for k, v in hf_sd.items() if not k.endswith("position_ids")}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise ModelLoadError(f"{source}: transformers CLIP weight {key!r} is missing")
        used.add(key)
        return sd[key].float()

    out: dict[str, torch.Tensor] = {"logit_scale": take("logit_scale").reshape(())}

    def blocks(hf_prefix: str, oc_prefix: str, n: int) -> None:
        for i in range(n):
            h, o = f"{hf_prefix}.encoder.layers.{i}.", f"{oc_prefix}transformer.resblocks.{i}."
            for part in ("weight", "bias"):
                out[f"{o}ln_1.{part}"] = take(f"{h}layer_norm1.{part}")
                out[f"{o}ln_2.{part}"] = take(f"{h}layer_norm2.{part}")
                out[f"{o}attn.in_proj_{part}"] = torch.cat(
                    [take(f"{h}self_attn.{p}_proj.{part}") for p in ("q", "k", "v")], dim=0)
                out[f"{o}attn.out_proj.{part}"] = take(f"{h}self_attn.out_proj.{part}")
                out[f"{o}mlp.c_fc.{part}"] = take(f"{h}mlp.fc1.{part}")
                out[f"{o}mlp.c_proj.{part}"] = take(f"{h}mlp.fc2.{part}")

    # text tower
    out["token_embedding.weight"] = take("text_model.embeddings.token_embedding.weight")
    out["positional_embedding"] = take("text_model.embeddings.position_embedding.weight")
    blocks("text_model", "", int(model_cfg["text_cfg"]["layers"]))
    for part in ("weight", "bias"):
        out[f"ln_final.{part}"] = take(f"text_model.final_layer_norm.{part}")
    out["text_projection"] = take("text_projection.weight").t().contiguous()

    # vision tower
    out["visual.class_embedding"] = take("vision_model.embeddings.class_embedding")
    out["visual.conv1.weight"] = take("vision_model.embeddings.patch_embedding.weight")
    out["visual.positional_embedding"] = take("vision_model.embeddings.position_embedding.weight")
    pre = "vision_model.pre_layrnorm"  # sic, transformers' spelling
    if f"{pre}.weight" not in sd:
        pre = "vision_model.pre_layernorm"
    for part in ("weight", "bias"):
        out[f"visual.ln_pre.{part}"] = take(f"{pre}.{part}")
        out[f"visual.ln_post.{part}"] = take(f"vision_model.post_layernorm.{part}")
    blocks("vision_model", "visual.", int(model_cfg["vision_cfg"]["layers"]))
    out["visual.proj"] = take("visual_projection.weight").t().contiguous()

    unused = sorted(set(sd) - used)
    if unused:
        shown = ", ".join(unused[:8]) + (" ..." if len(unused) > 8 else "")
        raise ModelLoadError(f"{source}: {len(unused)} transformers weights have no open_clip counterpart "
                             f"(not a plain CLIPModel?): {shown}")
    return out
