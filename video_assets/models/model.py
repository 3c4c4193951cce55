"""The loaded CLIP: :class:`ClipModel`, a view with its own batch size over one shared core (module,
tokenizer, preprocessing, text-embedding cache). Get one with :func:`video_assets.models.load_clip`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from video_assets.errors import ModelLoadError
from video_assets.models.preprocess import (
    Frames,
    Preprocessor,
    PreprocessSpec,
    as_frame_batches,
    preprocess_frames,
)

TEXT_CACHE_SIZE = 8192  # prompts kept per loaded model (LRU)

if TYPE_CHECKING:  # building models imports open_clip: a decode process needs only preprocess
    from video_assets.models.build import Built
    from video_assets.models.names import ResolvedClipName


class ClipCore:
    """The shared, heavy part of a loaded model: module, tokenizer, text-embedding cache."""

    def __init__(self, resolved: ResolvedClipName, built: Built, device: torch.device, dtype: torch.dtype):
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

    def __init__(self, core: ClipCore, batch_size: int):
        self._core = core
        self.batch_size = check_batch_size(batch_size)

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

    def with_batch_size(self, batch_size: int) -> ClipModel:
        """A view of the same loaded model (same weights and text cache) with another batch size."""
        return ClipModel(self._core, batch_size)

    def preprocess(self, frames: Frames) -> torch.Tensor:
        """uint8 RGB frames ``(N, H, W, 3)`` / ``(H, W, 3)`` (numpy or torch), or a list of frames of any
        sizes, -> normalised ``(N, 3, S, S)`` tensor on the model's device in the model's dtype
        (channels_last).
        See :mod:`video_assets.models.preprocess`; equals open_clip's PIL eval transform within 2 grey
        levels."""
        return preprocess_frames(frames, self.preprocess_spec, self.device, self.dtype)

    @property
    def preprocessor(self) -> Preprocessor:
        """:meth:`preprocess` without the model (picklable, no weights): what a decode process runs."""
        return Preprocessor(self.preprocess_spec, str(self.device), str(self.dtype).removeprefix("torch."))

    def encode_images(self, frames: Frames, batch_size: int | None = None) -> torch.Tensor:
        """Unit-normalised float32 image features ``(N, embed_dim)`` on the model's device, ``batch_size``
        frames (default: ``self.batch_size``) preprocessed and encoded at a time."""
        bs = check_batch_size(batch_size or self.batch_size)
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

    def encode_text(self, texts: str | Sequence[str]) -> torch.Tensor:
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


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` when it is a positive int; ValueError otherwise."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size

