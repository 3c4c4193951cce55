"""The Ray compute backend against the local one: the same small videos scored with VideoQualityScore.

    python -m bench.ray_backend [--videos 32] [--repeat 3] [--batch-sizes 8,32] [--json PATH]

Runs, on a local Ray instance started by the backend (127.0.0.1, no dashboard):
- ``local``: the operator in this process (LocalBackend), model warm;
- ``ray-1``: one Ray worker reserving every CPU (the same cores as local, so the difference is Ray's cost);
- ``ray-2``: two workers, one CPU each;
the Ray runs once per --batch-sizes value. Workers are started and warmed by an untimed call first (their
start-up is reported apart: it happens once per process, not per partition). Each figure is the median of
--repeat runs. The figure to watch is Ray's overhead per video with one worker, (ray-1 - local) / videos, and
its share of the local time (target < 10 %). Scores are compared with local ones (max |difference|).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

from bench.corpus import CORPUS_DIR, encode_video
from bench.timing import median_time

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-sizes", default="8,32", help="manifest rows per Ray task, one run per value")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from video_assets.compute import LocalBackend
    from video_assets.compute import ray_backend
    from video_assets.operators import VideoQualityScore
    from video_assets.operators.batching import Progress

    cpus = os.cpu_count() or 1
    load_before = os.getloadavg()
    paths = corpus(args.videos)
    n = len(paths)
    factory = partial(VideoQualityScore, device="cpu", count_k=8, batch_size=32, decode_workers=cpus)

    def run(backend):
        return backend.map_details(factory, paths, Progress(n, "bench", every_sec=1e9))

    rows = []
    local = LocalBackend()
    run(local)  # load the model, warm the page cache
    t_local, samples, ref = median_time(lambda: run(local), args.repeat)
    ref_scores = [d["score"] for d in ref]
    rows.append({"backend": "local", "workers": 1, "cpus_per_worker": cpus, "wall_s": t_local,
                 "samples_s": samples, "videos_per_s": n / t_local})

    t0 = time.perf_counter()
    ray_backend.connect("", num_cpus=cpus)
    t_init = time.perf_counter() - t0
    try:
        shapes = [(w, c, int(b)) for b in args.batch_sizes.split(",")
                  for w, c in ((1, float(cpus)), (2, max(1.0, cpus / 2)))]
        for workers, cpus_each, batch in shapes:
            backend = ray_backend.RayBackend(num_workers=workers, num_cpus_per_worker=cpus_each,
                                             batch_size=batch)
            t0 = time.perf_counter()
            run(backend)  # start the workers, load their models
            t_cold = time.perf_counter() - t0
            t, samples, out = median_time(lambda: run(backend), args.repeat)
            diff = max(abs(a - b) for a, b in zip(ref_scores, [d["score"] for d in out]))
            rows.append({"backend": f"ray-{workers}", "workers": workers, "cpus_per_worker": cpus_each,
                         "batch_size": batch,
                         "wall_s": t, "samples_s": samples, "videos_per_s": n / t,
                         "first_call_s": t_cold, "overhead_ms_per_video": (t - t_local) / n * 1000,
                         "overhead_share": t / t_local - 1, "max_abs_score_diff_vs_local": diff})
    finally:
        ray_backend.shutdown()

    print(f"\n{n} videos (320x180, 3 s, 30 fps; quality, tiny CLIP, 8 frames each), {cpus} CPUs, "
          f"load average before {load_before[0]:.1f}; local Ray instance start {t_init:.1f} s")
    print(f"{'backend':<8} {'batch':>5} {'wall s':>7} {'videos/s':>9} {'first call s':>12} "
          f"{'overhead ms/video':>17} {'vs local':>9} {'max |d score|':>13}")
    for r in rows:
        first = f"{r['first_call_s']:.1f}" if "first_call_s" in r else "-"
        over = f"{r['overhead_ms_per_video']:+.1f}" if "overhead_ms_per_video" in r else "-"
        share = f"{r['overhead_share'] * 100:+.1f}%" if "overhead_share" in r else "-"
        diff = f"{r['max_abs_score_diff_vs_local']:.1e}" if "max_abs_score_diff_vs_local" in r else "-"
        print(f"{r['backend']:<8} {r.get('batch_size', '-'):>5} {r['wall_s']:>7.2f} "
              f"{r['videos_per_s']:>9.1f} "
              f"{first:>12} {over:>17} {share:>9} {diff:>13}")
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
