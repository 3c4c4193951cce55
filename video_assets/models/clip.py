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

The pieces: :mod:`~video_assets.models.names` (what a name means), :mod:`~video_assets.models.sources`
(where weights come from, with :mod:`~video_assets.models.hub` and :mod:`~video_assets.models.checkpoints`),
:mod:`~video_assets.models.build` (the open_clip module), :mod:`~video_assets.models.model` (the loaded
model), :mod:`~video_assets.models.device` (device and dtype). This module is the front door and the cache.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import torch

from video_assets.models.device import resolve_device, resolve_dtype
from video_assets.models.model import ClipCore, ClipModel, check_batch_size
from video_assets.models.names import resolve_clip_model_name
from video_assets.models.sources import load_uncached

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

CacheKey = tuple[str, str | None, str, str]

_cache_lock = threading.Lock()
_key_locks: dict[CacheKey, threading.Lock] = {}
_cores: dict[CacheKey, ClipCore] = {}
_views: dict[tuple[CacheKey, int], ClipModel] = {}


def clip_cache_key(clip_model_name: str, model_path: PathLike | None = None,
                   device: str | torch.device | None = None,
                   dtype: str | torch.dtype | None = "float32") -> CacheKey:
    """(resolved name, absolute model_path or None, device, effective dtype): what load_clip caches by."""
    resolved = resolve_clip_model_name(clip_model_name)
    dev = resolve_device(device)
    return (resolved.name, _model_path_key(model_path), str(dev), str(resolve_dtype(dtype, dev)))


def _model_path_key(model_path: PathLike | None) -> str | None:
    if model_path is None or not str(os.fspath(model_path)).strip():
        return None
    return str(Path(os.fspath(model_path)).expanduser().resolve())


def load_clip(clip_model_name: str, model_path: PathLike | None = None,
              device: str | torch.device | None = None, dtype: str | torch.dtype | None = "float32",
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
    bs = check_batch_size(batch_size)
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
            built = load_uncached(resolved, Path(path_key) if path_key else None)
            core = ClipCore(resolved, built, dev, dt)
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
