"""Overlap decoding with model work, and batch frames across videos.

A pool of decode workers opens, samples and preprocesses videos (PyAV and torch release the GIL, so threads
run in parallel) and emits chunks of preprocessed frames into a bounded queue; the calling thread gathers
frames of many videos into batches of exactly ``batch_size`` for the model and scatters the features back to
their videos. The queue bounds memory, so even a two-hour video never sits in memory whole: its candidates
stream through in chunks. A video that fails becomes an error outcome naming it; the others go on.

:func:`iter_overlapped` yields each video's outcome as soon as it is finished (in input order with a bounded
reorder buffer, or in completion order), so neither frames nor results pile up whatever the number of
videos; :func:`run_overlapped` is the list form. :class:`RunStats` counts what was held at once.

Inside, a run is two halves that share the bounded queue: :class:`~video_assets.operators.decoders.Decoders`
(the worker threads, the window, the per-input time limit) and :class:`~video_assets.operators.batcher.Batcher`
(per-stream batches, features scattered back, outcomes and their order); ``_consume`` here is the calling
thread's loop between them. :mod:`video_assets.operators.outcome` holds what a run reports.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

# Re-exported: the loop's public names, wherever they are defined.
from video_assets.operators.batcher import Batcher, Embed
from video_assets.operators.decoders import CHUNK, DONE, Decoders, Emitter, Prepare
from video_assets.operators.outcome import Outcome, RunStats, error_message, hard_timeout
from video_assets.progress import Progress

__all__ = ["Emitter", "Outcome", "Progress", "RunStats", "error_message", "hard_timeout", "iter_overlapped",
           "run_overlapped"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


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
    decoders = Decoders(items, prepare, decode_workers, queue_chunks, window, stats,
                         hard_timeout(item_timeout_sec))
    batcher = Batcher(items, describe, embeds, multi, finish, sizes, progress, pending, ordered, decoders)
    decoders.start(min(n, max(1, decode_workers)))
    try:
        yield from _consume(decoders, batcher, item_timeout_sec)
    finally:
        if progress:
            progress.close()  # a bar left open by a generator closed early
        decoders.close()


def _consume(decoders: Decoders, batcher: Batcher, item_timeout_sec: float | None
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
            if kind == CHUNK:
                decoders.hold(-payload[1].shape[0])  # chunks it sent before it was abandoned
            continue
        if kind == CHUNK:
            batcher.add_chunk(pos, *payload)
        elif kind == DONE:
            batcher.prepared(pos, payload)
        else:
            batcher.fail(pos, error_message(describe(items[pos]), payload))
