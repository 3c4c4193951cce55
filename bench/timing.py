"""The one timing helper of the benchmarks."""

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
