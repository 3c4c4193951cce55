"""How a CLIP model runs: :class:`ClipSettings`, the one definition of the operators' model parameters, and
:func:`effective_dtype`, the one rule for the dtype default (no torch: the Dagster code location reads these).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass

from video_assets.fields import setting
from video_assets.models.defaults import MODEL_ENV, MODEL_PATH_ENV, default_model_name, default_model_path

# The dtype names the models accept (case-insensitive, "torch." allowed) -> the torch dtype they mean; the
# loader (models/device.py) maps these, the settings check them before anything is loaded.
DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "float": "float32",
               "float16": "float16", "fp16": "float16", "half": "float16",
               "bfloat16": "bfloat16", "bf16": "bfloat16"}
# The precision a CPU runs CLIP in: half precision is for GPUs (on a CPU float16 is emulated and ~10x slower).
_HALF = tuple(name for name, dtype in DTYPE_NAMES.items() if dtype == "float16")
# The devices the models run on (what models.device.resolve_device accepts); their syntax only: whether the
# GPU exists is known where the model loads, which need not be where the settings are built (a Daft driver).
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")
DEVICES_TEXT = "'cpu', 'cuda', 'cuda:N', 'auto' or empty (cuda when a GPU exists, else cpu)"


def dtype_name(dtype: str) -> str | None:
    """The torch dtype name ``dtype`` means ("fp16" -> "float16"), None for a name that means nothing."""
    return DTYPE_NAMES.get(str(dtype).strip().lower().removeprefix("torch."))


def check_device(device: str | None) -> None:
    """A ``device`` that cannot mean a device raises ValueError naming the allowed values."""
    if device is None:
        return
    if not isinstance(device, str):
        raise ValueError(f"device must be a string or None, got {type(device).__name__}")
    if device.strip().lower() not in ("", "auto") and not _DEVICE.match(device.strip()):
        raise ValueError(f"device must be {DEVICES_TEXT}; got {device!r}")


def check_dtype(dtype: str | None) -> None:
    """A ``dtype`` that names no supported precision raises ValueError naming the allowed values."""
    if dtype is None:
        return
    if not isinstance(dtype, str):
        raise ValueError(f"dtype must be a string or None, got {type(dtype).__name__}")
    if dtype.strip() and dtype_name(dtype) is None:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_NAMES)} or empty (float16 on GPU, float32 on "
                         f"CPU); got {dtype!r}")


def effective_dtype(dtype: str | None, device: str) -> str:
    """The dtype a model runs in on ``device``: ``dtype``, else float16 on a GPU; on a CPU float16 (the
    LAS keyframes operator's default) and None mean float32; other dtypes are passed on (the loader falls
    back where the CPU build cannot run them)."""
    on_gpu = str(device).startswith("cuda")
    if dtype is None or not str(dtype).strip():
        return "float16" if on_gpu else "float32"
    if not on_gpu and str(dtype).strip().lower() in _HALF:
        return "float32"
    return str(dtype)


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class ClipSettings:
    """Where and how one operator's CLIP model runs. ``None`` (empty) means the default named in each doc."""

    device: str | None = setting(None, "'cuda', 'cuda:N' or 'cpu'; empty: cuda when a GPU exists, else cpu.")
    dtype: str | None = setting(None, "'float16', 'bfloat16', 'float32'; empty: float16 on GPU, float32 on CPU.")
    model_path: str | None = setting(None, (
        f"Folder of local models ({{model_path}}/{{model name}}); empty: env {MODEL_PATH_ENV}, else the hub "
        "cache."))
    clip_model_name: str | None = setting(None, (
        f"The CLIP model (see video_assets.models.names); empty: env {MODEL_ENV}, else the operator's default."))
    batch_size: int = setting(32, "Frames per forward pass.")

    def __post_init__(self):
        _positive_int("batch_size", self.batch_size)
        if isinstance(self.model_path, os.PathLike):
            object.__setattr__(self, "model_path", os.fspath(self.model_path))
        check_device(self.device)
        check_dtype(self.dtype)
        for name in ("model_path", "clip_model_name"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"{name} must be a string or None, got {type(v).__name__}")

    def resolved(self, default_model: str, device: str) -> ClipSettings:
        """These settings with every default applied: the model name and folder from the environment or
        ``default_model``, ``device`` (already resolved: it needs torch), and :func:`effective_dtype`."""
        return dataclasses.replace(self, device=device, dtype=effective_dtype(self.dtype, device),
                                   model_path=default_model_path(self.model_path),
                                   clip_model_name=default_model_name(self.clip_model_name, default_model))
