"""video_assets.daft on Daft's native runner and on a local Ray runner (2 CPUs, no GPU): the columns equal the
operators called directly, bad rows are nulls with their reason, null inputs null outputs, a model that cannot
load fails the query with the loader's message.

Daft fixes its runner once per process, so each runner runs daft_program.py in its own subprocess; both start
when the module's first test asks, and run side by side (Ray's start-up waits overlap native's work).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore
from video_assets_tests.videos import encode_video

TIMEOUT_SEC = 900  # each program; on 2 busy cores the native one took ~150 s
pytestmark = [pytest.mark.skipif(importlib.util.find_spec("daft") is None,
                                 reason="the [daft] extra is not installed"),
              pytest.mark.timeout(TIMEOUT_SEC + 60),  # the first test of a runner waits for its program
              pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
NATIVE_QUERIES = ["quality", "prompt_list", "details_binary", "keyframes", "keyframes_binary",
                  "keyframes_questions", "missing_model"]

RAY_QUERIES = ["quality_2_workers", "keyframes", "missing_model"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """Three good videos of different lengths, a corrupt file and a missing one among them, a null."""
    d = tmp_path_factory.mktemp("daft")
    good = [str(encode_video(d / f"v{i}.mp4", n_frames=60 + 15 * i)) for i in range(3)]
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(Path(good[0]).read_bytes()[:64] + b"\x00" * 2000)  # an MP4 header, then garbage
    missing = str(d / "missing.mp4")
    return {"dir": d, "good": good, "corrupt": str(corrupt), "missing": missing,
            "paths": [good[0], str(corrupt), None, good[1], missing, good[2]],
            # the bytes column: the same videos, the missing one as the corrupt bytes; formats with nulls
            "binaries": [good[0], str(corrupt), None, good[1], str(corrupt), good[2]],
            "formats": ["mp4", None, None, "mp4", None, "mp4"],
            "questions": ["a dog", "a cat", None, None, "a cat", "a red car"]}


def _start(corpus: dict, runner: str, queries: list[str]) -> tuple[subprocess.Popen, Path]:
    d = corpus["dir"] / runner
    d.mkdir()
    spec = {"runner": runner, "paths": corpus["paths"], "binaries": corpus["binaries"],
            "formats": corpus["formats"], "questions": corpus["questions"], "kf_dir": str(d / "keyframes"),
            "queries": queries}
    (d / "spec.json").write_text(json.dumps(spec))
    (d / "hf").mkdir()
    # conftest's settings (tiny model, hub offline, dummy AWS credentials) reach the program and its workers;
    # an empty hub cache, so the missing model is missing here whatever this machine has cached
    env = {**os.environ, "HF_HOME": str(d / "hf"), "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    log = open(d / "log.txt", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "video_assets_tests.daft_program", str(d / "spec.json"),
                             str(d / "out.pkl")], cwd=str(REPO), env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    return proc, d


@pytest.fixture(scope="module")
def programs(corpus):
    started = {"native": _start(corpus, "native", NATIVE_QUERIES)}
    if importlib.util.find_spec("ray") is not None:
        started["ray"] = _start(corpus, "ray", RAY_QUERIES)
    results: dict = {}

    def result(runner: str) -> dict:
        if runner not in results:
            if runner not in started:
                pytest.skip("the [ray] extra is not installed")
            proc, d = started[runner]
            try:
                rc = proc.wait(TIMEOUT_SEC)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = "timeout"
            log = (d / "log.txt").read_text(errors="replace")
            assert rc == 0, f"the {runner} program failed ({rc}):\n{log[-6000:]}"
            results[runner] = pickle.loads((d / "out.pkl").read_bytes())
        return results[runner]

    yield result
    for proc, _ in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def direct(corpus, tmp_path_factory) -> dict:
    """The operators called directly, as the program constructs them."""
    from video_assets_tests.daft_program import PROMPTS, QUALITY_ARGS

    paths = [p for p in corpus["paths"] if p is not None]
    quality = VideoQualityScore(**QUALITY_ARGS).score_details(video_paths=paths)
    prompts = VideoQualityScore(**{**QUALITY_ARGS, "prompt": PROMPTS}).score_details(video_paths=paths)
    blobs = [Path(p).read_bytes() for p in corpus["binaries"] if p is not None]
    fmts = [f for p, f in zip(corpus["binaries"], corpus["formats"]) if p is not None]
    binary = VideoQualityScore(**QUALITY_ARGS).score_details(video_binaries=blobs, video_formats=fmts)
    kf_dir = tmp_path_factory.mktemp("direct_keyframes")
    keyframes = VideoAdaptiveKeyframesSampling(text="spoon", output_tos_dir=str(kf_dir), max_num_frames=4,
                                               fps=2.0).details(paths)
    return {"paths": paths, "quality": dict(zip(paths, quality)), "prompts": dict(zip(paths, prompts)),
            "binary": binary, "keyframes": dict(zip(paths, keyframes)), "kf_dir": kf_dir}


def _by_path(rows: dict, column: str) -> dict:
    """Ray does not keep row order across partitions: key the column by video_path (None: the null input)."""
    keys = rows["video_path"]
    assert len(set(keys)) == len(keys)
    return dict(zip(keys, rows[column]))


def _check_quality(got: dict, direct: dict, corpus: dict) -> None:
    assert got[None] is None  # the null input
    for path in direct["paths"]:
        # the same computation; only the batch composition differs (one video per call here)
        assert got[path] == pytest.approx(direct["quality"][path]["score"], abs=1e-6), path
    assert got[corpus["corrupt"]] is None and got[corpus["missing"]] is None
    assert all(isinstance(got[p], float) for p in corpus["good"])


def _check_keyframes(got: dict, direct: dict, corpus: dict, kf_dir: Path, images: bool) -> None:
    assert got[None] is None
    for path in direct["paths"]:
        want, row = direct["keyframes"][path], got[path]
        assert row is not None and row["error"] == want["error"], path
        if want["error"]:  # a failed row: the reason, every other field null
            assert {k for k, v in row.items() if v is not None} == {"error"}
            continue
        assert row["frame_ids"] == want["frame_ids"] and len(row["frame_ids"]) == 4
        assert row["timestamps"] == want["timestamps"]
        assert row["scores"] == pytest.approx(np.float32(want["scores"]).tolist(), abs=1e-6)  # Float32 here
        # the same image files, named alike under each folder
        assert [os.path.relpath(p, kf_dir) for p in row["tos_paths"]] == \
            [os.path.relpath(p, direct["kf_dir"]) for p in want["tos_paths"]]
        for mine, theirs in zip(row["tos_paths"], want["tos_paths"]):
            assert Path(mine).read_bytes() == Path(theirs).read_bytes()
        if images:
            assert len(row["keyframes"]) == 4
            for img, ref in zip(row["keyframes"], want["keyframes"]):
                assert img.dtype == np.uint8 and np.array_equal(img, ref)
        else:
            assert "keyframes" not in row
    assert "file not found" in got[corpus["missing"]]["error"]
    assert got[corpus["corrupt"]]["error"].startswith(corpus["corrupt"])


KEYFRAMES_DTYPE = ("Struct[tos_paths: List[String], frame_ids: List[Int64], scores: List[Float32], "
                   "timestamps: List[Float64], error: String")


@pytest.mark.parametrize("runner", ["native", "ray"])
def test_quality_column_equals_the_operator(programs, direct, corpus, runner):
    name = "quality" if runner == "native" else "quality_2_workers"
    out = programs(runner)[name]
    assert out["schema"]["quality_score"] == "Float64"
    _check_quality(_by_path(out["rows"], "quality_score"), direct, corpus)


@pytest.mark.parametrize("runner", ["native", "ray"])
def test_keyframes_column_equals_the_operator_with_images(programs, direct, corpus, runner):
    out = programs(runner)["keyframes"]
    assert out["schema"]["keyframes"] == KEYFRAMES_DTYPE + ", keyframes: List[Image[RGB]]]"
    kf_dir = corpus["dir"] / runner / "keyframes"
    _check_keyframes(_by_path(out["rows"], "keyframes"), direct, corpus, kf_dir, images=True)
    if runner == "native":  # exploded, the images are an Image column, which a notebook shows as thumbnails
        assert out["exploded_dtype"] == "Image[RGB]" and out["html_images"] >= 4


@pytest.mark.parametrize("runner", ["native", "ray"])
def test_a_model_that_cannot_load_fails_the_query_with_the_loaders_message(programs, runner):
    out = programs(runner)["missing_model"]
    assert "rows" not in out  # not an all-null column
    assert "ModelLoadError" in out["error"]
    assert "CLIP model 'openai/clip-vit-base-patch16' is not available" in out["traceback"]
    assert "downloading" in out["traceback"]  # the loader says why and how to fill the folder


def test_prompt_list_gives_a_list_of_scores(programs, direct, corpus):
    out = programs("native")["prompt_list"]
    assert out["schema"]["scores"] == "List[Float64]"
    got = _by_path(out["rows"], "scores")
    assert got[None] is None and got[corpus["corrupt"]] is None and got[corpus["missing"]] is None
    for path in corpus["good"]:
        assert got[path] == pytest.approx(direct["prompts"][path]["score"], abs=1e-6) and len(got[path]) == 3


def test_binary_input_with_formats_and_details_with_the_reason(programs, direct, corpus):
    out = programs("native")["details_binary"]
    assert out["schema"]["quality"] == (
        "Struct[score: Float64, frame_scores: List[Float64], frame_indices: List[Int64], "
        "timestamps: List[Float64], truncated: Bool, warnings: List[String], error: String]")
    rows = out["rows"]["quality"]
    assert rows[2] is None  # null bytes
    wanted = iter(direct["binary"])
    for i, row in enumerate(rows):
        if i == 2:
            continue
        want = next(wanted)
        assert row["error"] == want["error"]
        if want["error"]:
            assert "not a readable video" in row["error"] or "Invalid data" in row["error"]
            assert {k for k, v in row.items() if v is not None} == {"error"}
        else:
            assert row["score"] == pytest.approx(want["score"], abs=1e-6)
            assert want["score"] == pytest.approx(direct["quality"][corpus["binaries"][i]]["score"], abs=1e-6)
            assert row["frame_scores"] == pytest.approx(want["frame_scores"], abs=1e-6)
            for k in ("frame_indices", "timestamps", "truncated", "warnings"):
                assert row[k] == want[k], k
            assert len(row["frame_indices"]) == 4


def test_keyframes_with_a_question_per_row(programs, corpus):
    """``las_udf(VideoAdaptiveKeyframesSampling, ...)(col("video"), col("question"))``: each row's frames are
    the operator's for that row's question (null: the constructor's text)."""
    out = programs("native")["keyframes_questions"]
    rows = _by_path(out["rows"], "keyframes")
    op = VideoAdaptiveKeyframesSampling(text="spoon", max_num_frames=4, fps=2.0, return_keyframes=False)
    asked = {p: q for p, q in zip(corpus["paths"], corpus["questions"]) if p is not None}
    want = dict(zip(corpus["good"], op.details(corpus["good"], texts=[asked[p] for p in corpus["good"]])))
    assert [want[p]["query"] for p in corpus["good"]] == ["a dog", "spoon", "a red car"]
    for p in corpus["good"]:
        assert rows[p]["frame_ids"] == want[p]["frame_ids"] and rows[p]["error"] is None
    assert rows[corpus["missing"]]["error"] and rows[None] is None


def test_keyframes_from_a_binary_column(programs, direct, corpus):
    out = programs("native")["keyframes_binary"]
    assert out["schema"]["keyframes"] == KEYFRAMES_DTYPE + "]"  # return_keyframes=False: no images
    rows = out["rows"]["keyframes"]
    assert rows[2] is None
    for i in (0, 3, 5):  # the good videos: the same frames as from their paths
        want = direct["keyframes"][corpus["binaries"][i]]
        assert rows[i]["frame_ids"] == want["frame_ids"] and rows[i]["timestamps"] == want["timestamps"]
        assert rows[i]["error"] is None and len(rows[i]["tos_paths"]) == 4
    for i in (1, 4):
        assert rows[i]["frame_ids"] is None and rows[i]["error"]


# -- checks made in the driver, before any query (this process: nothing runs on a runner) --------------------
def test_wrong_construct_args_fail_at_once_naming_the_operator():
    from video_assets.daft import las_udf

    with pytest.raises(ValueError, match=r"construct_args for VideoQualityScore: .*count_kk"):
        las_udf(VideoQualityScore, construct_args={"count_kk": 4})
    with pytest.raises(ValueError, match=r"construct_args for VideoQualityScore: reduce_mode must be one of"):
        las_udf(VideoQualityScore, construct_args={"reduce_mode": "mean"})
    with pytest.raises(ValueError, match=r"VideoAdaptiveKeyframesSampling: video_src_type must be one of"):
        las_udf(VideoAdaptiveKeyframesSampling, construct_args={"video_src_type": "url"})
    # the device as written (the driver builds its probe on the CPU), only its syntax: the driver need not
    # have the workers' GPUs
    with pytest.raises(ValueError, match=r"construct_args for VideoQualityScore: device must be 'cpu', 'cuda', "
                                         r"'cuda:N', 'auto' or empty .*; got 'tpu'"):
        las_udf(VideoQualityScore, construct_args={"device": "tpu"})
    with pytest.raises(ValueError, match=r"VideoAdaptiveKeyframesSampling: dtype must be one of float32, .*; "
                                         r"got 'int8'"):
        las_udf(VideoAdaptiveKeyframesSampling, construct_args={"dtype": "int8", "device": "cuda:3"})
    las_udf(VideoQualityScore, construct_args={"device": "cuda:7", "dtype": "bf16"})
    with pytest.raises(TypeError, match="operator_class must be VideoQualityScore or"):
        las_udf(dict, construct_args={})
    with pytest.raises(ValueError, match="num_gpus must be"):
        las_udf(VideoQualityScore, construct_args={}, num_gpus=1.5)
    with pytest.raises(ValueError, match="concurrency must be a positive int"):
        las_udf(VideoQualityScore, construct_args={}, concurrency=0)


def test_the_udf_is_an_expression_with_the_documented_dtype():
    import daft
    from daft import col

    from video_assets.daft import las_udf, operator_udf

    udf = las_udf(VideoQualityScore, construct_args={"prompt": ["quality", "sharpness"]}, num_gpus=1,
                  batch_size=1, concurrency=1)
    assert udf.return_dtype == daft.DataType.list(daft.DataType.float64())
    assert isinstance(udf(col("video_path")), daft.Expression)
    kf = operator_udf(VideoAdaptiveKeyframesSampling, {"text": "a dog", "return_keyframes": False})
    assert "keyframes" not in str(kf.return_dtype) and "error: String" in str(kf.return_dtype)
    with pytest.raises(ValueError, match="details=True is for VideoQualityScore"):
        operator_udf(VideoAdaptiveKeyframesSampling, {}, details=True)


def test_a_column_of_the_wrong_type_is_refused_naming_it():
    # what a batch meets before any video is read (the query fails; these are faults of the program)
    from daft import Series

    from video_assets.daft.udf import _check_column

    paths, blobs = Series.from_pylist(["a.mp4"], name="video_path"), Series.from_pylist([b"x"], name="video_bytes")
    assert _check_column("quality", None, paths, None) is False
    assert _check_column("quality", None, blobs, Series.from_pylist(["mp4"], name="fmt")) is True
    with pytest.raises(TypeError, match=r"VideoQualityScore UDF: the videos column 'n' is Int64; expected Utf8"):
        _check_column("quality", None, Series.from_pylist([1], name="n"), None)
    with pytest.raises(TypeError, match=r"video_src_type='video_binary': the videos column 'video_path' is "
                                        r"String; expected Binary"):
        _check_column("keyframes", "video_binary", paths, None)
    with pytest.raises(TypeError, match=r"video_src_type='video_base64': .* is Binary; expected Utf8"):
        _check_column("keyframes", "video_base64", blobs, None)
    with pytest.raises(TypeError, match="the formats column 'n' is Int64; expected Utf8"):
        _check_column("quality", None, blobs, Series.from_pylist([1], name="n"))
