"""Profile the CPU path of the operators with py-spy and print where the time goes.

    python -m bench.profile quality|keyframes [--model tiny] [--rate 50] [--native] [--reps 3] [--out DIR]
    python -m bench.profile --workload quality --model tiny     # the workload alone, no profiler

Needs the ``bench`` extra (``pip install -e '.[bench]'``: py-spy). py-spy samples every thread of the process
from outside (no instrumentation, so the decode threads' timing is undisturbed) and with ``--native`` also the
native frames (FFmpeg, torch kernels, libgomp, libc). The workload is the operator on the ``bench.operators``
corpus (12 x 20 s 640x360), model loaded and warmed up first, run ``--reps`` times. Prints active samples per
thread, the hottest leaf frames, the innermost Python frames and inclusive counts; the raw collapsed stacks
are kept in ``--out`` (flamegraph.pl / speedscope can draw them).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path


def workload(which: str, model: str, reps: int) -> None:
    import torch

    from bench.operators import _model_args, corpus
    from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore

    torch.set_num_threads(os.cpu_count() or 1)
    paths = corpus(False)
    if which == "quality":
        op = VideoQualityScore(device="cpu", count_k=8, batch_size=32, **_model_args(model))
        call = lambda: op(video_paths=paths)  # noqa: E731
    else:
        op = VideoAdaptiveKeyframesSampling(text="a moving textured object", device="cpu", fps=1.0,
                                            max_num_frames=8, return_keyframes=False, batch_size=32,
                                            **_model_args(model))
        call = lambda: op(paths)  # noqa: E731
    call()  # load + warm up
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        call()
    print(f"[profile] {which}/{model}: {(time.perf_counter() - t0) / reps:.2f}s wall, "
          f"{(time.process_time() - c0) / reps:.2f}s CPU per run of {len(paths)} videos", file=sys.stderr)


def summarize(raw: Path, top: int = 20) -> str:
    """Text summary of py-spy's raw (collapsed) output recorded with --threads."""
    leaf, pyleaf, incl, threads = (collections.Counter() for _ in range(4))
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, n = line.rsplit(" ", 1)
        n = int(n)
        total += n
        frames = stack.split(";")
        threads[re.sub(r"^thread \(\d+\): ", "", frames[0])] += n
        frames = frames[1:]
        if frames:
            leaf[frames[-1]] += n
            py = [f for f in frames if ".py:" in f]
            pyleaf[re.sub(r"^(.*) \((?:.*/)?(?:site-packages/)?(.*)\)$", r"\1 (\2)", py[-1]) if py else "<native>"] += n
        for f in {re.sub(r":\d+\)$", ")", f) for f in frames}:
            incl[f] += n
    out = [f"{total} samples"]
    for title, counter in (("per thread", threads), ("hottest leaf frames", leaf),
                           ("innermost Python frame", pyleaf), ("inclusive", incl)):
        out.append(f"\n{title}:")
        out += [f"  {c:7d} {c / max(total, 1):6.1%}  {f[:140]}" for f, c in counter.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", nargs="?", choices=("quality", "keyframes"))
    ap.add_argument("--workload", choices=("quality", "keyframes"), help=argparse.SUPPRESS)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rate", type=int, default=50, help="samples per second (keep it low on 2 cores)")
    ap.add_argument("--native", action="store_true", help="include native frames (slower sampling)")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("bench/.corpus/profiles"),
                    help="where the raw stacks go (git-ignored)")
    args = ap.parse_args(argv)
    if args.workload:
        workload(args.workload, args.model, args.reps)
        return 0
    if not args.which:
        ap.error("say which operator: quality or keyframes")
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / f"{args.which}-{args.model}{'-native' if args.native else ''}.txt"
    cmd = [spy, "record", "--threads", "--format", "raw", "-r", str(args.rate), "-o", str(raw),
           *(["--native"] if args.native else []), "--", sys.executable, "-m", "bench.profile",
           "--workload", args.which, "--model", args.model, "--reps", str(args.reps)]
    rc = subprocess.run(cmd).returncode
    if rc != 0 or not raw.exists():
        print(f"py-spy failed (rc {rc}); it needs ptrace permission (e.g. --cap-add SYS_PTRACE in a container)",
              file=sys.stderr)
        return rc or 1
    print(summarize(raw, args.top))
    print(f"\nraw stacks: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
