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
        [base64.b64encode(data).decode(), "###not base64###"])
    binary = op(video_src_type="video_binary", video_format="avi", return_keyframes=False)([data])
    assert b64[0]["frame_ids"] == binary[0]["frame_ids"] == ref["frame_ids"]
    assert b64[0]["scores"] == pytest.approx(ref["scores"], abs=1e-6)
    assert b64[1] is None


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
