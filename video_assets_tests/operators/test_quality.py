"""VideoQualityScore end to end with the tiny CLIP, checked against an independent computation."""

import base64

import numpy as np
import pytest
import torch

from video_assets.errors import ModelLoadError
from video_assets.models import load_clip
from video_assets.operators import VideoQualityScore
from video_assets.scoring import NAMED_PROMPTS
from video_assets.video import sample_frames

TINY = "video-assets/tiny-clip"


def independent_scores(path, pairs, count_k=8):
    """Frame scores computed the plain way: sample, encode, cosine x logit scale, softmax."""
    clip = load_clip(TINY, device="cpu")
    s = sample_frames(path, count_k=count_k)
    img = clip.encode_images(s.frames).cpu().double().numpy()
    out = []
    for pos, neg in pairs:
        txt = clip.encode_text([pos, neg]).cpu().double().numpy()
        logits = clip.logit_scale * img @ txt.T
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        out.append(e[:, 0] / e.sum(axis=1))
    return s, np.stack(out, axis=1)


def test_scores_match_independent_computation(videos):
    path = videos["h264_bframes.mp4"]
    op = VideoQualityScore(clip_model_name=TINY, device="cpu")
    d = op.score_details(video_paths=[str(path)])[0]
    s, expected = independent_scores(path, [NAMED_PROMPTS["quality"]])
    assert d["error"] is None
    assert d["frame_indices"] == s.indices and d["timestamps"] == s.timestamps
    assert d["frame_scores"] == pytest.approx(expected[:, 0].tolist(), abs=1e-5)
    assert d["score"] == pytest.approx(float(expected[:, 0].mean()), abs=1e-5)
    assert 0.0 < d["score"] < 1.0


def test_reduce_modes_and_prompt_lists(videos):
    path = str(videos["vp9.webm"])
    pairs = [NAMED_PROMPTS["sharpness"], ("Warm light.", "Cold light.")]
    _, expected = independent_scores(path, pairs, count_k=5)
    for mode, fn in [("avg", np.mean), ("max", np.max), ("min", np.min), ("median", np.median)]:
        op = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=5, reduce_mode=mode,
                               prompt=["sharpness", "Warm light.|Cold light."])
        scores = op(video_paths=[path])[0]
        assert scores == pytest.approx(fn(expected, axis=0).tolist(), abs=1e-5)
    single = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=5, prompt=("Sharp photo.", "Blurry photo."))
    assert single(video_paths=[path])[0] == pytest.approx(float(expected[:, 0].mean()), abs=1e-5)


def test_order_kept_and_bad_videos_become_null(videos, tmp_path, http_base):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    inputs = [str(videos["hevc.mkv"]), str(junk), str(videos["mpeg4.avi"]), str(tmp_path / "missing.mp4"),
              f"{http_base}/absent.mp4", str(videos["vp9.webm"])]
    op = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=4, batch_size=3)
    details = op.score_details(video_paths=inputs)
    assert [d["score"] is None for d in details] == [False, True, False, True, True, False]
    assert "junk.mp4" in details[1]["error"]
    assert "missing.mp4" in details[3]["error"] and "not found" in details[3]["error"]
    assert "absent.mp4" in details[4]["error"]
    # every good row equals what the video gets alone
    for i in (0, 2, 5):
        alone = op.score_details(video_paths=[inputs[i]])[0]
        assert details[i]["frame_scores"] == pytest.approx(alone["frame_scores"], abs=1e-5)
        assert details[i]["frame_indices"] == alone["frame_indices"]


def test_cross_video_batching_does_not_mix_frames(videos):
    paths = [str(videos[n]) for n in ("h264_bframes.mp4", "hevc.mkv", "vfr.mkv", "start_offset.ts")]
    small = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=5, batch_size=3, decode_workers=2)
    big = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=5, batch_size=64, decode_workers=1)
    a, b = small.score_details(video_paths=paths), big.score_details(video_paths=paths)
    for x, y in zip(a, b):
        assert x["frame_scores"] == pytest.approx(y["frame_scores"], abs=1e-5)
    assert small(video_paths=paths) == pytest.approx(small(video_paths=paths), abs=0)  # deterministic


