"""VideoAdaptiveKeyframesSampling end to end with the tiny CLIP: selection, export, inputs, bad videos."""

import base64
import re

import numpy as np
import pytest
from PIL import Image

from video_assets.keyframes import aks_select
from video_assets.models import load_clip
from video_assets.operators import VideoAdaptiveKeyframesSampling
from video_assets.operators.common import stable_video_id
from video_assets.video import sample_frames
from video_assets_tests.videos import HEIGHT, WIDTH, read_index

TINY = "video-assets/tiny-clip"


def op(**kw):
    base = dict(text="a white square", clip_model_name=TINY, fps=10.0, max_num_frames=4, all_depth=2)
    base.update(kw)
    return VideoAdaptiveKeyframesSampling(**base)


def stored_scores(clip, frames, text):
    """Cosine similarity of the candidates to ``text``, from their embeddings as the frame-embedding table
    stores them (float16), which is what the operator scores."""
    stored = clip.encode_images(frames).cpu().numpy().astype(np.float16).astype(np.float64)
    return stored @ clip.encode_text([text])[0].cpu().numpy().astype(np.float64)


def test_selection_matches_independent_scoring(videos):
    path = str(videos["h264_bframes.mp4"])
    out = op(return_keyframes=True)([path])[0]
    clip = load_clip(TINY, device="cpu")
    cand = sample_frames(path, "by_fps", target_fps=10.0)
    scores = stored_scores(clip, cand.frames, "a white square")
    chosen = aks_select(scores, max_num_frames=4, all_depth=2)
    assert out["frame_ids"] == [cand.indices[i] for i in chosen]
    assert out["frame_ids"] == sorted(out["frame_ids"]) and len(out["frame_ids"]) == 4
    assert out["scores"] == pytest.approx([float(scores[i]) for i in chosen], abs=1e-5)
    assert out["timestamps"] == pytest.approx([cand.timestamps[i] for i in chosen])
    assert [read_index(k) for k in out["keyframes"]] == out["frame_ids"]  # the right pixels came back
    assert out["tos_paths"] == []  # no output folder given


def test_export_local_png_is_exact_and_idempotent(videos, tmp_path):
    path = str(videos["hevc.mkv"])
    o = op(output_tos_dir=str(tmp_path / "kf"), img_type=".png", return_keyframes=False)
    first = o([path])[0]
    assert "keyframes" not in first
    vid = stable_video_id(path)
    assert [p.rsplit("-", 1)[0] for p in first["tos_paths"]] == \
        [str(tmp_path / "kf" / vid / f"{f:06d}") for f in first["frame_ids"]]
    assert all(re.fullmatch(r"[0-9a-f]{10}\.png", p.rsplit("-", 1)[1]) for p in first["tos_paths"])
    contents = []
    for p, fid in zip(first["tos_paths"], first["frame_ids"]):
        img = np.asarray(Image.open(p).convert("RGB"))
        assert img.shape == (HEIGHT, WIDTH, 3) and read_index(img) == fid
        contents.append(open(p, "rb").read())
    second = o([path])[0]
    assert second == first
    assert [open(p, "rb").read() for p in second["tos_paths"]] == contents


def test_export_jpeg_to_s3(videos, s3_bucket, s3_endpoint):
    import io

    import boto3

    path = str(videos["vp9.webm"])
    out = op(output_tos_dir=f"s3://{s3_bucket}/keyframes/", return_keyframes=False)([path])[0]
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    assert len(out["tos_paths"]) == 4
    for uri, fid in zip(out["tos_paths"], out["frame_ids"]):
        assert uri.startswith(f"s3://{s3_bucket}/keyframes/{stable_video_id(path)}/") and uri.endswith(".jpg")
        body = client.get_object(Bucket=s3_bucket, Key=uri.split("/", 3)[3])["Body"].read()
        img = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
        assert img.shape == (HEIGHT, WIDTH, 3) and read_index(img) == fid


def test_base64_and_binary_inputs(videos):
    data = videos["mpeg4.avi"].read_bytes()
    ref = op(return_keyframes=False)([str(videos["mpeg4.avi"])])[0]
    b64 = op(video_src_type="video_base64", video_format="avi", return_keyframes=False)(
        [base64.b64encode(data).decode(), "###not base64###", base64.b64encode(data), "é".encode() * 40])
    binary = op(video_src_type="video_binary", video_format="avi", return_keyframes=False)([data])
    assert b64[0]["frame_ids"] == binary[0]["frame_ids"] == ref["frame_ids"] == b64[2]["frame_ids"]
    assert b64[0]["scores"] == pytest.approx(ref["scores"], abs=1e-6)
    assert b64[1] is None and b64[3] is None  # base64 as bytes is decoded too; non-ASCII bytes are refused


def test_bad_videos_mixed_in(videos, tmp_path):
    junk = tmp_path / "junk.webm"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    o = op(return_keyframes=False, output_tos_dir=str(tmp_path / "out"))
    inputs = [str(videos["short_gop.mp4"]), str(junk), str(tmp_path / "none.mp4"), str(videos["vfr.mkv"])]
    details = o.details(inputs)
    assert [d["error"] is None for d in details] == [True, False, False, True]
    assert "junk.webm" in details[1]["error"] and "none.mp4" in details[2]["error"]
    assert o(inputs)[1] is None
    alone = o([inputs[3]])[0]
    assert details[3]["frame_ids"] == alone["frame_ids"]


