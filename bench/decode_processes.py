"""Decode threads vs decode processes (``decode_processes``), in steady state.

    python -m bench.decode_processes [--seconds 30] [--segments 3] [--processes 1,2] [--operators quality,keyframes]
                                     [--model tiny] [--device cpu] [--json PATH]

On bench/operators.py's corpus (12 synthetic 640x360 30 fps 20 s H.264 videos, cycled), for each operator
(quality: count_k=8; keyframes: 1 fps candidates, no export) and each mode (threads with the default
decode_workers, then decode_processes=N for each N), it runs ``details`` over batches of videos until each
figure has at least ``--seconds`` of work. The figures are measured in ``--segments`` interleaved slices
(threads, P1, P2, threads, ...) so that a change in the machine's load hits every mode alike. The first call
of each operator is a warm-up (model load, process start-up) and is reported apart as ``startup_s``.

Per row: ``videos_per_s`` (all segments together), ``segment_videos_per_s`` (each slice), ``cpu_s_per_video``
(this process plus its decode processes), the decode processes' resident memory and the videos run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

BATCH = 24  # videos per details() call: each call is one run_overlapped, as a pipeline step is


def _cpu_of(pids: list[int]) -> float:
    """utime + stime of live processes, in seconds (their CPU is not in this process's times until reaped)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _rss_mb(pids: list[int]) -> list[float]:
    out = []
    for pid in pids:
        try:
            line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS"))
        except (OSError, StopIteration):
            continue
        out.append(round(int(line.split()[1]) / 1024, 1))
    return out


def _make(operator: str, processes: int, model: str, device: str):
    from bench.operators import _model_args
    from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore

    kw = dict(_model_args(model), device=device, decode_processes=processes)
    if operator == "quality":
        return VideoQualityScore(count_k=8, **kw)
    return VideoAdaptiveKeyframesSampling(text="a person", return_keyframes=False, **kw)


def _segment(op, paths: list[str], seconds: float, cursor: list[int]) -> tuple[int, float, float]:
    """Run details() on batches of the cycled corpus for at least ``seconds``: (videos, wall s, CPU s)."""
    n, t0 = 0, time.perf_counter()
    cpu0 = time.process_time() + _cpu_of(op.decode_pids())
    pids = set(op.decode_pids())
    while time.perf_counter() - t0 < seconds:
        batch = [paths[(cursor[0] + i) % len(paths)] for i in range(BATCH)]
        cursor[0] += BATCH
        rows = op.details(batch)
        bad = [r["error"] for r in rows if r["error"]]
        if bad:
            raise RuntimeError(f"benchmark video failed: {bad[0]}")
        n += len(batch)
        pids |= set(op.decode_pids())
    wall = time.perf_counter() - t0
    cpu = time.process_time() + _cpu_of(sorted(pids)) - cpu0
    return n, wall, cpu


def main(argv: list[str] | None = None) -> int:
    # Imported here, not at the top: spawned decode processes import this module as their __main__, and
    # should not pay for (or hold the memory of) the model libraries bench.operators brings in.
    from bench.operators import MODELS, corpus

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="work per figure (all segments together)")
    ap.add_argument("--segments", type=int, default=3)
    ap.add_argument("--processes", default="1,2", help="decode_processes values to compare with threads")
    ap.add_argument("--operators", default="quality,keyframes")
    ap.add_argument("--model", default="tiny", choices=sorted(MODELS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    paths = corpus(quick=False)
    modes = [0] + [int(x) for x in args.processes.split(",") if x]
    rows = []
    for operator in args.operators.split(","):
        ops, stats = {}, {}
        for m in modes:
            op = _make(operator, m, args.model, args.device)
            t0 = time.perf_counter()
            op.details(paths[:4])  # warm-up: model load and, for processes, their start-up
            stats[m] = {"startup_s": time.perf_counter() - t0, "segments": [], "videos": 0, "wall": 0.0, "cpu": 0.0}
            ops[m] = op
        cursor = [0]
        for _ in range(args.segments):
            for m in modes:
                n, wall, cpu = _segment(ops[m], paths, args.seconds / args.segments, cursor)
                s = stats[m]
                s["segments"].append(round(n / wall, 2))
                s["videos"] += n
                s["wall"] += wall
                s["cpu"] += cpu
                print(f"{operator:9s} {'threads' if m == 0 else f'P={m}':8s} {n / wall:6.2f} videos/s "
                      f"({n} in {wall:.1f} s)", file=sys.stderr, flush=True)
        for m in modes:
            s = stats[m]
            s["rss"] = _rss_mb(ops[m].decode_pids())
            ops[m].close()
            rows.append({"operator": operator, "model": MODELS[args.model][0], "device": args.device,
                         "mode": "threads" if m == 0 else "processes", "decode_processes": m,
                         "decode_workers": ops[m].decode_workers if m == 0 else m, "videos": s["videos"],
                         "seconds": round(s["wall"], 1), "videos_per_s": round(s["videos"] / s["wall"], 2),
                         "segment_videos_per_s": s["segments"],
                         "cpu_s_per_video": round(s["cpu"] / s["videos"], 4),
                         "startup_s": round(s["startup_s"], 2), "decode_process_rss_mb": s["rss"]})
    out = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
           "corpus": "bench/operators.py corpus: 12 x 640x360 30 fps 20 s H.264, cycled", "rows": rows}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
