"""Overlap decoding with model work, and batch frames across videos.

A pool of decode workers opens, samples and preprocesses videos (PyAV and torch release the GIL, so threads
run in parallel) and emits chunks of preprocessed frames into a bounded queue; the calling thread gathers
frames of many videos into batches of exactly ``batch_size`` for the model and scatters the features back to
their videos. The queue bounds memory, so even a two-hour video never sits in memory whole: its candidates
stream through in chunks. A video that fails becomes an error outcome naming it; the others go on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

import torch

from video_assets.errors import VideoAssetsError

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


class Progress:
    """Logs videos done / total, videos/s and ETA at a steady interval (and once at the end)."""

    def __init__(self, total: int, label: str, every_sec: float = 10.0,
                 callback: Callable[[int, int, float], None] | None = None):
        self.total, self.label, self.every = total, label, every_sec
        self.done = 0
        self.start = self.last = time.monotonic()
        self.callback = callback

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info("%s: %d/%d videos, %.2f videos/s, ETA %.0fs", self.label, self.done, self.total, rate, eta)
            if self.callback:
                self.callback(self.done, self.total, rate)


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
                   progress: Progress | None = None,
                   item_timeout_sec: float | None = None) -> list[Outcome[R]]:
    """Run ``prepare`` in a worker pool and ``embed`` on cross-video batches; return outcomes in input order.

    ``embed`` maps a (b, 3, S, S) batch to (b, d) features; ``finish(item, meta, features)`` turns a video's
    features (n, d), in frame order, into its result. Exceptions in ``prepare`` or ``finish`` become that
    input's error outcome.

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
    streams = range(len(embeds))
    n = len(items)
    outcomes: list[Outcome[R]] = [Outcome() for _ in range(n)]
    if n == 0:
        return outcomes
    q: queue.Queue = queue.Queue(maxsize=queue_chunks or max(4, 4 * decode_workers))
    stop = threading.Event()
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for pos in range(n):
        todo.put(pos)
    lock = threading.Lock()
    started: dict[int, float] = {}  # item -> monotonic start of its prepare(), while it runs
    waited: dict[int, float] = {}  # item -> seconds its prepare() spent blocked on the full queue
    abandoned: set[int] = set()  # items the batch stopped waiting for (timed out)
    running_in: dict[int, threading.Thread] = {}

    def work(pos: int) -> None:
        def emit(pixels: torch.Tensor, stream: int = 0) -> None:
            if pixels.shape[0]:
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
            try:
                pos = todo.get_nowait()
            except queue.Empty:
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
    pending: list[list[tuple[int, torch.Tensor]]] = [[] for _ in streams]
    pending_frames = [0 for _ in streams]
    feats_of: dict[int, list[list[torch.Tensor]]] = {}  # item -> per stream, feature parts in frame order
    queued_of: dict[int, int] = {}  # frames of an item still in `pending` (all streams)
    meta_of: dict[int, Any] = {}  # items whose prepare() finished, waiting for their last features
    finished = 0

    def complete(pos: int) -> None:
        nonlocal finished
        parts = feats_of.pop(pos, None) or [[] for _ in streams]
        feats = tuple(torch.cat(p) if p else torch.empty(0) for p in parts)
        try:
            outcomes[pos].value = finish(items[pos], meta_of.pop(pos), feats if multi else feats[0])
        except Exception as e:  # noqa: BLE001 - one bad video never fails the batch
            outcomes[pos].error = error_message(describe(items[pos]), e)
            log.warning("%s", outcomes[pos].error)
        finished += 1
        if progress:
            progress.step()

    def run_batch(s: int) -> None:
        waiting, size = pending[s], sizes[s]
        take, parts, owners = 0, [], []
        while waiting and take < size:
            pos, frames = waiting[0]
            k = min(size - take, frames.shape[0])
            parts.append(frames[:k])
            owners.append((pos, k))
            if k == frames.shape[0]:
                waiting.pop(0)
            else:
                waiting[0] = (pos, frames[k:])
            take += k
        pending_frames[s] -= take
        feats = embeds[s](torch.cat(parts) if len(parts) > 1 else parts[0])
        offset = 0
        for pos, k in owners:
            feats_of.setdefault(pos, [[] for _ in streams])[s].append(feats[offset:offset + k])
            offset += k
            queued_of[pos] -= k
            if queued_of[pos] == 0 and pos in meta_of:
                complete(pos)

    def fail(pos: int, error: str) -> None:
        nonlocal finished
        for s in streams:
            pending_frames[s] -= sum(f.shape[0] for p, f in pending[s] if p == pos)
            pending[s][:] = [(p, f) for p, f in pending[s] if p != pos]
        feats_of.pop(pos, None)
        queued_of.pop(pos, None)
        meta_of.pop(pos, None)
        outcomes[pos].error = error
        log.warning("%s", error)
        finished += 1
        if progress:
            progress.step()

    def abandon_overdue() -> None:
        for pos in overdue():
            fail(pos, f"{describe(items[pos])}: took longer than the limit timeout_sec={item_timeout_sec:g} "
                      "and did not stop at a checkpoint (stuck in the decoder or a read); abandoned")
            start_worker()

    for _ in range(min(n, max(1, decode_workers))):
        start_worker()
    try:
        while finished < n:
            abandon_overdue()
            if finished >= n:
                break
            full = [s for s in streams if pending_frames[s] >= sizes[s]]
            if full:
                run_batch(full[0])
                continue
            if finished + len(meta_of) == n and any(pending_frames):
                # every prepare() has ended (finished, or done and waiting for features): no frame will join
                # this partial batch, so waiting would idle both
                run_batch(max(streams, key=lambda s: pending_frames[s]))
                continue
            try:
                wait = 0.05 if any(pending_frames) else (0.25 if hard_limit is not None else None)
                kind, pos, payload = q.get(timeout=wait)
            except queue.Empty:
                # Nothing new arrived while a partial batch waits: run it rather than idle the model.
                if any(pending_frames):
                    run_batch(max(streams, key=lambda s: pending_frames[s]))
                continue
            if pos in abandoned:
                continue  # chunks it sent before it was abandoned
            if kind == _CHUNK:
                s, pixels = payload
                pending[s].append((pos, pixels))
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
        for t in threads:
            if not t.name.endswith("-abandoned"):
                t.join()
    return outcomes
