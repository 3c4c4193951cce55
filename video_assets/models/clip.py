"""One loader for every CLIP the project uses, built on open_clip.

``load_clip(clip_model_name, model_path=None, device=None, dtype="float32", batch_size=32) -> ClipModel``

Where the weights come from, in order:

1. ``{model_path}/{clip_model_name}`` when that folder exists (for ``hf-hub:org/repo``:
   ``{model_path}/org/repo``), holding either an open_clip checkpoint (``open_clip_model.safetensors`` /
   ``open_clip_pytorch_model.bin`` / any ``*.safetensors``, ``*.bin``, ``*.pt``, ``*.pth`` with open_clip
   keys, optionally with ``open_clip_config.json``; without it the architecture comes from the name) or a
   Hugging Face transformers CLIP folder (``config.json`` + ``model.safetensors`` / ``pytorch_model.bin``),
   converted to open_clip on load;
2. the built-in ``video-assets/tiny-clip`` (random weights, fixed seed, no files);
3. the hub, with ``model_path`` as download cache (open_clip's ``cache_dir``; ``None``: the hub's default
   cache). A copy already in that cache is used without network. Otherwise, when ``HF_HUB_OFFLINE`` is set or
   the hub endpoint does not accept a TCP connection within a few seconds, loading fails at once with a
   :class:`ModelLoadError` that names the folder looked for and the command that fills it.

Models are cached per process: one load per (resolved name, model_path, device, dtype), shared by all callers
and threads. Each loaded model caches the embeddings of the prompts it has encoded.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
import zipfile
from collections import OrderedDict
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union
from urllib.parse import urlparse

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import (convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed,
                             set_model_preprocess_cfg)
from open_clip.transform import PreprocessCfg, merge_preprocess_dict

from video_assets.errors import ModelLoadError
from video_assets.models.hf_convert import (convert_hf_state_dict, find_hf_weights, hf_preprocess_overrides,
                                            is_hf_clip_folder, open_clip_config_from_hf, read_hf_config)
from video_assets.models.names import (ACCEPTED_FORMS, TINY_CLIP_SEED, ResolvedClipName, builtin_config,
                                       resolve_clip_model_name)
from video_assets.models.preprocess import Frames, PreprocessSpec, as_frame_batches, preprocess_frames

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

HUB_PROBE_TIMEOUT_S = 3.0
TEXT_CACHE_SIZE = 8192  # prompts kept per loaded model (LRU)

_OPEN_CLIP_PREFERRED = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                        "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


# ----------------------------------------------------------------------------------------------------------
# device and dtype


def resolve_device(device: Union[str, torch.device, None] = None) -> torch.device:
    """``None``/``"auto"``: ``cuda`` when available, else ``cpu``; ``"cuda"`` means the current device."""
    if device is None or (isinstance(device, str) and device.strip().lower() in ("", "auto")):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device.strip() if isinstance(device, str) else device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ModelLoadError(f"bad device {device!r}: expected 'cpu', 'cuda', 'cuda:N' or None ({e})") from e
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise ModelLoadError(f"unsupported device {device!r}: expected 'cpu', 'cuda', 'cuda:N' or None")
    if not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} requested but CUDA is not available "
                             f"(torch {torch.__version__}, torch.version.cuda={torch.version.cuda})")
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise ModelLoadError(
            f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device("cuda", index)


@functools.lru_cache(maxsize=None)
def _cpu_bfloat16_works() -> bool:
    """Whether the ops a ViT CLIP needs run in bfloat16 on this CPU build."""
    try:
        x = torch.linspace(-1, 1, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8).to(torch.bfloat16)
        conv = torch.nn.Conv2d(3, 8, 4, 4, bias=False).to(torch.bfloat16)
        with torch.no_grad():
            conv.weight.fill_(0.01)
            y = conv(x).flatten(2).transpose(1, 2)
            y = F.layer_norm(y, (8,))
            y = F.scaled_dot_product_attention(y[:, None], y[:, None], y[:, None])[:, 0]
            y = F.gelu(F.linear(y, torch.ones(8, 8, dtype=torch.bfloat16)))
            y = y * torch.sigmoid(1.702 * y)
        return bool(torch.isfinite(y.float()).all())
    except Exception:  # noqa: BLE001 - any failure means "not supported here"
        return False


def resolve_dtype(dtype: Union[str, torch.dtype, None], device: torch.device) -> torch.dtype:
    """The dtype the model runs in on ``device``; half types fall back to float32 where they cannot run."""
    if dtype is None:
        requested = torch.float32
    elif isinstance(dtype, torch.dtype):
        requested = dtype
    else:
        requested = _DTYPES.get(str(dtype).strip().lower().replace("torch.", ""))
    if requested not in (torch.float32, torch.float16, torch.bfloat16):
        raise ModelLoadError(f"unsupported dtype {dtype!r}: expected 'float32', 'float16' or 'bfloat16'")
    if device.type == "cpu":
        if requested == torch.float16:
            logger.warning("dtype float16 requested on CPU: using float32 (half precision is for GPUs)")
            return torch.float32
        if requested == torch.bfloat16 and not _cpu_bfloat16_works():
            logger.warning("dtype bfloat16 requested on CPU but it does not work with this torch build: "
                           "using float32")
            return torch.float32
    return requested


# ----------------------------------------------------------------------------------------------------------
# hub access: local cache first, fail fast without network


class _NotAvailable(Exception):
    """Internal: weights are neither local nor downloadable; load_clip turns it into a ModelLoadError."""


def _env_flag(name: str) -> Optional[bool]:
    v = os.environ.get(name)
    if v is None or not v.strip():
        return None
    return v.strip().upper() in ("1", "ON", "YES", "TRUE")


def _offline_by_config() -> bool:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        flag = _env_flag(name)
        if flag is not None:
            return flag
    try:
        from huggingface_hub import constants
        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # noqa: BLE001
        return False


_probe_cache: dict[str, tuple[float, Optional[str]]] = {}
_probe_lock = threading.Lock()


def _probe(url: str) -> Optional[str]:
    """None when ``url``'s host accepts a TCP connection in HUB_PROBE_TIMEOUT_S, else why not (60 s cache)."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    key = f"{host}:{port}"
    with _probe_lock:
        hit = _probe_cache.get(key)
        if hit and time.monotonic() - hit[0] < 60:
            return hit[1]
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S):
            reason = None
    except OSError as e:
        reason = f"{key} unreachable: {e}"
    with _probe_lock:
        _probe_cache[key] = (time.monotonic(), reason)
    return reason


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants
        return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    except Exception:  # noqa: BLE001
        return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def _why_offline(url: Optional[str] = None) -> Optional[str]:
    if _offline_by_config():
        return "HF_HUB_OFFLINE is set"
    return _probe(url or _hub_endpoint())


