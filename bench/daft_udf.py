"""The Daft UDFs (video_assets.daft) against the operator called directly, on the same videos.

    python -m bench.daft_udf [--quick] [--repeat 3] [--copies 6] [--batch-sizes 1,16] [--json PATH]

VideoQualityScore with the tiny model (the seed's arguments: by_count_uniform, count_k 8, avg) over N videos
(bench/operators.py's corpus, each listed --copies times). Every Daft query starts its worker afresh (a process
on the native runner, a Ray actor on Ray: imports, model load), so each configuration runs a query over N videos
and one over 1 video, and two figures are reported:

- ``steady``: (T(N) - T(1)) / (direct(N) - direct(1)), the cost per video once the worker runs: Daft's own
  overhead (batches through its engine, the worker's IPC, one operator call per batch). Target <= 1.10 on the
  native runner;
- ``start``: T(1) - direct(1), the fixed cost of a query's worker start.

Native and direct run in this process, interleaved round by round (bench/timing.py) so this shared machine's
drift falls on all alike; the direct operator is warm (model loaded). Ray (1 and 2 actors of one CPU each, on a
local instance of 2 CPUs) runs in a subprocess (Daft fixes its runner per process); its direct figures are the
native process's, so the Ray rows are not paired.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("VIDEO_ASSETS_CLIP_MODEL", "video-assets/tiny-clip")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from bench.operators import corpus  # noqa: E402
from bench.timing import interleaved  # noqa: E402

ARGS = {"prompt": "quality", "sample_mode": "by_count_uniform", "count_k": 8, "reduce_mode": "avg"}


def _daft_query(paths: list[str], batch_size: int, concurrency: int):
    import daft
    from daft import col

    from video_assets.daft import las_udf
    from video_assets.operators import VideoQualityScore

    def run() -> list:
        ds = daft.from_pydict({"video_path": paths})
        ds = ds.with_column("quality_score", las_udf(VideoQualityScore, construct_args=ARGS, num_gpus=0,
                                                     batch_size=batch_size, concurrency=concurrency)(
            col("video_path")))
        rows = ds.to_pydict()
        return dict(zip(rows["video_path"], rows["quality_score"]))  # Ray may reorder rows

    return run


def _figures(times: dict[str, list[float]], name: str, base: str = "direct") -> dict:
    med = {k: statistics.median(v) for k, v in times.items()}
    steady = (med[f"{name}/N"] - med[f"{name}/1"]) / (med[f"{base}/N"] - med[f"{base}/1"])
    return {"N_s": med[f"{name}/N"], "one_s": med[f"{name}/1"], "steady": steady,
            "start_s": med[f"{name}/1"] - med[f"{base}/1"], "samples_N": times[f"{name}/N"]}


def native(paths: list[str], batch_sizes: list[int], repeat: int) -> tuple[dict, dict]:
    import daft

    from video_assets.operators import VideoQualityScore

    daft.set_runner_native()
    op = VideoQualityScore(**ARGS)
    op(video_paths=paths[:1])  # warm: model loaded, as a long-running program has it
    fns = {"direct/N": lambda: dict(zip(paths, op(video_paths=paths))),
           "direct/1": lambda: dict(zip(paths[:1], op(video_paths=paths[:1])))}
    for b in batch_sizes:
        fns[f"native-b{b}/N"] = _daft_query(paths, b, 1)
        fns[f"native-b{b}/1"] = _daft_query(paths[:1], b, 1)
    times, last = interleaved(fns, repeat)
    diffs = max(abs(last[k][p] - last["direct/N"][p]) for k in last if k.endswith("/N") for p in paths)
    out = {f"native-b{b}": _figures(times, f"native-b{b}") for b in batch_sizes}
    return out, {"direct_N_s": statistics.median(times["direct/N"]),
                 "direct_1_s": statistics.median(times["direct/1"]), "max_abs_diff": diffs,
                 "direct_samples_N": times["direct/N"]}


def ray(paths: list[str], batch_size: int, repeat: int) -> dict:
    import daft

    from video_assets.compute import ray_backend

    ray_backend.connect("", num_cpus=2, num_gpus=0)
    daft.set_runner_ray()
    fns = {}
    for actors in (1, 2):
        fns[f"ray-{actors}/N"] = _daft_query(paths, batch_size, actors)
        fns[f"ray-{actors}/1"] = _daft_query(paths[:1], batch_size, actors)
    times, last = interleaved(fns, repeat)
    ray_backend.shutdown()
    return {"times": times, "scores": last["ray-1/N"], "scores_2": last["ray-2/N"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--copies", type=int, default=6, help="each corpus video listed this many times")
    ap.add_argument("--batch-sizes", default="1,16", help="videos per UDF call on the native runner")
    ap.add_argument("--ray-batch-size", type=int, default=4)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--ray-worker", default=None, help=argparse.SUPPRESS)  # the subprocess: write Ray times here
    a = ap.parse_args()
    paths = corpus(a.quick) * a.copies
    if a.ray_worker:
        Path(a.ray_worker).write_text(json.dumps(ray(paths, a.ray_batch_size, a.repeat)))
        return
    result = {"videos": len(paths), "args": ARGS, "cpus": os.cpu_count()}
    result["native"], result["direct"] = native(paths, [int(b) for b in a.batch_sizes.split(",")], a.repeat)
    if not a.no_ray:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "ray.json"
            cmd = [sys.executable, "-m", "bench.daft_udf", "--repeat", str(a.repeat), "--copies", str(a.copies),
                   "--ray-batch-size", str(a.ray_batch_size), "--ray-worker", str(out)] + (
                ["--quick"] if a.quick else [])
            subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parent.parent)
            got = json.loads(out.read_text())
        d = result["direct"]
        times = {**got["times"], "direct/N": [d["direct_N_s"]], "direct/1": [d["direct_1_s"]]}
        result["ray"] = {f"ray-{n}": _figures(times, f"ray-{n}") for n in (1, 2)}
        from video_assets.operators import VideoQualityScore

        want = dict(zip(paths, VideoQualityScore(**ARGS)(video_paths=paths)))
        result["ray"]["max_abs_diff"] = max(abs(got[k][p] - want[p]) for k in ("scores", "scores_2")
                                            for p in paths)
    print(json.dumps(result, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
