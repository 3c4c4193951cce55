"""Decode threads vs decode processes (``decode_processes``), in steady state.

    python -m bench.decode_processes [--seconds 30] [--min-videos N] [--segments 3] [--processes 1,2]
                                     [--nvdec SESSIONS] [--nvdec-processes 15] [--operators quality,keyframes]
                                     [--model tiny] [--device cpu] [--size 640x360] [--corpus-videos 12]
                                     [--corpus-seconds 20] [--batch 24] [--json PATH]
    python -m bench.decode_processes --prepare [--size ...] [--model l14]   # corpus and model only
    python -m bench.decode_processes --summary A.json B.json ...            # one table of earlier results

On bench/operators.py's corpus (by default 12 synthetic 640x360 30 fps 20 s H.264 videos; ``--size``,
``--corpus-videos`` and ``--corpus-seconds`` make another, e.g. 1920x1080; the distinct videos are cycled), for
each operator (quality: count_k=8; keyframes: 1 fps candidates, no export) and each mode (threads with the
default decode_workers, then decode_processes=N for each N, then with ``--nvdec S`` the candidate NVDEC path of
``bench/nvdec_operator.py``: ``nvdec`` (S NVDEC sessions, CPU fallbacks on their threads) and ``nvdec+P`` (S
sessions and P decode processes on one queue) for each P of ``--nvdec-processes``), it runs ``details`` over
batches of ``--batch`` videos until each figure has at least ``--seconds`` of work, or with ``--min-videos`` at
least that many videos, whichever comes first (the issue's bar: 500 videos or 30 s). The figures are measured in
``--segments`` interleaved slices (threads, P1, P2, threads, ...) so that a change in the machine's load hits
every mode alike. Where NVDEC is not usable (no PyNvVideoCodec, no driver, no CUDA) the nvdec modes are rows
with ``available`` false and the ``reason`` (the import's error), and the other modes run as usual.
The first call of each operator is a warm-up (model load, process start-up) and is reported apart as
``startup_s``. The JSON is rewritten after every round of slices (``complete`` false until the last), so a run
stopped early keeps what it measured.

Per row: ``mode`` (threads, processes, nvdec, nvdec+P), ``decoder`` (cpu or nvdec), ``decode_processes``,
``nvdec_sessions``; for nvdec rows what the NVDEC path did, warm-up included (``nvdec_videos``, ``cpu_videos`` the
decode processes took from the shared queue, ``cpu_fallbacks`` with ``fallback_reasons`` and
``mid_video_fallbacks``, decoders made and reconfigured); ``videos_per_s`` (all segments together),
``segment_videos_per_s`` (each slice), ``cpu_s_per_video`` (this process plus its decode processes),
``cpu_cores_busy`` (the whole machine's busy cores, /proc/stat), ``gpu_busy_pct`` and ``nvdec_busy_pct``
(nvidia-smi's utilization.gpu and .decoder, sampled every 200 ms during the slices, on a CUDA device; None
elsewhere), the decode processes' resident memory and the videos run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Mode:
    """One figure's decode: ``processes`` decode processes (0: threads), ``nvdec`` NVDEC sessions (0: none)."""

    processes: int
    nvdec: int = 0

    @property
    def label(self) -> str:
        if self.nvdec:
            return "nvdec" + (f"+{self.processes}" if self.processes else "")
        return f"P{self.processes}" if self.processes else "threads"


def modes_of(processes: str, nvdec: int, nvdec_processes: str) -> list[Mode]:
    """threads, P for each of ``processes``, then (with ``nvdec`` sessions) nvdec and nvdec+P."""
    out = [Mode(0)] + [Mode(int(x)) for x in processes.split(",") if x]
    if nvdec:
        out += [Mode(0, nvdec)] + [Mode(int(x), nvdec) for x in nvdec_processes.split(",") if x]
    return out


def _make(operator: str, processes: int, model: str, device: str):
    from bench.operators import _model_args
    from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore

    kw = dict(_model_args(model), device=device, decode_processes=processes)
    if operator == "quality":
        return VideoQualityScore(count_k=8, **kw)
    return VideoAdaptiveKeyframesSampling(text="a person", return_keyframes=False, **kw)


def _segment(op, paths: list[str], seconds: float, cursor: list[int], batch_size: int = BATCH,
             videos: float | None = None) -> tuple[int, float, float]:
    """Run details() on batches of the cycled corpus for at least ``seconds``, or at least ``videos`` videos
    when that comes first: (videos, wall s, CPU s)."""
    n, t0 = 0, time.perf_counter()
    cpu0 = time.process_time() + _cpu_of(op.decode_pids())
    pids = set(op.decode_pids())
    while time.perf_counter() - t0 < seconds and (videos is None or n < videos):
        batch = [paths[(cursor[0] + i) % len(paths)] for i in range(batch_size)]
        cursor[0] += batch_size
        rows = op.details(batch)
        bad = [r["error"] for r in rows if r["error"]]
        if bad:
            raise RuntimeError(f"benchmark video failed: {bad[0]}")
        n += len(batch)
        pids |= set(op.decode_pids())
    wall = time.perf_counter() - t0
    cpu = time.process_time() + _cpu_of(sorted(pids)) - cpu0
    return n, wall, cpu


