"""A crash hook for the Ray backend's fault tests (test code only; workers import it like any module).

:class:`CrashingFactory` wraps a real operator factory: the operator it builds kills its own process
(``os._exit``, as a segfaulting decoder would) when asked to process a marked video, then behaves as the real
operator. ``crash_once`` videos crash the first process that sees them only (a marker file says it happened),
``crash_always`` videos crash every time. Each crash appends the video's name to ``crash_log``, one per line,
so a test can count them.

The real factory travels pickled and is only unpickled (importing torch and the operators) once a video is
to be processed without crashing: a worker that Ray restarts just to crash again is back in a second.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


class CrashingFactory:
    def __init__(self, factory: Callable[[], Any], folder: Path | str, crash_once: Sequence[str] = (),
                 crash_always: Sequence[str] = ()):
        self.factory_bytes = pickle.dumps(factory)
        self.folder = str(folder)
        self.crash_once, self.crash_always = set(crash_once), set(crash_always)

    @property
    def crash_log(self) -> Path:
        return Path(self.folder) / "crashes.log"

    def crashes(self) -> list[str]:
        return self.crash_log.read_text().split() if self.crash_log.exists() else []

    def __call__(self) -> _CrashingOperator:
        return _CrashingOperator(self)


class _CrashingOperator:
    def __init__(self, spec: CrashingFactory):
        self._spec, self._real = spec, None

    @property
    def _op(self):
        if self._real is None:
            self._real = pickle.loads(self._spec.factory_bytes)()
        return self._real

    def __getattr__(self, name: str):  # device, model names...: the real operator's
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._op, name)

    def _crash(self, name: str) -> None:
        fd = os.open(self._spec.crash_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, f"{name}\n".encode())
        os.close(fd)
        os._exit(1)  # no clean-up, no exception: the process just dies

    def details(self, videos, video_formats=None, progress=None):
        self._crash_on(videos)
        return self._op.details(videos, video_formats=video_formats, progress=progress)

    def results(self, videos, video_formats=None, progress=None):  # what the Ray worker calls
        self._crash_on(videos)
        return self._op.results(videos, video_formats=video_formats, progress=progress)

    def _crash_on(self, videos) -> None:
        for v in videos:
            name = os.path.basename(str(v))
            if name in self._spec.crash_always:
                self._crash(name)
            if name in self._spec.crash_once:
                try:
                    os.close(os.open(Path(self._spec.folder) / f"{name}.crashed", os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    continue
                self._crash(name)
