"""Where a CLIP runs: the device (``cpu``, ``cuda``, ``cuda:N``, auto) and the dtype it can run in there.

``resolve_device(None)`` picks ``cuda`` when available, else ``cpu``; ``resolve_dtype`` falls back from half
precision to float32 on a CPU that cannot run it (logged). Both raise :class:`ModelLoadError` for values that
cannot mean anything.
"""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F

from video_assets.errors import ModelLoadError
from video_assets.models.settings import dtype_name

logger = logging.getLogger(__name__)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
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


@functools.cache
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


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The dtype the model runs in on ``device``; half types fall back to float32 where they cannot run."""
    if dtype is None:
        requested = torch.float32
    elif isinstance(dtype, torch.dtype):
        requested = dtype
    else:
        name = dtype_name(dtype)
        requested = getattr(torch, name) if name else None
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

