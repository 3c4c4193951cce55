"""The whole benchmark suite: ``make bench`` runs ``python -m bench.suite``.

    python -m bench.suite [--quick] [--repeat 3] [--device cpu|cuda] [--models tiny,b32]
                          [--only sampling,operators,pipeline,shared_decode,long_video,memory] [--machine NAME]
                          [--no-markdown]

Runs each benchmark in its own subprocess (so each one's peak RSS and CPU time are its own, read with
``os.wait4``), on the generated corpus (``bench/corpus.py``; cached in ``bench/.corpus/``), every figure the
median of ``--repeat`` runs inside the benchmark:

- ``sampling``: ``bench.sampling`` (frame sampler vs naive full decode and peer libraries);
- ``operators``: ``bench.operators``, one subprocess per model (quality and keyframes operators: end to end
  vs decode-only + model-only, naive baseline);
- ``pipeline``: ``bench.pipeline`` (a 50-video manifest through Dagster vs the runner called directly; tiny
  model);
- ``shared_decode``: ``bench.shared_decode`` when that module exists (one decode for both assets);
- ``long_video``: ``bench.long_video`` (1 fps keyframe candidates of a generated 2-hour 720p video; peak RSS).
- ``memory``: ``bench.memory`` (peak RSS and its curve against frames done: quality at 1 fps on the 2-hour
  video and at every frame on 2, 5 and 10 min, the shared decode, the keyframes iterator over 100 to 1,000
  videos; each run in a fresh process; ``--quick``: short runs).

Writes ``bench/results/<machine>.json`` (``<machine>``: e.g. ``cpu2-x86_64``, or ``h100-cpu16-x86_64`` with a
GPU) with every benchmark's own JSON, the summary rows, the targets with PASS/FAIL, the load average sampled
during each part and the environment, and regenerates the results section of ``BENCHMARKS.md`` (between the
``bench:results`` markers) from every suite result file in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MARKDOWN = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
PARTS = ("sampling", "operators", "pipeline", "shared_decode", "long_video", "memory")
SUITE_SCHEMA = "video_assets.bench.suite/1"


# ------------------------------------------------------------------------------------------------------------
# environment


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
        names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
        return names[0] if out.returncode == 0 and names else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_name(gpu: str | None = None) -> str:
    """``cpu{N}-{arch}``, prefixed with a short GPU slug when there is one (``h100-cpu16-x86_64``)."""
    base = f"cpu{os.cpu_count() or 1}-{platform.machine() or 'unknown'}"
    if not gpu:
        return base
    words = re.sub(r"(?i)\b(nvidia|geforce|tesla|pcie|sxm\d*|\d+gb|hbm\d*e?)\b", " ", gpu).split()
    slug = "-".join(w.lower() for w in words[:2]) or "gpu"
    return f"{re.sub(r'[^a-z0-9-]+', '', slug)}-{base}"


def environment() -> dict:
    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "platform": platform.platform(), "gpu": gpu_name()}
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
        with open("/proc/meminfo") as f:
            env["mem_gb"] = round(int(f.readline().split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    for mod in ("torch", "av", "dagster", "open_clip", "numpy"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional
            env[mod] = None
    return env


class LoadSampler:
    """Samples the 1-minute load average and the machine's busy CPUs (/proc/stat) while a part runs."""

    def __init__(self, every: float = 2.0):
        self.every, self.samples, self.busy = every, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _stat() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            return sum(v), v[3] + v[4]
        except OSError:
            return None

    def _run(self) -> None:
        prev = self._stat()
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])
            cur = self._stat()
            if prev and cur and cur[0] > prev[0]:
                self.busy.append((os.cpu_count() or 1) * (1 - (cur[1] - prev[1]) / (cur[0] - prev[0])))
            prev = cur

    def __enter__(self):
        self.start_load = os.getloadavg()[0]
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        s = self.samples or [self.start_load]
        return {"loadavg_start": round(self.start_load, 2), "loadavg_mean": round(sum(s) / len(s), 2),
                "loadavg_max": round(max(s), 2),
                "busy_cpus_mean": round(sum(self.busy) / len(self.busy), 2) if self.busy else None}


