"""Deployment knobs read from the environment (README, "Environment variables"): one parser for the numbers.

A bad value (``VIDEO_ASSETS_SCHEDULE_MAX_FAILURES=three``) falls back to the default, as an unset one does, but
is logged with the variable's name: a typo must not change behaviour unseen."""

import logging
import os

log = logging.getLogger(__name__)


def env_number(name: str, default: float, kind: type = float, minimum: float | None = None):
    """``$name`` as ``kind`` (int or float), or ``default`` when unset or blank; a value that does not parse or
    is below ``minimum`` gives ``default`` and a warning naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or (minimum is not None and value < minimum):
        need = f"{'an integer' if kind is int else 'a number'}" + (f" >= {minimum}" if minimum is not None else "")
        log.warning(f"${name}={raw!r} is not {need}; using the default, {default}")
        return default
    return value
