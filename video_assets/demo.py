"""``make demo``: materialise the three assets (and their checks) for the bundled demo manifest into the
warehouse (``data/warehouse/`` unless ``VIDEO_ASSETS_WAREHOUSE`` says otherwise), print a summary and where
the files are.

Models: the operators' defaults (openai/clip-vit-large-patch14 for quality, openai/clip-vit-base-patch32 for
keyframes) from ``VIDEO_ASSETS_MODEL_PATH`` or the hub cache;
``VIDEO_ASSETS_CLIP_MODEL=video-assets/tiny-clip`` uses the built-in tiny model (random weights: the numbers
only show that the pipeline works). When the models cannot be loaded the demo stops at once with the loader's
message and exit status 2 — or, with ``--fallback-tiny`` (``make demo``) and no model chosen explicitly, prints
that message and runs with the tiny model.

The demo manifest lists a broken video on purpose: its row has no score and says why.
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
    import dagster as dg

    from video_assets.errors import ModelLoadError
    from video_assets.orchestration.assets import ASSETS
    from video_assets.orchestration.partitions import PARTITIONS_NAME
    from video_assets.orchestration.resources import ClipModelResource, WarehouseResource, default_resources
    from video_assets.pipeline import report
    from video_assets.pipeline.manifests import ManifestError
    from video_assets.pipeline.tables import KEYFRAMES_ASSET, MANIFEST_ASSET, QUALITY_ASSET, read_frame

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

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PARTITIONS_NAME, [key])
    level = "DEBUG" if args.verbose else "ERROR"
    t0 = time.monotonic()
    result = dg.materialize(ASSETS, partition_key=key, instance=instance,
                            resources=default_resources(clip=clip, warehouse=warehouse), raise_on_error=False,
                            run_config={"loggers": {"console": {"config": {"log_level": level}}}})
    elapsed = time.monotonic() - t0
    if not result.success:
        for ev in result.all_events:
            if ev.is_step_failure:
                err = ev.event_specific_data.error
                print(f"step {ev.step_key} failed: {err.message.strip() if err else ''}", file=sys.stderr)
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
    summary["error"] = [report.error_reason(e, u)[:60] if isinstance(e, str) else ""
                        for e, u in zip(summary["error"], summary.pop("uri"))]
    with pd.option_context("display.width", 160, "display.max_colwidth", 72, "display.max_columns", 20):
        print(summary.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.3f}"))
    print(f"\nmodels: quality {quality['model'].iloc[0]}, keyframes {keyframes['model'].iloc[0]} "
          f"on {quality['device'].iloc[0]}; {len(summary)} videos in {elapsed:.1f}s")
    if "tiny-clip" in str(quality["model"].iloc[0]):
        print("(video-assets/tiny-clip has random weights: the scores show that the pipeline runs, not quality)")
    print("\nasset checks:")
    for c in result.get_asset_check_evaluations():
        warn = c.severity == dg.AssetCheckSeverity.WARN
        state = "passed" if c.passed else ("WARNING" if warn else "FAILED")
        desc = (c.description or "").strip()
        print(f"  {c.asset_key.to_user_string()}.{c.check_name}: {state}" + (f" ({desc})" if desc else ""))
    print("\nfiles:")
    for asset in (MANIFEST_ASSET, QUALITY_ASSET, KEYFRAMES_ASSET):
        print(f"  {warehouse.table_uri(asset, key)}")
    print(f"  {warehouse.keyframes_dir(key)}/<video>/<frame>-<hash>.jpg")
    print(f"\nquery: python -c \"import pandas as pd; "
          f"print(pd.read_parquet('{warehouse.table_uri(QUALITY_ASSET, key)}'))\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
