"""Pipeline overhead: one manifest partition materialised through Dagster vs the same steps called directly.

    python -m bench.pipeline [--quick] [--videos 50] [--repeat 3] [--model tiny] [--device cpu] [--json PATH]

Both sides work on the same manifest (``--videos`` synthetic 640x360 30 fps H.264 clips of ``--seconds`` s,
absolute paths in a CSV) with the same models and settings (quality: count_k=8; keyframes: 1 fps, 32 frames,
JPEG export; decode_workers=2):

- **dagster**: ``dg.materialize`` of the project's assets and their asset checks for the partition, with
  the project's resources (``default_resources`` + ``ClipModelResource``), on a temporary instance (SQLite
  event log, like ``dagster dev``; created once, before the rounds), as
  ``video_assets_tests.pipeline_helpers.materialize_partition`` does. This includes what the assets add:
  re-reading the manifest table, metadata (histograms, a contact sheet of the keyframes), orphan clean-up, the
  checks, and the event log.
- **direct**: ``video_assets.pipeline.runner``: ``build_manifest_table`` -> ``score_quality_and_extract_keyframes``
  (one decode for both tables, as the assets do; ``score_quality`` + ``extract_keyframes`` on a runner without
  it), with the same source policy and read limits, each table written with ``write_table``; no Dagster.

The model is loaded once beforehand (the process-wide cache serves both sides), so neither side pays for it.
The two sides alternate (order swapped every round); each figure is the median of ``--repeat`` rounds.
Target: dagster / direct <= 1.10 with 50 videos. The default model is the built-in tiny CLIP, so that the run
takes a minute on 2 CPU cores; its fixed costs (Dagster's) then weigh MORE than with a real model, so the ratio
is a conservative (high) estimate of the overhead with ViT-B/32 or ViT-L/14.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.corpus import CORPUS_DIR, encode_video

MODELS = {"tiny": "video-assets/tiny-clip", "b32": "openai/clip-vit-base-patch32",
          "l14": "openai/clip-vit-large-patch14"}
TARGET_RATIO = 1.10


def pipeline_corpus(n: int, seconds: int, width: int = 640, height: int = 360) -> list[Path]:
    paths = []
    for i in range(n):
        p = CORPUS_DIR / f"pipe_{width}x{height}_30fps_{seconds}s_gop60_s{i}.mp4"
        if not p.exists():
            encode_video(p, width, height, 30, seconds, gop=60, seed=1000 + i)
        paths.append(p)
    return paths


def write_manifest(folder: Path, videos: list[Path], name: str = "bench_manifest.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["video_id,uri,label"] + [f"v{i:04d},{p.resolve()},bench" for i, p in enumerate(videos)]
    m = folder / name
    m.write_text("\n".join(lines) + "\n")
    return m


def _model_kwargs(model: str, device: str) -> dict:
    name = MODELS[model]
    path = None
    if model != "tiny":
        from bench.random_models import random_model_path

        path = random_model_path(name)
    return {"device": device, "model_path": path, "quality_model_name": name, "keyframes_model_name": name,
            "decode_workers": 2}


def _warehouse(warehouse_dir: Path):
    """The project's WarehouseResource for ``warehouse_dir``, allowed to read the benchmark corpus."""
    from video_assets.orchestration.resources import WarehouseResource

    kwargs = {"warehouse": str(warehouse_dir), "inbox": str(warehouse_dir / "inbox")}
    if "allowed_local_roots" in WarehouseResource.model_fields:
        kwargs["allowed_local_roots"] = [str(CORPUS_DIR.resolve())]
    return WarehouseResource(**kwargs)


def _accepted(fn, kwargs: dict) -> dict:
    params = inspect.signature(fn).parameters
    return {k: v for k, v in kwargs.items() if k in params}


def run_direct(manifest: Path, warehouse_dir: Path, key: str, model_kwargs: dict) -> dict:
    """What the assets compute, called directly: the runner's functions and write_table, with the same source
    policy and read limits as the Dagster side (whatever this version of the runner accepts)."""
    from video_assets.pipeline import runner
    from video_assets.pipeline.settings import KeyframeSettings, ManifestSettings, ModelSettings, QualitySettings
    from video_assets.pipeline.tables import KEYFRAMES_ASSET, MANIFEST_ASSET, QUALITY_ASSET, table_uri, write_table

    wh = _warehouse(warehouse_dir)
    warehouse = wh.warehouse_uri
    access = {}
    if hasattr(wh, "source_policy"):
        access = {"source_policy": wh.source_policy(), "limits": wh.read_limits()}
    models = ModelSettings(**model_kwargs)
    table, _ = runner.build_manifest_table(str(manifest), key, ManifestSettings(),
                                           **_accepted(runner.build_manifest_table, access))
    write_table(table, table_uri(warehouse, MANIFEST_ASSET, key))
    frame = table.to_pandas()
    both = getattr(runner, "score_quality_and_extract_keyframes", None)
    if both is not None:  # the assets decode each video once for both tables
        q, k = both(frame, QualitySettings(), KeyframeSettings(), warehouse, key, models, **_accepted(both, access))
    else:
        q = runner.score_quality(frame, QualitySettings(), models, partition_key=key,
                                 **_accepted(runner.score_quality, access))
        k = runner.extract_keyframes(frame, KeyframeSettings(), warehouse, key, models,
                                     **_accepted(runner.extract_keyframes, access))
    write_table(q, table_uri(warehouse, QUALITY_ASSET, key))
    write_table(k, table_uri(warehouse, KEYFRAMES_ASSET, key))
    return {"rows": q.num_rows, "shared_decode": both is not None,
            "quality_errors": int(sum(e is not None for e in q.column("error").to_pylist())),
            "keyframes_errors": int(sum(e is not None for e in k.column("error").to_pylist()))}


