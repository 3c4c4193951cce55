"""The stage interface: one model's work on a decoded video, and N stages over one decode of each video.

A :class:`Stage` says

- which frame positions it needs from an open video (:meth:`Stage.positions`);
- how it consumes the decoded frames: :meth:`Stage.start` makes the video's :class:`StageState`, which
  gathers the stage's frames into chunks and emits each chunk, preprocessed, to the stage's model stream;
  :meth:`Stage.meta` turns that state and the stage's own :class:`DecodeReport` into what the model side
  needs besides the features;
- what it keeps of each frame's features until the video's last frame is in (:meth:`Stage.per_frame`: the
  features, or a stage's score per frame, so that a video held at every-frame rates costs a few bytes a frame);
- how it finishes: :meth:`Stage.finish` ``(item, meta, kept)`` runs where the model is (it may start an
  image export, :meth:`Stage.pending`), and :meth:`Stage.result` makes the stage's typed result of one video.

:class:`SharedDecode` runs any number of stages over one decode: each video is opened once, the union of the
stages' positions is decoded in one ascending pass, and every frame goes to the stages that asked for it.
Each stage gets exactly what a pass of its own would have reported (truncation and warnings for its own
positions); one stage failing does not fail the others; a decode error fails them all. An operator is one
stage in a :class:`SharedDecode`; the shared-decode operator is two. Its ``prepare`` / ``finish`` are the
overlapped loop's (:mod:`video_assets.operators.batching`).

Pickling: a stage and a :class:`SharedDecode` pickle without any model (a stage holds a small preprocessing
callable, :func:`preprocessor`), so the decode side can run in another process. What only the model side
needs (text features, an export pool) is named in :attr:`Stage.parent_only` and left out of the pickle:
:meth:`Stage.finish` runs on the original object.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from video_assets.errors import VideoSourceError
from video_assets.operators.batching import Outcome, RunStats, error_message, iter_overlapped, run_overlapped
from video_assets.operators.common import VideoInput, VideoOpener, default_window
from video_assets.operators.slabs import FeatureSlabs
from video_assets.progress import Progress
from video_assets.video import DEFAULT_CHUNK_FRAMES, FrameBuffer, VideoReader
from video_assets.video.reader import missing_frames_warning
from video_assets.video.sampler import frame_rgb

__all__ = ["DecodeReport", "SharedDecode", "Stage", "StageState", "decode_stages", "preprocessor"]

log = logging.getLogger(__name__)

Emit = Callable[[torch.Tensor], None]
Preprocess = Callable[[np.ndarray], torch.Tensor]


def preprocessor(model) -> Preprocess:
    """The model's preprocessing as a picklable callable (no weights): uint8 frames -> normalised pixels."""
    return model.preprocessor.preprocess


@dataclass(frozen=True)
class DecodeReport:
    """What a decode of only one stage's positions would have reported: the reader's truncation and warnings
    (those of opening the video, and of the fetch when the stage's own frames were missing)."""

    truncated: bool
    warnings: tuple[str, ...]


class StageState:
    """One video's decode-side state for one stage: its positions, the chunk being filled, its failure."""

    def __init__(self, stage: Stage, reader: VideoReader, positions: np.ndarray):
        self.stage, self.reader = stage, reader
        self.positions = np.asarray(positions, dtype=np.int64)
        self.wanted = set(self.positions.tolist())
        # reuse: each chunk is preprocessed (into a new tensor) before the next frame is added, so one array
        # serves every chunk (a fresh 88 MB array per 720p chunk was an mmap and page faults each time)
        self.buffer = FrameBuffer(reader, stage.chunk_frames, len(self.positions), reuse=True)
        self.error: Exception | None = None

    @property
    def got(self) -> list[int]:
        """The positions consumed so far, in order."""
        return self.buffer.indices

    def add(self, pos: int, rgb: np.ndarray, emit: Emit) -> None:
        chunk = self.buffer.add(pos, rgb)
        if chunk is not None:
            emit(self.stage.preprocess(chunk.frames))

    def flush(self, emit: Emit) -> None:
        chunk = self.buffer.flush()
        if chunk is not None:
            emit(self.stage.preprocess(chunk.frames))


