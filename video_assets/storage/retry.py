"""Transient versus permanent storage errors, and a bounded retry with exponential backoff.

Transient: HTTP 5xx, 408 and 429, connection resets and refusals mid-transfer, timeouts, truncated payloads.
Permanent: 404, 403 and other 4xx, too many redirects, unresolvable names, policy violations, anything that is
not a network error (a file that is not a video is never retried). s3/tos requests are retried by botocore
(configured in :func:`video_assets.storage.fs.filesystem_for`), so this module is used for http(s).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from video_assets.errors import LimitExceededError
from video_assets.storage.policy import find_policy_error
from video_assets.storage.uri import redact_text

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BACKOFF_SEC = 10.0


def _chain(exc: BaseException):
    seen = set()
    stack = [exc]
    while stack:
        e = stack.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack.extend([e.__cause__, e.__context__, getattr(e, "os_error", None)])


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a (wrapped) error, if any."""
    for e in _chain(exc):
        status = getattr(e, "status", None)
        if isinstance(status, int) and 100 <= status < 600:
            return status
    return None


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same request may succeed."""
    if isinstance(exc, LimitExceededError) or find_policy_error(exc) is not None:
        return False
    try:
        import aiohttp
        too_many = aiohttp.TooManyRedirects
        response_error = aiohttp.ClientResponseError
        conn_errors: tuple = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)
    except ImportError:  # pragma: no cover - aiohttp ships with fsspec's http support
        too_many = response_error = ()
        conn_errors = ()
    from fsspec.exceptions import FSTimeoutError

    for e in _chain(exc):
        if too_many and isinstance(e, too_many):
            return False
        if response_error and isinstance(e, response_error):
            return e.status >= 500 or e.status in (408, 429)
        if isinstance(e, socket.gaierror):
            return e.errno == socket.EAI_AGAIN  # a name that does not exist will not exist next time either
        if isinstance(e, (TimeoutError, asyncio.TimeoutError, FSTimeoutError, ConnectionError)):
            return True
        if conn_errors and isinstance(e, conn_errors):
            return True
    return False


def backoff_delay(attempt: int, base: float) -> float:
    """Seconds before retry number ``attempt`` (1-based): base * 2^(attempt-1), capped, with +-25 % jitter."""
    d = min(MAX_BACKOFF_SEC, base * (2 ** (attempt - 1)))
    return d * random.uniform(0.75, 1.25)


def call_with_retries(fn: Callable[[], T], description: str, max_retries: int, backoff_sec: float,
                      remaining: Callable[[], float | None] | None = None,
                      before_retry: Callable[[], None] | None = None) -> T:
    """Call ``fn``; on a transient error retry up to ``max_retries`` times with backoff. Permanent errors and
    the last transient one propagate. ``remaining()``: seconds left in the caller's deadline (no sleeping
    past it)."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - classified below, re-raised unless transient
            if attempt >= max_retries or not is_transient(e):
                raise
            attempt += 1
            delay = backoff_delay(attempt, backoff_sec)
            left = remaining() if remaining else None
            if left is not None and left <= delay:
                raise
            log.info("%s: transient error (%s), retry %d/%d in %.2fs", description,
                     _short(e), attempt, max_retries, delay)
            time.sleep(delay)
            if before_retry:
                before_retry()


def _short(e: BaseException) -> str:
    status = http_status(e)
    return f"HTTP {status}" if status else redact_text(f"{type(e).__name__}: {e}")
