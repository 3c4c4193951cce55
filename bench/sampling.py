"""Frame-sampling benchmark: ``video_assets.video.sample_frames`` against a naive PyAV decode and peers.

Run from the repository root::

    .venv/bin/python -m bench.sampling            # full corpus (2 x 60 s 720p30 H.264), median of 3 runs
    .venv/bin/python -m bench.sampling --quick    # small corpus (2 x 20 s 360p30), for a smoke test
    .venv/bin/python -m bench.sampling --repeat 5 --json bench/results/sampling.json

Methods (each call opens the file, finds the chosen frames and returns them as RGB uint8 arrays):

- ``ours``: ``sample_frames(path, ...)`` (index scan, keyframe seeks, non-reference frames skipped).
- ``naive``: PyAV with ``thread_type="AUTO"``, decodes every frame in order and converts only the chosen ones.
- ``torchcodec``: ``VideoDecoder(path, num_ffmpeg_threads=0, seek_mode="exact").get_frames_played_at(...)``.
- ``decord``: ``VideoReader(path, num_threads=0).get_batch(indices)``, indices from ``get_frame_timestamp``.

Peers are optional: a peer whose import fails is skipped with a message. See bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.corpus import VideoSpec, build_corpus_specs

# Target -> frame: the frame shown at time t is the last frame with time <= t. The tolerance absorbs float
# rounding (decord reports float32 seconds) and is far below a frame interval.
_EPS = 1e-4

# Best peer's time / naive, measured earlier on a 2-core machine on this corpus (for the printout only).
REFERENCE_BEST_PEER = {("count_k=8", 30): 0.105, ("count_k=8", 250): 0.61,
                       ("1 fps", 30): 0.75, ("1 fps", 250): 0.99}
TARGET_COUNT8_GOP250 = 0.50


@dataclass(frozen=True)
class Plan:
    name: str
    kind: str  # "count" or "fps"
    value: float

    def targets(self, duration: float) -> np.ndarray:
        """Target times in seconds from the first frame."""
        if self.kind == "count":
            k = int(self.value)
            return (np.arange(k) + 0.5) * duration / k
        step = 1.0 / self.value
        t = np.arange(int(math.ceil(duration / step)) + 1) * step
        return t[t < duration]

    def sampler_kwargs(self) -> dict:
        if self.kind == "count":
            return {"sample_mode": "by_count_uniform", "count_k": int(self.value)}
        return {"sample_mode": "by_fps", "target_fps": float(self.value)}


PLANS = [Plan("count_k=8", "count", 8), Plan("1 fps", "fps", 1.0)]


def chosen_positions(frame_times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Positions of the frames shown at ``targets`` (unique, ascending)."""
    pos = np.searchsorted(frame_times, np.asarray(targets) + _EPS, side="right") - 1
    return np.unique(np.clip(pos, 0, len(frame_times) - 1))


@dataclass
class Sampled:
    indices: list[int]
    timestamps: list[float]  # seconds from the first frame
    frames: np.ndarray  # (n, H, W, 3) uint8 RGB (may be a view)
    frames_decoded: int | None = None  # frames the decoder returned, where the method reports it


# -- methods ----------------------------------------------------------------------------------------------
def run_ours(path: Path, plan: Plan) -> Sampled:
    from video_assets.video import sample_frames

    s = sample_frames(path, **plan.sampler_kwargs())
    return Sampled(list(s.indices), list(s.timestamps), s.frames, s.stats.frames_decoded)


def run_naive(path: Path, plan: Plan) -> Sampled:
    """Decode every frame in order with PyAV; convert only the chosen ones.

    The chosen indices come from the container's frame count and average rate (constant frame rate), i.e. the
    same targets mapped onto times i / fps; the benchmark checks them against the other methods.
    """
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate)
        n = stream.frames
        times = np.arange(n) / fps
        wanted = chosen_positions(times, plan.targets(n / fps))
        wanted_set = set(int(p) for p in wanted)
        out_idx, out_ts, frames = [], [], []
        first_pts = None
        decoded = 0
        for i, frame in enumerate(container.decode(stream)):
            decoded += 1
            if first_pts is None:
                first_pts = frame.pts
            if i in wanted_set:
                out_idx.append(i)
                out_ts.append(float((frame.pts - first_pts) * frame.time_base))
                frames.append(frame.to_ndarray(format="rgb24"))
    return Sampled(out_idx, out_ts, np.stack(frames), decoded)


