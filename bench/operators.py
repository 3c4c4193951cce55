"""Operator throughput: VideoQualityScore and VideoAdaptiveKeyframesSampling, end to end vs their parts.

    python -m bench.operators [--quick] [--models tiny,b32] [--repeat 3] [--device cpu] [--json PATH]

For a corpus of synthetic 640x360 30 fps H.264 videos it reports, per model:
- quality: videos/s and frames/s end to end; decode-only time (sampling + preprocessing through the same worker
  pool, no model); model-only time (the same preprocessed frames, batch_size per forward); the ratio
  end_to_end / (decode_only + model_only) (target on CPU <= 1.0: the overlap must not cost extra), the median
  of its value in rounds that run the three back to back; and a naive
  baseline (per video: the same sampler, open_clip's PIL transform per frame, one forward per video, no
  overlap): speed-up target >= 1.5x with the tiny model on CPU.
- keyframes (1 fps candidates): candidates/s end to end vs decode-only + model-only, and CPU seconds per minute
  of video.
Each figure is the median of --repeat runs (rounds, for the three parts, whose order rotates). Models: "tiny"
(built-in tiny CLIP) and "b32"/"l14" (ViT-B/32, ViT-L/14 with random weights, loaded through the production
loader from bench/.models/).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.corpus import CORPUS_DIR, encode_video
from bench.random_models import random_model_path
from bench.timing import interleaved, median_time
from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore
from video_assets.operators.batching import run_overlapped
from video_assets.operators.common import make_inputs
from video_assets.operators.stage import SharedDecode
from video_assets.scoring import clip_iqa_probs
from video_assets.video import sample_frames

MODELS = {"tiny": ("video-assets/tiny-clip", None), "b32": ("openai/clip-vit-base-patch32", "random"),
          "l14": ("openai/clip-vit-large-patch14", "random")}


def corpus(quick: bool = False, size: tuple[int, int] = (640, 360), n: int | None = None,
           seconds: float | None = None, workers: int = 1) -> list[str]:
    """``n`` distinct synthetic ``size`` 30 fps H.264 videos (GOP 60) of ``seconds`` each (default 12 x 20 s,
    ``quick`` 4 x 10 s), cached; missing ones are encoded by ``workers`` processes (a many-core host builds a
    corpus in seconds)."""
    n, seconds = n or (4 if quick else 12), seconds or (10 if quick else 20)
    (w, h) = size
    paths = [CORPUS_DIR / f"ops_{w}x{h}_30fps_{seconds:g}s_gop60_s{i}.mp4" for i in range(n)]
    missing = [(i, p) for i, p in enumerate(paths) if not p.exists()]
    if workers > 1 and len(missing) > 1:
        # spawn: this process may hold torch's threads, which a fork would copy in an undefined state
        with ProcessPoolExecutor(min(workers, len(missing)), mp_context=multiprocessing.get_context("spawn")) as ex:
            for f in [ex.submit(encode_video, p, w, h, 30, seconds, gop=60, seed=i) for i, p in missing]:
                f.result()
    else:
        for i, p in missing:
            encode_video(p, w, h, 30, seconds, gop=60, seed=i)
    return [str(p) for p in paths]


def _model_args(key: str) -> dict:
    name, weights = MODELS[key]
    return {"clip_model_name": name, "model_path": random_model_path(name) if weights == "random" else None}


def _cpu_time(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def _rounds(op, run, paths: list[str], repeat: int) -> dict:
    """End to end (``run``), decode-only and model-only for exactly the frames the operator feeds its model,
    measured in ``repeat`` rounds of all three back to back (the order rotates), so that a drift of the
    machine's speed falls on all three alike: medians, and the median of the per-round ratios."""
    model = op.model
    inputs = make_inputs(paths, None, "mp4", "video_url")
    chunks: list[torch.Tensor] = []
    # the operator's own decode side (its one stage), the model replaced by a recorder
    stage = op.stage(model) if isinstance(op, VideoQualityScore) else op.stage(model, inputs)
    decode = SharedDecode(op.opener, [stage])

    def decode_only():
        chunks.clear()
        run_overlapped(inputs, lambda it: it.description, decode.prepare,
                       embed=lambda x: (chunks.append(x), torch.zeros(x.shape[0], 1))[1],
                       finish=lambda *a: None, batch_size=op.batch_size, decode_workers=op.decode_workers)

    decode_only()
    pixels = torch.cat(chunks)

    def model_only():
        for i in range(0, pixels.shape[0], op.batch_size):
            model.encode_pixels(pixels[i:i + op.batch_size])

    times, last = interleaved({"e2e": run, "decode": decode_only, "model": model_only}, repeat,
                              after=lambda: _sync(op.device))
    med = {k: statistics.median(v) for k, v in times.items()}
    e2e, dec, mod = times["e2e"], times["decode"], times["model"]
    return {"end_to_end_s": med["e2e"], "decode_only_s": med["decode"], "model_only_s": med["model"],
            "samples_s": times, "frames": int(pixels.shape[0]), "result": last["e2e"],
            "ratio_e2e_over_sum": statistics.median(e / (d + m) for e, d, m in zip(e2e, dec, mod)),
            "ratio_e2e_over_max": statistics.median(e / max(d, m) for e, d, m in zip(e2e, dec, mod))}


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def bench_quality(key: str, paths: list[str], repeat: int, device: str = "cpu") -> dict:
    op = VideoQualityScore(device=device, count_k=8, batch_size=32, **_model_args(key))
    op(video_paths=paths[:1])  # load the model and warm up
    r = _rounds(op, lambda: op(video_paths=paths), paths, repeat)
    t_e2e, scores, n_frames = r["end_to_end_s"], r.pop("result"), r.pop("frames")
    assert all(s is not None for s in scores)
    clip = op.model
    import open_clip

    pil = open_clip.image_transform(clip.image_size, is_train=False, mean=clip.mean, std=clip.std)
    text = clip.encode_text(["Good photo.", "Bad photo."])

    def naive():
        out = []
        for p in paths:
            s = sample_frames(p, count_k=8)
            x = torch.stack([pil(Image.fromarray(f)) for f in s.frames]).to(clip.device, clip.dtype)
            with torch.inference_mode():
                f = torch.nn.functional.normalize(clip.model.encode_image(x).float(), dim=-1)
            out.append(float(clip_iqa_probs(f, text, clip.logit_scale).mean()))
        return out

    t_naive, _, naive_scores = median_time(naive, repeat)
    return {"operator": "quality", "model": key, "device": op.device, "videos": len(paths), "frames": n_frames,
            **r, "videos_per_s": len(paths) / t_e2e, "frames_per_s": n_frames / t_e2e,
            "naive_s": t_naive, "speedup_vs_naive": t_naive / t_e2e,
            "max_abs_score_diff_vs_naive": float(np.max(np.abs(np.array(scores) - np.array(naive_scores)))),
            "cpu_s_per_video": _cpu_time(lambda: op(video_paths=paths)) / len(paths)}


