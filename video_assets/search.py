"""Text search over stored frame embeddings, across every partition of a warehouse, and its command.

``search(warehouse, "a dog catching a frisbee", k=20)`` ranks frames (and videos, by their best frame) by
cosine similarity to the query's CLIP text embedding. It streams the ``video_frame_embeddings`` Parquet files
in record batches and keeps only the best ``k`` frames and videos, so memory is bounded by ``k`` and one batch,
whatever the warehouse holds. No video is opened.

Command::

    python -m video_assets.search "a dog catching a frisbee" --warehouse data/warehouse -k 20
    python -m video_assets.search "a red car" --table data/warehouse/video_frame_embeddings/p.parquet -n 8
"""

from __future__ import annotations

import argparse
import logging
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from video_assets.keyframes.embeddings import EMBEDDINGS_COLUMN, TextEncoder, relevance
from video_assets.pipeline.tables import EMBEDDINGS_ASSET

log = logging.getLogger(__name__)

_COLUMNS = ("partition_key", "video_id", "uri", "frame_ids", "timestamps", EMBEDDINGS_COLUMN, "model")
_BATCH_ROWS = 256  # videos per record batch: ~1 hour of 1-fps ViT-B/32 embeddings is 3.6 MB


@dataclass(frozen=True)
class FrameHit:
    score: float
    video_id: str
    uri: str
    partition_key: str
    frame_id: int
    timestamp: float | None


@dataclass(frozen=True)
class VideoHit:
    score: float  # its best frame's
    video_id: str
    uri: str
    partition_key: str
    frame_id: int  # its best frame
    timestamp: float | None


@dataclass
class SearchResult:
    query: str
    model: str | None
    frames: list[FrameHit] = field(default_factory=list)  # best first
    videos: list[VideoHit] = field(default_factory=list)  # best first, each video once
    files_read: int = 0
    videos_read: int = 0
    skipped_other_model: int = 0  # videos embedded with another model (their scores are not comparable)


class _TopK:
    """The best ``k`` values by score, one per key (a later, better value for a key replaces it)."""

    def __init__(self, k: int):
        self.k, self.items = k, {}
        self.floor = -np.inf  # a value must beat this to enter once full

    def offer(self, key: Any, score: float, value: Any) -> None:
        old = self.items.get(key)
        if old is not None:
            if score > old[0]:
                self.items[key] = (score, value)
            return
        if len(self.items) >= self.k:
            if score <= self.floor:
                return
            del self.items[min(self.items, key=lambda q: self.items[q][0])]
        self.items[key] = (score, value)
        if len(self.items) >= self.k:
            self.floor = min(s for s, _ in self.items.values())

    def best(self) -> list:
        return [v for _, v in sorted(self.items.values(), key=lambda sv: -sv[0])]


def embedding_files(warehouse: str, storage_options: dict | None = None) -> list[tuple[Any, str]]:
    """``(filesystem, path)`` of every partition's embedding file, sorted by name."""
    from video_assets.storage import filesystem_for, join_uri

    fs, root = filesystem_for(join_uri(warehouse, EMBEDDINGS_ASSET), storage_options)
    try:
        paths = sorted(p for p in fs.find(root) if p.endswith(".parquet"))
    except FileNotFoundError:
        paths = []
    return [(fs, p) for p in paths]


def _batches(fs, path: str) -> Iterator[pa.RecordBatch]:
    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        names = [c for c in _COLUMNS if c in pf.schema_arrow.names]
        yield from pf.iter_batches(batch_size=_BATCH_ROWS, columns=names)


