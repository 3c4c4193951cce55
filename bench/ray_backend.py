"""The Ray compute backend against the local one: the same small videos scored with VideoQualityScore.

    python -m bench.ray_backend [--videos 32] [--repeat 15] [--batch-sizes 8,32] [--json PATH]

The local backend runs in its own process that never imports Ray (a process connected to Ray as a driver
carries Ray's threads, which slow the work in it); the Ray backend runs on a local Ray instance started by
the backend (127.0.0.1, no dashboard):
- ``local``: the operator in that process (LocalBackend), model warm, before Ray is started;
- ``ray-1``: one Ray worker reserving every CPU (the same cores as local, so the difference is Ray's cost);
- ``ray-2``: two workers, one CPU each;
the Ray runs once per --batch-sizes value. Workers are started and warmed by an untimed call first (their
start-up is reported apart: it happens once per process, not per partition).

Two overheads are reported:
- ``paired``: the median of ray/local over pairs of runs made back to back while the Ray instance is up (the
  order alternates), so drift of this shared machine's speed and the share Ray's idle daemons take (about 500
  wake-ups/s, 0.04 CPUs) fall on both sides alike: Ray's cost of running the work (tasks, transport, the
  worker process). This is the figure to watch (target < 10 % with one worker);
- ``vs local``: the Ray run against the local runs made before Ray was started: the above plus what Ray's
  daemons take from the machine.
Scores are compared with local ones (max |difference|).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

from bench.corpus import CORPUS_DIR, encode_video
from bench.timing import interleaved, median_time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("VIDEO_ASSETS_CLIP_MODEL", "video-assets/tiny-clip")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def corpus(n: int) -> list[str]:
    """Small videos: 320x180, 30 fps, 3 s, H.264 GOP 30 (cached under bench/.corpus/)."""
    paths = []
    for i in range(n):
        p = CORPUS_DIR / f"ray_320x180_30fps_3s_gop30_s{i}.mp4"
        if not p.exists():
            encode_video(p, 320, 180, 30, 3.0, gop=30, seed=100 + i)
        paths.append(str(p))
    return paths


def operator_factory():
    from video_assets.operators import VideoQualityScore

    cpus = os.cpu_count() or 1
    return partial(VideoQualityScore, device="cpu", count_k=8, batch_size=32, decode_workers=cpus)


def _scores(backend, factory, paths: list[str]) -> list[float]:
    from video_assets.progress import Progress

    details = backend.map_details(factory, paths, Progress(len(paths), "bench", every_sec=1e9))
    return [d["score"] for d in details]


def _local_server(conn, paths: list[str]) -> None:
    """The local backend in a process of its own: each message runs the corpus once and answers its
    scores; None ends it."""
    from video_assets.compute import LocalBackend

    backend, factory = LocalBackend(), operator_factory()
    while conn.recv() is not None:
        conn.send(_scores(backend, factory, paths))


class LocalProcess:
    def __init__(self, paths: list[str]):
        self.conn, child = multiprocessing.get_context("spawn").Pipe()
        self.proc = multiprocessing.get_context("spawn").Process(target=_local_server, args=(child, paths))
        self.proc.start()

    def run(self) -> list[float]:
        self.conn.send(True)
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(timeout=30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--batch-sizes", default="8,32", help="manifest rows per Ray task, one run per value")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    cpus = os.cpu_count() or 1
    load_before = os.getloadavg()
    paths = corpus(args.videos)
    n = len(paths)
    local = LocalProcess(paths)
    rows = []
    try:
        local.run()  # load the model, warm the page cache
        t_local, samples, ref_scores = median_time(local.run, args.repeat)
        rows.append({"backend": "local", "workers": 1, "cpus_per_worker": cpus, "wall_s": t_local,
                     "samples_s": samples, "videos_per_s": n / t_local})

        from video_assets.compute import ray_backend  # Ray's first import, after the local baseline

        t0 = time.perf_counter()
        ray_backend.connect("", num_cpus=cpus)
        t_init = time.perf_counter() - t0
        factory = operator_factory()
        try:
            shapes = [(w, c, int(b)) for b in args.batch_sizes.split(",")
                      for w, c in ((1, float(cpus)), (2, max(1.0, cpus / 2)))]
            for workers, cpus_each, batch in shapes:
                backend = ray_backend.RayBackend(num_workers=workers, num_cpus_per_worker=cpus_each,
                                                 batch_size=batch)
                t0 = time.perf_counter()
                _scores(backend, factory, paths)  # start the workers, load their models
                t_cold = time.perf_counter() - t0
                times, last = interleaved({"ray": lambda: _scores(backend, factory, paths), "local": local.run},
                                          args.repeat)
                ray_times, local_times, scores = times["ray"], times["local"], last["ray"]
                t, t_local_up = statistics.median(ray_times), statistics.median(local_times)
                rows.append({
                    "backend": f"ray-{workers}", "workers": workers, "cpus_per_worker": cpus_each,
                    "batch_size": batch, "wall_s": t, "samples_s": ray_times, "videos_per_s": n / t,
                    "first_call_s": t_cold,
                    "paired_overhead_share": statistics.median(r / lo for r, lo in zip(ray_times, local_times)) - 1,
                    "paired_overhead_ms_per_video": (t - t_local_up) / n * 1000,
                    "local_with_ray_up_s": t_local_up, "local_with_ray_up_samples_s": local_times,
                    "overhead_share": t / t_local - 1, "overhead_ms_per_video": (t - t_local) / n * 1000,
                    "max_abs_score_diff_vs_local": max(abs(a - b) for a, b in zip(ref_scores, scores))})
        finally:
            ray_backend.shutdown()
    finally:
        local.close()

    print(f"\n{n} videos (320x180, 3 s, 30 fps; quality, tiny CLIP, 8 frames each), {cpus} CPUs, "
          f"load average before {load_before[0]:.1f}; local Ray instance start {t_init:.1f} s")
    print(f"{'backend':<8} {'batch':>5} {'wall s':>7} {'videos/s':>9} {'first call s':>12} "
          f"{'local, Ray up s':>15} {'paired':>8} {'ms/video':>8} {'vs local':>9} {'max |d score|':>13}")
    for r in rows:
        head = f"{r['backend']:<8} {r.get('batch_size', '-'):>5} {r['wall_s']:>7.2f} {r['videos_per_s']:>9.1f} "
        if "first_call_s" not in r:
            print(head + " ".join(f"{'-':>{w}}" for w in (12, 15, 8, 8, 9, 13)))
            continue
        print(head + f"{r['first_call_s']:>12.1f} {r['local_with_ray_up_s']:>15.2f} "
              f"{r['paired_overhead_share'] * 100:>+7.1f}% {r['paired_overhead_ms_per_video']:>+8.1f} "
              f"{r['overhead_share'] * 100:>+8.1f}% {r['max_abs_score_diff_vs_local']:>13.1e}")
    print("paired: against local runs interleaved with the Ray runs while Ray is up (ms/video likewise); "
          "vs local: against the local runs before Ray started")
    if args.json:
        import ray
        import torch

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "rows": rows, "videos": n, "video": "320x180 30fps 3s h264 gop30", "operator": "quality",
            "model": "video-assets/tiny-clip", "repeat": args.repeat,
            "cpus": cpus, "ray_init_s": t_init, "load_average_before": load_before,
            "load_average_after": os.getloadavg(), "ray": ray.__version__, "torch": torch.__version__,
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
