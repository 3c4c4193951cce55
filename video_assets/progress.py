"""Progress of a batch of videos: log lines for pipelines, a tqdm bar for people (no torch, no Dagster).

:class:`Progress` counts finished videos. It logs "done/total, videos/s, ETA" at INFO every ``every_sec`` (what
Dagster runs and compute backends show), calls the pipeline's callback at the same interval, and optionally
draws a tqdm bar on stderr. :func:`resolve_progress` turns an operator's ``progress=`` argument into one:

- ``None`` (the default): a bar when a person is watching (stderr is a terminal, or a Jupyter/IPython kernel
  runs the code), nothing visible otherwise (the INFO log lines only);
- ``True``: always a bar; ``False``: no bar and no log lines;
- a callable: called as ``fn(done, total, rate)`` after every finished video (rate in videos/s), no bar;
- a :class:`Progress`: used as it is (the pipeline passes its own, with its callback and interval).

tqdm's own environment variables apply to the bar (e.g. ``TQDM_DISABLE=1``, ``TQDM_MININTERVAL=5``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Union

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, float], None]
ProgressArg = Union[None, bool, ProgressCallback, "Progress"]


def in_notebook() -> bool:
    """True inside a Jupyter/IPython kernel (where stderr is not a terminal but a person is watching)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - any odd IPython state means "not a notebook"
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def interactive() -> bool:
    """A person is probably watching: stderr is a terminal, or the code runs in a notebook kernel."""
    if in_notebook():
        return True
    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _bar(total: int, label: str):
    """A tqdm bar: the notebook widget in a kernel when ipywidgets is there, else text on stderr."""
    kwargs = dict(total=total, desc=label, unit="video", dynamic_ncols=True)
    if in_notebook():
        try:
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(**kwargs)
        except ImportError:  # no ipywidgets: the text bar works in a notebook too
            pass
    from tqdm import tqdm

    return tqdm(file=sys.stderr, **kwargs)


class Progress:
    """Counts finished videos; logs done / total, videos/s and ETA at a steady interval (and once at the end).

    ``callback(done, total, rate)`` is called with each log line (every ``every_sec``), or after every video
    with ``callback_every_step=True``. ``bar=True`` draws a tqdm bar on stderr; ``log_lines=False`` logs
    nothing. Call :meth:`close` when the batch ends early (the operators do), to close the bar.
    """

    def __init__(self, total: int, label: str, every_sec: float = 10.0, callback: ProgressCallback | None = None,
                 *, bar: bool = False, log_lines: bool = True, callback_every_step: bool = False):
        self.total, self.label, self.every = total, label, every_sec
        self.done = 0
        self.start = self.last = time.monotonic()
        self.callback = callback
        self.log_lines = log_lines
        self.callback_every_step = callback_every_step
        self._bar: Any = _bar(total, label) if bar and total > 0 else None

    def step(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        now = time.monotonic()
        due = now - self.last >= self.every or self.done == self.total
        if not (due or (self.callback and self.callback_every_step)):
            return
        rate = self.done / max(now - self.start, 1e-9)
        if due:
            self.last = now
            if self.log_lines:
                eta = (self.total - self.done) / rate if rate > 0 else float("inf")
                log.info("%s: %d/%d videos, %.2f videos/s, ETA %.0fs", self.label, self.done, self.total, rate,
                         eta)
        if self.callback and (due or self.callback_every_step):
            self.callback(self.done, self.total, rate)
        if self.done >= self.total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def resolve_progress(progress: ProgressArg, total: int, label: str) -> Progress:
    """The :class:`Progress` an operator call uses for ``progress=`` (see the module docstring)."""
    if isinstance(progress, Progress):
        return progress
    if progress is None:
        return Progress(total, label, bar=interactive())
    if progress is True or progress is False:
        return Progress(total, label, bar=progress, log_lines=progress)
    if callable(progress):
        return Progress(total, label, callback=progress, callback_every_step=True)
    raise ValueError(f"progress must be True, False, None, a callable(done, total, rate) or a Progress; "
                     f"got {type(progress).__name__}")
