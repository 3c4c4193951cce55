"""Overlap decoding with model work, and batch frames across videos.

A pool of decode workers opens, samples and preprocesses videos (PyAV and torch release the GIL, so threads
run in parallel) and emits chunks of preprocessed frames into a bounded queue; the calling thread gathers
frames of many videos into batches of exactly ``batch_size`` for the model and scatters the features back to
their videos. The queue bounds memory, so even a two-hour video never sits in memory whole: its candidates
stream through in chunks. A video that fails becomes an error outcome naming it; the others go on.

:func:`iter_overlapped` yields each video's outcome as soon as it is finished (in input order with a bounded
reorder buffer, or in completion order), so neither frames nor results pile up whatever the number of
videos; :func:`run_overlapped` is the list form. :class:`RunStats` counts what was held at once.

Inside, a run is two halves that share the bounded queue: ``_Decoders`` (the worker threads, the window, the
per-input time limit) and ``_Batcher`` (per-stream batches, features scattered back, outcomes and their
order); ``_consume`` is the calling thread's loop between them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch

from video_assets.errors import VideoAssetsError
from video_assets.progress import Progress

__all__ = ["Emitter", "Outcome", "Progress", "RunStats", "error_message", "hard_timeout", "iter_overlapped",
           "run_overlapped"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# prepare(item, emit) -> meta: calls emit(pixels) (or emit(pixels, stream) when there are several models) with
# (k, 3, S, S) chunks in frame order, returns what finish() needs besides the features. emit is an Emitter.
Prepare = Callable[[T, "Emitter"], Any]
Embed = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Outcome(Generic[R]):
    """The result for one input: ``value`` when it worked, else ``error`` (a message naming the input)."""

    value: R | None = None
    error: str | None = None


@dataclass
class RunStats:
    """What one run held at once (the pipeline's own counters; tests and benchmarks read them).

    Frames are counted from the moment a worker emits a chunk until the model has consumed them: in the
    bounded queue, blocked on putting into it, or waiting in a partial batch. Results are counted while they
    wait in the reorder buffer of an in-order :func:`iter_overlapped`.
    """

    chunks: int = 0  # chunks emitted
    frames: int = 0  # frames emitted
    largest_chunk: int = 0  # frames in the largest chunk
    frames_held: int = 0  # now
    peak_frames_held: int = 0
    results_waiting: int = 0  # now
    peak_results_waiting: int = 0
    peak_in_flight: int = 0  # items started and not yet delivered, at most


def error_message(item_desc: str, exc: BaseException) -> str:
    if isinstance(exc, VideoAssetsError) or str(exc).startswith(f"{item_desc}:"):
        return str(exc)  # already names the source
    return f"{item_desc}: {type(exc).__name__}: {exc}"


_CHUNK, _DONE, _FAILED = 0, 1, 2


def hard_timeout(timeout_sec: float | None) -> float | None:
    """When the batch stops waiting for a video: its limit plus 10 % and 2 s, so that the reader's own checks
    (which give the precise message and release the decoder) normally fire first."""
    return None if timeout_sec is None else timeout_sec * 1.1 + 2.0



def run_overlapped(items: Sequence[T], describe: Callable[[T], str], prepare: Prepare,
                   embed: Embed | Sequence[Embed], finish: Callable[[T, Any, Any], R],
                   batch_size: int | Sequence[int], decode_workers: int = 2, queue_chunks: int | None = None,
                   progress: Progress | None = None, item_timeout_sec: float | None = None,
                   stats: RunStats | None = None) -> list[Outcome[R]]:
    """:func:`iter_overlapped` collected into a list of outcomes in input order (no limit on how far ahead
    of the slowest video the workers run)."""
    outcomes: list[Outcome[R]] = [Outcome() for _ in range(len(items))]
    for pos, out in iter_overlapped(items, describe, prepare, embed, finish, batch_size, decode_workers,
                                    queue_chunks, progress, item_timeout_sec, ordered=False, stats=stats):
        outcomes[pos] = out
    return outcomes


def iter_overlapped(items: Sequence[T], describe: Callable[[T], str], prepare: Prepare,
                    embed: Embed | Sequence[Embed], finish: Callable[[T, Any, Any], R],
                    batch_size: int | Sequence[int], decode_workers: int = 2, queue_chunks: int | None = None,
                    progress: Progress | None = None, item_timeout_sec: float | None = None, *,
                    ordered: bool = True, window: int | None = None, stats: RunStats | None = None,
                    pending: Callable[[R], Future | None] | None = None) -> Iterator[tuple[int, Outcome[R]]]:
    """Run ``prepare`` in a worker pool and ``embed`` on cross-video batches; yield ``(input position,
    outcome)`` as each input is finished.

    ``embed`` maps a (b, 3, S, S) batch to (b, d) features; ``finish(item, meta, features)`` turns a video's
    features (n, d), in frame order, into its result. Exceptions in ``prepare`` or ``finish`` become that
    input's error outcome.

    ``ordered``: yield in input order (a finished input waits in a reorder buffer until those before it are
    out), else in completion order. ``window``: at most this many inputs are started and not yet yielded
    (None: no limit), which bounds the reorder buffer and the results held; a slow input then holds back at
    most ``window`` others. ``pending(result)``: a future the result still waits for (an image export); the
    outcome is yielded once it is done. Closing the generator early stops the workers.

    Several models fed by one decode: ``embed`` (and ``batch_size``, or one size for all) is a sequence, one per
    stream; ``prepare`` emits ``emit(pixels, stream)``, each stream is batched on its own, and ``finish`` gets a
    tuple of feature tensors, one per stream.

    ``item_timeout_sec``: the per-video wall-clock limit (``ReadLimits.timeout_sec``). The reader enforces it
    between packets and reads; this is the backstop for a ``prepare`` stuck inside one call that never returns
    (a decoder hanging on a crafted file). After :func:`hard_timeout` of that limit, not counting time spent
    waiting for the model, the batch stops waiting for the video, records a LimitExceededError-style message
    for it, starts a replacement worker and goes on. Python cannot kill a thread that is inside FFmpeg: the
    abandoned thread keeps its CPU and memory until that call returns (its results are then dropped); it is
    a daemon thread, so it does not keep the process alive at exit.
    """
    multi = isinstance(embed, (list, tuple))
    embeds: tuple[Embed, ...] = tuple(embed) if multi else (embed,)
    sizes = tuple(batch_size) if isinstance(batch_size, (list, tuple)) else (batch_size,) * len(embeds)
    if len(sizes) != len(embeds):
        raise ValueError(f"batch_size has {len(sizes)} entries for {len(embeds)} embed functions")
    for b in sizes:
        if b < 1:
            raise ValueError(f"batch_size must be >= 1, got {b}")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return _overlapped(items, describe, prepare, embeds, multi, finish, sizes, decode_workers, queue_chunks,
                       progress, item_timeout_sec, ordered, window, stats or RunStats(), pending)


def _overlapped(items, describe, prepare, embeds, multi, finish, sizes, decode_workers, queue_chunks,
                progress, item_timeout_sec, ordered, window, stats: RunStats, pending) -> Iterator[tuple[int, Outcome]]:
    n = len(items)
    if n == 0:
        return
    decoders = _Decoders(items, prepare, decode_workers, queue_chunks, window, stats,
                         hard_timeout(item_timeout_sec))
    batcher = _Batcher(items, describe, embeds, multi, finish, sizes, progress, pending, ordered, decoders)
    decoders.start(min(n, max(1, decode_workers)))
    try:
        yield from _consume(decoders, batcher, item_timeout_sec)
    finally:
        if progress:
            progress.close()  # a bar left open by a generator closed early
        decoders.close()


def _consume(decoders: _Decoders, batcher: _Batcher, item_timeout_sec: float | None
             ) -> Iterator[tuple[int, Outcome]]:
    """The calling thread's loop: deliver what may be yielded, run full batches, take the workers' messages."""
    n, items, describe = len(batcher.items), batcher.items, batcher.describe
    while batcher.finished < n or batcher.ready:
        decoders.note_results_waiting(len(batcher.ready))
        if batcher.can_deliver():
            yield from batcher.deliverable()  # the consumer runs here; workers go on up to the queue's bound
            continue
        batcher.settle_resolved()
        if batcher.can_deliver():
            continue
        for pos in decoders.overdue():
            batcher.fail(pos, f"{describe(items[pos])}: took longer than the limit timeout_sec="
                              f"{item_timeout_sec:g} and did not stop at a checkpoint (stuck in the decoder or a "
                              "read); abandoned")
            decoders.start_worker()  # the replacement for the worker left stuck
        if batcher.can_deliver() or batcher.finished >= n:
            continue
        full = batcher.full_stream()
        if full is not None:
            batcher.run_batch(full)
            continue
        if batcher.all_prepared() and batcher.has_frames():
            # every prepare() has ended (finished, or done and waiting for features): no frame will join
            # this partial batch, so waiting would idle both
            batcher.run_batch(batcher.fullest_stream())
            continue
        if batcher.has_frames() or batcher.awaiting:
            wait = 0.05
        else:
            wait = 0.25 if decoders.hard_limit is not None else None
        try:
            kind, pos, payload = decoders.queue.get(timeout=wait)
        except queue.Empty:
            # Nothing new arrived while a partial batch waits: run it rather than idle the model.
            if batcher.has_frames():
                batcher.run_batch(batcher.fullest_stream())
            continue
        if pos in decoders.abandoned:
            if kind == _CHUNK:
                decoders.hold(-payload[1].shape[0])  # chunks it sent before it was abandoned
            continue
        if kind == _CHUNK:
            batcher.add_chunk(pos, *payload)
        elif kind == _DONE:
            batcher.prepared(pos, payload)
        else:
            batcher.fail(pos, error_message(describe(items[pos]), payload))


class Emitter:
    """What ``prepare(item, emit)`` gets as ``emit``: ``emit(pixels)`` or ``emit(pixels, stream)`` queues a
    chunk for the model (blocking while the queue is full); :attr:`cancelled` says that the run no longer wants
    this input (the run stopped, or gave up on the input after its time limit), for a ``prepare`` that waits on
    something other than ``emit`` (a decode process) and must notice. Calling it once cancelled raises."""

    def __init__(self, decoders: _Decoders, pos: int):
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
                    d.queue.put((_CHUNK, pos, (stream, pixels)), timeout=0.5)
                    return
                except queue.Full:
                    continue
        finally:
            with d.lock:
                d.waited[pos] = d.waited.get(pos, 0.0) + time.monotonic() - t0
        d.hold(-k)  # never queued
        raise RuntimeError("cancelled")


class _Decoders:
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
            msg = (_FAILED, pos, e)
        else:
            msg = (_DONE, pos, meta)
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


class _Batcher:
    """The model side, run by the calling thread: per stream, the chunks waiting for its model, gathered into
    batches of exactly its batch size; per input, its features (scattered back from the batches), its meta
    once ``prepare`` ended, and its outcome until it may be yielded."""

    def __init__(self, items: Sequence, describe: Callable[[Any], str], embeds: tuple[Embed, ...], multi: bool,
                 finish: Callable, sizes: tuple[int, ...], progress: Progress | None,
                 pending: Callable[[Any], Future | None] | None, ordered: bool, decoders: _Decoders):
        self.items, self.describe, self.embeds, self.multi, self.finish = items, describe, embeds, multi, finish
        self.sizes, self.progress, self.pending, self.ordered = sizes, progress, pending, ordered
        self.decoders = decoders
        self.streams = range(len(embeds))
        self.chunks: list[list[tuple[int, torch.Tensor]]] = [[] for _ in self.streams]  # in arrival order
        self.frames = [0 for _ in self.streams]  # frames in `chunks`, per stream
        self.feats_of: dict[int, list[list[torch.Tensor]]] = {}  # input -> per stream, feature parts in order
        self.queued_of: dict[int, int] = {}  # frames of an input still in `chunks` (all streams)
        self.meta_of: dict[int, Any] = {}  # inputs whose prepare() finished, waiting for their last features
        self.awaiting: dict[int, Outcome] = {}  # finished inputs whose result waits for its `pending` future
        self.resolved: queue.SimpleQueue = queue.SimpleQueue()  # inputs whose future is done (its callback)
        self.ready: dict[int, Outcome] = {}  # final outcomes not yet yielded (in order: waiting for earlier ones)
        self.out_next = 0  # in order: the next position to yield
        self.finished = 0  # final outcomes so far

    # -- frames in ---------------------------------------------------------------------------------------------
    def add_chunk(self, pos: int, s: int, pixels: torch.Tensor) -> None:
        self.chunks[s].append((pos, pixels))
        self.frames[s] += pixels.shape[0]
        self.queued_of[pos] = self.queued_of.get(pos, 0) + pixels.shape[0]

    def prepared(self, pos: int, meta: Any) -> None:
        self.meta_of[pos] = meta
        if self.queued_of.get(pos, 0) == 0:
            self._complete(pos)

    def has_frames(self) -> bool:
        return any(self.frames)

    def full_stream(self) -> int | None:
        return next((s for s in self.streams if self.frames[s] >= self.sizes[s]), None)

    def fullest_stream(self) -> int:
        return max(self.streams, key=lambda s: self.frames[s])

    def all_prepared(self) -> bool:
        """Every prepare() has ended (its outcome final, or its meta here waiting for features)."""
        return self.finished + len(self.awaiting) + len(self.meta_of) == len(self.items)

    # -- the model ---------------------------------------------------------------------------------------------
    def run_batch(self, s: int) -> None:
        waiting, size = self.chunks[s], self.sizes[s]
        take_n, parts, owners = 0, [], []
        while waiting and take_n < size:
            pos, frames = waiting[0]
            k = min(size - take_n, frames.shape[0])
            parts.append(frames[:k])
            owners.append((pos, k))
            if k == frames.shape[0]:
                waiting.pop(0)
            else:
                waiting[0] = (pos, frames[k:])
            take_n += k
        self.frames[s] -= take_n
        feats = self.embeds[s](torch.cat(parts) if len(parts) > 1 else parts[0])
        self.decoders.hold(-take_n)
        offset = 0
        for pos, k in owners:
            self.feats_of.setdefault(pos, [[] for _ in self.streams])[s].append(feats[offset:offset + k])
            offset += k
            self.queued_of[pos] -= k
            if self.queued_of[pos] == 0 and pos in self.meta_of:
                self._complete(pos)

    # -- outcomes ----------------------------------------------------------------------------------------------
    def _complete(self, pos: int) -> None:
        self.queued_of.pop(pos, None)
        parts = self.feats_of.pop(pos, None) or [[] for _ in self.streams]
        feats = tuple(torch.cat(p) if p else torch.empty(0) for p in parts)
        out: Outcome = Outcome()
        try:
            out.value = self.finish(self.items[pos], self.meta_of.pop(pos), feats if self.multi else feats[0])
        except Exception as e:  # noqa: BLE001 - one bad video never fails the batch
            out.error = error_message(self.describe(self.items[pos]), e)
            log.warning("%s", out.error)
        fut = self.pending(out.value) if self.pending is not None and out.value is not None else None
        if fut is not None and not fut.done():
            self.awaiting[pos] = out
            fut.add_done_callback(lambda _f, pos=pos: self.resolved.put(pos))
        else:
            self._settle(pos, out)

    def fail(self, pos: int, error: str) -> None:
        """``pos`` failed before its features were complete: drop its frames and features."""
        for s in self.streams:
            dropped = sum(f.shape[0] for p, f in self.chunks[s] if p == pos)
            self.frames[s] -= dropped
            self.decoders.hold(-dropped)
            self.chunks[s][:] = [(p, f) for p, f in self.chunks[s] if p != pos]
        self.feats_of.pop(pos, None)
        self.queued_of.pop(pos, None)
        self.meta_of.pop(pos, None)
        log.warning("%s", error)
        self._settle(pos, Outcome(error=error))

    def _settle(self, pos: int, out: Outcome) -> None:
        self.finished += 1
        if self.progress:
            self.progress.step()
        self.ready[pos] = out

    def settle_resolved(self) -> None:
        """Outcomes whose `pending` future has completed since the last look."""
        while True:
            try:
                pos = self.resolved.get_nowait()
            except queue.Empty:
                return
            self._settle(pos, self.awaiting.pop(pos))

    def can_deliver(self) -> bool:
        return (self.out_next in self.ready) if self.ordered else bool(self.ready)

    def deliverable(self) -> Iterator[tuple[int, Outcome]]:
        """Take the outcomes that may be yielded now out of `ready` (and free the window for them)."""
        while True:
            if self.ordered:
                if self.out_next not in self.ready:
                    break
                pos = self.out_next
                self.out_next += 1
            elif self.ready:
                pos = next(iter(self.ready))
            else:
                break
            out = self.ready.pop(pos)
            self.decoders.delivered_one(len(self.ready))
            yield pos, out