def make_torchcodec() -> Callable[[Path, Plan], Sampled]:
    from torchcodec.decoders import VideoDecoder  # noqa: F401  (import errors: peer unavailable)

    def run_torchcodec(path: Path, plan: Plan) -> Sampled:
        dec = VideoDecoder(str(path), num_ffmpeg_threads=0, seek_mode="exact")
        md = dec.metadata
        begin = float(md.begin_stream_seconds)
        duration = float(md.end_stream_seconds) - begin  # last frame's end: last time + one frame duration
        seconds = (begin + plan.targets(duration)).tolist()
        batch = dec.get_frames_played_at(seconds=seconds)
        pts = batch.pts_seconds.numpy() - begin
        fps = float(md.average_fps)
        idx = np.rint(pts * fps).astype(np.int64)
        frames = batch.data.permute(0, 2, 3, 1).numpy()  # NCHW -> NHWC view
        # get_frames_played_at returns one frame per target; drop repeats like the other methods do
        _, first = np.unique(idx, return_index=True)
        return Sampled(idx[first].tolist(), pts[first].tolist(), frames[first], None)

    return run_torchcodec


def make_decord() -> Callable[[Path, Plan], Sampled]:
    import decord  # noqa: F401  (import errors: peer unavailable)

    def run_decord(path: Path, plan: Plan) -> Sampled:
        vr = decord.VideoReader(str(path), num_threads=0)
        ts = vr.get_frame_timestamp(np.arange(len(vr)))  # (n, 2) start, end seconds (float32)
        starts = ts[:, 0].astype(np.float64) - float(ts[0, 0])
        duration = float(ts[-1, 1]) - float(ts[0, 0])
        idx = chosen_positions(starts, plan.targets(duration))
        frames = vr.get_batch(idx.tolist()).asnumpy()
        return Sampled(idx.tolist(), starts[idx].tolist(), frames, None)

    return run_decord


def available_methods() -> tuple[dict[str, Callable[[Path, Plan], Sampled]], dict[str, str]]:
    methods: dict[str, Callable[[Path, Plan], Sampled]] = {"ours": run_ours, "naive": run_naive}
    skipped: dict[str, str] = {}
    for name, factory in (("torchcodec", make_torchcodec), ("decord", make_decord)):
        try:
            methods[name] = factory()
        except Exception as e:  # ImportError, or OSError / RuntimeError when FFmpeg libraries are missing
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            skipped[name] = reason
            print(f"[bench] skipping {name}: {reason}", file=sys.stderr, flush=True)
    return methods, skipped


PEERS = ("torchcodec", "decord")


# -- measurement ------------------------------------------------------------------------------------------
@dataclass
class Row:
    video: str
    gop: int
    plan: str
    method: str
    times_s: list[float] = field(default_factory=list)  # wall seconds of the samples used for the median
    cpu_s: list[float] = field(default_factory=list)  # this process's CPU seconds (all threads), same samples
    discarded: int = 0  # samples dropped because other processes were busy during them
    contended: bool = False  # True when too few clean samples could be taken; the median includes busy ones
    median_s: float | None = None
    median_cpu_s: float | None = None
    n_frames: int | None = None  # frames returned
    frames_decoded: int | None = None
    frames_per_s: float | None = None
    vs_naive: float | None = None
    check: str = ""
    error: str | None = None


