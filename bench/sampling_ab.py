"""A/B benchmark of ``sample_frames`` between two source trees (e.g. a base commit and this one), interleaved.

The sampler cells of ``bench.sampling`` (count_k=8 and 1 fps on the 720p GOP 30 and GOP 250 videos), plus
decord as a fixed reference when it is installed. Each sample runs in a fresh child process whose
``PYTHONPATH`` puts one tree first (so both versions of ``video_assets`` are measured with the same venv); the
child warms up once and times ``--calls`` calls. Trees and cells alternate in every round (order rotated), so
a change in machine load hits both alike. ``--rotated`` adds the GOP 30 video remuxed with a 90-degree display
matrix (what rotation costs: a strided copy of each returned frame).

    git worktree add /tmp/base 879b6c1
    .venv/bin/python -m bench.sampling_ab --a /tmp/base --b . --rounds 5 --rotated
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.corpus import build_corpus_specs
from bench.sampling import PLANS

_CHILD = r"""
import json, sys, time
path, kind, value, calls, method = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
kw = {"sample_mode": "by_count_uniform", "count_k": int(value)} if kind == "count" else \
     {"sample_mode": "by_fps", "target_fps": value}
if method == "decord":
    import decord, numpy as np
    from bench.sampling import Plan, make_decord
    run = make_decord()
    plan = Plan("x", kind, value)
    call = lambda: run(path, plan)
else:
    import video_assets
    from video_assets.video import sample_frames
    call = lambda: sample_frames(path, **kw)
out = call()  # warm-up: imports, FFmpeg start-up, page cache
n = len(out.indices)
times, cpu = [], []
for _ in range(calls):
    t, c = time.perf_counter(), time.process_time()
    call()
    times.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
print(json.dumps({"times": times, "cpu": cpu, "n": n,
                  "tree": video_assets.__file__ if method != "decord" else "decord"}))
"""


def _rotated_copy(src: Path) -> Path:
    """``src`` remuxed (no re-encode) with a display matrix turning it 90 degrees clockwise (portrait)."""
    import av

    dst = src.with_name(src.stem + "-cw90.mp4")
    if dst.exists():
        return dst
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ist = inp.streams.video[0]
        ost = out.add_stream_from_template(ist)
        ost.set_display_rotation(-90)
        for packet in inp.demux(ist):
            if packet.dts is None:
                continue
            packet.stream = ost
            out.mux(packet)
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="source tree A (its video_assets is imported)")
    ap.add_argument("--b", required=True, help="source tree B")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=3, help="timed calls per child process")
    ap.add_argument("--rotated", action="store_true", help="add the GOP 30 video with a 90-degree matrix")
    ap.add_argument("--no-decord", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    bench_root = str(Path(__file__).resolve().parent.parent)
    videos = [(f"GOP {spec.gop}", path) for spec, path in build_corpus_specs("sampling")]
    if args.rotated:
        videos.append(("GOP 30, rotated 90", _rotated_copy(dict(videos)["GOP 30"])))
    methods = {"A": str(Path(args.a).resolve()), "B": str(Path(args.b).resolve())}
    if not args.no_decord:
        try:
            import decord  # noqa: F401

            methods["decord"] = None
        except ImportError:
            print("[ab] decord not installed: no peer reference", file=sys.stderr)
    samples: dict[tuple[str, str, str], list[float]] = {}
    cpu: dict[tuple[str, str, str], list[float]] = {}
    frames: dict[tuple[str, str, str], int] = {}
    for rnd in range(args.rounds):
        for label, path in videos:
            for plan in PLANS:
                names = list(methods)
                names = names[rnd % len(names):] + names[:rnd % len(names)]
                for name in names:
                    tree = methods[name]
                    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (tree, bench_root) if p))
                    cmd = [sys.executable, "-c", _CHILD, str(path), plan.kind, str(plan.value),
                           str(args.calls), "decord" if tree is None else "ours"]
                    # cwd = the tree: ``python -c`` puts the working directory first on sys.path
                    out = subprocess.run(cmd, env=env, cwd=tree or bench_root, check=True, capture_output=True,
                                         text=True).stdout
                    res = json.loads(out.strip().splitlines()[-1])
                    if tree is not None and not res["tree"].startswith(tree):
                        raise SystemExit(f"child imported {res['tree']}, not tree {tree}")
                    key = (label, plan.name, name)
                    samples.setdefault(key, []).extend(res["times"])
                    cpu.setdefault(key, []).extend(res["cpu"])
                    frames[key] = res["n"]
        print(f"[ab] round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"\nmedian wall time (CPU time of all threads) per call, {args.rounds} rounds x {args.calls} calls")
    print(f"{'video':<20} {'plan':<10} " + " ".join(f"{n:>22}" for n in methods) + "   B/A wall   B/A cpu")
    rows = []
    for label, _ in videos:
        for plan in PLANS:
            med = {n: statistics.median(samples[(label, plan.name, n)]) for n in methods}
            mcpu = {n: statistics.median(cpu[(label, plan.name, n)]) for n in methods}
            ratio, cratio = med["B"] / med["A"], mcpu["B"] / mcpu["A"]
            print(f"{label:<20} {plan.name:<10} "
                  + " ".join(f"{med[n] * 1000:>9.0f}ms ({mcpu[n] * 1000:>6.0f}ms)" for n in methods)
                  + f"   {ratio:>8.3f}   {cratio:>7.3f}")
            rows.append({"video": label, "plan": plan.name, "median_s": med, "median_cpu_s": mcpu,
                         "b_over_a": ratio, "b_over_a_cpu": cratio, "frames": frames[(label, plan.name, "B")],
                         "samples": {n: samples[(label, plan.name, n)] for n in methods},
                         "cpu_samples": {n: cpu[(label, plan.name, n)] for n in methods}})
    if args.json:
        args.json.write_text(json.dumps({"a": args.a, "b": args.b, "rounds": args.rounds, "calls": args.calls,
                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