def _row_of(s: dict, operator: str, m: Mode, op, args, corpus: dict) -> dict:
    gpu, nvdec = s["gpu"].means()
    run = s.get("nvdec_run")
    nv = run.summary() if run is not None else {"decoder": "cpu", "nvdec_sessions": 0}
    # the operator's own device: a CUDA request on a machine without one runs on the CPU
    return {"operator": operator, "model": _model_name(args.model), "device": str(op.device),
            "dtype": str(op.dtype),
            "mode": m.label if m.nvdec else ("threads" if m.processes == 0 else "processes"),
            "decode_processes": m.processes,
            # the loop's workers: NVDEC sessions in front of the decode processes (no CPU threads beside them)
            "decode_workers": m.nvdec + m.processes if m.nvdec else (m.processes or op.decode_workers), **nv,
            "videos": s["videos"],
            "seconds": round(s["wall"], 1), "videos_per_s": round(s["videos"] / s["wall"], 2),
            "segment_videos_per_s": s["segments"], "cpu_s_per_video": round(s["cpu"] / s["videos"], 4),
            "cpu_cores_busy": round(s["busy"] / s["wall"], 2) if s["busy"] is not None else None,
            "gpu_busy_pct": gpu, "nvdec_busy_pct": nvdec, "gpu_busy_samples": len(s["gpu"].samples),
            "startup_s": round(s["startup_s"], 2), "decode_process_rss_mb": s.get("rss"), **corpus}


def _unavailable_row(operator: str, m: Mode, args, reason: str, corpus: dict) -> dict:
    """An nvdec mode where NVDEC is not usable: recorded, not measured."""
    return {"operator": operator, "model": _model_name(args.model), "device": args.device, "mode": m.label,
            "decoder": "nvdec",
            "decode_processes": m.processes, "nvdec_sessions": m.nvdec, "available": False, "reason": reason,
            "videos": 0, "videos_per_s": None, **corpus}


def _model_name(key: str) -> str:
    from bench.operators import MODELS

    return MODELS[key][0]


def _write(path: Path | None, out: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(out, indent=1) + "\n")
        tmp.replace(path)


