"""The decode side of the overlapped loop (:mod:`video_assets.operators.batching`): worker threads that run
``prepare`` on inputs in order, at most a window ahead of the consumer, and put each input's chunks and its
end on one bounded queue (the :class:`Emitter` is the ``emit`` they pass to ``prepare``); plus the per-input
time limit (when each running input started, how long it waited on the full queue, which the run gave up on).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from video_assets.operators.outcome import RunStats

# What the workers put on the queue: a chunk of an input's frames, its end (prepare's meta), or its failure.
CHUNK, DONE, FAILED = 0, 1, 2

# prepare(item, emit) -> meta: calls emit(pixels) (or emit(pixels, stream) when there are several models) with
# (k, 3, S, S) chunks in frame order, returns what finish() needs besides the features. emit is an Emitter.
Prepare = Callable[[Any, "Emitter"], Any]


class Emitter:
    """What ``prepare(item, emit)`` gets as ``emit``: ``emit(pixels)`` or ``emit(pixels, stream)`` queues a
    chunk for the model (blocking while the queue is full); :attr:`cancelled` says that the run no longer wants
    this input (the run stopped, or gave up on the input after its time limit), for a ``prepare`` that waits on
    something other than ``emit`` (a decode process) and must notice. Calling it once cancelled raises."""

    def __init__(self, decoders: Decoders, pos: int):
        self._decoders, self.pos = decoders, pos

    @property
    def cancelled(self) -> bool:
        return self._decoders.stop.is_set() or self.pos in self._decoders.abandoned

    @contextmanager
    def not_counted(self) -> Iterator[None]:
        """Time spent in this block does not count towards the input's time limit (like waiting on the queue)."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            with self._decoders.lock:
                self._decoders.waited[self.pos] = self._decoders.waited.get(self.pos, 0.0) + time.monotonic() - t0

    def __call__(self, pixels: torch.Tensor, stream: int = 0) -> None:
        d, pos, k = self._decoders, self.pos, pixels.shape[0]
        if not k:
            return
        with d.lock:
            d.stats.chunks += 1
            d.stats.frames += k
            d.stats.largest_chunk = max(d.stats.largest_chunk, k)
        d.hold(k)
        t0 = time.monotonic()
        try:
            while not self.cancelled:
                try:
                    d.queue.put((CHUNK, pos, (stream, pixels)), timeout=0.5)
                    return
                except queue.Full:
                    continue
        finally:
            with d.lock:
                d.waited[pos] = d.waited.get(pos, 0.0) + time.monotonic() - t0
        d.hold(-k)  # never queued
        raise RuntimeError("cancelled")


class Decoders:
    """The decode side: worker threads that take inputs in order (at most ``window`` ahead of the consumer), run
    ``prepare`` on each and put its chunks and its end (meta or exception) on one bounded queue; and the
    bookkeeping of the per-input time limit (when each running input started, how long it waited on the full
    queue, which inputs the run gave up on)."""

    def __init__(self, items: Sequence, prepare: Prepare, decode_workers: int, queue_chunks: int | None,
                 window: int | None, stats: RunStats, hard_limit: float | None):
        self.items, self.prepare, self.window, self.stats, self.hard_limit = items, prepare, window, stats, hard_limit
        self.queue: queue.Queue = queue.Queue(maxsize=queue_chunks or max(4, 4 * decode_workers))
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.can_start = threading.Condition(self.lock)  # workers wait on it while the window is full
        self.next_start = 0  # which input a worker starts next
        self.delivered = 0  # outcomes yielded so far
        self.started: dict[int, float] = {}  # input -> monotonic start of its prepare(), while it runs
        self.waited: dict[int, float] = {}  # input -> seconds its prepare() spent blocked on the full queue
        self.abandoned: set[int] = set()  # inputs the run stopped waiting for (timed out)
        self.running_in: dict[int, threading.Thread] = {}
        self.threads: list[threading.Thread] = []

    def start(self, workers: int) -> None:
        for _ in range(workers):
            self.start_worker()

    def start_worker(self) -> None:
        # daemon: a worker stuck inside FFmpeg must not keep the process alive
        t = threading.Thread(target=self._worker, name=f"decode-{len(self.threads)}", daemon=True)
        self.threads.append(t)
        t.start()

    def hold(self, k: int) -> None:
        """``k`` more frames held (negative: released)."""
        with self.lock:
            self.stats.frames_held += k
            self.stats.peak_frames_held = max(self.stats.peak_frames_held, self.stats.frames_held)

    def note_results_waiting(self, k: int) -> None:
        with self.lock:
            self.stats.results_waiting = k
            self.stats.peak_results_waiting = max(self.stats.peak_results_waiting, k)

    def delivered_one(self, results_waiting: int) -> None:
        """An outcome left the run: one more input may start."""
        with self.can_start:
            self.delivered += 1
            self.stats.results_waiting = results_waiting
            self.can_start.notify_all()

    def _take(self) -> int | None:
        n, window = len(self.items), self.window
        with self.can_start:
            while not self.stop.is_set() and self.next_start < n and window is not None and \
                    self.next_start >= self.delivered + window:
                self.can_start.wait(0.5)
            if self.stop.is_set() or self.next_start >= n:
                return None
            pos, self.next_start = self.next_start, self.next_start + 1
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.next_start - self.delivered)
            return pos

    def _worker(self) -> None:
        me = threading.current_thread()
        while not self.stop.is_set():
            pos = self._take()
            if pos is None:
                return
            self._work(pos)
            if me.name.endswith("-abandoned"):
                return  # a replacement worker took this one's place while it was stuck

    def _work(self, pos: int) -> None:
        with self.lock:
            self.started[pos] = time.monotonic()
            self.running_in[pos] = threading.current_thread()
        try:
            meta = self.prepare(self.items[pos], Emitter(self, pos))
        except BaseException as e:  # noqa: BLE001 - reported as this item's error
            msg = (FAILED, pos, e)
        else:
            msg = (DONE, pos, meta)
        with self.lock:
            self.started.pop(pos, None)
            self.running_in.pop(pos, None)
            self.waited.pop(pos, None)  # only running items are checked for overdue: nothing per item stays
            if pos in self.abandoned:
                return  # the run gave up on this item already: drop the late result
        while not self.stop.is_set():
            try:
                self.queue.put(msg, timeout=0.5)
                return
            except queue.Full:
                continue

    def overdue(self) -> list[int]:
        """The running inputs past the hard limit (not counting time blocked on the full queue), now abandoned:
        their workers are marked to leave when their call returns, and the caller starts replacements."""
        if self.hard_limit is None:
            return []
        now = time.monotonic()
        with self.lock:
            late = [p for p, t0 in self.started.items() if now - t0 - self.waited.get(p, 0.0) > self.hard_limit]
            for p in late:
                self.abandoned.add(p)
                self.started.pop(p, None)
                t = self.running_in.pop(p, None)
                if t is not None:
                    t.name += "-abandoned"  # it leaves when its call returns; a fresh worker takes its place
        return late

    def close(self) -> None:
        """Stop the workers and wait for those not stuck (an abandoned one is a daemon left to finish)."""
        self.stop.set()
        with self.can_start:
            self.can_start.notify_all()
        for t in self.threads:
            if not t.name.endswith("-abandoned"):
                t.join()
