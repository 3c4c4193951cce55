"""Peak memory of keyframe extraction on a long video: candidates stream through in chunks.

    python -m bench.long_video [--minutes 10] [--width 1280 --height 720] [--model video-assets/tiny-clip]

Encodes (once, cached in bench/.corpus/) a long synthetic H.264 video, runs VideoAdaptiveKeyframesSampling at
1 fps on it and prints wall time, candidates and the process's peak RSS (ru_maxrss).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from bench.corpus import CORPUS_DIR, encode_video
from video_assets.operators import VideoAdaptiveKeyframesSampling


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--model", default="video-assets/tiny-clip")
    args = ap.parse_args(argv)
    path = CORPUS_DIR / f"long_{args.width}x{args.height}_{args.fps}fps_{args.minutes:g}min_gop60.mp4"
    if not path.exists():
        t0 = time.perf_counter()
        encode_video(path, args.width, args.height, args.fps, args.minutes * 60, gop=60, preset="ultrafast")
        print(f"encoded {path.name} in {time.perf_counter() - t0:.0f}s ({path.stat().st_size / 1e6:.0f} MB)")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    op = VideoAdaptiveKeyframesSampling(text="a moving textured object", clip_model_name=args.model, fps=1.0,
                                        max_num_frames=32, return_keyframes=False, device="cpu")
    t0 = time.perf_counter()
    d = op.details([str(path)])[0]
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.minutes:g} min {args.width}x{args.height}: {d['num_candidates']} candidates, "
          f"{len(d['frame_ids'])} keyframes, error={d['error']}, {wall:.1f}s wall, "
          f"peak RSS {peak:.0f} MB (before the run {rss0:.0f} MB)")
    return 0 if d["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