def run_dagster(manifest: Path, warehouse_dir: Path, model_kwargs: dict, instance) -> dict:
    """dg.materialize of the project's assets and checks for the manifest's partition. ``instance`` is created
    once for all rounds (like a deployment's persistent instance); creating a SQLite instance (~1-2 s of schema
    migrations) is not part of a run."""
    import dagster as dg

    from video_assets.orchestration.assets import ASSETS
    from video_assets.orchestration.partitions import PARTITIONS_NAME
    from video_assets.orchestration.resources import ClipModelResource, default_resources

    warehouse = _warehouse(warehouse_dir)
    key, _ = warehouse.registry().register_file(str(manifest))
    if not instance.has_dynamic_partition(PARTITIONS_NAME, key):
        instance.add_dynamic_partitions(PARTITIONS_NAME, [key])
    clip = ClipModelResource(**{k: v for k, v in model_kwargs.items() if v is not None})
    result = dg.materialize(ASSETS, partition_key=key, instance=instance, raise_on_error=False,
                            resources=default_resources(warehouse=warehouse, clip=clip),
                            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    checks = [e.passed for e in result.get_asset_check_evaluations()]
    return {"success": bool(result.success), "key": key, "checks": len(checks), "checks_passed": int(sum(checks))}


def _timed(fn) -> tuple[float, float, object]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="12 videos of 4 s (smoke test)")
    ap.add_argument("--videos", type=int, default=None, help="videos in the manifest (default 50)")
    ap.add_argument("--seconds", type=int, default=None, help="seconds per video (default 10)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default="tiny", choices=sorted(MODELS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    n = args.videos or (12 if args.quick else 50)
    seconds = args.seconds or (4 if args.quick else 10)
    logging.getLogger("video_assets").setLevel(logging.WARNING)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

    t0 = time.perf_counter()
    videos = pipeline_corpus(n, seconds)
    print(f"[pipeline] corpus: {n} x {seconds}s 640x360 ready in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    model_kwargs = _model_kwargs(args.model, args.device)
    import dagster as dg

    root = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    instance_cm = dg.instance_for_test()  # a fresh SQLite instance in a temporary folder, kept for all rounds
    instance = instance_cm.__enter__()
    try:
        manifest = write_manifest(root / "manifests", videos)
        # warm-up: load the model into the process-wide cache, import everything, run both paths once
        warm = run_dagster(manifest, root / "wh_warm", model_kwargs, instance)
        if not warm["success"]:
            raise SystemExit("[pipeline] the Dagster warm-up run failed")
        key = warm["key"]
        direct = run_direct(manifest, root / "wh_direct_warm", key, model_kwargs)
        if warm["checks_passed"] != warm["checks"] or direct["quality_errors"] or direct["keyframes_errors"]:
            raise SystemExit(f"[pipeline] the warm-up runs had errors: dagster {warm}, direct {direct}")
        samples: dict[str, list[tuple[float, float]]] = {"dagster": [], "direct": []}
        last: dict[str, object] = {}
        for r in range(args.repeat):
            order = ["dagster", "direct"] if r % 2 == 0 else ["direct", "dagster"]
            for side in order:
                wh = root / f"wh_{side}_{r}"
                if side == "dagster":
                    wall, cpu, out = _timed(lambda: run_dagster(manifest, wh, model_kwargs, instance))
                else:
                    wall, cpu, out = _timed(lambda: run_direct(manifest, wh, key, model_kwargs))
                samples[side].append((wall, cpu))
                last[side] = out
                shutil.rmtree(wh, ignore_errors=True)
                print(f"[pipeline] round {r + 1}/{args.repeat} {side}: {wall:.2f}s wall, {cpu:.2f}s CPU",
                      file=sys.stderr)
    finally:
        instance_cm.__exit__(None, None, None)
        shutil.rmtree(root, ignore_errors=True)
    med = {s: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for s, v in samples.items()}
    ratio = med["dagster"][0] / med["direct"][0]
    row = {"benchmark": "pipeline", "model": args.model, "device": args.device, "videos": n,
           "seconds_per_video": seconds, "repeat": args.repeat,
           "dagster_s": med["dagster"][0], "direct_s": med["direct"][0],
           "dagster_cpu_s": med["dagster"][1], "direct_cpu_s": med["direct"][1],
           "overhead_s": med["dagster"][0] - med["direct"][0],
           "ratio_dagster_over_direct": ratio,
           "ratio_cpu_dagster_over_direct": med["dagster"][1] / med["direct"][1],
           "videos_per_s_dagster": n / med["dagster"][0], "videos_per_s_direct": n / med["direct"][0],
           "cpu_s_per_video_dagster": med["dagster"][1] / n, "cpu_s_per_video_direct": med["direct"][1] / n,
           "samples": samples, "last": last,
           "target": f"dagster/direct <= {TARGET_RATIO} ({n} videos)",
           "status": "PASS" if ratio <= TARGET_RATIO else "FAIL"}
    print(f"\npipeline ({n} videos x {seconds}s, model {args.model}, {args.device}): dagster {med['dagster'][0]:.2f}s, "
          f"direct {med['direct'][0]:.2f}s, overhead {row['overhead_s']:+.2f}s, ratio {ratio:.3f} "
          f"(target <= {TARGET_RATIO}: {row['status']}); CPU ratio {row['ratio_cpu_dagster_over_direct']:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": [row], "quick": args.quick}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
