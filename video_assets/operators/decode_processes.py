"""Decode in worker processes: each has its own GIL, so decoding scales past what threads in one process reach.

An operator with ``decode_processes=N`` keeps a :class:`DecodeProcessPool` of N spawned processes, started on
its first call and reused by every later one (closed by ``op.close()``, ``with op:``, when the operator is
garbage-collected, or at interpreter exit).
A process gets the call's decode once per call (the
:meth:`~video_assets.operators.stage.SharedDecode.prepare` of its stages, pickled without the models: each
stage preprocesses with its model's :class:`~video_assets.models.preprocess.Preprocessor`, and no weights are
loaded there), then one video at a time: it opens, samples and preprocesses it exactly as the thread path does, and
writes each chunk of preprocessed frames into one of its shared-memory slots (``multiprocessing.shared_memory``,
created by the parent), sending only the slot's number, shape and dtype through its pipe. The parent copies the
chunk out, frees the slot and hands the chunk to the usual cross-video batching
(:func:`~video_assets.operators.batching.iter_overlapped`), which owns the model; so memory stays bounded by
the slots (two per process) plus the thread path's bounded queue. A chunk larger than a slot (raw frames of a
large video) goes through a segment of its own, created for it and removed once copied; it still takes a
slot's turn, so at most two chunks per process are in flight.

The process's own loop is :mod:`video_assets.operators.decode_child`. In the parent, each decode worker
thread of ``iter_overlapped`` drives one process through :class:`RemotePrepare`. A process that dies (a crash
in FFmpeg, ``os._exit``) fails its video with an error naming the video and the exit code; one that hangs
past the video's time limit is killed when the run abandons the video. Either way a fresh process takes its
place and the run goes on.

On a GPU the thread path resizes frames on the device; there the processes send the decoded frames as they
are (uint8) and the parent preprocesses them with the model's own ``preprocess``, so that the results are
those of the thread path (``decode_resize`` overrides where the resize runs).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from video_assets.operators.stage import SharedDecode

from video_assets.compute.settings import AUTO_MIN_CORES as AUTO_MIN_CORES
from video_assets.compute.settings import DecodeSettings, decoder_threads_for
from video_assets.compute.settings import auto_decode_processes as auto_decode_processes
from video_assets.operators.decode_child import FAULT_ENV as FAULT_ENV
from video_assets.operators.decode_child import child_main

log = logging.getLogger(__name__)

SLOTS_PER_PROCESS = 2  # double buffering: the process fills one slot while the parent copies the other
RAW_SLOT_BYTES = 32 << 20  # raw frames (resize on the GPU): one 4K frame; larger chunks get their own segment
START_TIMEOUT_SEC = 300.0  # spawning imports torch and PyAV: seconds on a loaded machine
CANCEL_GRACE_SEC = 1.0  # a process asked to stop a video that does not answer within this is killed


# -- the task a process runs ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RawFrames:
    """Stands in for a model's preprocessor in a decode process when the model's device does the resize: a
    chunk goes as decoded, uint8 ``(k, H, W, 3)``."""

    def preprocess(self, frames) -> torch.Tensor:
        from video_assets.models.preprocess import as_frame_batches  # torch: only where frames are handled

        batches = as_frame_batches(frames)
        if len(batches) != 1:
            raise ValueError(f"a chunk of frames has {len(batches)} frame sizes; expected one")
        return batches[0]


# -- the parent -----------------------------------------------------------------------------------------------
class DecodeProcessError(RuntimeError):
    """A decode process died or could not start while it read a video."""


class _Child:
    """One decode process, its pipe and its shared-memory slots (owned, and removed, by the parent)."""

    def __init__(self, slot_bytes: int, torch_threads: int):
        ctx = multiprocessing.get_context("spawn")
        self.slots = [SharedMemory(create=True, size=slot_bytes) for _ in range(SLOTS_PER_PROCESS)]
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=child_main, args=(child_conn, [s.name for s in self.slots],
                                                             torch_threads),
                                   name="video-assets-decode", daemon=True)
        self.process.start()
        child_conn.close()
        self.task_token: str | None = None
        self.pid: int | None = None

    def wait_ready(self) -> None:
        if not self.conn.poll(START_TIMEOUT_SEC):
            raise DecodeProcessError(f"decode process did not start within {START_TIMEOUT_SEC:g}s")
        try:
            _, self.pid = self.conn.recv()
        except (EOFError, OSError):
            raise DecodeProcessError(f"decode process exited while starting ({self._exit_text()})") from None

    def _exit_text(self) -> str:
        self.process.join(1.0)
        code = self.process.exitcode
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"exit code {code}"
        return f"exit code {code}"

    def probe(self) -> tuple[int, list[str]]:
        """(pid, which model libraries it imported): for tests."""
        self.conn.send(("probe",))
        _, pid, modules = self.conn.recv()
        return pid, modules

    def run(self, task_bytes: bytes, token: str, item, emit, finalize: Sequence[Callable | None]) -> Any:
        """Run one video in this process; chunks go to ``emit``; returns its meta or raises its error."""
        if self.task_token != token:
            self.conn.send(("task", token, task_bytes))
            self.task_token = token
        self.conn.send(("item", token, item))
        cancel_at: float | None = None
        while True:
            if cancel_at is None and emit.cancelled:
                self.conn.send(("cancel",))
                cancel_at = time.monotonic()
            if cancel_at is not None and time.monotonic() - cancel_at > CANCEL_GRACE_SEC:
                raise _Stuck()
            if not self.conn.poll(0.1):
                if not self.process.is_alive() and not self.conn.poll(0):
                    raise DecodeProcessError(f"decode process {self.pid} died ({self._exit_text()})")
                continue
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                raise DecodeProcessError(f"decode process {self.pid} died ({self._exit_text()})") from None
            if msg[0] == "chunk":
                pixels = self._take_chunk(*msg[1:])
                fin = finalize[msg[1]]
                if cancel_at is None and not emit.cancelled:
                    try:
                        emit(fin(pixels) if fin is not None else pixels, msg[1])
                    except RuntimeError:
                        if not emit.cancelled:
                            raise
            elif msg[0] == "done":
                return msg[1]
            elif msg[0] == "failed":
                raise msg[1]

    def _take_chunk(self, stream: int, slot: int, own: str | None, shape: tuple, dtype: str,
                    channels_last: bool) -> torch.Tensor:
        """Copy a chunk out of its slot, or out of the segment made for it (then removed), and free the slot."""
        import torch

        tdtype = getattr(torch, dtype)
        numel = 1
        for d in shape:
            numel *= d
        if own is None:
            flat = torch.frombuffer(self.slots[slot].buf, dtype=tdtype, count=numel).clone()
        else:
            seg = SharedMemory(name=own)
            try:
                flat = torch.frombuffer(seg.buf, dtype=tdtype, count=numel).clone()
            finally:
                seg.close()
                seg.unlink()
        self.conn.send(("ack", slot))
        if channels_last:
            n, c, h, w = shape
            return flat.view(n, h, w, c).permute(0, 3, 1, 2)
        return flat.view(shape)

    def close(self, kill: bool = False) -> None:
        if not kill:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(5.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5.0)
        self.conn.close()
        for s in self.slots:
            s.close()
            try:
                s.unlink()
            except FileNotFoundError:
                pass


class _Stuck(Exception):
    """The process did not stop a video it was asked to stop."""


class DecodeProcessPool:
    """Up to ``processes`` idle decode processes kept between calls; started on demand (spawn)."""

    def __init__(self, processes: int, slot_bytes: int):
        self.processes, self.slot_bytes = processes, slot_bytes
        self.torch_threads = max(1, (os.cpu_count() or 1) // processes)
        self._idle: list[_Child] = []
        self._lock = threading.Lock()
        self._closed = False
        # An operator dropped without close() (and every pool at interpreter exit) still stops its processes.
        self._finalizer = weakref.finalize(self, _close_all, self._idle)

    def ensure(self, n: int) -> None:
        """Have ``n`` processes idle and started (so that start-up is not counted in a video's time)."""
        with self._lock:
            missing = max(0, min(n, self.processes) - len(self._idle))
        fresh = [_Child(self.slot_bytes, self.torch_threads) for _ in range(missing)]
        for c in fresh:
            c.wait_ready()
        with self._lock:
            self._idle.extend(fresh)

    def acquire(self) -> _Child:
        with self._lock:
            if self._closed:
                raise RuntimeError("the decode process pool is closed")
            if self._idle:
                return self._idle.pop()
        child = _Child(self.slot_bytes, self.torch_threads)
        try:
            child.wait_ready()
        except BaseException:
            child.close(kill=True)
            raise
        return child

    def release(self, child: _Child) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.processes and child.process.is_alive():
                self._idle.append(child)
                return
        child.close()

    def pids(self) -> list[int]:
        """The idle processes' ids (for tests and logs)."""
        with self._lock:
            return sorted(c.pid for c in self._idle if c.pid is not None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = list(self._idle)
            self._idle.clear()
        _close_all(idle)


def _close_all(children: list[_Child]) -> None:
    for c in list(children):
        c.close()
    children.clear()


class RemotePrepare:
    """A ``prepare(item, emit)`` for :func:`~video_assets.operators.batching.iter_overlapped` that runs the
    task in a decode process of ``pool`` (one per decode worker thread at a time). ``finalize``: per model
    stream, what the parent applies to a chunk before batching (the model's ``preprocess`` for raw frames)."""

    def __init__(self, pool: DecodeProcessPool, task: Callable, finalize: Sequence[Callable | None]):
        self.pool, self.finalize = pool, tuple(finalize)
        self.task_bytes = pickle.dumps(task)
        self.token = uuid.uuid4().hex

    def __call__(self, item, emit) -> Any:
        with emit.not_counted():  # starting a replacement process is not the video's time
            child = self.pool.acquire()
        try:
            meta = child.run(self.task_bytes, self.token, item, emit, self.finalize)
        except _Stuck:
            child.close(kill=True)
            raise RuntimeError("cancelled") from None
        except DecodeProcessError:
            child.close(kill=True)
            raise
        except BaseException:
            self.pool.release(child)  # the video failed; the process is fine
            raise
        self.pool.release(child)
        return meta


class DecodeProcessOwner:
    """Mixed into the operators: the ``decode_processes`` setting, its pool, and ``close()``/``with``."""

    decode_processes: int | None = None
    decode_resize: str | None = None  # "child" | "parent"; None: in the child on the CPU, else in the parent
    _decode_pool: DecodeProcessPool | None = None

    def resolved_decode_processes(self, device: str) -> int:
        """The processes a call uses: the setting, or the auto choice for ``device`` and this machine."""
        return DecodeSettings(decode_processes=self.decode_processes).processes_for(device)

    def in_processes(self, decode: SharedDecode, models: Sequence, loop: dict) -> dict:
        """The loop arguments ``loop`` of one call over ``decode`` (``models``: one per stage, in order), with
        ``decode``'s prepare step moved into decode processes when this call uses them (unchanged on threads)."""
        n = self.resolved_decode_processes(str(models[0].device))
        if n == 0:
            return loop
        raw = (self.decode_resize or ("child" if str(models[0].device) == "cpu" else "parent")) == "parent"
        pre = tuple(RawFrames().preprocess if raw else m.preprocessor.preprocess for m in models)
        finalize = tuple(m.preprocess if raw else None for m in models)
        slot_bytes = RAW_SLOT_BYTES if raw else max(
            _chunk_bytes(m.image_size, str(m.dtype).removeprefix("torch.")) for m in models)
        pool = self._decode_pool
        if pool is None or pool.processes != n or pool.slot_bytes != slot_bytes:
            if pool is not None:
                pool.close()
            pool = self._decode_pool = DecodeProcessPool(n, slot_bytes)
        pool.ensure(n)
        # each process's FFmpeg gets its share of the cores, as a decode thread does
        task = decode.for_processes(pre, decoder_threads_for(n)).prepare  # pickles without the models
        return {**loop, "prepare": RemotePrepare(pool, task, finalize), "decode_workers": n}

    def decode_pids(self) -> list[int]:
        """The ids of the idle decode processes (empty on the thread path)."""
        return self._decode_pool.pids() if self._decode_pool is not None else []

    def close(self) -> None:
        """Stop the decode processes (a later call starts new ones)."""
        pool, self._decode_pool = self._decode_pool, None
        if pool is not None:
            pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _chunk_bytes(image_size: int, dtype: str) -> int:
    """Bytes of one chunk of preprocessed frames (what a slot holds)."""
    import torch

    from video_assets.video import DEFAULT_CHUNK_FRAMES

    itemsize = torch.empty(0, dtype=getattr(torch, dtype)).element_size()
    return DEFAULT_CHUNK_FRAMES * 3 * image_size * image_size * itemsize