def test_bytes_and_base64_inputs(videos):
    path = videos["h264_bframes.mp4"]
    data = path.read_bytes()
    op = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=4)
    ref = op(video_paths=[str(path)])[0]
    got = op(video_binaries=[data, base64.b64encode(data).decode(), b"not a video", base64.b64encode(data),
                             base64.b64encode(b"x" * 90)],
             video_formats=["mp4"] * 5)
    assert got[0] == pytest.approx(ref, abs=1e-6) and got[1] == pytest.approx(ref, abs=1e-6)
    assert got[2] is None
    # base64 text given as bytes (a base64 column read as binary) is decoded, as a base64 str is
    assert got[3] == pytest.approx(ref, abs=1e-6) and got[4] is None
    errors = [r.error for r in op.results(video_binaries=[base64.b64encode(b"x" * 90)])]
    assert errors == ["<120 bytes of base64>: not a readable video container (Invalid data found when processing "
                      "input)"]


def test_empty_window_is_a_null_with_reason(videos):
    op = VideoQualityScore(clip_model_name=TINY, device="cpu", start_time_sec=30.0)
    d = op.score_details(video_paths=[str(videos["h264_bframes.mp4"])])[0]
    assert d["score"] is None and "no frames in the sampling window" in d["error"]


@pytest.mark.parametrize("kw,param", [(dict(reduce_mode="mean"), "reduce_mode"), (dict(prompt="nice"), "prompt"),
                                      (dict(count_k=0), "count_k"), (dict(batch_size=0), "batch_size"),
                                      (dict(sample_mode="by_fps"), "target_fps")])
def test_wrong_parameters(kw, param):
    with pytest.raises(ValueError, match=param):
        VideoQualityScore(clip_model_name=TINY, **kw)


def test_exactly_one_input_kind(videos):
    op = VideoQualityScore(clip_model_name=TINY, device="cpu")
    with pytest.raises(ValueError, match="exactly one"):
        op(video_paths=[str(videos["vp9.webm"])], video_binaries=[b"x"])
    with pytest.raises(ValueError, match="exactly one"):
        op()
    with pytest.raises(ValueError, match=r"video #1: expected a path or URI here, got bytes \(pass bytes as "
                                         r"video_binaries=\)"):
        op(video_paths=[str(videos["vp9.webm"]), videos["vp9.webm"].read_bytes()])


def test_unknown_model_is_a_clear_error(videos):
    op = VideoQualityScore(clip_model_name="nobody/no-such-clip", device="cpu")
    with pytest.raises(ModelLoadError, match="no-such-clip"):
        op(video_paths=[str(videos["vp9.webm"])])


def test_cuda_request_without_gpu_runs_on_cpu(videos):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    op = VideoQualityScore(clip_model_name=TINY, device="cuda", count_k=2)
    assert op.device == "cpu" and op.dtype == "float32"
    assert op(video_paths=[str(videos["vp9.webm"])])[0] is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_a_gpu_half_precision_scores_match_the_cpu(videos):
    paths = [str(videos["h264_bframes.mp4"]), str(videos["vp9.webm"]), str(videos["hevc.mkv"])]
    gpu = VideoQualityScore(clip_model_name=TINY, device="cuda", count_k=6)
    assert gpu.device.startswith("cuda") and gpu.dtype == "float16"  # half precision by default on a GPU
    on_gpu = gpu.score_details(video_paths=paths)
    assert gpu.model.device.type == "cuda"
    on_cpu = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=6).score_details(video_paths=paths)
    for g, c in zip(on_gpu, on_cpu):
        assert g["error"] is None and g["frame_indices"] == c["frame_indices"]
        # float16 weights and activations: probabilities agree to a few thousandths
        assert g["frame_scores"] == pytest.approx(c["frame_scores"], abs=5e-3)
        assert g["score"] == pytest.approx(c["score"], abs=5e-3)