# ------------------------------------------------------------------------------------------------------------
# running the parts


def run_part(name: str, module: str, args: list[str], timeout: float | None = None) -> dict:
    """Run ``python -m module args`` in a fresh process; returns rc, wall, the child's CPU time and peak RSS,
    the load during it and the tail of its output (the output also streams to this terminal)."""
    cmd = [sys.executable, "-m", module, *args]
    print(f"\n[suite] === {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    tail: list[str] = []
    with LoadSampler() as load:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1)
        killer = threading.Timer(timeout, proc.kill) if timeout else None
        if killer:
            killer.start()
        for line in proc.stdout:
            sys.stderr.write(line)
            tail.append(line)
            del tail[:-40]
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if killer:
            killer.cancel()
    wall = time.perf_counter() - t0
    out = {"part": name, "command": cmd[1:], "rc": proc.returncode, "wall_s": round(wall, 2),
           "cpu_s": round(ru.ru_utime + ru.ru_stime, 2), "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
           "load": load.summary(), "output_tail": "".join(tail)[-4000:]}
    print(f"[suite] === {name}: rc {out['rc']}, {wall:.0f}s wall, {out['cpu_s']:.0f}s CPU, peak RSS "
          f"{out['peak_rss_mb']:.0f} MB, load {out['load']['loadavg_mean']}", file=sys.stderr, flush=True)
    return out


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _help_text(module: str) -> str:
    try:
        return subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                              timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _flags_for(module: str, wanted: dict[str, list[str]]) -> list[str]:
    """Pass only the options that ``module``'s --help lists (for benchmarks written by others)."""
    text = _help_text(module)
    out: list[str] = []
    for flag, value in wanted.items():
        if re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
            out += value
    return out


# ------------------------------------------------------------------------------------------------------------
# summary rows: one per figure in the table


def _row(bench: str, setting: str, **kw) -> dict:
    return {"benchmark": bench, "setting": setting, **kw}