def search(warehouse: str, query: str, k: int = 20, *, model: str | None = None, model_path: str | None = None,
           device: str | None = None, dtype: str | None = None,
           storage_options: dict | None = None) -> SearchResult:
    """The ``k`` frames and ``k`` videos most similar to ``query`` across all partitions of ``warehouse``.

    ``model``: compare only embeddings made with this CLIP model (default: the model of the first stored
    video); videos embedded with another model are skipped and counted, since their scores are not comparable.
    ``model_path``/``device``/``dtype``: how the query is embedded (as for the operators).
    """
    if not isinstance(query, str):
        raise ValueError(f"query must be a string, got {type(query).__name__}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    encoder = TextEncoder(model_path, device, dtype)
    result = SearchResult(query=query, model=model)
    frames, videos = _TopK(k), _TopK(k)
    text = None
    for fs, path in embedding_files(warehouse, storage_options):
        result.files_read += 1
        for batch in _batches(fs, path):
            rows = batch.drop_columns([EMBEDDINGS_COLUMN]).to_pydict()  # small: ids, times, names
            emb = batch.column(EMBEDDINGS_COLUMN)
            keep = [i for i, name in enumerate(rows["model"]) if emb[i].is_valid and len(emb[i])]
            if result.model is None and keep:
                result.model = rows["model"][keep[0]]
            other = [i for i in keep if rows["model"][i] != result.model]
            result.skipped_other_model += len(other)
            keep = [i for i in keep if rows["model"][i] == result.model]
            if not keep:
                continue
            if text is None:
                text = encoder(result.model, query)
            result.videos_read += len(keep)
            _offer_batch(rows, emb, keep, text, frames, videos, k)
    if result.skipped_other_model:
        log.warning("search: %d video(s) embedded with another model than %s were skipped",
                    result.skipped_other_model, result.model)
    result.frames, result.videos = frames.best(), videos.best()
    return result


def _offer_batch(rows: dict, emb: pa.ListArray, keep: list[int], text: np.ndarray, frames: _TopK,
                 videos: _TopK, k: int) -> None:
    """Score every frame of a record batch with one matrix product, and offer only the batch's best ``k``
    frames and each video's best frame to the running top ``k``."""
    offsets = emb.offsets.to_numpy()
    dim = emb.type.value_type.list_size
    flat = emb.values.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    base = int(offsets[0])
    starts = np.array([offsets[i] - base for i in keep])
    stops = np.array([offsets[i + 1] - base for i in keep])
    take = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)])
    scores = relevance(flat[take], text)
    owner = np.repeat(np.arange(len(keep)), stops - starts)  # row (in keep) of each scored frame
    first = np.concatenate([[0], np.cumsum(stops - starts)[:-1]])
    times = rows.get("timestamps")

    def hit(j: int, cls):
        r = keep[owner[j]]
        pos = j - first[owner[j]]
        t = times[r][pos] if times and times[r] else None
        return cls(float(scores[j]), rows["video_id"][r], rows.get("uri", [""] * (r + 1))[r],
                   rows.get("partition_key", [""] * (r + 1))[r], int(rows["frame_ids"][r][pos]),
                   None if t is None else float(t))

    top = np.argsort(-scores, kind="stable")[:k]
    for j in top:
        f = hit(int(j), FrameHit)
        frames.offer((f.video_id, f.frame_id), f.score, f)
    best = np.maximum.reduceat(scores, first)  # each video's best score
    for o in np.argsort(-best, kind="stable")[:k]:
        j = int(first[o] + np.argmax(scores[first[o]:first[o] + (stops[o] - starts[o])]))
        v = hit(j, VideoHit)
        videos.offer(v.video_id, v.score, v)


# -- the command -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m video_assets.search",
                                description="Search stored frame embeddings by text, without decoding videos.")
    p.add_argument("query", help="the text to search for")
    p.add_argument("--warehouse", default=None, help="warehouse to search (default: $VIDEO_ASSETS_WAREHOUSE "
                                                       "or data/warehouse)")
    p.add_argument("-k", type=int, default=10, help="how many frames and videos to list (default 10)")
    p.add_argument("--table", help="instead of searching: select keyframes for the query from this "
                                   "embedding table (a Parquet file), with AKS")
    p.add_argument("-n", "--max-num-frames", type=int, default=8, help="keyframes per video with --table")
    p.add_argument("--model", help="only embeddings of this model (search)")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: as the operators)")
    args = p.parse_args(argv)
    try:
        if args.table:
            return _print_selection(args)
        return _print_search(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _print_search(args) -> int:
    import os

    warehouse = args.warehouse or os.environ.get("VIDEO_ASSETS_WAREHOUSE", "data/warehouse")
    r = search(warehouse, args.query, args.k, model=args.model, device=args.device)
    if not r.files_read:
        print(f"no frame embeddings under {warehouse}/{EMBEDDINGS_ASSET}/ (materialise video_frame_embeddings)")
        return 1
    print(f"query: {r.query!r}   model: {r.model}   searched {r.videos_read} videos in {r.files_read} "
          f"partition(s)" + (f", skipped {r.skipped_other_model} of other models" if r.skipped_other_model else ""))
    print("\nvideos")
    print(f"{'score':>7}  {'time':>8}  {'partition':<20} uri")
    for v in r.videos:
        print(f"{v.score:7.4f}  {_t(v.timestamp):>8}  {v.partition_key:<20} {v.uri}")
    print("\nframes")
    print(f"{'score':>7}  {'frame':>7}  {'time':>8}  uri")
    for f in r.frames:
        print(f"{f.score:7.4f}  {f.frame_id:7d}  {_t(f.timestamp):>8}  {f.uri}")
    return 0


def _print_selection(args) -> int:
    from video_assets.keyframes.embeddings import select_from_embeddings

    for r in select_from_embeddings(args.table, args.query, max_num_frames=args.max_num_frames, device=args.device):
        if r["error"]:
            print(f"{r['uri']}: {r['error']}")
            continue
        picks = ", ".join(f"{fid}@{_t(t)}" for fid, t in zip(r["frame_ids"], r["timestamps"]))
        print(f"{r['uri']}: {len(r['frame_ids'])} of {r['num_candidates']} frames: {picks}")
    return 0


def _t(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}s"


class _CallableModule(types.ModuleType):
    """``video_assets.search(...)`` calls :func:`search`: the module and its function share one name."""

    def __call__(self, *args, **kwargs) -> SearchResult:
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
