"""Peak memory of the operators when frames and results stream: flat as frames or videos grow.

    python -m bench.memory [--cases quality,shared,keyframes_iter] [--quality-minutes 2,5,10] [--long-minutes 120]
                           [--videos 100,300,1000] [--json PATH]

Every measurement runs in a fresh subprocess (``python -m bench.memory --one CASE ...``) and reports that
process's peak RSS (``ru_maxrss``) together with the run's own counters (``last_run_stats``: frames emitted,
the largest chunk, the most frames held between decode and model at once, the most results waiting).

- ``quality``: VideoQualityScore, ``by_fps`` at 1 fps on the long 1280x720 30 fps video (``--long-minutes``,
  default 120: 7,200 frames), and at 30 fps (every frame) on the same content at ``--quality-minutes``
  (default 2, 5, 10: 3,600 / 9,000 / 18,000 frames).
- ``shared``: QualityAndKeyframes on the same videos: quality at 1 fps + keyframes candidates at 1 fps on the
  long video, and quality at every frame + keyframes at 30 fps at ``--quality-minutes``.
- ``keyframes_iter``: VideoAdaptiveKeyframesSampling.iter_details over ``--videos`` (default 100, 300, 1,000)
  10 s 1280x720 clips with ``return_keyframes=True`` (10 full-size keyframes, 27 MB, per video), consuming each
  row as it comes.

The long videos are bench.long_video's (one 20 s segment remuxed, cached in bench/.corpus/); the clips are one
encoded clip hard-linked under many names (so every video has its own path and id). Target: every figure
<= 2 GB, and flat as the frame or video count grows. Tiny CLIP on the CPU (memory does not depend on the model
beyond its weights).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
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
            "peak_in_flight": s.peak_in_flight}


def one(case: str, minutes: float, fps: float, videos: int) -> dict:
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
        [d] = q.score_details(video_paths=[path])
        row.update(error=d["error"], frames_scored=len(d["frame_indices"]), **_stats(q.last_run_stats))
    elif case == "shared":
        k = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", text="a moving textured object",
                                           fps=fps, return_keyframes=False, progress=False)
        both = QualityAndKeyframes(q, k, progress=False)
        q.model, k.model
        t0 = time.perf_counter()
        [(dq, dk)] = both.details([path])
        row.update(error=dq["error"] or dk["error"], frames_scored=len(dq["frame_indices"]),
                   candidates=dk["num_candidates"], **_stats(both.last_run_stats))
    else:
        k = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", text="a moving textured object",
                                           fps=1.0, return_keyframes=True, progress=False)
        k.model
        t0 = time.perf_counter()
        done = errors = keyframe_bytes = 0
        for d in k.iter_details(paths):
            done += 1
            errors += d["error"] is not None
            keyframe_bytes += sum(f.nbytes for f in d.get("keyframes", []))
        row.update(done=done, errors=errors, error=f"{errors} failed" if errors else None,
                   keyframe_mb_returned=keyframe_bytes / 1e6, **_stats(k.last_run_stats))
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row.update(wall_s=wall, peak_rss_mb=peak, rss_after_imports_mb=rss0,
               status="PASS" if peak <= RSS_TARGET_MB and row.get("error") is None else "FAIL")
    return row


def _run(case: str, minutes: float = 0, fps: float = 0, videos: int = 0) -> dict:
    cmd = [sys.executable, "-m", "bench.memory", "--one", case, "--minutes", str(minutes), "--fps", str(fps),
           "--n", str(videos)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)  # its stderr shows here
    row = json.loads(out.stdout.strip().splitlines()[-1])
    what = (f"{row['minutes']:g} min at {row['fps']:g} fps" if "minutes" in row else f"{row['videos']} videos")
    print(f"[memory] {case:15s} {what:22s} peak RSS {row['peak_rss_mb']:6.0f} MB, frames {row['frames']:7d}, "
          f"largest chunk {row['largest_chunk']}, frames held <= {row['peak_frames_held']}, "
          f"results waiting <= {row['peak_results_waiting']}, {row['wall_s']:.0f}s, {row['status']}",
          file=sys.stderr, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="quality,shared,keyframes_iter")
    ap.add_argument("--quality-minutes", default="2,5,10", help="lengths measured at 30 fps (every frame)")
    ap.add_argument("--long-minutes", type=float, default=120.0, help="the long video measured at 1 fps")
    ap.add_argument("--videos", default="100,300,1000", help="video counts of the keyframes iterator")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--minutes", type=float, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--fps", type=float, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.minutes, args.fps, args.n)))
        return 0
    cases = args.cases.split(",")
    dense = [float(m) for m in args.quality_minutes.split(",") if m]
    rows = []
    for case in ("quality", "shared"):
        if case in cases:
            rows.append(_run(case, args.long_minutes, 1.0))
            rows += [_run(case, m, 30.0) for m in dense]
    if "keyframes_iter" in cases:
        rows += [_run("keyframes_iter", videos=int(v)) for v in args.videos.split(",") if v]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows}, indent=1))
    return 0 if all(r["status"] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
