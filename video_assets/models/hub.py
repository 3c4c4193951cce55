"""Weights from the Hugging Face hub or a URL: the local cache first, a fast, clear failure without network.

:func:`hub_file` and :func:`url_file` return a path to a weight file, from the cache when a copy is there.
Otherwise they download it, unless ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set or the endpoint
does not accept a TCP connection within :data:`HUB_PROBE_TIMEOUT_S`: then they raise :class:`NotAvailable` at
once (the loader turns it into a :class:`~video_assets.errors.ModelLoadError` naming the folder to fill).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT_S = 3.0


class NotAvailable(Exception):
    """Weights are neither local nor downloadable; load_clip turns it into a ModelLoadError."""


def _env_flag(name: str) -> bool | None:
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


_probe_cache: dict[str, tuple[float, str | None]] = {}
_probe_lock = threading.Lock()


def _probe(url: str) -> str | None:
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


def _why_offline(url: str | None = None) -> str | None:
    if _offline_by_config():
        return "HF_HUB_OFFLINE is set"
    return _probe(url or _hub_endpoint())


def hub_file(repo: str, filenames: Sequence[str], cache_dir: str | None) -> str:
    """Path of the first of ``filenames`` in hub ``repo``: from the cache, else downloaded (when possible)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:  # pragma: no cover - huggingface_hub comes with open_clip
        raise NotAvailable("huggingface_hub is not installed") from e
    for fn in filenames:
        try:
            return hf_hub_download(repo, fn, cache_dir=cache_dir, local_files_only=True,
                                   library_name="video_assets")
        except Exception:  # noqa: BLE001 - not in the cache
            continue
    reason = _why_offline()
    if reason:
        raise NotAvailable(f"no copy in the hub cache ({cache_dir or 'default cache'}) and downloading is "
                            f"impossible: {reason}")
    errors = []
    for fn in filenames:
        try:
            logger.info("downloading %s/%s into %s", repo, fn, cache_dir or "the hub cache")
            return hf_hub_download(repo, fn, cache_dir=cache_dir, library_name="video_assets")
        except Exception as e:  # noqa: BLE001
            errors.append(f"{fn}: {type(e).__name__}: {e}")
    raise NotAvailable(f"download from hub repo {repo} failed: {'; '.join(errors)}")


def url_file(url: str, cache_dir: str | None) -> str:
    target = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(urlparse(url).path)
    if target.is_file():
        return str(target)
    reason = _why_offline(url)
    if reason:
        raise NotAvailable(f"{target} does not exist and downloading is impossible: {reason}")
    try:
        from open_clip.pretrained import download_pretrained_from_url
        return download_pretrained_from_url(url, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001
        raise NotAvailable(f"download of {url} failed: {type(e).__name__}: {e}") from e