def _hub_file(repo: str, filenames: Sequence[str], cache_dir: Optional[str]) -> str:
    """Path of the first of ``filenames`` in hub ``repo``: from the cache, else downloaded (when possible)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:  # pragma: no cover - huggingface_hub comes with open_clip
        raise _NotAvailable("huggingface_hub is not installed") from e
    for fn in filenames:
        try:
            return hf_hub_download(repo, fn, cache_dir=cache_dir, local_files_only=True,
                                   library_name="video_assets")
        except Exception:  # noqa: BLE001 - not in the cache
            continue
    reason = _why_offline()
    if reason:
        raise _NotAvailable(f"no copy in the hub cache ({cache_dir or 'default cache'}) and downloading is "
                            f"impossible: {reason}")
    errors = []
    for fn in filenames:
        try:
            logger.info("downloading %s/%s into %s", repo, fn, cache_dir or "the hub cache")
            return hf_hub_download(repo, fn, cache_dir=cache_dir, library_name="video_assets")
        except Exception as e:  # noqa: BLE001
            errors.append(f"{fn}: {type(e).__name__}: {e}")
    raise _NotAvailable(f"download from hub repo {repo} failed: {'; '.join(errors)}")


def _url_file(url: str, cache_dir: Optional[str]) -> str:
    target = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(urlparse(url).path)
    if target.is_file():
        return str(target)
    reason = _why_offline(url)
    if reason:
        raise _NotAvailable(f"{target} does not exist and downloading is impossible: {reason}")
    try:
        from open_clip.pretrained import download_pretrained_from_url
        return download_pretrained_from_url(url, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001
        raise _NotAvailable(f"download of {url} failed: {type(e).__name__}: {e}") from e


# ----------------------------------------------------------------------------------------------------------
# checkpoints and model construction


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
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


def _instantiate(model_cfg: Mapping[str, Any]) -> torch.nn.Module:
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


def _apply_state_dict(model: torch.nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
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


def _tokenizer_for(model_cfg: Mapping[str, Any], folder: Optional[Path] = None,
                   cache_dir: Optional[str] = None):
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
class _Built:
    model: torch.nn.Module  # float32, CPU, eval
    tokenizer: Callable
    preprocess_cfg: dict[str, Any]
    source: str


def _finish(model_cfg: Mapping[str, Any], sd: Optional[dict[str, torch.Tensor]],
            preprocess_overrides: Mapping, tokenizer, source: str, seed: Optional[int] = None) -> _Built:
    if seed is not None:
        with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
            torch.manual_seed(seed)
            model = _instantiate(model_cfg)
    else:
        model = _instantiate(model_cfg)
    if sd is not None:
        _apply_state_dict(model, sd, source)
    pp = merge_preprocess_dict(PreprocessCfg(), dict(preprocess_overrides))
    pp["size"] = model.visual.image_size
    set_model_preprocess_cfg(model, pp)
    model.eval().requires_grad_(False)
    return _Built(model=model, tokenizer=tokenizer, preprocess_cfg=pp, source=source)


def _with_name_quick_gelu(model_cfg: dict[str, Any], resolved: ResolvedClipName,
                          source: str) -> dict[str, Any]:
    if resolved.quick_gelu and not model_cfg.get("quick_gelu", False):
        logger.info("%s: %s weights were trained with QuickGELU: quick_gelu=True", source, resolved.name)
        model_cfg = {**model_cfg, "quick_gelu": True}
    return model_cfg


def _arch_config(resolved: ResolvedClipName) -> dict[str, Any]:
    cfg = open_clip.get_model_config(resolved.arch)
    if cfg is None:
        raise ModelLoadError(f"open_clip has no config for architecture {resolved.arch!r}")
    return _with_name_quick_gelu(cfg, resolved, resolved.name)


def _open_clip_config_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read open_clip config {path}: {e}") from e
    model_cfg = raw.get("model_cfg", raw)
    if not all(k in model_cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ModelLoadError(
            f"{path} is not an open_clip config (needs model_cfg with embed_dim, vision_cfg, text_cfg)")
    return model_cfg, raw.get("preprocess_cfg", {})


def _open_clip_checkpoint_in(folder: Path) -> tuple[Optional[Path], Optional[dict], bool]:
    """(path, state dict) of the first open_clip checkpoint in ``folder``; third: saw transformers keys."""
    files = [folder / n for n in _OPEN_CLIP_PREFERRED if (folder / n).is_file()]
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
        sd = _read_state_dict(path)
        if _looks_open_clip(sd):
            return path, sd, saw_hf
        saw_hf = saw_hf or _looks_hf(sd)
    return None, None, saw_hf


def _load_open_clip_files(resolved: ResolvedClipName, config_path: Optional[Path], checkpoint: Path,
                          sd: Optional[dict], folder: Path, cache_dir: Optional[str]) -> _Built:
    if config_path is not None:
        model_cfg, pp = _open_clip_config_file(config_path)
        model_cfg = _with_name_quick_gelu(model_cfg, resolved, str(folder))
        pp = {**resolved.pretrained_cfg, **pp}
        tokenizer = _tokenizer_for(model_cfg, folder, cache_dir)
    elif resolved.arch is not None:
        model_cfg, pp = _arch_config(resolved), resolved.pretrained_cfg
        tokenizer = _tokenizer_for(model_cfg, folder, cache_dir)
    else:
        raise ModelLoadError(
            f"{folder} holds open_clip weights ({checkpoint.name}) but no open_clip_config.json, and "
            f"{resolved.name!r} does not name an open_clip architecture: add open_clip_config.json "
            f"({{\"model_cfg\": ..., \"preprocess_cfg\": ...}}) to the folder")
    if sd is None:
        sd = _read_state_dict(checkpoint)
    return _finish(model_cfg, sd, pp, tokenizer, source=str(checkpoint))


def _load_hf_folder(folder: Path) -> _Built:
    hf_config = read_hf_config(folder)
    model_cfg = open_clip_config_from_hf(hf_config, source=str(folder / "config.json"))
    sd: dict[str, torch.Tensor] = {}
    weights = find_hf_weights(folder)
    for w in weights:
        sd.update(_read_state_dict(w))
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
    return _finish(model_cfg, sd, hf_preprocess_overrides(folder), tokenizer,
                   source=f"{folder} (transformers CLIP, converted)")


def _load_folder(folder: Path, resolved: ResolvedClipName, cache_dir: Optional[str]) -> _Built:
    config_path = folder / "open_clip_config.json"
    if config_path.is_file():
        checkpoint, sd, _ = _open_clip_checkpoint_in(folder)
        if checkpoint is None:
            raise ModelLoadError(f"{folder} has open_clip_config.json but no open_clip weights "
                                 f"(expected one of {list(_OPEN_CLIP_PREFERRED)} or another "
                                 f"*.safetensors/*.bin/*.pt/*.pth with open_clip keys)")
        return _load_open_clip_files(resolved, config_path, checkpoint, sd, folder, cache_dir)
    if is_hf_clip_folder(folder):
        return _load_hf_folder(folder)
    checkpoint, sd, saw_hf = _open_clip_checkpoint_in(folder)
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


def _load_tiny(resolved: ResolvedClipName) -> _Built:
    model_cfg = builtin_config(resolved.arch)
    tokenizer = open_clip.SimpleTokenizer(context_length=model_cfg["text_cfg"]["context_length"])
    return _finish(model_cfg, None, {}, tokenizer, seed=TINY_CLIP_SEED,
                   source=f"built-in {resolved.arch} config, random weights (seed {TINY_CLIP_SEED})")


def _load_pretrained_tag(resolved: ResolvedClipName, cache_dir: Optional[str]) -> _Built:
    pcfg = resolved.pretrained_cfg
    hf_hub = (pcfg.get("hf_hub") or "").strip()
    if hf_hub:
        repo, filename = os.path.split(hf_hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        checkpoint = _hub_file(repo.strip("/"), names, cache_dir)
    elif pcfg.get("url"):
        checkpoint = _url_file(pcfg["url"], cache_dir)
    elif pcfg.get("file"):
        checkpoint = pcfg["file"]
    else:
        raise ModelLoadError(f"open_clip has no download source for {resolved.name}")
    model_cfg = _arch_config(resolved)
    try:
        tokenizer = open_clip.get_tokenizer(resolved.arch, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"cannot load the tokenizer of {resolved.name}: {type(e).__name__}: {e}") from e
    return _finish(model_cfg, _read_state_dict(Path(checkpoint)), pcfg, tokenizer, source=str(checkpoint))


def _load_hub_repo(resolved: ResolvedClipName, cache_dir: Optional[str]) -> _Built:
    repo = resolved.hub_repo
    config_path = Path(_hub_file(repo, ["open_clip_config.json"], cache_dir))
    checkpoint = Path(_hub_file(repo, ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"],
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


def _load_uncached(resolved: ResolvedClipName, model_path: Optional[Path]) -> _Built:
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
    except _NotAvailable as e:
        folder = looked or f"<model_path>/{resolved.local_subdirs[0]}"
        raise ModelLoadError(f"CLIP model {resolved.name!r} is not available: {where}; {e}. "
                             f"{_fill_hint(resolved, folder)}") from None


# ----------------------------------------------------------------------------------------------------------
# the loaded model


class _ClipCore:
    """The shared, heavy part of a loaded model: module, tokenizer, text-embedding cache."""

    def __init__(self, resolved: ResolvedClipName, built: _Built, device: torch.device, dtype: torch.dtype):
        model = built.model
        self.name = resolved.name
        self.source = built.source
        self.device = device
        self.dtype = dtype
        self.logit_scale = float(model.logit_scale.detach().float().exp().reshape(-1)[0])
        self.model = model.to(device=device, dtype=dtype)
        self.tokenizer = built.tokenizer
        pp = built.preprocess_cfg
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        if isinstance(model.visual.image_size, (tuple, list)) and model.visual.image_size[0] != \
                model.visual.image_size[1]:
            raise ModelLoadError(
                f"{self.name}: non-square input size {model.visual.image_size} is not supported")
        try:
            self.preprocess_spec = PreprocessSpec(
                image_size=int(size), mean=tuple(float(v) for v in pp["mean"]),
                std=tuple(float(v) for v in pp["std"]), interpolation=pp.get("interpolation", "bicubic"),
                resize_mode=pp.get("resize_mode", "shortest"))
        except ValueError as e:
            raise ModelLoadError(f"{self.name}: preprocessing {pp} is not supported: {e}") from e
        embed_dim = getattr(model.visual, "output_dim", None)
        if embed_dim is None and isinstance(getattr(model, "text_projection", None), torch.Tensor):
            embed_dim = model.text_projection.shape[-1]
        self.embed_dim = int(embed_dim) if embed_dim is not None else None
        self.context_length = int(getattr(self.tokenizer, "context_length", 0) or 0)
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._text_lock = threading.Lock()


class ClipModel:
    """A loaded CLIP, shared process-wide (get it with :func:`load_clip`).

    Attributes: ``name`` (resolved name), ``source`` (where the weights came from), ``device``, ``dtype`` (the
    dtype the model runs in), ``image_size``, ``embed_dim``, ``logit_scale`` (float, ``exp`` of the model's
    logit_scale parameter: 100.0 for the OpenAI weights), ``batch_size``, ``mean``/``std``, ``model`` (the
    open_clip module), ``tokenizer``.

    Outputs of :meth:`encode_images` and :meth:`encode_text` are unit-normalised **float32** tensors **on the
    model's device** (so they can be combined directly; call ``.cpu()`` to keep them). They are created under
    ``torch.inference_mode``; clone them before in-place changes outside it.
    """

    def __init__(self, core: _ClipCore, batch_size: int):
        self._core = core
        self.batch_size = _check_batch_size(batch_size)

    # ---- attributes shared with the core
    name = property(lambda self: self._core.name)
    source = property(lambda self: self._core.source)
    device = property(lambda self: self._core.device)
    dtype = property(lambda self: self._core.dtype)
    logit_scale = property(lambda self: self._core.logit_scale)
    model = property(lambda self: self._core.model)
    tokenizer = property(lambda self: self._core.tokenizer)
    embed_dim = property(lambda self: self._core.embed_dim)
    context_length = property(lambda self: self._core.context_length)
    preprocess_spec = property(lambda self: self._core.preprocess_spec)
    image_size = property(lambda self: self._core.preprocess_spec.image_size)
    mean = property(lambda self: self._core.preprocess_spec.mean)
    std = property(lambda self: self._core.preprocess_spec.std)

    def __repr__(self) -> str:
        return (f"ClipModel(name={self.name!r}, device={self.device}, dtype={self.dtype}, "
                f"image_size={self.image_size}, batch_size={self.batch_size}, source={self.source!r})")

    def with_batch_size(self, batch_size: int) -> "ClipModel":
        """A view of the same loaded model (same weights and text cache) with another batch size."""
        return ClipModel(self._core, batch_size)

    def preprocess(self, frames: Frames) -> torch.Tensor:
        """uint8 RGB frames ``(N, H, W, 3)`` / ``(H, W, 3)`` (numpy or torch), or a list of frames of any
        sizes, -> normalised ``(N, 3, S, S)`` tensor on the model's device in the model's dtype
        (channels_last).
        See :mod:`video_assets.models.preprocess`; equals open_clip's PIL eval transform within 2 grey
        levels."""
        return preprocess_frames(frames, self.preprocess_spec, self.device, self.dtype)

    def encode_images(self, frames: Frames, batch_size: Optional[int] = None) -> torch.Tensor:
        """Unit-normalised float32 image features ``(N, embed_dim)`` on the model's device, ``batch_size``
        frames (default: ``self.batch_size``) preprocessed and encoded at a time."""
        bs = _check_batch_size(batch_size or self.batch_size)
        outs: list[torch.Tensor] = []
        with torch.inference_mode():
            for batch in as_frame_batches(frames):
                for start in range(0, batch.shape[0], bs):
                    x = self.preprocess(batch[start:start + bs])
                    outs.append(F.normalize(self.model.encode_image(x).float(), dim=-1))
            if not outs:
                return torch.empty((0, self.embed_dim or 0), dtype=torch.float32, device=self.device)
            return torch.cat(outs) if len(outs) > 1 else outs[0]

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit-normalised float32 features ``(N, embed_dim)`` on the model's device for frames already
        preprocessed by :meth:`preprocess` (one forward pass; the caller chooses the batch)."""
        with torch.inference_mode():
            x = pixels.to(device=self.device, dtype=self.dtype, non_blocking=True)
            return F.normalize(self.model.encode_image(x).float(), dim=-1)

    def encode_text(self, texts: Union[str, Sequence[str]]) -> torch.Tensor:
        """Unit-normalised float32 text features ``(len(texts), embed_dim)`` on the model's device. Each
        distinct string is encoded once per loaded model and cached (LRU, TEXT_CACHE_SIZE entries)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}]: expected str, got {type(t).__name__}")
        core = self._core
        if not texts:
            return torch.empty((0, self.embed_dim or 0), dtype=torch.float32, device=self.device)
        with core._text_lock:
            missing = [t for t in dict.fromkeys(texts) if t not in core._text_cache]
            with torch.inference_mode():
                for start in range(0, len(missing), self.batch_size):
                    chunk = missing[start:start + self.batch_size]
                    tokens = core.tokenizer(chunk).to(self.device)
                    feats = F.normalize(core.model.encode_text(tokens).float(), dim=-1)
                    for t, row in zip(chunk, feats):
                        core._text_cache[t] = row
            rows = []
            for t in texts:
                core._text_cache.move_to_end(t)
                rows.append(core._text_cache[t])
            out = torch.stack(rows)
            while len(core._text_cache) > TEXT_CACHE_SIZE:
                core._text_cache.popitem(last=False)
        return out

    def text_cache_size(self) -> int:
        return len(self._core._text_cache)


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size


# ----------------------------------------------------------------------------------------------------------
# process-wide cache

CacheKey = tuple[str, Optional[str], str, str]

_cache_lock = threading.Lock()
_key_locks: dict[CacheKey, threading.Lock] = {}
_cores: dict[CacheKey, _ClipCore] = {}
_views: dict[tuple[CacheKey, int], ClipModel] = {}


def clip_cache_key(clip_model_name: str, model_path: Optional[PathLike] = None,
                   device: Union[str, torch.device, None] = None,
                   dtype: Union[str, torch.dtype, None] = "float32") -> CacheKey:
    """(resolved name, absolute model_path or None, device, effective dtype): what load_clip caches by."""
    resolved = resolve_clip_model_name(clip_model_name)
    dev = resolve_device(device)
    return (resolved.name, _model_path_key(model_path), str(dev), str(resolve_dtype(dtype, dev)))


def _model_path_key(model_path: Optional[PathLike]) -> Optional[str]:
    if model_path is None or not str(os.fspath(model_path)).strip():
        return None
    return str(Path(os.fspath(model_path)).expanduser().resolve())


def load_clip(clip_model_name: str, model_path: Optional[PathLike] = None,
              device: Union[str, torch.device, None] = None, dtype: Union[str, torch.dtype, None] = "float32",
              batch_size: int = 32) -> ClipModel:
    """Load (once per process) and return a :class:`ClipModel`.

    clip_model_name: see :mod:`video_assets.models.names` (HF OpenAI names, ``ARCH/PRETRAINED``,
    ``hf-hub:org/repo``, ``video-assets/tiny-clip``, or a folder name under model_path).
    model_path: base folder; ``{model_path}/{clip_model_name}`` is loaded when it exists, else the folder is
    the download cache. ``None``/empty: no local folder, the hub's default cache.
    device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``None`` (cuda if available, else cpu).
    dtype: ``"float32"``, ``"float16"``, ``"bfloat16"``; on CPU float16 falls back to float32 (logged), and
    bfloat16 too where the CPU build cannot run it.
    batch_size: frames (and prompts) per forward pass.

    The same (resolved name, model_path, device, effective dtype) returns the same loaded model; the same key
    and batch_size returns the very same object. Thread-safe. Raises :class:`ModelLoadError`.
    """
    bs = _check_batch_size(batch_size)
    resolved = resolve_clip_model_name(clip_model_name)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    path_key = _model_path_key(model_path)
    key: CacheKey = (resolved.name, path_key, str(dev), str(dt))
    with _cache_lock:
        view = _views.get((key, bs))
        if view is not None:
            return view
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # one load per key; other keys load concurrently
        core = _cores.get(key)
        if core is None:
            t0 = time.perf_counter()
            built = _load_uncached(resolved, Path(path_key) if path_key else None)
            core = _ClipCore(resolved, built, dev, dt)
            logger.info("loaded CLIP %s on %s as %s in %.1f s (weights: %s)", resolved.name, dev,
                        str(dt).replace("torch.", ""), time.perf_counter() - t0, built.source)
            with _cache_lock:
                _cores[key] = core
    with _cache_lock:
        return _views.setdefault((key, bs), ClipModel(core, bs))


def clear_clip_cache() -> None:
    """Forget every loaded model (they are freed once no caller holds them)."""
    with _cache_lock:
        _cores.clear()
        _views.clear()
        _key_locks.clear()
