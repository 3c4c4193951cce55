"""Overlap decoding with model work, and batch frames across videos.

A pool of decode workers opens, samples and preprocesses videos (PyAV and torch release the GIL, so threads
run in parallel) and emits chunks of preprocessed frames into a bounded queue; the calling thread gathers
frames of many videos into batches of exactly ``batch_size`` for the model and scatters the features back to
their videos. The queue bounds memory, so even a two-hour video never sits in memory whole: its candidates
stream through in chunks. A video that fails becomes an error outcome naming it; the others go on.

:func:`iter_overlapped` yields each video's outcome as soon as it is finished (in input order with a bounded
reorder buffer, or in completion order), so neither frames nor results pile up whatever the number of
videos; :func:`run_overlapped` is the list form. :class:`RunStats` counts what was held at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch

from video_assets.errors import VideoAssetsError
from video_assets.progress import Progress

__all__ = ["Outcome", "Progress", "RunStats", "error_message", "hard_timeout", "iter_overlapped",
           "run_overlapped"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# prepare(item, emit) -> meta: calls emit(pixels) (or emit(pixels, stream) when there are several models) with
# (k, 3, S, S) chunks in frame order, returns what finish() needs besides the features.
Prepare = Callable[[T, Callable[..., None]], Any]
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
    streams = range(len(embeds))
    n = len(items)
    if n == 0:
        return
    q: queue.Queue = queue.Queue(maxsize=queue_chunks or max(4, 4 * decode_workers))
    stop = threading.Event()
    lock = threading.Lock()
    # Which input a worker starts next; with a window, workers wait until the consumer has taken enough.
    can_start = threading.Condition(lock)
    next_start = 0
    delivered = 0  # outcomes yielded so far
    started: dict[int, float] = {}  # item -> monotonic start of its prepare(), while it runs
    waited: dict[int, float] = {}  # item -> seconds its prepare() spent blocked on the full queue
    abandoned: set[int] = set()  # items the batch stopped waiting for (timed out)
    running_in: dict[int, threading.Thread] = {}

    def take() -> int | None:
        nonlocal next_start
        with can_start:
            while not stop.is_set() and next_start < n and window is not None and \
                    next_start >= delivered + window:
                can_start.wait(0.5)
            if stop.is_set() or next_start >= n:
                return None
            pos, next_start = next_start, next_start + 1
            stats.peak_in_flight = max(stats.peak_in_flight, next_start - delivered)
            return pos

    def held(k: int) -> None:
        with lock:
            stats.frames_held += k
            stats.peak_frames_held = max(stats.peak_frames_held, stats.frames_held)

    def work(pos: int) -> None:
        def emit(pixels: torch.Tensor, stream: int = 0) -> None:
            k = pixels.shape[0]
            if k:
                with lock:
                    stats.chunks += 1
                    stats.frames += k
                    stats.largest_chunk = max(stats.largest_chunk, k)
                held(k)
                t0 = time.monotonic()
                try:
                    while not stop.is_set() and pos not in abandoned:
                        try:
                            q.put((_CHUNK, pos, (stream, pixels)), timeout=0.5)
                            return
                        except queue.Full:
                            continue
                finally:
                    with lock:
                        waited[pos] = waited.get(pos, 0.0) + time.monotonic() - t0
                held(-k)  # never queued
                raise RuntimeError("cancelled")

        with lock:
            started[pos] = time.monotonic()
            running_in[pos] = threading.current_thread()
        try:
            meta = prepare(items[pos], emit)
        except BaseException as e:  # noqa: BLE001 - reported as this item's error
            msg = (_FAILED, pos, e)
        else:
            msg = (_DONE, pos, meta)
        with lock:
            started.pop(pos, None)
            running_in.pop(pos, None)
            waited.pop(pos, None)  # only running items are checked for overdue: nothing per item stays
            if pos in abandoned:
                return  # the batch gave up on this item already: drop the late result
        while not stop.is_set():
            try:
                q.put(msg, timeout=0.5)
                return
            except queue.Full:
                continue

    def worker() -> None:
        me = threading.current_thread()
        while not stop.is_set():
            pos = take()
            if pos is None:
                return
            work(pos)
            if me.name.endswith("-abandoned"):
                return  # a replacement worker took this one's place while it was stuck

    threads: list[threading.Thread] = []

    def start_worker() -> None:
        # daemon: a worker stuck inside FFmpeg must not keep the process alive
        t = threading.Thread(target=worker, name=f"decode-{len(threads)}", daemon=True)
        threads.append(t)
        t.start()

    hard_limit = hard_timeout(item_timeout_sec)

    def overdue() -> list[int]:
        if hard_limit is None:
            return []
        now = time.monotonic()
        with lock:
            late = [p for p, t0 in started.items() if now - t0 - waited.get(p, 0.0) > hard_limit]
            for p in late:
                abandoned.add(p)
                started.pop(p, None)
                t = running_in.pop(p, None)
                if t is not None:
                    t.name += "-abandoned"  # it leaves when its call returns; a fresh worker takes its place
        return late

    # per stream: chunks waiting for its model, in arrival order
    pending_chunks: list[list[tuple[int, torch.Tensor]]] = [[] for _ in streams]
    pending_frames = [0 for _ in streams]
    feats_of: dict[int, list[list[torch.Tensor]]] = {}  # item -> per stream, feature parts in frame order
    queued_of: dict[int, int] = {}  # frames of an item still in `pending_chunks` (all streams)
    meta_of: dict[int, Any] = {}  # items whose prepare() finished, waiting for their last features
    awaiting: dict[int, Outcome] = {}  # finished items whose result waits for its `pending` future
    resolved: queue.SimpleQueue = queue.SimpleQueue()  # items whose future is done (from its callback)
    ready: dict[int, Outcome] = {}  # final outcomes not yet yielded (in order: waiting for earlier ones)
    out_next = 0  # in order: the next position to yield
    finished = 0  # final outcomes so far

    def settle(pos: int, out: Outcome) -> None:
        nonlocal finished
        finished += 1
        if progress:
            progress.step()
        ready[pos] = out

    def complete(pos: int) -> None:
        queued_of.pop(pos, None)
        parts = feats_of.pop(pos, None) or [[] for _ in streams]
        feats = tuple(torch.cat(p) if p else torch.empty(0) for p in parts)
        out: Outcome = Outcome()
        try:
            out.value = finish(items[pos], meta_of.pop(pos), feats if multi else feats[0])
        except Exception as e:  # noqa: BLE001 - one bad video never fails the batch
            out.error = error_message(describe(items[pos]), e)
            log.warning("%s", out.error)
        fut = pending(out.value) if pending is not None and out.value is not None else None
        if fut is not None and not fut.done():
            awaiting[pos] = out
            fut.add_done_callback(lambda _f, pos=pos: resolved.put(pos))
        else:
            settle(pos, out)

    def run_batch(s: int) -> None:
        waiting, size = pending_chunks[s], sizes[s]
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
        pending_frames[s] -= take_n
        feats = embeds[s](torch.cat(parts) if len(parts) > 1 else parts[0])
        held(-take_n)
        offset = 0
        for pos, k in owners:
            feats_of.setdefault(pos, [[] for _ in streams])[s].append(feats[offset:offset + k])
            offset += k
            queued_of[pos] -= k
            if queued_of[pos] == 0 and pos in meta_of:
                complete(pos)

    def fail(pos: int, error: str) -> None:
        for s in streams:
            dropped = sum(f.shape[0] for p, f in pending_chunks[s] if p == pos)
            pending_frames[s] -= dropped
            held(-dropped)
            pending_chunks[s][:] = [(p, f) for p, f in pending_chunks[s] if p != pos]
        feats_of.pop(pos, None)
        queued_of.pop(pos, None)
        meta_of.pop(pos, None)
        log.warning("%s", error)
        settle(pos, Outcome(error=error))

    def abandon_overdue() -> None:
        for pos in overdue():
            fail(pos, f"{describe(items[pos])}: took longer than the limit timeout_sec={item_timeout_sec:g} "
                      "and did not stop at a checkpoint (stuck in the decoder or a read); abandoned")
            start_worker()

    def can_deliver() -> bool:
        return (out_next in ready) if ordered else bool(ready)

    def deliverable() -> Iterator[tuple[int, Outcome]]:
        """Take the outcomes that may be yielded now out of `ready` (and free the window for them)."""
        nonlocal out_next, delivered
        while True:
            if ordered:
                if out_next not in ready:
                    break
                pos = out_next
                out_next += 1
            elif ready:
                pos = next(iter(ready))
            else:
                break
            out = ready.pop(pos)
            with can_start:
                delivered += 1
                stats.results_waiting = len(ready)
                can_start.notify_all()
            yield pos, out

    for _ in range(min(n, max(1, decode_workers))):
        start_worker()
    try:
        while finished < n or ready:
            with lock:
                stats.results_waiting = len(ready)
                stats.peak_results_waiting = max(stats.peak_results_waiting, len(ready))
            if can_deliver():
                yield from deliverable()  # the consumer runs here; workers go on up to the queue's bound
                continue
            while True:
                try:
                    pos = resolved.get_nowait()
                except queue.Empty:
                    break
                settle(pos, awaiting.pop(pos))
            if can_deliver():
                continue
            abandon_overdue()
            if can_deliver() or finished >= n:
                continue
            full = [s for s in streams if pending_frames[s] >= sizes[s]]
            if full:
                run_batch(full[0])
                continue
            if finished + len(awaiting) + len(meta_of) == n and any(pending_frames):
                # every prepare() has ended (finished, or done and waiting for features): no frame will join
                # this partial batch, so waiting would idle both
                run_batch(max(streams, key=lambda s: pending_frames[s]))
                continue
            try:
                if any(pending_frames) or awaiting:
                    wait = 0.05
                else:
                    wait = 0.25 if hard_limit is not None else None
                kind, pos, payload = q.get(timeout=wait)
            except queue.Empty:
                # Nothing new arrived while a partial batch waits: run it rather than idle the model.
                if any(pending_frames):
                    run_batch(max(streams, key=lambda s: pending_frames[s]))
                continue
            if pos in abandoned:
                if kind == _CHUNK:
                    held(-payload[1].shape[0])  # chunks it sent before it was abandoned
                continue
            if kind == _CHUNK:
                s, pixels = payload
                pending_chunks[s].append((pos, pixels))
                pending_frames[s] += pixels.shape[0]
                queued_of[pos] = queued_of.get(pos, 0) + pixels.shape[0]
            elif kind == _DONE:
                meta_of[pos] = payload
                if queued_of.get(pos, 0) == 0:
                    complete(pos)
            else:
                fail(pos, error_message(describe(items[pos]), payload))
    finally:
        stop.set()
        if progress:
            progress.close()  # a bar left open by a generator closed early
        with can_start:
            can_start.notify_all()
        for t in threads:
            if not t.name.endswith("-abandoned"):
                t.join()