def test_fewer_candidates_than_budget_returns_all(videos):
    out = op(fps=2.0, max_num_frames=32, return_keyframes=False).details([str(videos["vp9.webm"])])[0]
    assert out["num_candidates"] == 4 and out["frame_ids"] == [0, 15, 30, 45]


def test_max_candidates_lowers_the_fps(videos):
    d = op(fps=30.0, max_candidates=10, return_keyframes=False).details([str(videos["h264_bframes.mp4"])])[0]
    assert d["num_candidates"] == 10 and d["effective_fps"] == pytest.approx(5.0)


def test_empty_text_is_allowed(videos):
    """An empty query is scored like any other text: the selection follows its own embedding."""
    path = str(videos["h264_bframes.mp4"])
    out = op(text="", return_keyframes=False).details([path])[0]
    assert out["error"] is None
    clip = load_clip(TINY, device="cpu")
    cand = sample_frames(path, "by_fps", target_fps=10.0)
    scores = stored_scores(clip, cand.frames, "")
    chosen = aks_select(scores, max_num_frames=4, all_depth=2)
    assert out["frame_ids"] == [cand.indices[i] for i in chosen]
    assert out["scores"] == pytest.approx([float(scores[i]) for i in chosen], abs=1e-5)


@pytest.mark.parametrize("kw,param", [(dict(img_type=".gif"), "img_type"),
                                      (dict(video_src_type="url"), "video_src_type"),
                                      (dict(max_num_frames=0), "max_num_frames"), (dict(fps=0), "fps"),
                                      (dict(t1=float("nan")), "t1"), (dict(max_candidates=0), "max_candidates")])
def test_wrong_parameters(kw, param):
    with pytest.raises(ValueError, match=param):
        op(**kw)


@pytest.mark.parametrize("out_dir,match", [
    ("ftp://host/kf", r"output_tos_dir 'ftp://host/kf': keyframes cannot be written to ftp:// URIs; use a local "
                      r"folder, file://, s3:// or tos://"),
    ("https://host/kf", r"output_tos_dir 'https://host/kf': keyframes cannot be written to https:// URIs"),
    ("s3://", r"output_tos_dir names no bucket: expected s3://bucket/prefix"),
    # nothing can be created under /proc, not even by root (whom os.access lets write anywhere)
    ("/proc/video_assets_kf", r"output_tos_dir '/proc/video_assets_kf' is not writable: nothing can be created "
                              r"in '/proc'"),
])
def test_output_dir_that_can_never_be_written_fails_at_construction(out_dir, match):
    with pytest.raises(ValueError, match=match):
        op(output_tos_dir=out_dir)


def test_object_store_output_dirs_make_no_request_at_construction(tmp_path, monkeypatch):
    """A bucket is not checked when the operator is built (LAS builds operators in a Daft UDF's __init__):
    every s3/tos endpoint points at a server that records what reaches it."""
    from video_assets_tests.servers import http_file_server

    with http_file_server(tmp_path) as server:
        for var in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "VIDEO_ASSETS_TOS_ENDPOINT"):
            monkeypatch.setenv(var, server.base)
        for out_dir in ("s3://no-such-bucket/kf", "tos://no-such-bucket/kf", "s3a://bucket"):
            assert op(output_tos_dir=out_dir).output_tos_dir == out_dir
        assert server.requests == []


def test_missing_bucket_fails_each_row_naming_the_output_and_is_logged_once(videos, s3_endpoint, caplog):
    import logging

    inputs = [str(videos["short_gop.mp4"]), str(videos["vfr.mkv"]), str(videos["vfr.mkv"]) + ".missing"]
    o = op(output_tos_dir="s3://no-such-bucket/kf", return_keyframes=False)
    with caplog.at_level(logging.DEBUG, logger="video_assets.operators"):
        details = o.details(inputs)
    for path, d in zip(inputs[:2], details):
        # the video was read and its frames chosen; only writing them failed, and the error says where and why
        assert re.fullmatch(rf"cannot write keyframes to s3://no-such-bucket/kf/{stable_video_id(path)}/"
                            r"\d{6}-[0-9a-f]{10}\.jpg: bucket 'no-such-bucket' does not exist", d["error"]), d
        assert path not in d["error"] and len(d["frame_ids"]) == 4 and d["tos_paths"] == []
    assert details[2]["error"].endswith("file not found")  # the batch went on; a bad input is its own error
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    said = [m for m in warned if "no-such-bucket" in m]
    assert said == ["keyframes cannot be written to output_tos_dir s3://no-such-bucket/kf: bucket "
                    "'no-such-bucket' does not exist. Every video of this call whose images fail alike has this "
                    "error in its row (logged once)"], warned


def test_local_write_failure_names_the_output(videos, tmp_path):
    """A folder that could be written when the operator was built but not when a video's images are (here a
    file is in the way of the video's folder: a failure even root meets)."""
    path = str(videos["short_gop.mp4"])
    out = tmp_path / "kf"
    o = op(output_tos_dir=str(out), return_keyframes=False)
    out.mkdir()
    (out / stable_video_id(path)).write_text("in the way")
    d = o.details([path])[0]
    assert re.fullmatch(rf"cannot write keyframes to {re.escape(str(out / stable_video_id(path)))}/"
                        r"\d{6}-[0-9a-f]{10}\.jpg: (File exists|Not a directory) .*", d["error"]), d["error"]
