"""A Daft program in the shape LAS users write, run in its own process by test_daft_udf.py (Daft fixes the
runner once per process).

    python -m video_assets_tests.daft_program SPEC.json OUT.pkl

SPEC: ``runner`` ("native" or "ray"), ``paths`` (a column with nulls, bad and missing files), ``binaries``
(bytes files to read, null entries), ``formats``, ``questions`` (one per path, nulls), ``kf_dir``, ``queries``
(names from QUERIES, each run as its own query). OUT: per query its schema (column -> dtype string) and
``to_pydict()``, or the error it raised.
"""

from __future__ import annotations

import json
import pickle
import sys
import traceback
from pathlib import Path

import daft
from daft import col

from video_assets.daft import las_udf, operator_udf
from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore

# The seed arguments (with the test model from VIDEO_ASSETS_CLIP_MODEL); num_gpus=0: no GPU here.
QUALITY_ARGS = {"prompt": "quality", "device": "cuda", "sample_mode": "by_count_uniform", "count_k": 4,
                "reduce_mode": "avg"}
PROMPTS = ["quality", "sharpness", "Sharp photo.|Blurry photo."]


def keyframes_args(spec: dict) -> dict:
    return {"text": "spoon", "output_tos_dir": spec["kf_dir"], "max_num_frames": 4, "fps": 2.0, "rank": 3}


def _quality(spec, ds, concurrency=1):
    return ds.with_column("quality_score", las_udf(VideoQualityScore, construct_args=QUALITY_ARGS, num_gpus=0,
                                                   batch_size=1, concurrency=concurrency)(col("video_path")))


QUERIES = {
    "quality": lambda spec, ds: _quality(spec, ds),
    "quality_2_workers": lambda spec, ds: _quality(spec, ds, concurrency=2),
    "prompt_list": lambda spec, ds: ds.with_column("scores", las_udf(
        VideoQualityScore, construct_args={**QUALITY_ARGS, "prompt": PROMPTS},
        batch_size=2)(col("video_path"))),
    # bytes and their formats, the score with its reason
    "details_binary": lambda spec, ds: ds.with_column("quality", operator_udf(
        VideoQualityScore, QUALITY_ARGS, batch_size=4,
        details=True)(col("video_bytes"), col("video_format"))),
    "keyframes": lambda spec, ds: ds.with_column("keyframes", las_udf(
        VideoAdaptiveKeyframesSampling, construct_args=keyframes_args(spec), num_gpus=0, concurrency=1,
        batch_size=1)(col("video_path"))),
    "keyframes_binary": lambda spec, ds: ds.with_column("keyframes", las_udf(
        VideoAdaptiveKeyframesSampling,
        construct_args={**keyframes_args(spec), "video_src_type": "video_binary", "return_keyframes": False},
        batch_size=3)(col("video_bytes"))),
    # a question per row (null: the constructor's text); rows naming the same video share its decode
    "keyframes_questions": lambda spec, ds: ds.with_column("keyframes", las_udf(
        VideoAdaptiveKeyframesSampling, construct_args={**keyframes_args(spec), "return_keyframes": False,
                                                        "output_tos_dir": ""},
        batch_size=8)(col("video_path"), col("question"))),
    # a valid name whose weights are neither local nor in the (empty) hub cache, with the hub offline
    "missing_model": lambda spec, ds: ds.with_column("quality_score", las_udf(
        VideoQualityScore, construct_args={**QUALITY_ARGS, "clip_model_name": "openai/clip-vit-base-patch16"},
        batch_size=1, concurrency=1)(col("video_path"))),
}


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    if spec["runner"] == "ray":
        from video_assets.compute import ray_backend

        # a local Ray on 127.0.0.1, started as the Ray backend starts it
        ray_backend.connect("", num_cpus=2, num_gpus=0)
        daft.set_runner_ray()
    else:
        daft.set_runner_native()
    daft.set_execution_config(actor_udf_ready_timeout=600)
    data = {"video_path": spec["paths"],
            "video_bytes": [None if p is None else Path(p).read_bytes() for p in spec["binaries"]],
            "video_format": spec["formats"], "question": spec["questions"]}
    out = {}
    for name in spec["queries"]:
        try:
            ds = QUERIES[name](spec, daft.from_pydict(data))
            ds = ds.collect()
            out[name] = {"schema": {f.name: str(f.dtype) for f in ds.schema()}, "rows": ds.to_pydict()}
            if name == "keyframes":  # what a notebook shows: one image per row after exploding the list
                images = ds.select(col("keyframes")["keyframes"].alias("image")).explode("image").collect()
                out[name]["exploded_dtype"] = str(images.schema()["image"].dtype)
                out[name]["html_images"] = images._repr_html_().count("<img ")
        except Exception as e:  # noqa: BLE001 - the test asserts what was raised
            out[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    Path(out_path).write_bytes(pickle.dumps(out))
    if spec["runner"] == "ray":
        from video_assets.compute import ray_backend

        ray_backend.shutdown()  # stops the local instance this process started


if __name__ == "__main__":
    main(*sys.argv[1:3])
