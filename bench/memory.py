"""Peak memory of the operators when frames and results stream: flat as frames or videos grow.

    python -m bench.memory [--quick] [--cases quality,shared,keyframes_iter] [--quality-minutes 2,5,10]
                           [--long-minutes 120] [--long-fps 1] [--videos 100,300,1000] [--series-dir DIR]
                           [--json PATH]

Every measurement runs in a fresh subprocess (``python -m bench.memory --one CASE ...``) and reports that
process's peak RSS (``ru_maxrss``) together with the run's own counters (``last_run_stats``: frames emitted,
the largest chunk, the most frames held between decode and model at once, the most results waiting, the most
bytes of per-frame model output kept for unfinished videos), and an RSS
time series: a thread samples the process's RSS (``/proc/self/statm``) and the frames done so far (frames
emitted; videos done for the iterator) every second, so flatness shows as numbers: ``rss_at`` gives the RSS
and the peak so far when 10 %, 50 % and 100 % of the frames were done. ``--series-dir DIR`` also writes every
sample as it is taken (``DIR/<case>-<what>.jsonl``), so a run that is stopped early still leaves its curve.

- ``quality``: VideoQualityScore, ``by_fps`` at ``--long-fps`` (default 1; ``1,30`` adds every frame: 216,000
  frames, ~1 h on 2 busy cores) on the long 1280x720 30 fps video (``--long-minutes``, default 120: 7,200
  frames at 1 fps), and at 30 fps (every frame) on the same content at ``--quality-minutes`` (default 2, 5, 10:
  3,600 / 9,000 / 18,000 frames).
- ``shared``: QualityAndKeyframes on the same videos: quality at 1 fps + keyframes candidates at 1 fps on the
  long video, and quality at every frame + keyframes at 30 fps at ``--quality-minutes``.
- ``keyframes_iter``: VideoAdaptiveKeyframesSampling.iter_details over ``--videos`` (default 100, 300, 1,000)
  10 s 1280x720 clips with ``return_keyframes=True`` (10 full-size keyframes, 27 MB, per video), consuming each
  row as it comes.

The long videos are bench.long_video's (one 20 s segment remuxed, cached in bench/.corpus/); the clips are one
encoded clip hard-linked under many names (so every video has its own path and id). Target: every figure
<= 2 GB, and flat as the frame or video count grows. Tiny CLIP on the CPU (memory does not depend on the model
beyond its weights). ``--quick`` (the suite's smoke test): 10 min at 1 fps, 1 and 2 min at 30 fps, 20 and 50
videos.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.corpus import CORPUS_DIR, encode_video
from bench.long_video import build_long_video

TINY = "video-assets/tiny-clip"
RSS_TARGET_MB = 2048
W, H, FPS = 1280, 720, 30


def _long(minutes: float) -> Path:
    return build_long_video(minutes, W, H, FPS, gop=30, segment_sec=20.0)


def _clips(n: int) -> list[str]:
    base = CORPUS_DIR / f"clip_{W}x{H}_{FPS}fps_10s.mp4"
    if not base.exists():
        encode_video(base, W, H, FPS, 10.0, gop=30, options={"crf": "28"})
    d = CORPUS_DIR / "memory_clips"
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = d / f"clip_{i:05d}.mp4"
        if not p.exists():
            os.link(base, p)
        paths.append(str(p))
    return paths


def _stats(s) -> dict:
    return {"frames": s.frames, "chunks": s.chunks, "largest_chunk": s.largest_chunk,
            "peak_frames_held": s.peak_frames_held, "peak_results_waiting": s.peak_results_waiting,
            "peak_in_flight": s.peak_in_flight, "peak_kept_mb": round(s.peak_kept_bytes / 2**20, 3)}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSeries:
    """Samples (seconds, frames done, RSS MB) every ``every`` s from a thread; ``done()`` gives frames done.
    ``path``: also append each sample there as a JSON line (a stopped run still leaves its curve)."""

    def __init__(self, done, every: float = 1.0, path: Path | None = None):
        self.done, self.every, self.path = done, every, path
        self.samples: list[tuple[float, int, float]] = []
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="rss-series", daemon=True)

    def sample(self) -> None:
        s = (round(time.perf_counter() - self._t0, 1), int(self.done()), round(_rss_mb(), 1))
        self.samples.append(s)
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(s) + "\n")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def __enter__(self):
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def rss_at(samples: list, fractions=(0.1, 0.5, 1.0)) -> dict:
    """RSS (and the largest RSS sampled so far) when each fraction of the final frame count was done, from the
    samples taken while the run ran (the last sample, taken after it returned, is ``after``); 100 % is the
    last sample of the run when none reached every frame."""
    during = samples[:-1] if len(samples) > 1 else samples
    total = max((s[1] for s in samples), default=0)
    out = {}
    for f in fractions:
        i = next((i for i, s in enumerate(during) if total and s[1] >= f * total), len(during) - 1)
        out[f"{round(f * 100)}%"] = {"frames": during[i][1], "t_s": during[i][0], "rss_mb": during[i][2],
                                     "peak_so_far_mb": max(s[2] for s in during[: i + 1])}
    if samples:
        out["after"] = {"frames": samples[-1][1], "t_s": samples[-1][0], "rss_mb": samples[-1][2]}
    return out


def one(case: str, minutes: float, fps: float, videos: int, series_path: Path | None = None) -> dict:
    """One measurement, in this process (the caller runs it in a fresh one)."""
    from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore
    from video_assets.operators.combined import QualityAndKeyframes

    row: dict = {"case": case}
    if case in ("quality", "shared"):
        path = str(_long(minutes))
        row.update(minutes=minutes, fps=fps, video=f"{W}x{H} {FPS} fps")
    else:
        paths = _clips(videos)
        row.update(videos=videos, video=f"10 s {W}x{H} {FPS} fps clips")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if case in ("quality", "shared"):
        q = VideoQualityScore(clip_model_name=TINY, device="cpu", sample_mode="by_fps", target_fps=fps,
                              progress=False)
    if case == "quality":
        q.model
        t0 = time.perf_counter()
        with RssSeries(lambda: q.last_run_stats.frames, path=series_path) as series:
            [d] = q.score_details(video_paths=[path])
        row.update(error=d["error"], frames_scored=len(d["frame_indices"]), **_stats(q.last_run_stats))
    elif case == "shared":
        k = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", text="a moving textured object",
                                           fps=fps, return_keyframes=False, progress=False)
        both = QualityAndKeyframes(q, k, progress=False)
        q.model, k.model
        t0 = time.perf_counter()
        with RssSeries(lambda: both.last_run_stats.frames, path=series_path) as series:
            [(dq, dk)] = both.details([path])
        row.update(error=dq["error"] or dk["error"], frames_scored=len(dq["frame_indices"]),
                   candidates=dk["num_candidates"], **_stats(both.last_run_stats))
    else:
        k = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", text="a moving textured object",
                                           fps=1.0, return_keyframes=True, progress=False)
        k.model
        t0 = time.perf_counter()
        done = errors = keyframe_bytes = 0
        with RssSeries(lambda: done, path=series_path) as series:  # "frames done" here: videos done
            for d in k.iter_details(paths):
                done += 1
                errors += d["error"] is not None
                keyframe_bytes += sum(f.nbytes for f in d.get("keyframes", []))
        row.update(done=done, errors=errors, error=f"{errors} failed" if errors else None,
                   keyframe_mb_returned=keyframe_bytes / 1e6, **_stats(k.last_run_stats))
    row.update(rss_at=rss_at(series.samples), series=series.samples)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row.update(wall_s=wall, peak_rss_mb=peak, rss_after_imports_mb=rss0,
               status="PASS" if peak <= RSS_TARGET_MB and row.get("error") is None else "FAIL")
    return row


def _run(case: str, minutes: float = 0, fps: float = 0, videos: int = 0, series_dir: Path | None = None) -> dict:
    cmd = [sys.executable, "-m", "bench.memory", "--one", case, "--minutes", str(minutes), "--fps", str(fps),
           "--n", str(videos)]
    if series_dir is not None:
        what = f"{minutes:g}min-{fps:g}fps" if case != "keyframes_iter" else f"{videos}videos"
        cmd += ["--series", str(series_dir / f"{case}-{what}.jsonl")]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)  # its stderr shows here
    row = json.loads(out.stdout.strip().splitlines()[-1])
    what = (f"{row['minutes']:g} min at {row['fps']:g} fps" if "minutes" in row else f"{row['videos']} videos")
    at = row["rss_at"]
    print(f"[memory] {case:15s} {what:22s} peak RSS {row['peak_rss_mb']:6.0f} MB (RSS at 10/50/100 %: "
          f"{at['10%']['rss_mb']:.0f} / {at['50%']['rss_mb']:.0f} / {at['100%']['rss_mb']:.0f}), frames "
          f"{row['frames']:7d}, largest chunk {row['largest_chunk']}, frames held <= {row['peak_frames_held']}, "
          f"results waiting <= {row['peak_results_waiting']}, kept <= {row['peak_kept_mb']:.1f} MB, "
          f"{row['wall_s']:.0f}s, {row['status']}",
          file=sys.stderr, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs: a smoke test of the benchmark")
    ap.add_argument("--cases", default="quality,shared,keyframes_iter")
    ap.add_argument("--quality-minutes", default=None, help="lengths measured at 30 fps (default 2,5,10)")
    ap.add_argument("--long-minutes", type=float, default=None, help="the long video (default 120)")
    ap.add_argument("--long-fps", default="1", help="rates of quality on the long video (1,30: also every frame)")
    ap.add_argument("--videos", default=None, help="video counts of the keyframes iterator (default 100,300,1000)")
    ap.add_argument("--series-dir", type=Path, help="write each run's RSS samples there as they are taken")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--minutes", type=float, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--fps", type=float, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--series", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.minutes, args.fps, args.n, args.series)))
        return 0
    cases = args.cases.split(",")
    def given(value: str | None, default: str, quick: str) -> list[str]:  # "" = none of them
        return [v for v in (value if value is not None else quick if args.quick else default).split(",") if v]

    dense = [float(m) for m in given(args.quality_minutes, "2,5,10", "1,2")]
    long_minutes = args.long_minutes or (10.0 if args.quick else 120.0)
    long_fps = [float(f) for f in args.long_fps.split(",") if f]
    rows = []
    for case in ("quality", "shared"):
        if case in cases:
            rows += [_run(case, long_minutes, f, series_dir=args.series_dir)
                     for f in (long_fps if case == "quality" else ([1.0] if long_fps else []))]
            rows += [_run(case, m, 30.0, series_dir=args.series_dir) for m in dense]
    if "keyframes_iter" in cases:
        rows += [_run("keyframes_iter", videos=int(v), series_dir=args.series_dir)
                 for v in given(args.videos, "100,300,1000", "20,50")]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows}, indent=1))
    return 0 if all(r["status"] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
