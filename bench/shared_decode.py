"""One decode for two assets: quality scores + keyframes decoded in two separate passes vs one shared pass.

    python -m bench.shared_decode [--quick] [--repeat 2] [--json PATH] [--workers N]

On the benchmark corpus (bench/corpus.py, "sampling": 2 x 1280x720 60 s H.264, GOP 30 and GOP 250; --quick:
the same at 640x360 20 s) with the pipeline's default settings (quality: count_k=8; keyframes: 1 fps
candidates), it reports the median of --repeat runs of:

- decode: what the operators do before the model (open, index, decode, RGB, preprocess) through the same
  worker pool, model replaced by a no-op: each operator's stage decoded on its own (two passes) vs both stages
  over one SharedDecode (one pass), as QualityAndKeyframes runs them. Target: two / shared >= 1.4.
- reader: the decoder alone, one video at a time: open + fetch(quality frames) + open + fetch(candidates) vs
  open + fetch(union); also frames decoded and seeks (DecodeStats).
- end to end with the tiny model: quality.details + keyframes.details (export included) vs
  QualityAndKeyframes.details, and that both give the same scores and keyframes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.corpus import build_corpus
from bench.timing import median_time
from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore
from video_assets.operators.batching import run_overlapped
from video_assets.operators.combined import QualityAndKeyframes
from video_assets.operators.common import make_inputs
from video_assets.operators.stage import SharedDecode
from video_assets.video import VideoReader, open_source

TARGET = 1.4
TINY = "video-assets/tiny-clip"


def _no_model(pixels: torch.Tensor) -> torch.Tensor:
    return torch.zeros(pixels.shape[0], 1)


def _decode_stage(q: VideoQualityScore, k: VideoAdaptiveKeyframesSampling, paths: list[str], workers: int):
    """The operators' decode stage through run_overlapped with no model: (two passes, shared pass) callables."""
    inputs = make_inputs(paths, None, "mp4", "video_url")
    q_stage, k_stage = q.stage(), k.stage(k.model, inputs)

    def run(stages):
        decode = SharedDecode(k.opener, stages)
        out = run_overlapped(inputs, lambda it: it.description, decode.prepare, embed=(_no_model,) * len(stages),
                             finish=lambda it, metas, feats: metas, batch_size=32, decode_workers=workers)
        assert all(o.error is None and not any(isinstance(m, Exception) for m in o.value) for o in out), out

    def two_passes():
        run([q_stage])
        run([k_stage])

    def shared():
        run([q_stage, k_stage])

    return two_passes, shared


def _reader_stage(q: VideoQualityScore, k: VideoAdaptiveKeyframesSampling, paths: list[str]):
    """The decoder alone: returns (two passes, shared pass) callables; each returns (frames decoded, seeks)."""
    def fetch(path: str, plans) -> tuple[int, int]:
        with open_source(path) as opened, VideoReader(opened) as reader:
            positions = [p(reader) for p in plans]
            for _ in reader.fetch(np.union1d(*positions) if len(positions) > 1 else positions[0], rgb=False):
                pass
            return reader.stats.frames_decoded, reader.stats.seeks

    q_plan, k_plan = q.stage().positions, k.stage(k.model, []).positions

    def two_passes():
        return np.sum([np.add(fetch(p, [q_plan]), fetch(p, [k_plan])) for p in paths], axis=0).tolist()

    def shared():
        return np.sum([fetch(p, [q_plan, k_plan]) for p in paths], axis=0).tolist()

    return two_passes, shared


def _compare(pairs, q_rows, k_rows) -> float:
    diff = 0.0
    for (cq, ck), sq, sk in zip(pairs, q_rows, k_rows):
        assert cq["frame_indices"] == sq["frame_indices"] and ck["frame_ids"] == sk["frame_ids"]
        assert ck["tos_paths"] == sk["tos_paths"]
        diff = max(diff, abs(cq["score"] - sq["score"]))
    return diff


def bench(paths: list[str], repeat: int, workers: int) -> dict:
    out_dir = tempfile.mkdtemp(prefix="shared-decode-")
    q = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=8, decode_workers=workers)
    k = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", fps=1.0, max_num_frames=8,
                                       text="a moving textured object", return_keyframes=False,
                                       output_tos_dir=out_dir, decode_workers=workers)
    combined = QualityAndKeyframes(q, k)
    combined.details(paths[:1])  # load the model, warm up
    rows: dict = {}

    two, one = _decode_stage(q, k, paths, workers)
    t_two, s_two, _ = median_time(two, repeat)
    t_one, s_one, _ = median_time(one, repeat)
    rows["decode"] = {"two_passes_s": t_two, "shared_s": t_one, "ratio": t_two / t_one,
                      "samples_two_passes_s": s_two, "samples_shared_s": s_one}

    two, one = _reader_stage(q, k, paths)
    t_two, s_two, (f_two, seeks_two) = median_time(two, repeat)
    t_one, s_one, (f_one, seeks_one) = median_time(one, repeat)
    rows["reader"] = {"two_passes_s": t_two, "shared_s": t_one, "ratio": t_two / t_one,
                      "frames_decoded_two_passes": f_two, "frames_decoded_shared": f_one,
                      "seeks_two_passes": seeks_two, "seeks_shared": seeks_one,
                      "samples_two_passes_s": s_two, "samples_shared_s": s_one}

    t_two, s_two, (q_rows, k_rows) = median_time(lambda: (q.details(paths), k.details(paths)), repeat)
    t_one, s_one, pairs = median_time(lambda: combined.details(paths), repeat)
    rows["end_to_end_tiny"] = {"two_passes_s": t_two, "shared_s": t_one, "ratio": t_two / t_one,
                               "max_abs_score_diff": _compare(pairs, q_rows, k_rows),
                               "samples_two_passes_s": s_two, "samples_shared_s": s_one}
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small corpus (640x360, 20 s): a smoke test")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per figure; the median is reported")
    ap.add_argument("--workers", type=int, default=None, help="decode workers (default: min(4, CPUs))")
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    workers = args.workers or max(1, min(4, os.cpu_count() or 1))
    paths = [str(p) for p in build_corpus("sampling", quick=args.quick)]
    rows = bench(paths, args.repeat, workers)
    print(f"\nshared decode, {len(paths)} videos ({'quick' if args.quick else 'full'} corpus), quality count_k=8 "
          f"+ keyframes 1 fps, {workers} decode workers, median of {args.repeat}")
    print(f"{'stage':<16} {'two passes s':>12} {'shared s':>9} {'ratio':>6}")
    for name, r in rows.items():
        print(f"{name:<16} {r['two_passes_s']:>12.3f} {r['shared_s']:>9.3f} {r['ratio']:>5.2f}x")
    r = rows["reader"]
    print(f"frames decoded: {r['frames_decoded_two_passes']} -> {r['frames_decoded_shared']}; "
          f"seeks: {r['seeks_two_passes']} -> {r['seeks_shared']}")
    ok = rows["decode"]["ratio"] >= TARGET
    print(f"target: decode time two passes / shared >= {TARGET}: {'met' if ok else 'NOT met'} "
          f"({rows['decode']['ratio']:.2f}x)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "videos": [Path(p).name for p in paths],
                                         "quick": args.quick, "workers": workers,
                                         "repeat": args.repeat, "cpus": os.cpu_count(), "target": TARGET,
                                         "target_met": ok, "torch": torch.__version__}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
