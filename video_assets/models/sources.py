"""Where a CLIP's weights come from, in the order :func:`load_uncached` tries them: a folder under
``model_path`` (an open_clip checkpoint or a transformers CLIP folder), the built-in tiny model, then the hub
(see :mod:`video_assets.models.clip` for the rules). Each source returns a
:class:`~video_assets.models.build.Built` on the CPU in float32.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import open_clip
import torch

from video_assets.errors import ModelLoadError
from video_assets.models.build import Built, arch_config, finish, tokenizer_for, with_name_quick_gelu
from video_assets.models.checkpoints import (
    OPEN_CLIP_PREFERRED,
    find_open_clip_checkpoint,
    read_open_clip_config,
    read_state_dict,
)
from video_assets.models.hf_convert import (
    convert_hf_state_dict,
    find_hf_weights,
    hf_preprocess_overrides,
    is_hf_clip_folder,
    open_clip_config_from_hf,
    read_hf_config,
)
from video_assets.models.hub import NotAvailable, hub_file, url_file
from video_assets.models.names import ACCEPTED_FORMS, TINY_CLIP_SEED, ResolvedClipName, builtin_config

logger = logging.getLogger(__name__)


def _load_open_clip_files(resolved: ResolvedClipName, config_path: Path | None, checkpoint: Path,
                          sd: dict | None, folder: Path, cache_dir: str | None) -> Built:
    if config_path is not None:
        model_cfg, pp = read_open_clip_config(config_path)
        model_cfg = with_name_quick_gelu(model_cfg, resolved, str(folder))
        pp = {**resolved.pretrained_cfg, **pp}
        tokenizer = tokenizer_for(model_cfg, folder, cache_dir)
    elif resolved.arch is not None:
        model_cfg, pp = arch_config(resolved), resolved.pretrained_cfg
        tokenizer = tokenizer_for(model_cfg, folder, cache_dir)
    else:
        raise ModelLoadError(
            f"{folder} holds open_clip weights ({checkpoint.name}) but no open_clip_config.json, and "
            f"{resolved.name!r} does not name an open_clip architecture: add open_clip_config.json "
            f"({{\"model_cfg\": ..., \"preprocess_cfg\": ...}}) to the folder")
    if sd is None:
        sd = read_state_dict(checkpoint)
    return finish(model_cfg, sd, pp, tokenizer, source=str(checkpoint))


def _load_hf_folder(folder: Path) -> Built:
    hf_config = read_hf_config(folder)
    model_cfg = open_clip_config_from_hf(hf_config, source=str(folder / "config.json"))
    sd: dict[str, torch.Tensor] = {}
    weights = find_hf_weights(folder)
    for w in weights:
        sd.update(read_state_dict(w))
    sd = convert_hf_state_dict(sd, model_cfg, source=str(weights[0]))
    text_cfg = model_cfg["text_cfg"]
    if text_cfg["vocab_size"] == 49408:  # the OpenAI BPE vocabulary, shipped with open_clip
        tokenizer = open_clip.SimpleTokenizer(context_length=text_cfg["context_length"])
    elif (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
        from open_clip.tokenizer import HFTokenizer
        tokenizer = HFTokenizer(str(folder), context_length=text_cfg["context_length"])
    else:
        raise ModelLoadError(f"{folder}: vocab_size {text_cfg['vocab_size']} is not the OpenAI CLIP "
                             f"vocabulary and the folder has no tokenizer files")
    return finish(model_cfg, sd, hf_preprocess_overrides(folder), tokenizer,
                   source=f"{folder} (transformers CLIP, converted)")


def _load_folder(folder: Path, resolved: ResolvedClipName, cache_dir: str | None) -> Built:
    config_path = folder / "open_clip_config.json"
    if config_path.is_file():
        checkpoint, sd, _ = find_open_clip_checkpoint(folder)
        if checkpoint is None:
            raise ModelLoadError(f"{folder} has open_clip_config.json but no open_clip weights "
                                 f"(expected one of {list(OPEN_CLIP_PREFERRED)} or another "
                                 f"*.safetensors/*.bin/*.pt/*.pth with open_clip keys)")
        return _load_open_clip_files(resolved, config_path, checkpoint, sd, folder, cache_dir)
    if is_hf_clip_folder(folder):
        return _load_hf_folder(folder)
    checkpoint, sd, saw_hf = find_open_clip_checkpoint(folder)
    if checkpoint is not None:
        return _load_open_clip_files(resolved, None, checkpoint, sd, folder, cache_dir)
    listing = sorted(p.name for p in folder.iterdir())[:12]
    if saw_hf:
        raise ModelLoadError(f"{folder} holds transformers CLIP weights but no config.json describing a "
                             f"CLIPModel (files: {listing})")
    raise ModelLoadError(
        f"{folder} exists but holds no CLIP weights this loader recognises (files: {listing}); expected an "
        f"open_clip checkpoint (open_clip_model.safetensors / open_clip_pytorch_model.bin, optionally with "
        f"open_clip_config.json) or a transformers CLIP folder (config.json + model.safetensors or "
        f"pytorch_model.bin)")


def _load_tiny(resolved: ResolvedClipName) -> Built:
    model_cfg = builtin_config(resolved.arch)
    tokenizer = open_clip.SimpleTokenizer(context_length=model_cfg["text_cfg"]["context_length"])
    return finish(model_cfg, None, {}, tokenizer, seed=TINY_CLIP_SEED,
                   source=f"built-in {resolved.arch} config, random weights (seed {TINY_CLIP_SEED})")


def _load_pretrained_tag(resolved: ResolvedClipName, cache_dir: str | None) -> Built:
    pcfg = resolved.pretrained_cfg
    hf_hub = (pcfg.get("hf_hub") or "").strip()
    if hf_hub:
        repo, filename = os.path.split(hf_hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        checkpoint = hub_file(repo.strip("/"), names, cache_dir)
    elif pcfg.get("url"):
        checkpoint = url_file(pcfg["url"], cache_dir)
    elif pcfg.get("file"):
        checkpoint = pcfg["file"]
    else:
        raise ModelLoadError(f"open_clip has no download source for {resolved.name}")
    model_cfg = arch_config(resolved)
    try:
        tokenizer = open_clip.get_tokenizer(resolved.arch, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"cannot load the tokenizer of {resolved.name}: {type(e).__name__}: {e}") from e
    return finish(model_cfg, read_state_dict(Path(checkpoint)), pcfg, tokenizer, source=str(checkpoint))


def _load_hub_repo(resolved: ResolvedClipName, cache_dir: str | None) -> Built:
    repo = resolved.hub_repo
    config_path = Path(hub_file(repo, ["open_clip_config.json"], cache_dir))
    checkpoint = Path(hub_file(repo, ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"],
                                cache_dir))
    return _load_open_clip_files(resolved, config_path, checkpoint, None, config_path.parent, cache_dir)


def _fill_hint(resolved: ResolvedClipName, folder: str) -> str:
    hints = []
    if resolved.download_repo:
        hints.append(f"hf download {resolved.download_repo} --local-dir {folder}")
    hub = (resolved.pretrained_cfg.get("hf_hub") or "").strip("/")
    if hub and hub.count("/") == 1 and hub != resolved.download_repo:
        hints.append(f"hf download {hub} --local-dir {folder}  (open_clip weights)")
    if not hints:
        return (f"Put an open_clip checkpoint (+ open_clip_config.json) or a transformers CLIP folder "
                f"(config.json + model.safetensors) at {folder}.")
    return (f"Fill {folder} on a machine with hub access: " + "  or  ".join(hints)
            + "  ('huggingface-cli download' with older huggingface_hub), then copy the folder here.")


def load_uncached(resolved: ResolvedClipName, model_path: Path | None) -> Built:
    """Load ``resolved`` from the first source that has it (no caching); raise :class:`ModelLoadError`."""
    if model_path is not None:
        if model_path.exists() and not model_path.is_dir():
            raise ModelLoadError(f"model_path {model_path} is not a folder")
        for sub in resolved.local_subdirs:
            folder = model_path / sub
            if folder.is_dir():
                logger.info("loading CLIP %s from local folder %s", resolved.name, folder)
                return _load_folder(folder, resolved, str(model_path))
    looked = str(model_path / resolved.local_subdirs[0]) if model_path is not None else None
    where = (f"no local folder {looked}" if looked else
             "no model_path given (pass model_path=<folder> to load from "
             f"<folder>/{resolved.local_subdirs[0]})")
    if resolved.kind == "builtin":
        return _load_tiny(resolved)
    if resolved.kind == "local":
        raise ModelLoadError(f"unknown clip_model_name {resolved.name!r} and {where}; {ACCEPTED_FORMS}")
    cache_dir = str(model_path) if model_path is not None else None
    try:
        if resolved.kind == "hf-hub":
            return _load_hub_repo(resolved, cache_dir)
        return _load_pretrained_tag(resolved, cache_dir)
    except NotAvailable as e:
        folder = looked or f"<model_path>/{resolved.local_subdirs[0]}"
        raise ModelLoadError(f"CLIP model {resolved.name!r} is not available: {where}; {e}. "
                             f"{_fill_hint(resolved, folder)}") from None

