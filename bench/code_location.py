"""What loading the Dagster code location costs: ``import video_assets.definitions`` in fresh processes.

Run from the repository root::

    .venv/bin/python -m bench.code_location                       # this tree, median of 5
    .venv/bin/python -m bench.code_location --repeat 7 . /tmp/base  # trees side by side, runs interleaved

Each tree is a checkout whose ``video_assets`` package is imported from that folder (the interpreter's working
directory comes first on ``sys.path``, before the editable install). Per run: the process's wall time, the
import alone, peak RSS (``ru_maxrss``), the number of modules loaded, whether torch and open_clip were among
them, and the cumulative time ``python -X importtime`` gives ``video_assets.definitions``. Results:
BENCHMARKS.md, "Code location load".
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROBE = ("import time, resource; t = time.perf_counter(); import video_assets.definitions, sys; "
         "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
         "len(sys.modules), 'torch' in sys.modules, 'open_clip' in sys.modules)")
IMPORTTIME = re.compile(r"\|\s*(\d+) \| video_assets\.definitions$", re.M)


def measure(tree: Path) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=tree, check=True, capture_output=True,
                         text=True).stdout.split()
    wall = time.perf_counter() - t0
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import video_assets.definitions"],
                         cwd=tree, check=True, capture_output=True, text=True).stderr
    return {"wall_s": wall, "import_s": float(out[0]), "rss_mib": int(out[1]) / 1024, "modules": int(out[2]),
            "torch": out[3] == "True", "open_clip": out[4] == "True",
            "importtime_s": int(IMPORTTIME.search(err).group(1)) / 1e6}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="*", default=["."], help="checkouts to compare (default: this one)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    trees = [Path(t).resolve() for t in args.trees]
    for tree in trees:  # warm-up: bytecode compiled, files in the page cache
        measure(tree)
    runs: dict[Path, list[dict]] = {t: [] for t in trees}
    for _ in range(args.repeat):
        for tree in trees:  # interleaved, so drift on a shared machine hits every tree alike
            runs[tree].append(measure(tree))
    print(f"median of {args.repeat} runs (min-max)")
    for tree, rs in runs.items():
        cells = []
        for key, fmt in (("wall_s", "{:.2f}"), ("import_s", "{:.2f}"), ("importtime_s", "{:.2f}"),
                         ("rss_mib", "{:.0f}")):
            xs = [r[key] for r in rs]
            median, low, high = (fmt.format(v) for v in (statistics.median(xs), min(xs), max(xs)))
            cells.append(f"{key} {median} ({low}-{high})")
        last = rs[-1]
        print(f"{tree}: " + " | ".join(cells)
              + f" | modules {last['modules']} torch {last['torch']} open_clip {last['open_clip']}")


if __name__ == "__main__":
    main()