def bench_keyframes(key: str, paths: list[str], repeat: int, device: str = "cpu") -> dict:
    op = VideoAdaptiveKeyframesSampling(text="a moving textured object", device=device, fps=1.0, max_num_frames=8,
                                        return_keyframes=False, batch_size=32, **_model_args(key))
    op(paths[:1])
    r = _rounds(op, lambda: op(paths), paths, repeat)
    t_e2e, n_cand = r["end_to_end_s"], r.pop("frames")
    r.pop("result")
    minutes = sum(sample_frames(p, count_k=1).duration for p in paths) / 60.0
    cpu = _cpu_time(lambda: op(paths))
    return {"operator": "keyframes", "model": key, "device": op.device, "videos": len(paths), "frames": n_cand,
            **r, "videos_per_s": len(paths) / t_e2e, "frames_per_s": n_cand / t_e2e,
            "wall_s_per_video_minute": t_e2e / minutes, "cpu_s_per_video_minute": cpu / minutes,
            "cpu_s_per_video": cpu / len(paths)}


def print_rows(rows: list[dict]) -> None:
    print(f"\n{'operator':<10} {'model':<5} {'videos/s':>8} {'frames/s':>8} {'e2e s':>7} {'decode s':>8} "
          f"{'model s':>7} {'e2e/sum':>7} {'e2e/max':>7} {'vs naive':>8}")
    for r in rows:
        naive = f"{r['speedup_vs_naive']:.2f}x" if "speedup_vs_naive" in r else "-"
        print(f"{r['operator']:<10} {r['model']:<5} {r['videos_per_s']:>8.2f} {r['frames_per_s']:>8.1f} "
              f"{r['end_to_end_s']:>7.2f} {r['decode_only_s']:>8.2f} {r['model_only_s']:>7.2f} "
              f"{r['ratio_e2e_over_sum']:>7.2f} {r['ratio_e2e_over_max']:>7.2f} {naive:>8}")
    for r in rows:
        if r["operator"] == "keyframes":
            print(f"keyframes/{r['model']}: {r['wall_s_per_video_minute']:.2f} s wall and "
                  f"{r['cpu_s_per_video_minute']:.2f} CPU s per minute of video at 1 fps")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", default="tiny,b32")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    paths = corpus(args.quick)
    rows = []
    for key in args.models.split(","):
        rows.append(bench_quality(key, paths, args.repeat, args.device))
        rows.append(bench_keyframes(key, paths, args.repeat, args.device))
        print_rows(rows[-2:])
    print_rows(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "cpus": os.cpu_count(), "torch": torch.__version__}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