def summary(paths: list[Path]) -> None:
    """One table of the rows of earlier ``--json`` files (missing or unreadable ones are named)."""
    print(f"{'file':<26} {'operator':<9} {'size':>9} {'mode':<9} {'P':>2} {'videos':>6} {'videos/s':>8} "
          f"{'CPU s/v':>7} {'cores':>5} {'GPU %':>5} {'NVDEC %':>7} {'CPU fb':>6}")
    for p in paths:
        try:
            data = json.loads(Path(p).read_text())
        except (OSError, ValueError) as e:
            print(f"{Path(p).name:<26} no result ({type(e).__name__})")
            continue
        if "rows" not in data:  # another benchmark's file in the same glob, e.g. bench/nvdec_probe.py's
            print(f"{Path(p).name:<26} not a decode_processes result")
            continue
        for r in data["rows"]:
            head = f"{Path(p).name:<26} {r['operator']:<9} {r.get('size', '-'):>9} {r['mode']:<9} " \
                   f"{r['decode_processes']:>2}"
            if r.get("available") is False:
                print(f"{head} not measured: {r.get('reason')}")
                continue
            fb = r.get("cpu_fallbacks")
            print(f"{head} {r['videos']:>6} {r['videos_per_s']:>8.2f} {r['cpu_s_per_video']:>7.3f} "
                  f"{_fmt(r.get('cpu_cores_busy')):>5} {_fmt(r.get('gpu_busy_pct')):>5} "
                  f"{_fmt(r.get('nvdec_busy_pct')):>7} {'-' if fb is None else fb:>6}")
        if not data.get("complete", True):
            print(f"{Path(p).name:<26} (incomplete: stopped after {data.get('rounds_done')} of {data.get('rounds')} "
                  f"rounds)")


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="work per figure (all segments together)")
    ap.add_argument("--min-videos", type=int, default=None,
                    help="a figure also ends once it has run this many videos (all segments together)")
    ap.add_argument("--segments", type=int, default=3)
    ap.add_argument("--processes", default="1,2", help="decode_processes values to compare with threads")
    ap.add_argument("--nvdec", type=int, default=0,
                    help="NVDEC sessions for the modes nvdec and nvdec+P (bench/nvdec_operator.py); 0: none")
    ap.add_argument("--nvdec-processes", default="",
                    help="decode_processes values to run beside the NVDEC sessions (modes nvdec+P)")
    ap.add_argument("--operators", default="quality,keyframes")
    ap.add_argument("--model", default="tiny", help="a key of bench/operators.py's MODELS: tiny, b32, l14")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", default="640x360", help="WIDTHxHEIGHT of the corpus videos")
    ap.add_argument("--corpus-videos", type=int, default=12, help="distinct videos, cycled")
    ap.add_argument("--corpus-seconds", type=float, default=20.0, help="length of each video")
    ap.add_argument("--batch", type=int, default=BATCH, help="videos per details() call")
    ap.add_argument("--prepare", action="store_true", help="only build the corpus and the model, then exit")
    ap.add_argument("--summary", nargs="+", type=Path, metavar="JSON", help="print earlier results and exit")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.summary:
        summary(args.summary)
        return 0
    # Imported here, not at the top: spawned decode processes import this module as their __main__, and
    # should not pay for (or hold the memory of) the model libraries bench.operators brings in.
    from bench.operators import _model_args, corpus
    from bench.timing import busy_cpu_seconds
    from video_assets.compute.gpu_busy import GpuBusy

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    w, h = (int(x) for x in args.size.lower().split("x"))
    t0 = time.perf_counter()
    paths = corpus(size=(w, h), n=args.corpus_videos, seconds=args.corpus_seconds,
                   workers=max(2, (os.cpu_count() or 1) // 2))
    if args.prepare:
        _model_args(args.model)  # random weights saved once (bench/random_models.py)
        print(f"corpus of {len(paths)} x {args.size} and model {args.model} ready in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        return 0
    corpus_note = {"size": args.size, "corpus_videos": len(paths), "corpus_seconds": args.corpus_seconds}
    modes = modes_of(args.processes, args.nvdec, args.nvdec_processes)
    nvc, nvdec_reason = None, None
    if args.nvdec:
        from bench.nvdec_probe import nvdec_status

        st, nvc = nvdec_status()
        nvdec_reason = st["reason"]
        print(f"NVDEC: {'available' if nvc is not None else 'not available: ' + str(nvdec_reason)}",
              file=sys.stderr)
    out = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "python": platform.python_version()},
           "corpus": f"bench/operators.py corpus: {len(paths)} distinct x {args.size} 30 fps {args.corpus_seconds:g} s "
                     f"H.264 GOP 60, cycled to reach each figure's videos",
           "seconds_per_figure": args.seconds, "min_videos_per_figure": args.min_videos, "batch": args.batch,
           "modes": [m.label for m in modes], "nvdec": {"sessions": args.nvdec, "available": nvc is not None,
                                                        "reason": nvdec_reason} if args.nvdec else None,
           "rows": [], "complete": False,
           "rounds": args.segments, "rounds_done": 0}
    done: list[dict] = []
    per_slice = None if args.min_videos is None else args.min_videos / args.segments
    for operator in args.operators.split(","):
        ops, stats = {}, {}
        missing = [_unavailable_row(operator, m, args, str(nvdec_reason), corpus_note)
                   for m in modes if m.nvdec and nvc is None]
        run_modes = [m for m in modes if not m.nvdec or nvc is not None]
        for m in run_modes:
            op = _make(operator, m.processes, args.model, args.device)
            run = None
            if m.nvdec:
                from bench.nvdec_operator import use_nvdec

                run = use_nvdec(op, nvc, m.nvdec)
            t0 = time.perf_counter()
            op.details(paths[:4])  # warm-up: model load and, for processes, their start-up (NVDEC: decoders)
            stats[m] = {"startup_s": time.perf_counter() - t0, "segments": [], "videos": 0, "wall": 0.0,
                        "cpu": 0.0, "busy": 0.0, "gpu": GpuBusy(op.device), "nvdec_run": run}
            ops[m] = op
        cursor = [0]
        for round_ in range(args.segments):
            for m in run_modes:
                s = stats[m]
                b0 = busy_cpu_seconds()
                with s["gpu"]:
                    n, wall, cpu = _segment(ops[m], paths, args.seconds / args.segments, cursor, args.batch,
                                            per_slice)
                b1 = busy_cpu_seconds()
                s["segments"].append(round(n / wall, 2))
                s["videos"] += n
                s["wall"] += wall
                s["cpu"] += cpu
                s["busy"] = None if b0 is None or b1 is None or s["busy"] is None else s["busy"] + b1 - b0
                print(f"{operator:9s} {m.label:8s} {n / wall:6.2f} videos/s ({n} in {wall:.1f} s)", file=sys.stderr,
                      flush=True)
            out.update(rows=done + [_row_of(stats[m], operator, m, ops[m], args, corpus_note) for m in run_modes]
                       + missing, rounds_done=round_ + 1)
            _write(args.json, out)
        for m in run_modes:
            stats[m]["rss"] = _rss_mb(ops[m].decode_pids())
            ops[m].close()
            done.append(_row_of(stats[m], operator, m, ops[m], args, corpus_note))
        done += missing
    out.update(rows=done, complete=True)
    if args.json:
        _write(args.json, out)
    else:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