def summarize(parts: dict, quick: bool) -> tuple[list[dict], list[dict]]:
    rows, targets = [], []

    p = parts.get("sampling")
    if p and p.get("result"):
        res = p["result"]
        for r in res.get("rows", []):
            if r.get("method") != "ours" or r.get("median_s") is None:
                continue
            rows.append(_row("sampling", f"{r['video']}, {r['plan']}", videos_per_s=1 / r["median_s"],
                             frames_per_s=r.get("frames_per_s"), cpu_s_per_video=r.get("median_cpu_s"),
                             peak_rss_mb=p["peak_rss_mb"], ratio=r.get("vs_naive"), ratio_name="time / naive"))
        for t in res.get("targets", []):
            what = t.get("target", "")
            where = ", ".join(str(t[k]) for k in ("video", "plan") if t.get(k))
            value = t.get("ours")
            targets.append({"benchmark": "sampling", "target": f"{what} ({where})" if where else what,
                            "value": value, "status": t.get("status")})

    for key, p in sorted(parts.items()):
        if not key.startswith("operators") or not p.get("result"):
            continue
        for r in p["result"].get("rows", []):
            setting = f"{r['operator']}, model {r['model']}, {r.get('device', 'cpu')}, {r['videos']} videos"
            rows.append(_row("operators", setting, videos_per_s=r["videos_per_s"], frames_per_s=r["frames_per_s"],
                             cpu_s_per_video=r.get("cpu_s_per_video"), peak_rss_mb=p["peak_rss_mb"],
                             ratio=r["ratio_e2e_over_sum"], ratio_name="e2e / (decode + model)"))
            if r["operator"] == "quality" and str(r.get("device", "cpu")) == "cpu":
                targets.append({"benchmark": "operators", "value": r["ratio_e2e_over_sum"],
                                "target": f"quality/{r['model']} CPU: e2e / (decode + model) <= 1.0",
                                "status": "PASS" if r["ratio_e2e_over_sum"] <= 1.0 else "FAIL"})
                if r["model"] == "tiny":
                    targets.append({"benchmark": "operators", "value": r["speedup_vs_naive"],
                                    "target": "quality/tiny CPU: speed-up vs naive >= 1.5",
                                    "status": "PASS" if r["speedup_vs_naive"] >= 1.5 else "FAIL"})

    p = parts.get("pipeline")
    if p and p.get("result"):
        for r in p["result"].get("rows", []):
            rows.append(_row("pipeline", f"Dagster, {r['videos']} videos x {r['seconds_per_video']}s, model "
                                         f"{r['model']}, {r['device']}", videos_per_s=r["videos_per_s_dagster"],
                             frames_per_s=None, cpu_s_per_video=r["cpu_s_per_video_dagster"],
                             peak_rss_mb=p["peak_rss_mb"], ratio=r["ratio_dagster_over_direct"],
                             ratio_name="Dagster / direct"))
            rows.append(_row("pipeline", "direct (runner), same manifest", videos_per_s=r["videos_per_s_direct"],
                             frames_per_s=None, cpu_s_per_video=r["cpu_s_per_video_direct"], peak_rss_mb=None,
                             ratio=None, ratio_name=None))
            targets.append({"benchmark": "pipeline", "target": r["target"], "value": r["ratio_dagster_over_direct"],
                            "status": r["status"]})

    p = parts.get("shared_decode")
    if p and p.get("result"):
        res = p["result"]
        stages = res.get("rows")
        items = stages.items() if isinstance(stages, dict) else enumerate(stages or [])
        nvid = len(res.get("videos") or []) or None
        for stage, r in items:
            if not isinstance(r, dict):
                continue
            shared_s = r.get("shared_s")
            frames = r.get("frames_decoded_shared")
            rows.append(_row("shared_decode", f"{stage}: one decode for both assets"
                                              f"{f', {nvid} videos' if nvid else ''}",
                             videos_per_s=nvid / shared_s if nvid and shared_s else None,
                             frames_per_s=frames / shared_s if frames and shared_s else None,
                             cpu_s_per_video=None, peak_rss_mb=p["peak_rss_mb"], ratio=r.get("ratio"),
                             ratio_name="two passes / shared"))
        if "target_met" in res:
            decode = stages.get("decode", {}) if isinstance(stages, dict) else {}
            targets.append({"benchmark": "shared_decode", "value": decode.get("ratio"),
                            "target": f"decode time two passes / shared >= {res.get('target')}",
                            "status": "PASS" if res["target_met"] else "FAIL"})

    p = parts.get("long_video")
    if p and p.get("result"):
        for r in p["result"].get("rows", []):
            rows.append(_row("long_video", f"{r['minutes']:g} min {r['width']}x{r['height']} {r['fps']} fps, "
                                           f"1 fps candidates, model {r['model']}, {r['device']}",
                             videos_per_s=1 / r["wall_s"], frames_per_s=r["frames_per_s"],
                             cpu_s_per_video=r["cpu_s"], peak_rss_mb=r["peak_rss_mb"], ratio=None, ratio_name=None))
            targets.append({"benchmark": "long_video", "value": r["peak_rss_mb"],
                            "target": f"peak RSS < 2048 MB ({r['minutes']:g} min {r['width']}x{r['height']})",
                            "status": r["status"]})

    p = parts.get("memory")
    if p and p.get("result"):
        for r in p["result"].get("rows", []):
            what = (f"{r['minutes']:g} min at {r['fps']:g} fps" if "minutes" in r else f"{r['videos']} videos")
            at = r.get("rss_at") or {}
            curve = "/".join(f"{at[k]['rss_mb']:.0f}" for k in ("10%", "50%", "100%") if k in at)
            rows.append(_row("memory", f"{r['case']}, {what}, {r['frames']} frames; RSS at 10/50/100 %: {curve} MB",
                             videos_per_s=None, frames_per_s=r["frames"] / r["wall_s"] if r["wall_s"] else None,
                             cpu_s_per_video=None, peak_rss_mb=r["peak_rss_mb"], ratio=None, ratio_name=None))
            targets.append({"benchmark": "memory", "value": round(r["peak_rss_mb"]),
                            "target": f"peak RSS <= 2048 MB ({r['case']}, {what})", "status": r["status"]})

    for name, p in parts.items():
        if p.get("rc") not in (0, None):
            targets.append({"benchmark": name, "target": "benchmark ran", "value": p.get("rc"), "status": "ERROR"})
    return rows, targets