def _warm_file(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


class _CpuMeter:
    """Wall time, this process's CPU time, and CPU time used by *other* processes (from /proc/stat).

    The benchmark machine may be shared; a sample during which other processes kept a CPU busy is not a
    measurement of the method, so the caller drops it (and takes another) when ``foreign / wall`` is high.
    """

    _HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    @staticmethod
    def _busy() -> float | None:
        try:
            with open("/proc/stat") as f:
                vals = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
        return (sum(vals[:8]) - idle) / _CpuMeter._HZ  # user..softirq, plus steal (hypervisor contention)

    def __enter__(self):
        self.busy0 = self._busy()
        self.cpu0 = time.process_time()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.cpu0
        busy1 = self._busy()
        self.foreign = (None if self.busy0 is None or busy1 is None
                        else max(0.0, (busy1 - self.busy0) - self.cpu))
        return False


def _compare(ref: Sampled, got: Sampled, pixel_tol: float) -> str:
    """How ``got`` agrees with the naive reference: indices, timestamps, pixels."""
    notes = []
    if list(got.indices) != list(ref.indices):
        a, b = set(ref.indices), set(got.indices)
        notes.append(f"INDICES DIFFER (missing {sorted(a - b)[:4]}, extra {sorted(b - a)[:4]})")
    elif not np.allclose(got.timestamps, ref.timestamps, atol=1e-3):
        worst = float(np.max(np.abs(np.asarray(got.timestamps) - np.asarray(ref.timestamps))))
        notes.append(f"TIMESTAMPS DIFFER (max {worst:.4f} s)")
    if got.frames.shape != ref.frames.shape:
        notes.append(f"SHAPE {tuple(got.frames.shape)} vs {tuple(ref.frames.shape)}")
    elif len(ref.indices) and list(got.indices) == list(ref.indices):
        diffs = [float(np.mean(np.abs(g.astype(np.int16) - r.astype(np.int16))))
                 for g, r in zip(got.frames, ref.frames)]
        worst = max(diffs)
        if worst > pixel_tol:
            notes.append(f"PIXELS DIFFER (mean |diff| up to {worst:.2f})")
        else:
            notes.append(f"same (px {worst:.2f})")
    return "; ".join(notes) if notes else "same"


def measure(specs_paths: list[tuple[VideoSpec, Path]], methods: dict[str, Callable[[Path, Plan], Sampled]],
            repeat: int, pixel_tol: float, max_foreign: float, max_attempts: int) -> list[Row]:
    """Time every method on every (video, plan).

    Methods run interleaved (round-robin, order rotated each round) so slow drifts in machine speed hit all
    of them alike. A sample during which other processes used more than ``max_foreign`` CPUs on average is
    dropped and retaken, up to ``max_attempts`` samples per cell.
    """
    rows: list[Row] = []
    # one untimed call per peer: library start-up (FFmpeg loading, thread pools) is not per-video cost
    _, path0 = specs_paths[0]
    for name in PEERS:
        if name in methods:
            try:
                methods[name](path0, PLANS[0])
            except Exception:
                pass
    names = ["naive", "ours", *[p for p in PEERS if p in methods]]
    for spec, path in specs_paths:
        _warm_file(path)
        for plan in PLANS:
            results: dict[str, Sampled] = {}
            plan_rows = {name: Row(spec.label, spec.gop, plan.name, name) for name in names}
            busy_samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
            attempts = {name: 0 for name in names}
            rnd = 0
            while True:
                todo = [n for n in names if plan_rows[n].error is None and len(plan_rows[n].times_s) < repeat
                        and attempts[n] < max_attempts]
                if not todo:
                    break
                k = rnd % len(todo)
                rnd += 1
                for name in todo[k:] + todo[:k]:
                    row = plan_rows[name]
                    attempts[name] += 1
                    gc.collect()
                    try:
                        with _CpuMeter() as m:
                            res = methods[name](path, plan)
                    except Exception as e:
                        row.error = f"{type(e).__name__}: {e}"
                        print(f"[bench] {name} failed on {spec.label} {plan.name}: {row.error}",
                              file=sys.stderr, flush=True)
                        continue
                    if name not in results:
                        results[name] = res
                        row.n_frames = len(res.indices)
                        row.frames_decoded = res.frames_decoded
                    del res
                    if m.foreign is not None and m.foreign / m.wall > max_foreign:
                        row.discarded += 1
                        busy_samples[name].append((m.wall, m.cpu))
                        print(f"[bench]   (dropped a {name} sample: other processes used "
                              f"{m.foreign / m.wall:.2f} CPUs)", file=sys.stderr, flush=True)
                        continue
                    row.times_s.append(m.wall)
                    row.cpu_s.append(m.cpu)
            for name, row in plan_rows.items():
                if row.error is None and len(row.times_s) < repeat and busy_samples[name]:
                    # not enough clean samples: fill up with the fastest contended ones (the least disturbed)
                    row.contended = True
                    for w, c in sorted(busy_samples[name])[: repeat - len(row.times_s)]:
                        row.times_s.append(w)
                        row.cpu_s.append(c)
                if row.times_s:
                    row.median_s = statistics.median(row.times_s)
                    row.median_cpu_s = statistics.median(row.cpu_s)
                    row.frames_per_s = row.n_frames / row.median_s if row.median_s > 0 else None
                summary = "failed"
                if row.median_s is not None:
                    summary = (f"{row.median_s:.3f} s (cpu {row.median_cpu_s:.3f} s, "
                               f"{len(row.times_s)} samples{', CONTENDED' if row.contended else ''})")
                print(f"[bench] {spec.label:>26} {plan.name:>9} {name:>10}: {summary}",
                      file=sys.stderr, flush=True)
            naive = plan_rows["naive"]
            for name, row in plan_rows.items():
                if row.median_s is not None and naive.median_s:
                    row.vs_naive = row.median_s / naive.median_s
                if name == "naive":
                    row.check = "reference"
                elif name in results and "naive" in results:
                    row.check = _compare(results["naive"], results[name], pixel_tol)
                elif row.error:
                    row.check = "error"
            rows.extend(plan_rows.values())
            results.clear()
    return rows


# -- report -----------------------------------------------------------------------------------------------
def _fmt(v, spec: str, dash: str = "-") -> str:
    return dash if v is None else format(v, spec)


def print_table(rows: list[Row]) -> None:
    header = (f"{'video':<22} {'plan':<9} {'method':<10} {'time (s)':>9} {'cpu (s)':>8} {'frames':>6} "
              f"{'decoded':>7} {'frames/s':>8} {'/naive':>7}  check")
    print(header)
    print("-" * (len(header) + 14))
    prev = None
    for r in rows:
        key = (r.video, r.plan)
        if prev is not None and key != prev:
            print()
        prev = key
        t = _fmt(r.median_s, ".3f") + ("*" if r.contended else " ")
        print(f"{r.video:<22} {r.plan:<9} {r.method:<10} {t:>9} {_fmt(r.median_cpu_s, '.3f'):>8} "
              f"{_fmt(r.n_frames, 'd'):>6} {_fmt(r.frames_decoded, 'd'):>7} {_fmt(r.frames_per_s, '.1f'):>8} "
              f"{_fmt(r.vs_naive, '.3f'):>7}  {r.error or r.check}")
    if any(r.contended for r in rows):
        print("* too few samples free of other processes' load: "
              "the median includes the fastest contended ones")


def evaluate_targets(rows: list[Row]) -> list[dict]:
    """The spec's targets: ours/naive <= best peer's on every plan; <= 0.50 on count_k=8 with GOP 250."""
    out = []
    groups: dict[tuple[str, int, str], dict[str, Row]] = {}
    for r in rows:
        groups.setdefault((r.video, r.gop, r.plan), {})[r.method] = r
    for (video, gop, plan), by in groups.items():
        ours = by.get("ours")
        ours_ratio = ours.vs_naive if ours else None
        peers = [(r.vs_naive, m) for m, r in by.items() if m in PEERS and r.vs_naive is not None
                 and not r.check.startswith(("INDICES", "error"))]
        best = min(peers) if peers else None
        ref = REFERENCE_BEST_PEER.get((plan, gop))
        if best is None or ours_ratio is None:
            status = "n/a (no peer measured)" if ours_ratio is not None else "FAIL (ours failed)"
        else:
            status = "PASS" if ours_ratio <= best[0] else "FAIL"
        out.append({"target": "ours/naive <= best peer/naive", "video": video, "gop": gop, "plan": plan,
                    "ours": ours_ratio, "best_peer": best[1] if best else None,
                    "best_peer_ratio": best[0] if best else None, "reference_best_peer_ratio": ref,
                    "status": status})
        if plan == "count_k=8" and gop == 250:
            status = ("FAIL (ours failed)" if ours_ratio is None
                      else "PASS" if ours_ratio <= TARGET_COUNT8_GOP250 else "FAIL")
            out.append({"target": f"ours/naive <= {TARGET_COUNT8_GOP250:.2f}", "video": video, "gop": gop,
                        "plan": plan, "ours": ours_ratio, "limit": TARGET_COUNT8_GOP250, "status": status})
    return out


def print_targets(targets: list[dict]) -> None:
    print("\nTargets")
    for t in targets:
        where = f"{t['video']}, {t['plan']}"
        if "limit" in t:
            print(f"  [{t['status']}] {t['target']:<32} {where:<38} ours {_fmt(t['ours'], '.3f')}")
        else:
            peer = (f"best peer {t['best_peer']} {t['best_peer_ratio']:.3f}" if t["best_peer"] else "no peer")
            ref = _fmt(t["reference_best_peer_ratio"], ".3f", "n/a")
            print(f"  [{t['status']}] {t['target']:<32} {where:<38} ours {_fmt(t['ours'], '.3f')}  "
                  f"{peer}  (reference best peer {ref})")
    ok = all(t["status"].startswith(("PASS", "n/a")) for t in targets)
    print(f"  overall: {'PASS' if ok else 'FAIL'}")


def environment(methods: dict, skipped: dict) -> dict:
    import av

    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "pyav": av.__version__,
           "pyav_ffmpeg": ".".join(map(str, av.library_versions.get("libavcodec", ()))) + " (libavcodec)",
           "skipped": skipped}
    if "torchcodec" in methods:
        import torch
        import torchcodec

        env["torchcodec"] = torchcodec.__version__
        env["torch"] = torch.__version__
    if "decord" in methods:
        import decord

        env["decord"] = decord.__version__
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sampling", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small corpus (2 x 20 s 360p) for a smoke test")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per cell; the median is reported")
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    ap.add_argument("--max-foreign", type=float, default=0.15,
                    help="drop a sample when other processes used more than this many CPUs during it")
    ap.add_argument("--max-attempts", type=int, default=0,
                    help="samples per cell at most, dropped ones included (default: 4 x --repeat)")
    ap.add_argument("--pixel-tol", type=float, default=3.0,
                    help="mean |diff| per frame (0-255) above which frames count as different")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")

    methods, skipped = available_methods()
    env = environment(methods, skipped)
    print("[bench] " + ", ".join(f"{k}={v}" for k, v in env.items() if k != "skipped"), file=sys.stderr)
    specs_paths = build_corpus_specs("sampling", quick=args.quick)
    rows = measure(specs_paths, methods, args.repeat, args.pixel_tol, args.max_foreign,
                   args.max_attempts or 4 * args.repeat)

    print(f"\nSampling benchmark ({'quick' if args.quick else 'full'} corpus, median of {args.repeat}; "
          f"{env['cpus']} CPUs; time = wall, cpu = this process's CPU time, all threads; "
          f"frames/s = chosen frames per second of wall time)\n")
    print_table(rows)
    targets = evaluate_targets(rows)
    print_targets(targets)
    if args.quick:
        print("  note: the targets and reference figures are defined for the full corpus; "
              "--quick is a smoke test")
    for name, reason in skipped.items():
        print(f"  note: {name} skipped ({reason})")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps({"environment": env, "quick": args.quick, "repeat": args.repeat,
                                   "corpus": [{"path": str(p), "bytes": p.stat().st_size, **asdict(s)}
                                              for s, p in specs_paths],
                                   "rows": [asdict(r) for r in rows], "targets": targets}, indent=2))
        os.replace(tmp, args.json)
        print(f"\n[bench] wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