class Stage(ABC):
    """One model's work on one video (see the module docstring). Subclasses set ``preprocess`` (a picklable
    callable, :func:`preprocessor`) and implement :meth:`positions`, :meth:`meta`, :meth:`finish` and
    :meth:`result`."""

    name: str = "stage"
    chunk_frames: int = DEFAULT_CHUNK_FRAMES  # frames per preprocessed chunk: bounds memory per video
    preprocess: Preprocess
    parent_only: tuple[str, ...] = ()  # attributes only the model side uses: not pickled

    @abstractmethod
    def positions(self, reader: VideoReader) -> np.ndarray:
        """The frame positions (ascending, 0-based) this stage needs from an open video."""

    def start(self, reader: VideoReader) -> StageState:
        """The video's decode-side state (raises when the stage cannot use this video)."""
        return StageState(self, reader, self.positions(reader))

    @abstractmethod
    def meta(self, state: StageState, report: DecodeReport) -> Any:
        """After the decode (the last chunk emitted): what :meth:`finish` needs besides the features
        (picklable; raises when the stage cannot finish this video)."""

    def per_frame(self, features: torch.Tensor) -> torch.Tensor:
        """The model side, per batch: what is kept of each frame's features ``(b, d)`` until the video is
        finished (a row per frame). Default: the features themselves."""
        return features

    @abstractmethod
    def finish(self, item: VideoInput, meta: Any, features: torch.Tensor) -> Any:
        """The model side: the video's kept rows (:meth:`per_frame`) ``(n, ...)``, in frame order, into the
        stage's value."""

    def pending(self, value: Any) -> Future | None:
        """A future the value still waits for (an image export), or None."""
        return None

    @abstractmethod
    def result(self, item: VideoInput, outcome: Outcome) -> Any:
        """The typed result of one video from its outcome (the value of :meth:`finish`, or an error)."""

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for name in self.parent_only:
            state[name] = None
        return state


def _attempt(fn: Callable[[], Any]) -> tuple[Any, Exception | None]:
    try:
        return fn(), None
    except Exception as e:  # noqa: BLE001 - one stage's failure must not fail the others
        return None, e


def decode_stages(reader: VideoReader, stages: Sequence[Stage], emit: Callable[..., None],
                  fetch: Callable[[np.ndarray], Iterable[tuple[int, Any]]] | None = None,
                  to_rgb: Callable[[Any], Any] | None = None) -> list[Any]:
    """Decode the union of the stages' positions from ``reader`` once; ``emit(pixels, stream)`` gets stage
    ``stream``'s chunks. Returns per stage its :meth:`Stage.meta`, or the exception its own pass would have
    raised. A decode error (the fetch itself fails) raises: every stage's own pass would have failed on it.

    ``fetch(union)`` yields ``(position, frame)`` in ascending order and ``to_rgb(frame)`` makes a frame the
    ``(H, W, 3)`` uint8 RGB pixels a stage copies (called only for frames a stage takes); default: the reader's
    ``fetch`` and :func:`~video_assets.video.sampler.frame_rgb`. Another decoder passes its own, e.g. a GPU
    decoder's uint8 torch tensors (the stages' chunks are then tensors on that device); warnings of the reader's
    fetch (if it is used) are shared out as usual."""
    opened_truncated, opened_warnings = reader.truncated, list(reader.warnings)
    out: list[Any] = [None] * len(stages)
    states: list[StageState | None] = []
    for i, stage in enumerate(stages):
        state, out[i] = _attempt(lambda stage=stage: stage.start(reader))
        states.append(state)
    live = [i for i, st in enumerate(states) if st is not None]
    emits = [partial(emit, stream=i) for i in range(len(stages))]
    union = (np.unique(np.concatenate([states[i].positions for i in live])) if live
             else np.empty(0, np.int64))
    got: set[int] = set()
    stopped = False
    fetch = fetch or partial(reader.fetch, rgb=False)
    to_rgb = to_rgb or partial(frame_rgb, reader)
    for pos, frame in fetch(union):
        got.add(pos)
        takers = [i for i in live if states[i].error is None and pos in states[i].wanted]
        if not takers:
            continue
        rgb = to_rgb(frame)  # a view: each stage copies it into its own chunk
        for i in takers:
            try:
                states[i].add(pos, rgb, emits[i])
            except Exception as e:  # noqa: BLE001 - this stage fails alone, as in its own pass
                states[i].error = e
        if all(states[i].error is not None for i in live):
            stopped = True  # nobody needs the rest
            break
    # fetch() reported on the union; give each stage what a pass of its own would have reported.
    fetched = reader.warnings[len(opened_warnings):]
    union_missing = not stopped and bool(set(union.tolist()) - got)
    if union_missing:
        fetched = fetched[:-1]  # fetch's summary of the union's missing frames
    for i in live:
        state = states[i]
        if state.error is not None:
            out[i] = state.error
            continue
        missing = sorted(state.wanted - got)
        if missing:
            warnings = opened_warnings + fetched + [missing_frames_warning(missing)]
        else:  # the fetch's other warnings are this stage's when nobody missed a frame
            warnings = opened_warnings + ([] if union_missing else fetched)
        report = DecodeReport(opened_truncated or bool(missing), tuple(warnings))

        def end(state=state, report=report, i=i):
            state.flush(emits[i])
            return stages[i].meta(state, report)

        value, e = _attempt(end)
        out[i] = e or value
    return out


