"""The model side of the overlapped loop (:mod:`video_assets.operators.batching`), run by the calling thread:
chunks gathered into batches of exactly the batch size per model stream, features scattered back to their
inputs, each input finished once its last features are in, and outcomes released in order or as they come."""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import torch

from video_assets.operators.decoders import Decoders
from video_assets.operators.outcome import Outcome, error_message
from video_assets.progress import Progress

log = logging.getLogger(__name__)

Embed = Callable[[torch.Tensor], torch.Tensor]


class Batcher:
    """The model side, run by the calling thread: per stream, the chunks waiting for its model, gathered into
    batches of exactly its batch size; per input, its features (scattered back from the batches), its meta
    once ``prepare`` ended, and its outcome until it may be yielded."""

    def __init__(self, items: Sequence, describe: Callable[[Any], str], embeds: tuple[Embed, ...], multi: bool,
                 finish: Callable, sizes: tuple[int, ...], progress: Progress | None,
                 pending: Callable[[Any], Future | None] | None, ordered: bool, decoders: Decoders):
        self.items, self.describe, self.embeds, self.multi, self.finish = items, describe, embeds, multi, finish
        self.sizes, self.progress, self.pending, self.ordered = sizes, progress, pending, ordered
        self.decoders = decoders
        self.streams = range(len(embeds))
        self.chunks: list[list[tuple[int, torch.Tensor]]] = [[] for _ in self.streams]  # in arrival order
        self.frames = [0 for _ in self.streams]  # frames in `chunks`, per stream
        # per stream, the array the last batch was gathered into, when its embed allows reusing it (see run_batch)
        self.batch_array: list[torch.Tensor | None] = [None for _ in self.streams]
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
        batch = self._gather(s, parts)
        feats = self.embeds[s](batch)
        # A batch gathered from several chunks (videos of a few frames each: every batch) is written into the
        # same array each time when the embed says it no longer reads it (FeatureSlabs.input_reusable). A new
        # array per batch (19 MB at 32 x 3 x 224 x 224 float32) in the model thread's heap, with the batch's
        # small lasting allocations landing after it, left holes there that grew with the videos: RSS +0.2 MB
        # per video over 1,000 videos of 10 frames while the bytes in use stayed flat.
        self.batch_array[s] = batch if len(parts) > 1 and getattr(self.embeds[s], "input_reusable", False) else None
        self.decoders.hold(-take_n)
        offset = 0
        for pos, k in owners:
            part = feats[offset:offset + k]
            self.feats_of.setdefault(pos, [[] for _ in self.streams])[s].append(part)
            self._kept(part.nbytes)
            offset += k
            self.queued_of[pos] -= k
            if self.queued_of[pos] == 0 and pos in self.meta_of:
                self._complete(pos)

    def _gather(self, s: int, parts: list[torch.Tensor]) -> torch.Tensor:
        if len(parts) == 1:
            return parts[0]
        n, first, array = sum(p.shape[0] for p in parts), parts[0], self.batch_array[s]
        if (array is None or array.shape != (n, *first.shape[1:]) or array.dtype != first.dtype
                or array.device != first.device):
            return torch.cat(parts)
        return torch.cat(parts, out=array)

    # -- outcomes ----------------------------------------------------------------------------------------------
    def _kept(self, nbytes: int) -> None:
        stats = self.decoders.stats
        stats.kept_bytes += nbytes
        stats.peak_kept_bytes = max(stats.peak_kept_bytes, stats.kept_bytes)

    def _drop_kept(self, pos: int) -> list[list[torch.Tensor]]:
        parts = self.feats_of.pop(pos, None) or [[] for _ in self.streams]
        self._kept(-sum(p.nbytes for stream in parts for p in stream))
        return parts

    def _complete(self, pos: int) -> None:
        self.queued_of.pop(pos, None)
        parts = self._drop_kept(pos)
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
        self._drop_kept(pos)
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