# ------------------------------------------------------------------------------------------------------------
# BENCHMARKS.md


def _fmt(v, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:.0f}"
        return f"{v:.{digits}f}" if abs(v) >= 0.01 or v == 0 else f"{v:.2g}"
    return str(v)


def markdown_for(result: dict) -> str:
    env = result["environment"]
    lines = [f"### `{result['machine']}`{' (quick run: smoke test only)' if result.get('quick') else ''}", "",
             f"{env.get('cpus')} CPUs ({env.get('cpu_model') or '?'}), {env.get('mem_gb', '?')} GB RAM, GPU: "
             f"{env.get('gpu') or 'none'}; torch {env.get('torch')}, PyAV {env.get('av')}, dagster "
             f"{env.get('dagster')}. Run {result['started']} (UTC), `{result['command']}`, {result['wall_s']:.0f} s; "
             f"median of {result['repeat']} runs per figure. Load average during the parts (mean / max): "
             + ", ".join(f"{k} {v['load']['loadavg_mean']}/{v['load']['loadavg_max']}"
                         for k, v in result["parts"].items() if v.get("load")) + ".", "",
             "| benchmark | setting | videos/s | frames/s | CPU s / video | peak RSS (MB) | ratio |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        ratio = f"{_fmt(r['ratio'], 3)} ({r['ratio_name']})" if r.get("ratio") is not None else "-"
        lines.append(f"| {r['benchmark']} | {r['setting']} | {_fmt(r['videos_per_s'])} | "
                     f"{_fmt(r['frames_per_s'], 1)} | {_fmt(r['cpu_s_per_video'], 3)} | {_fmt(r['peak_rss_mb'])} | "
                     f"{ratio} |")
    lines += ["", "| benchmark | target | measured | status |", "|---|---|---:|---|"]
    for t in result["targets"]:
        lines.append(f"| {t['benchmark']} | {t['target']} | {_fmt(t.get('value'), 3)} | **{t['status']}** |")
    missing = [p for p in PARTS if not any(k == p or k.startswith(p + "-") for k in result["parts"])]
    if missing:
        lines += ["", f"Not run in this result: {', '.join(missing)}."]
    return "\n".join(lines)


def update_markdown(path: Path = MARKDOWN, results_dir: Path = RESULTS) -> None:
    results = []
    for f in sorted(results_dir.glob("*.json")):
        d = _read_json(f)
        if isinstance(d, dict) and d.get("schema") == SUITE_SCHEMA:
            if d.get("quick") and (results_dir / f.name.replace("-quick.json", ".json")).exists():
                continue  # a full result of the same machine supersedes its smoke test
            results.append(d)
    body = "\n\n".join(markdown_for(r) for r in results) or "_No suite results yet: run `make bench`._"
    body = ("<!-- generated by `python -m bench.suite` from bench/results/*.json; edits here are overwritten -->"
            "\n\n" + body)
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n## Results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n## Results\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")


# ------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small corpora, 1 run each: a smoke test (~2 min)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per figure, median reported (default 3; "
                                                              "--quick: 1)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    ap.add_argument("--models", default=None, help="operator models, comma-separated: tiny, b32, l14 "
                                                   "(default tiny,b32 on CPU, tiny,b32,l14 on a GPU; --quick: tiny)")
    ap.add_argument("--pipeline-model", default="tiny", help="model of the pipeline benchmark (default tiny)")
    ap.add_argument("--long-minutes", type=float, default=None, help="long video length (default 120; --quick 5)")
    ap.add_argument("--only", default=None, help=f"comma-separated subset of {', '.join(PARTS)}")
    ap.add_argument("--skip", default="", help="comma-separated parts to leave out")
    ap.add_argument("--machine", default=None, help="result name (default derived from the host)")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/<machine>.json)")
    ap.add_argument("--no-markdown", action="store_true", help="do not regenerate BENCHMARKS.md's results")
    ap.add_argument("--merge", action="store_true", help="keep the parts of an existing result file that this "
                                                         "run does not re-run (with --only/--skip)")
    args = ap.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    gpu = args.device.startswith("cuda")
    models = args.models or ("tiny" if args.quick else "tiny,b32,l14" if gpu else "tiny,b32")
    parts_wanted = [p.strip() for p in (args.only or ",".join(PARTS)).split(",") if p.strip()]
    parts_wanted = [p for p in parts_wanted if p not in {s.strip() for s in args.skip.split(",")}]
    unknown = set(parts_wanted) - set(PARTS)
    if unknown:
        ap.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    env = environment()
    machine = args.machine or machine_name(env["gpu"] if gpu else None)
    out_path = args.out or RESULTS / f"{machine}{'-quick' if args.quick else ''}.json"
    quick = ["--quick"] if args.quick else []
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    t_start = time.perf_counter()
    parts: dict[str, dict] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_suite_"))

    def part(name: str, module: str, extra: list[str], timeout: float | None = None) -> None:
        js = tmp / f"{name}.json"
        p = run_part(name, module, [*extra, "--json", str(js)], timeout)
        p["result"] = _read_json(js)
        parts[name] = p

    if "sampling" in parts_wanted:
        part("sampling", "bench.sampling", [*quick, "--repeat", str(repeat)])
    if "operators" in parts_wanted:
        for m in models.split(","):
            part(f"operators-{m}", "bench.operators",
                 [*quick, "--repeat", str(repeat), "--models", m, "--device", args.device])
    if "pipeline" in parts_wanted:
        part("pipeline", "bench.pipeline",
             [*quick, "--repeat", str(repeat), "--model", args.pipeline_model, "--device", args.device])
    if "shared_decode" in parts_wanted:
        if importlib.util.find_spec("bench.shared_decode") is None:
            print("[suite] bench/shared_decode.py does not exist yet: skipped", file=sys.stderr)
        else:
            flags = _flags_for("bench.shared_decode", {"--quick": quick, "--repeat": ["--repeat", str(repeat)],
                                                       "--device": ["--device", args.device]})
            js = tmp / "shared_decode.json"
            has_json = "--json" in _help_text("bench.shared_decode")
            p = run_part("shared_decode", "bench.shared_decode", [*flags, *(["--json", str(js)] if has_json else [])])
            p["result"] = _read_json(js) if has_json else None
            parts["shared_decode"] = p
    if "long_video" in parts_wanted:
        minutes = args.long_minutes or (5 if args.quick else 120)
        part("long_video", "bench.long_video", ["--minutes", f"{minutes:g}", "--device", args.device])
    if "memory" in parts_wanted:
        part("memory", "bench.memory", quick)

    kept = []
    if args.merge and out_path.exists():
        for name, old in json.loads(out_path.read_text()).get("parts", {}).items():
            if name not in parts:  # each kept part carries its own load figures and timestamps
                parts[name] = old
                kept.append(name)
    rows, targets = summarize(parts, args.quick)
    result = {"merged_parts_from_earlier_run": kept, "schema": SUITE_SCHEMA, "machine": machine,
              "quick": args.quick, "repeat": repeat,
              "device": args.device, "models": models, "started": started,
              "command": "python -m bench.suite " + " ".join(argv if argv is not None else sys.argv[1:]),
              "wall_s": time.perf_counter() - t_start, "environment": env, "rows": rows, "targets": targets,
              "parts": parts}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1, default=str))
    print(f"\n[suite] wrote {out_path} ({result['wall_s']:.0f}s)", file=sys.stderr)
    if not args.no_markdown:
        update_markdown()
        print(f"[suite] updated {MARKDOWN}", file=sys.stderr)
    print()
    print(markdown_for(result))
    failed = [t for t in targets if t["status"] == "ERROR"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