class SharedDecode:
    """Stages over one decode of each video: :meth:`prepare`, :meth:`finish` and :meth:`pending` are the
    overlapped loop's steps (stage ``i`` is model stream ``i``), :meth:`results` the typed results of one
    video, one per stage. Picklable without the models when ``opener`` and the stages are."""

    def __init__(self, opener: VideoOpener, stages: Sequence[Stage]):
        if not stages:
            raise ValueError("a shared decode needs at least one stage")
        self.opener, self.stages = opener, tuple(stages)

    def prepare(self, item: VideoInput, emit: Callable[..., None]) -> list[Any]:
        if item.error:
            raise VideoSourceError(item.error)
        with self.opener.open(item) as reader:
            return decode_stages(reader, self.stages, emit)

    def finish(self, item: VideoInput, metas: list[Any], features: tuple[torch.Tensor, ...]) -> tuple[Outcome, ...]:
        return tuple(self._outcome(item, stage, meta, feats)
                     for stage, meta, feats in zip(self.stages, metas, features))

    @staticmethod
    def _outcome(item: VideoInput, stage: Stage, meta: Any, features: torch.Tensor) -> Outcome:
        """What the loop makes of one stage's step: its value, or its error naming the video."""
        value, e = (None, meta) if isinstance(meta, Exception) else _attempt(
            lambda: stage.finish(item, meta, features))
        if e is not None:
            out = Outcome(error=error_message(item.description, e))
            log.warning("%s", out.error)
            return out
        return Outcome(value=value)

    def pending(self, outcomes: tuple[Outcome, ...]) -> Future | None:
        """The first export a video's results still wait for (streamed results wait for all of them; with
        one exporting stage, that one)."""
        for stage, out in zip(self.stages, outcomes):
            fut = stage.pending(out.value) if out.value is not None else None
            if fut is not None:
                return fut
        return None

    def results(self, item: VideoInput, out: Outcome) -> tuple:
        """Per stage, its result for ``item``; a video that failed as a whole fails every stage alike."""
        outs = out.value if out.error is None else (Outcome(error=out.error),) * len(self.stages)
        return tuple(stage.result(item, o) for stage, o in zip(self.stages, outs))

    # -- running --------------------------------------------------------------------------------------------
    def for_processes(self, preprocess: Sequence[Callable], thread_count: int) -> SharedDecode:
        """A copy for a decode process: stage ``i`` preprocesses with ``preprocess[i]`` (CPU preprocessing, or
        raw frames that the model's side resizes) and FFmpeg gets ``thread_count`` threads."""
        stages = []
        for stage, pre in zip(self.stages, preprocess, strict=True):
            stage = copy.copy(stage)
            stage.preprocess = pre
            stages.append(stage)
        return SharedDecode(dataclasses.replace(self.opener, thread_count=thread_count), stages)

    def _loop_args(self, embeds: Sequence[Callable], batch_sizes: Sequence[int], decode_workers: int,
                   item_timeout_sec: float | None, stats: RunStats, progress: Progress | None,
                   prepare: Callable | None) -> dict:
        if len(embeds) != len(self.stages):
            raise ValueError(f"{len(embeds)} embed functions for {len(self.stages)} stages")
        # each stage's kept rows go into slabs until a video is finished: flat heap at every-frame rates
        # (operators/slabs.py)
        return dict(describe=_describe, prepare=prepare or self.prepare,
                    embed=tuple(FeatureSlabs(e, stage.per_frame) for e, stage in zip(embeds, self.stages)),
                    finish=self.finish,
                    batch_size=tuple(batch_sizes), decode_workers=decode_workers,
                    item_timeout_sec=item_timeout_sec, stats=stats, progress=progress)

    def run(self, inputs: Sequence[VideoInput], embeds: Sequence[Callable], batch_sizes: Sequence[int], *,
            decode_workers: int, item_timeout_sec: float | None = None, stats: RunStats | None = None,
            progress: Progress | None = None, prepare: Callable | None = None) -> list[tuple]:
        """Every input's results (one per stage), in input order; ``embeds[i]``: stage ``i``'s model.
        ``prepare``: this decode's :meth:`prepare` run elsewhere (a decode process); None: in this process."""
        outcomes = run_overlapped(inputs, **self._loop_args(embeds, batch_sizes, decode_workers,
                                                            item_timeout_sec, stats or RunStats(), progress,
                                                            prepare))
        return [self.results(item, out) for item, out in zip(inputs, outcomes)]

    def iter(self, inputs: Sequence[VideoInput], embeds: Sequence[Callable], batch_sizes: Sequence[int], *,
             decode_workers: int, item_timeout_sec: float | None = None, stats: RunStats | None = None,
             progress: Progress | None = None, ordered: bool = True,
             window: int | None = None, prepare: Callable | None = None) -> Iterator[tuple[int, tuple]]:
        """``(input position, results)`` as videos finish (exports included): in input order with at most
        ``window`` videos (default :func:`default_window` of the decoders) ahead of the oldest not yet yielded,
        or in completion order. ``decode_workers``: the decoders that run (threads, or decode processes)."""
        run = iter_overlapped(inputs, **self._loop_args(embeds, batch_sizes, decode_workers, item_timeout_sec,
                                                        stats or RunStats(), progress, prepare),
                              ordered=ordered, window=window or default_window(decode_workers), pending=self.pending)
        try:
            for pos, out in run:
                yield pos, self.results(inputs[pos], out)
        finally:
            run.close()


def _describe(item: VideoInput) -> str:
    return item.description
