"""The one timing helper of the benchmarks."""

import os
import statistics
import time


def median_time(fn, repeat: int) -> tuple[float, list[float], object]:
    """Call ``fn`` ``repeat`` times: (median seconds, every sample, the last result)."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def interleaved(fns: dict, repeat: int, after=None) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Call every function of ``fns`` once per round for ``repeat`` rounds, the order rotating each round, so
    that a drift of the machine's speed falls on all of them alike: (seconds per name, last result per name).
    ``after()`` runs inside each timing (e.g. a GPU synchronisation)."""
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    last: dict[str, object] = {}
    for i in range(repeat):
        for k in names[i % len(names):] + names[:i % len(names)]:
            t0 = time.perf_counter()
            last[k] = fns[k]()
            if after is not None:
                after()
            times[k].append(time.perf_counter() - t0)
    return times, last


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has been busy since boot (/proc/stat: all but idle and iowait), so that
    the difference over a block of work divided by its wall time is the cores it kept busy; None without it."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(vals[:8]) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")
