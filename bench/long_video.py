"""Peak memory of keyframe extraction on a long video: candidates stream through in chunks.

    python -m bench.long_video [--minutes 120] [--width 1280 --height 720] [--model tiny] [--json PATH]

Builds (once, cached in bench/.corpus/) a long synthetic H.264 video without encoding all of it: a short
segment (``--segment-sec``, default 20 s) is encoded once with libx264 and its packets are then remuxed
(``-c copy`` style, PyAV) over and over with shifted timestamps until the video is ``--minutes`` long. Every
copy starts with a keyframe and the GOPs are closed, so the result is a valid stream that decodes like the
segment repeated: a 2-hour 720p30 file (216,000 frames) is written in well under a minute.

Then runs VideoAdaptiveKeyframesSampling at 1 fps (``max_candidates`` off, so a 2-hour video has 7,200
candidates) and prints wall time, CPU time, candidates and the process's peak RSS (``ru_maxrss``), and with
``--json`` writes them. Run it in a fresh process (``bench.suite`` does) so that the peak RSS is this run's
own. Target: peak RSS < 2 GB for 2 hours of 720p.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from fractions import Fraction
from pathlib import Path

import av

from bench.corpus import CORPUS_DIR, encode_video

MODELS = {"tiny": "video-assets/tiny-clip", "b32": "openai/clip-vit-base-patch32",
          "l14": "openai/clip-vit-large-patch14"}
RSS_TARGET_MB = 2048


def build_long_video(minutes: float, width: int, height: int, fps: int, gop: int, segment_sec: float) -> Path:
    """A ``minutes``-long mp4 made of one encoded segment repeated (cached)."""
    path = CORPUS_DIR / f"long_{width}x{height}_{fps}fps_{minutes:g}min_gop{gop}_seg{segment_sec:g}s.mp4"
    if path.exists():
        return path
    seg = CORPUS_DIR / f"segment_{width}x{height}_{fps}fps_{segment_sec:g}s_gop{gop}.mp4"
    if not seg.exists():
        # closed GOPs (x264's default) and a keyframe grid that divides the segment, so copies join cleanly
        encode_video(seg, width, height, fps, segment_sec, gop=gop, preset="veryfast", options={"crf": "28"})
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with av.open(str(seg)) as src:
        s_in = src.streams.video[0]
        packets = [p for p in src.demux(s_in) if p.size > 0]
        tb = s_in.time_base
        seg_ticks = int(round(Fraction(1, fps) / tb)) * len(packets)  # one copy's span in stream ticks
        copies = int(round(minutes * 60 / (len(packets) / fps)))
        with av.open(str(tmp), "w", format="mp4") as out:
            s_out = out.add_stream_from_template(s_in)
            for c in range(copies):
                shift = c * seg_ticks
                for p in packets:
                    q = av.Packet(bytes(p))
                    q.stream = s_out
                    q.time_base = tb
                    q.pts = p.pts + shift
                    q.dts = p.dts + shift
                    q.duration = p.duration
                    q.is_keyframe = p.is_keyframe
                    out.mux(q)
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=120.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--gop", type=int, default=30, help="keyframe interval in frames (default 30: 1 s)")
    ap.add_argument("--segment-sec", type=float, default=20.0, help="length of the encoded segment that repeats")
    ap.add_argument("--model", default="tiny", help="tiny, b32, l14 or a model name")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    path = build_long_video(args.minutes, args.width, args.height, args.fps, args.gop, args.segment_sec)
    build_s = time.perf_counter() - t0
    print(f"[long_video] {path.name}: {path.stat().st_size / 1e6:.0f} MB, ready in {build_s:.0f}s", file=sys.stderr)

    from video_assets.operators import VideoAdaptiveKeyframesSampling

    name = MODELS.get(args.model, args.model)
    model_path = None
    if args.model in ("b32", "l14"):
        from bench.random_models import random_model_path

        model_path = random_model_path(name)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    op = VideoAdaptiveKeyframesSampling(text="a moving textured object", clip_model_name=name, model_path=model_path,
                                        fps=1.0, max_num_frames=32, return_keyframes=False, device=args.device)
    op.model  # load it before the clock starts
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0, c0 = time.perf_counter(), time.process_time()
    d = op.details([str(path)])[0]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = d["num_candidates"]
    print(f"{args.minutes:g} min {args.width}x{args.height}: {n} candidates, {len(d['frame_ids'])} keyframes, "
          f"error={d['error']}, {wall:.1f}s wall, {cpu:.1f}s CPU, {n / wall:.1f} candidates/s, "
          f"peak RSS {peak:.0f} MB (after imports {rss0:.0f} MB, with the model {rss_model:.0f} MB; "
          f"target < {RSS_TARGET_MB} MB: {'PASS' if peak < RSS_TARGET_MB and d['error'] is None else 'FAIL'})")
    if args.json:
        row = {"benchmark": "long_video", "model": args.model, "device": args.device, "minutes": args.minutes,
               "width": args.width, "height": args.height, "fps": args.fps, "gop": args.gop,
               "segment_sec": args.segment_sec, "file_mb": path.stat().st_size / 1e6, "build_s": build_s,
               "candidates": n, "keyframes": len(d["frame_ids"]), "error": d["error"], "wall_s": wall,
               "cpu_s": cpu, "frames_per_s": n / wall if wall else None,
               "cpu_s_per_video_minute": cpu / args.minutes, "peak_rss_mb": peak, "rss_after_imports_mb": rss0,
               "rss_with_model_mb": rss_model, "target": f"peak RSS < {RSS_TARGET_MB} MB",
               "status": "PASS" if peak < RSS_TARGET_MB and d["error"] is None else "FAIL"}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": [row]}, indent=1))
    return 0 if d["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
