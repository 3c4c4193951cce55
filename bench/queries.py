"""Queries and stored embeddings: what a question costs once the candidates are embedded.

    python -m bench.queries [--quick] [--repeat 5] [--json PATH] [--only multi,select,search]

- ``multi``: N queries per video (1, 4, 16) from one decode and one image-embedding pass, time per call and
  per query, against running the operator N times (target: 16 queries cost <= 1.5x one);
- ``select``: ``select_from_embeddings`` for a new query against a full operator run on the same videos
  (target: >= 100x faster);
- ``search``: ``video_assets.search`` over 10,000 videos' embeddings (60 frames each, 512-dim float16, as
  ViT-B/32 stores them) in 10 partitions: latency and peak RSS, in a subprocess of its own.

Models: the tiny random model for ``multi``/``select`` on the CPU (``--model`` to change), and for ``search``
tables shaped like ViT-B/32's (512 dims) with the random-weight ViT-B/32 from bench/random_models.py embedding
the query.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ["a dog catching a frisbee", "a red car on a bridge", "people dancing at night", "a bowl of soup",
           "a city skyline at dusk", "someone typing on a laptop", "waves breaking on rocks", "a cat asleep",
           "a cyclist on a mountain road", "fireworks", "a chef chopping onions", "snow falling on trees",
           "a child on a swing", "a plane taking off", "a crowded market", "a lecture slide with a chart"]


def _videos(quick: bool) -> list[str]:
    from bench.operators import corpus

    return corpus(quick)  # the operators benchmark's 640x360 clips


def bench_multi(videos, model: str, repeat: int, quick: bool) -> dict:
    from bench.timing import interleaved
    from video_assets.operators import VideoAdaptiveKeyframesSampling

    op = VideoAdaptiveKeyframesSampling(clip_model_name=model, device="cpu", return_keyframes=False,
                                        max_num_frames=8, progress=False)
    op.details(videos[:1])  # load the model, warm the caches
    out = {}
    for n in (1, 4, 16):
        qs = QUERIES[:n]
        fns = {"one_pass": lambda qs=qs: op.details(videos, texts=[qs] * len(videos)),
               "n_runs": lambda qs=qs: [op.details(videos, texts=[q] * len(videos)) for q in qs]}
        times, _ = interleaved(fns, repeat)
        one, runs = statistics.median(times["one_pass"]), statistics.median(times["n_runs"])
        out[n] = {"one_pass_s": one, "n_runs_s": runs, "per_query_s": one / n}
    base = out[1]["one_pass_s"]
    for n in out:
        out[n]["vs_one_query"] = out[n]["one_pass_s"] / base
    return {"videos": len(videos), "model": model, "by_queries": out,
            "target_16_le_1.5x": out[16]["vs_one_query"] <= 1.5}


def bench_select(videos, model: str, repeat: int) -> dict:
    import pyarrow as pa

    from bench.timing import interleaved
    from video_assets.keyframes import select_from_embeddings
    from video_assets.keyframes.embeddings import embeddings_array
    from video_assets.operators import VideoAdaptiveKeyframesSampling

    op = VideoAdaptiveKeyframesSampling(clip_model_name=model, device="cpu", return_keyframes=False,
                                        max_num_frames=8, progress=False, return_embeddings=True)
    details = op.details(videos)
    dim = details[0]["embeddings"].shape[1]
    # the columns select_from_embeddings reads, as video_frame_embeddings stores them
    table = pa.table({"video_id": [d["video_id"] for d in details], "uri": videos,
                      "frame_ids": [d["candidate_frame_ids"] for d in details],
                      "timestamps": [d["candidate_timestamps"] for d in details],
                      "embeddings": embeddings_array([d["embeddings"] for d in details], dim),
                      "model": [op.clip_model_name] * len(details), "error": [None] * len(details)})
    op.return_embeddings = False
    q = QUERIES[5]
    fns = {"operator": lambda: op.details(videos, texts=[q] * len(videos)),
           "select_from_embeddings": lambda: select_from_embeddings(table, q, max_num_frames=8, device="cpu")}
    times, last = interleaved(fns, repeat)
    same = [d["frame_ids"] for d in last["operator"]] == [r["frame_ids"] for r in last["select_from_embeddings"]]
    op_s, sel_s = statistics.median(times["operator"]), statistics.median(times["select_from_embeddings"])
    return {"videos": len(videos), "model": model, "operator_s": op_s, "select_s": sel_s,
            "speedup": op_s / sel_s, "same_frame_ids": same, "target_ge_100x": op_s / sel_s >= 100}


def _write_search_warehouse(root: Path, videos: int, frames: int, dim: int, partitions: int, model: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from video_assets.keyframes.embeddings import embeddings_array

    rng = np.random.default_rng(0)
    out = root / "video_frame_embeddings"
    out.mkdir(parents=True, exist_ok=True)
    per = videos // partitions
    size = 0
    for p in range(partitions):
        embs = []
        for _ in range(per):
            v = rng.standard_normal((frames, dim), dtype=np.float32)
            embs.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16))
        ids = [f"{p:02d}{i:06d}" for i in range(per)]
        t = pa.table({"partition_key": [f"part{p}"] * per, "video_id": ids,
                      "uri": [f"s3://bucket/videos/{i}.mp4" for i in ids],
                      "frame_ids": [list(range(0, 30 * frames, 30))] * per,
                      "timestamps": [[float(j) for j in range(frames)]] * per,
                      "embeddings": embeddings_array(embs, dim), "model": [model] * per,
                      "embed_dim": pa.array([dim] * per, pa.int32()), "error": pa.nulls(per, pa.string())})
        path = out / f"part{p}.parquet"
        pq.write_table(t, path, compression="zstd")
        size += path.stat().st_size
    return size


def bench_search_child(warehouse: str, model_path: str, model: str, repeat: int) -> dict:
    """Runs in its own process: latency of the first and later searches, and this process's peak RSS."""
    from video_assets.search import search

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    first = search(warehouse, QUERIES[0], k=20, model_path=model_path, device="cpu")
    cold = time.perf_counter() - t0
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        r = search(warehouse, QUERIES[1 + i % 10], k=20, model_path=model_path, device="cpu")
        times.append(time.perf_counter() - t0)
    return {"videos": first.videos_read, "files": first.files_read, "first_search_s": cold,
            "search_s": statistics.median(times), "rss_after_model_mb": rss0 / 1024,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "top_frames": len(r.frames)}


