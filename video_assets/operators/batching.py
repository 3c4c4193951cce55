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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

import torch

from video_assets.errors import VideoAssetsError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# prepare(item, emit) -> meta: calls emit(pixels) with (k, 3, S, S) chunks in frame order, returns what
# finish() needs besides the features.
Prepare = Callable[[T, Callable[[torch.Tensor], None]], Any]


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
    if isinstance(exc, VideoAssetsError):
        return str(exc)  # already names the source
    return f"{item_desc}: {type(exc).__name__}: {exc}"


_CHUNK, _DONE, _FAILED = 0, 1, 2


def run_overlapped(items: Sequence[T], describe: Callable[[T], str], prepare: Prepare,
                   embed: Callable[[torch.Tensor], torch.Tensor], finish: Callable[[T, Any, torch.Tensor], R],
                   batch_size: int, decode_workers: int = 2, queue_chunks: int | None = None,
                   progress: Progress | None = None) -> list[Outcome[R]]:
    """Run ``prepare`` in a worker pool and ``embed`` on cross-video batches; return outcomes in input order.

    ``embed`` maps a (b, 3, S, S) batch to (b, d) features; ``finish(item, meta, features)`` turns a video's
    features (n, d), in frame order, into its result. Exceptions in ``prepare`` or ``finish`` become that
    input's error outcome.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(items)
    outcomes: list[Outcome[R]] = [Outcome() for _ in range(n)]
    if n == 0:
        return outcomes
    q: queue.Queue = queue.Queue(maxsize=queue_chunks or max(4, 4 * decode_workers))
    stop = threading.Event()

    def work(pos: int) -> None:
        def emit(pixels: torch.Tensor) -> None:
            if pixels.shape[0]:
                while not stop.is_set():
                    try:
                        q.put((_CHUNK, pos, pixels), timeout=0.5)
                        return
                    except queue.Full:
                        continue
                raise RuntimeError("cancelled")

        try:
            meta = prepare(items[pos], emit)
        except BaseException as e:  # noqa: BLE001 - reported as this item's error
            q.put((_FAILED, pos, e))
        else:
            q.put((_DONE, pos, meta))

    pending: list[tuple[int, torch.Tensor]] = []  # chunks waiting for the model, in arrival order
    pending_frames = 0
    feats_of: dict[int, list[torch.Tensor]] = {}
    queued_of: dict[int, int] = {}  # frames of an item still in `pending`
    meta_of: dict[int, Any] = {}  # items whose prepare() finished, waiting for their last features
    finished = 0

    def complete(pos: int) -> None:
        nonlocal finished
        parts = feats_of.pop(pos, [])
        feats = torch.cat(parts) if parts else torch.empty(0)
        try:
            outcomes[pos].value = finish(items[pos], meta_of.pop(pos), feats)
        except Exception as e:  # noqa: BLE001 - one bad video never fails the batch
            outcomes[pos].error = error_message(describe(items[pos]), e)
            log.warning("%s", outcomes[pos].error)
        finished += 1
        if progress:
            progress.step()

    def run_batch() -> None:
        nonlocal pending_frames
        take, parts, owners = 0, [], []
        while pending and take < batch_size:
            pos, frames = pending[0]
            k = min(batch_size - take, frames.shape[0])
            parts.append(frames[:k])
            owners.append((pos, k))
            if k == frames.shape[0]:
                pending.pop(0)
            else:
                pending[0] = (pos, frames[k:])
            take += k
        pending_frames -= take
        feats = embed(torch.cat(parts) if len(parts) > 1 else parts[0])
        offset = 0
        for pos, k in owners:
            feats_of.setdefault(pos, []).append(feats[offset:offset + k])
            offset += k
            queued_of[pos] -= k
            if queued_of[pos] == 0 and pos in meta_of:
                complete(pos)

    with ThreadPoolExecutor(max_workers=max(1, decode_workers), thread_name_prefix="decode") as pool:
        try:
            for pos in range(n):
                pool.submit(work, pos)
            while finished < n:
                if pending_frames >= batch_size:
                    run_batch()
                    continue
                try:
                    kind, pos, payload = q.get(timeout=0.05 if pending_frames else None)
                except queue.Empty:
                    # Nothing new arrived while a partial batch waits: run it rather than idle the model.
                    if pending_frames:
                        run_batch()
                    continue
                if kind == _CHUNK:
                    pending.append((pos, payload))
                    pending_frames += payload.shape[0]
                    queued_of[pos] = queued_of.get(pos, 0) + payload.shape[0]
                elif kind == _DONE:
                    meta_of[pos] = payload
                    if queued_of.get(pos, 0) == 0:
                        complete(pos)
                else:
                    pending_frames -= sum(f.shape[0] for p, f in pending if p == pos)
                    pending[:] = [(p, f) for p, f in pending if p != pos]
                    feats_of.pop(pos, None)
                    queued_of.pop(pos, None)
                    outcomes[pos].error = error_message(describe(items[pos]), payload)
                    log.warning("%s", outcomes[pos].error)
                    finished += 1
                    if progress:
                        progress.step()
        finally:
            stop.set()
    return outcomes
