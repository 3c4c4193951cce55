"""``make demo``: run the main job on the bundled sample data and print what came out.

Today the main job samples frames from every video of the demo manifest (data/demo_manifest.csv); a bad video
is reported on its row and never stops the others.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from video_assets.errors import VideoAssetsError
from video_assets.video import sample_frames

DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent / "data" / "demo_manifest.csv"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    ap.add_argument("--count-k", type=int, default=8)
    args = ap.parse_args(argv)
    rows = list(csv.DictReader(args.manifest.open(newline="")))
    print(f"Sampling {len(rows)} videos from {args.manifest} (by_count_uniform, count_k={args.count_k})\n")
    print(f"{'video_id':<10} {'frames':>6} {'duration':>8} {'size':>9} {'decoded':>7} {'ms':>6}  indices / error")
    failed = 0
    for row in rows:
        uri = row["uri"]
        path = uri if "://" in uri or Path(uri).is_absolute() else str(args.manifest.parent / uri)
        t0 = time.perf_counter()
        try:
            s = sample_frames(path, "by_count_uniform", count_k=args.count_k)
        except VideoAssetsError as e:
            failed += 1
            print(f"{row['video_id']:<10} {'-':>6} {'-':>8} {'-':>9} {'-':>7} {'-':>6}  ERROR: {e}")
            continue
        ms = (time.perf_counter() - t0) * 1000
        print(f"{row['video_id']:<10} {len(s):>6} {s.duration:>7.2f}s {s.width}x{s.height:<5} "
              f"{s.stats.frames_decoded:>7} {ms:>6.0f}  {s.indices}")
    print(f"\n{len(rows) - failed} videos sampled, {failed} failed (errors shown on their rows).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