def bench_search(quick: bool, repeat: int) -> dict:
    from bench.random_models import random_model_path

    model = "openai/clip-vit-base-patch32"
    model_path = random_model_path(model)
    videos, frames = (1000, 60) if quick else (10_000, 60)
    with tempfile.TemporaryDirectory(prefix="bench-search-") as d:
        size = _write_search_warehouse(Path(d), videos, frames, 512, 10, model)
        code = ("import json, sys; from bench.queries import bench_search_child; "
                f"print(json.dumps(bench_search_child({d!r}, {model_path!r}, {model!r}, {repeat})))")
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(stored_mb=size / 1e6, frames_per_video=frames, dim=512, model=model)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--model", default="video-assets/tiny-clip")
    p.add_argument("--only", default="multi,select,search")
    p.add_argument("--json")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parts = args.only.split(",")
    res: dict = {}
    if {"multi", "select"} & set(parts):
        videos = _videos(args.quick)
        if "multi" in parts:
            res["multi"] = bench_multi(videos, args.model, args.repeat, args.quick)
            print(json.dumps(res["multi"], indent=1))
        if "select" in parts:
            res["select"] = bench_select(videos, args.model, args.repeat)
            print(json.dumps(res["select"], indent=1))
    if "search" in parts:
        res["search"] = bench_search(args.quick, args.repeat)
        print(json.dumps(res["search"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
