"""``make demo``: materialise the four assets (and their checks) for the bundled demo manifest into the
warehouse (``data/warehouse/`` unless ``VIDEO_ASSETS_WAREHOUSE`` says otherwise), print a summary and where
the files are. The run is recorded in the Dagster instance that ``make dev`` uses (``$DAGSTER_HOME``, default
the repository's ``dagster_home/``), so the UI shows the demo's partition as materialised, with its metadata.

Models: the operators' defaults (openai/clip-vit-large-patch14 for quality, openai/clip-vit-base-patch32 for
keyframes) from ``VIDEO_ASSETS_MODEL_PATH`` or the hub cache;
``VIDEO_ASSETS_CLIP_MODEL=video-assets/tiny-clip`` uses the built-in tiny model (random weights: the numbers
only show that the pipeline works). When the models cannot be loaded the demo stops at once with the loader's
message and exit status 2 — or, with ``--fallback-tiny`` (``make demo``) and no model chosen explicitly, prints
that message and runs with the tiny model.

The demo manifest lists a broken video on purpose (``data/samples/broken.mp4``, random bytes): its row has no
score and says why.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

MODEL_ENV = "VIDEO_ASSETS_CLIP_MODEL"
TINY_CLIP_NAME = "video-assets/tiny-clip"
DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent / "data" / "demo_manifest.csv"


def _load_models(clip) -> None:
    for which in ("quality", "keyframes"):
        name = clip.settings().quality_model if which == "quality" else clip.settings().keyframes_model
        t0 = time.monotonic()
        print(f"loading {which} model {name} ...", flush=True)
        model = clip.load(which)
        print(f"  {model.source} on {model.device} ({time.monotonic() - t0:.1f}s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", default=str(DEFAULT_MANIFEST),
                    help="manifest to materialise (local or s3://)")
    ap.add_argument("--warehouse", default=None, help="warehouse URI (default: $VIDEO_ASSETS_WAREHOUSE or "
                                                      "data/warehouse)")
    ap.add_argument("--verbose", action="store_true", help="show Dagster's event log")
    ap.add_argument("--fallback-tiny", action="store_true",
                    help=f"when the default models cannot be loaded and {MODEL_ENV} is not set, print why and "
                         "run with the built-in tiny model instead of stopping (what `make demo` does)")
    args = ap.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from video_assets.cli import add_partition, print_result, project_instance, run_partition
    from video_assets.errors import ModelLoadError
    from video_assets.orchestration.resources import ClipModelResource, WarehouseResource
    from video_assets.pipeline import report
    from video_assets.pipeline.manifests import ManifestError
    from video_assets.pipeline.tables import (
        EMBEDDINGS_ASSET,
        KEYFRAMES_ASSET,
        MANIFEST_ASSET,
        QUALITY_ASSET,
        read_frame,
    )

    clip = ClipModelResource()
    warehouse = WarehouseResource.from_env(**({"warehouse": args.warehouse} if args.warehouse else {}))
    try:
        _load_models(clip)  # fail fast, before any run starts
    except ModelLoadError as e:
        if not args.fallback_tiny or os.environ.get(MODEL_ENV):
            print(f"\nerror: {e}\n\nTo run the demo without model weights (random-weight tiny CLIP, numbers "
                  "meaningless):\n  VIDEO_ASSETS_CLIP_MODEL=video-assets/tiny-clip make demo", file=sys.stderr)
            return 2
        # `make demo` on a fresh offline machine: say loudly why, then show the pipeline with the tiny model.
        print(f"\nThe default models cannot be loaded here:\n  {e}\n\nRunning the demo with the built-in "
              f"{TINY_CLIP_NAME} instead (random weights: the numbers only show that the pipeline runs).\n",
              file=sys.stderr, flush=True)
        os.environ[MODEL_ENV] = TINY_CLIP_NAME
        clip = ClipModelResource()
        _load_models(clip)
    try:
        key, _ = warehouse.registry().register_file(args.manifest)
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"manifest {args.manifest} -> partition {key!r}; warehouse {warehouse.warehouse_uri}\n", flush=True)

    instance = project_instance()  # make dev's instance: the UI shows this run and its partition
    add_partition(instance, key)
    level = "DEBUG" if args.verbose else "ERROR"
    t0 = time.monotonic()
    result = run_partition(instance, key, resources={"clip": clip, "warehouse": warehouse},
                           run_config={"loggers": {"console": {"config": {"log_level": level}}}})
    elapsed = time.monotonic() - t0
    if not result.success:
        print_result(result)
        return 1

    import pandas as pd

    manifest = read_frame(warehouse.table_uri(MANIFEST_ASSET, key))
    quality = read_frame(warehouse.table_uri(QUALITY_ASSET, key))
    keyframes = read_frame(warehouse.table_uri(KEYFRAMES_ASSET, key))
    distinct = manifest[manifest["duplicate_of"].isna()]
    summary = (distinct[["video_id", "readable", "duration_sec", "width", "height"]]
               .merge(quality[["video_id", "uri", "quality_score", "error"]], on="video_id", how="left")
               .merge(keyframes[["video_id", "num_keyframes"]], on="video_id", how="left"))
    for col in ("width", "height", "num_keyframes"):
        summary[col] = summary[col].map(lambda v: "-" if pd.isna(v) else str(int(v)))
    errors = {vid: report.error_reason(e, u) for vid, e, u in zip(summary["video_id"], summary["error"],
                                                                   summary.pop("uri")) if isinstance(e, str)}
    summary["error"] = ["see below" if v in errors else "" for v in summary["video_id"]]
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(summary.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.3f}"))
    for vid, why in errors.items():  # in full: the reason is the point of showing a failure
        print(f"\n{vid}: {why}")
        if vid == "broken" and Path(args.manifest).resolve() == DEFAULT_MANIFEST:
            print("  (data/samples/broken.mp4 is broken on purpose: one bad video gets an error, it never "
                  "fails the run)")
    print(f"\nmodels: quality {quality['model'].iloc[0]}, keyframes {keyframes['model'].iloc[0]} "
          f"on {quality['device'].iloc[0]}; {len(summary)} videos in {elapsed:.1f}s")
    if "tiny-clip" in str(quality["model"].iloc[0]):
        print("(video-assets/tiny-clip has random weights: the scores show that the pipeline runs, not quality)")
    print()
    print_result(result)
    print("\nfiles:")
    for asset in (MANIFEST_ASSET, QUALITY_ASSET, KEYFRAMES_ASSET, EMBEDDINGS_ASSET):
        print(f"  {warehouse.table_uri(asset, key)}")
    print(f"  {warehouse.keyframes_dir(key)}/<video>/<frame>-<hash>.jpg")
    print(f"\nquery: python -c \"import pandas as pd; "
          f"print(pd.read_parquet('{warehouse.table_uri(QUALITY_ASSET, key)}'))\"")
    print(f"search: python -m video_assets.search \"bright shapes\" --warehouse {warehouse.warehouse_uri}")
    print(f"in the UI: make dev, then http://127.0.0.1:3000/assets/{QUALITY_ASSET} (instance "
          f"{instance.root_directory}, run {result.run_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
