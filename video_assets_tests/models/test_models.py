"""Tests of the CLIP loader (``video_assets.models``): offline tiny model, cache, preprocessing parity with
open_clip's PIL eval transform, transformers-folder conversion, open_clip checkpoint folders, errors, dtypes.

Nothing here reaches the network: conftest sets HF_HUB_OFFLINE=1 and tests that exercise the no-network path
also forbid sockets to anything but 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import open_clip
import PIL.Image
import pytest
import torch
import torch.nn.functional as F

from video_assets.errors import ModelLoadError
from video_assets.models import (
    TINY_CLIP_NAME,
    PreprocessSpec,
    build,
    clear_clip_cache,
    hub,
    load_clip,
    preprocess_frames,
    resolve_clip_model_name,
)
from video_assets.models import clip as clip_module
from video_assets.models.names import builtin_config, register_builtin_configs

REPO_ROOT = Path(__file__).resolve().parents[2]

# preprocessing parity with open_clip's PIL transform, in normalised units (1 grey level = 1/255/std ~ 0.015);
# measured: max 0.0300 (2 grey levels, upscaling), mean <= 0.0008
PP_MAX_ABS = 0.035
PP_MEAN_ABS = 0.002


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_clip_cache()
    yield
    clear_clip_cache()


@pytest.fixture
def no_network(monkeypatch):
    """HF_HUB_OFFLINE=1 and any socket connection other than to 127.0.0.1 fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    real = socket.create_connection
    attempts = []

    def guarded(address, *args, **kwargs):
        attempts.append(address)
        if address[0] not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"test tried to connect to {address}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    hub._probe_cache.clear()
    yield attempts
    hub._probe_cache.clear()


def frame(h: int, w: int, kind: str, seed: int = 0) -> np.ndarray:
    if kind == "random":
        return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == "gradient":
        f = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) % 256], -1)
    else:  # "smooth": a natural-ish image, low-frequency colour waves
        f = 127.5 + 127.5 * np.stack([np.sin(xx / 17.0), np.cos(yy / 23.0), np.sin((xx + yy) / 31.0)], -1)
    return np.clip(np.round(f), 0, 255).astype(np.uint8)


def frames(n: int = 5, h: int = 90, w: int = 120) -> np.ndarray:
    return np.stack([frame(h, w, "random", seed=i) for i in range(n)])


# ----------------------------------------------------------------------------------------------------------
# tiny-clip: offline, deterministic, cached


def test_tiny_clip_loads_offline_with_expected_shape():
    clip = load_clip(TINY_CLIP_NAME, device="cpu")
    assert clip.name == TINY_CLIP_NAME
    assert clip.device == torch.device("cpu") and clip.dtype == torch.float32
    assert clip.image_size == 64 and clip.embed_dim == 64 and clip.context_length == 32
    assert clip.batch_size == 32
    assert clip.logit_scale == pytest.approx(1 / 0.07, rel=1e-5)  # open_clip's initial logit scale
    feats = clip.encode_images(frames(5))
    assert feats.shape == (5, 64) and feats.dtype == torch.float32 and feats.device == clip.device
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(5))
    text = clip.encode_text(["Good photo.", "Bad photo."])
    assert text.shape == (2, 64) and text.dtype == torch.float32
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(text[0], text[1])
    assert not torch.allclose(feats[0], feats[1])


def test_tiny_clip_is_deterministic_across_loads_and_leaves_global_rng_alone():
    torch.manual_seed(1234)
    expected_next = torch.rand(4)
    torch.manual_seed(1234)
    a = load_clip(TINY_CLIP_NAME, device="cpu")
    assert torch.equal(torch.rand(4), expected_next)  # loading did not consume or reseed the global RNG
    fa, ta = a.encode_images(frames(3)), a.encode_text(["a cat", "a dog"])
    clear_clip_cache()
    b = load_clip(TINY_CLIP_NAME, device="cpu")
    assert b is not a and b.model is not a.model
    for pa, pb in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(pa, pb)
    assert torch.equal(b.encode_images(frames(3)), fa)
    assert torch.equal(b.encode_text(["a cat", "a dog"]), ta)
    # and it is open_clip's own model for the registered config, initialised with the same seed
    register_builtin_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ref = open_clip.create_model("tiny-clip")
    for (ka, pa), (kr, pr) in zip(a.model.state_dict().items(), ref.state_dict().items()):
        assert ka == kr and torch.equal(pa, pr)


_SUBPROCESS_SCRIPT = """
import json, numpy as np
from video_assets.models import load_clip
clip = load_clip("video-assets/tiny-clip", device="cpu")
f = np.random.default_rng(7).integers(0, 256, (2, 48, 80, 3), dtype=np.uint8)
out = {"image": clip.encode_images(f).tolist(), "text": clip.encode_text(["Sharp photo."]).tolist()}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_tiny_clip_is_deterministic_across_processes():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _SUBPROCESS_SCRIPT], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO_ROOT))
             for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    clip = load_clip(TINY_CLIP_NAME, device="cpu")
    f = np.random.default_rng(7).integers(0, 256, (2, 48, 80, 3), dtype=np.uint8)
    here = {"image": clip.encode_images(f), "text": clip.encode_text(["Sharp photo."])}
    for out in outs:
        for k in ("image", "text"):
            torch.testing.assert_close(torch.tensor(out[k]), here[k], atol=1e-6, rtol=0)
    assert outs[0] == outs[1]


def test_cache_returns_the_same_object_for_the_same_key(tmp_path):
    a = load_clip(TINY_CLIP_NAME, device="cpu")
    assert load_clip(TINY_CLIP_NAME, device="cpu") is a
    assert load_clip("  VIDEO-ASSETS/tiny-clip ", device="cpu", dtype="fp32") is a  # same resolved key
    assert load_clip(TINY_CLIP_NAME, model_path="", device="cpu") is a  # empty model_path == None
    if not torch.cuda.is_available():
        assert load_clip(TINY_CLIP_NAME) is a  # device None -> cpu here
    # another batch size: another view of the same loaded model
    c = load_clip(TINY_CLIP_NAME, device="cpu", batch_size=4)
    assert c is not a and c.batch_size == 4 and c.model is a.model
    assert load_clip(TINY_CLIP_NAME, device="cpu", batch_size=4) is c
    # another model_path: another key
    d = load_clip(TINY_CLIP_NAME, model_path=tmp_path, device="cpu")
    assert d is not a and d.model is not a.model
    assert load_clip(TINY_CLIP_NAME, model_path=str(tmp_path) + "/", device="cpu") is d


def test_cache_different_dtype_is_a_different_model():
    a = load_clip(TINY_CLIP_NAME, device="cpu", dtype="float32")
    b = load_clip(TINY_CLIP_NAME, device="cpu", dtype="bfloat16")
    if b.dtype == torch.bfloat16:
        assert b is not a and b.model is not a.model
        assert next(b.model.parameters()).dtype == torch.bfloat16
    else:  # this CPU cannot run bfloat16: it fell back to float32, the same key
        assert b is a


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cache_different_device_is_a_different_model():
    a = load_clip(TINY_CLIP_NAME, device="cpu")
    g = load_clip(TINY_CLIP_NAME, device="cuda")
    assert g is not a and g.device.type == "cuda"
    assert load_clip(TINY_CLIP_NAME, device=f"cuda:{g.device.index}") is g
    torch.testing.assert_close(g.encode_images(frames(2)).cpu(), a.encode_images(frames(2)), atol=1e-4,
                               rtol=0)


def test_cache_is_thread_safe_and_loads_once(tmp_path, monkeypatch):
    calls = []
    real = clip_module.load_uncached

    def counting(*args, **kwargs):
        calls.append(args)
        time.sleep(0.2)  # widen the race window
        return real(*args, **kwargs)

    monkeypatch.setattr(clip_module, "load_uncached", counting)
    results, errors = [], []

    def worker():
        try:
            results.append(load_clip(TINY_CLIP_NAME, model_path=tmp_path, device="cpu"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(calls) == 1
    assert len(results) == 8 and all(r is results[0] for r in results)


def test_text_embeddings_are_computed_once_per_prompt(monkeypatch):
    clip = load_clip(TINY_CLIP_NAME, device="cpu")
    encoded: list[int] = []
    real = clip.model.encode_text

    def counting(tokens, *args, **kwargs):
        encoded.append(tokens.shape[0])
        return real(tokens, *args, **kwargs)

    monkeypatch.setattr(clip.model, "encode_text", counting)
    first = clip.encode_text(["Good photo.", "Bad photo.", "Good photo."])
    assert encoded == [2]  # duplicates encoded once
    torch.testing.assert_close(first[0], first[2])
    again = clip.encode_text(["Bad photo.", "Good photo."])
    assert encoded == [2]  # all cached
    torch.testing.assert_close(again, first[[1, 0]])
    clip.encode_text("Sharp photo.")
    assert encoded == [2, 1]  # only the new prompt
    # shared by every caller of the same loaded model, whatever its batch size
    other = load_clip(TINY_CLIP_NAME, device="cpu", batch_size=3)
    other.encode_text(["Good photo.", "Sharp photo."])
    assert encoded == [2, 1]
    # and equal to a direct open_clip forward pass
    with torch.no_grad():
        direct = F.normalize(real(clip.tokenizer(["Good photo.", "Bad photo."])), dim=-1)
    torch.testing.assert_close(first[:2], direct, atol=1e-6, rtol=0)


def test_encode_images_batches_and_matches_a_direct_forward_pass():
    clip = load_clip(TINY_CLIP_NAME, device="cpu")
    f = frames(7, 72, 96)
    full = clip.encode_images(f)
    small = clip.with_batch_size(3).encode_images(f)
    torch.testing.assert_close(small, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(clip.encode_images(f, batch_size=2), full, atol=1e-5, rtol=0)
    with torch.no_grad():
        direct = F.normalize(clip.model.encode_image(clip.preprocess(f)), dim=-1)
    torch.testing.assert_close(full, direct, atol=1e-5, rtol=0)
    # torch input, a single (H, W, 3) frame, a list of frames of different sizes, an empty batch
    torch.testing.assert_close(clip.encode_images(torch.from_numpy(f)), full, atol=1e-5, rtol=0)
    torch.testing.assert_close(clip.encode_images(f[2]), full[2:3], atol=1e-5, rtol=0)
    mixed = [f[0], frame(50, 200, "smooth"), f[1]]
    out = clip.encode_images(mixed)
    assert out.shape == (3, 64)
    torch.testing.assert_close(out[[0, 2]], full[:2], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1:2], clip.encode_images(mixed[1]), atol=1e-5, rtol=0)
    assert clip.encode_images(np.zeros((0, 10, 10, 3), np.uint8)).shape == (0, 64)


def test_float_frames_are_refused_so_pixels_are_rescaled_exactly_once():
    clip = load_clip(TINY_CLIP_NAME, device="cpu")
    with pytest.raises(TypeError, match="uint8"):
        clip.preprocess(frames(1).astype(np.float32) / 255.0)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        clip.preprocess(np.zeros((2, 10, 10), np.uint8))


# ----------------------------------------------------------------------------------------------------------
# preprocessing parity with open_clip's own (PIL) eval transform


@pytest.fixture(scope="module")
def tiny_pil_transform():
    register_builtin_configs()
    return open_clip.create_model_and_transforms("tiny-clip")[2]


@pytest.fixture(scope="module")
def vit_b32_openai_pil_transform():
    """open_clip's eval transform for ViT-B-32/openai (224 px), built from its pretrained config."""
    pcfg = open_clip.get_pretrained_cfg("ViT-B-32", "openai")
    cfg = open_clip.transform.PreprocessCfg(**open_clip.transform.merge_preprocess_dict(
        open_clip.transform.PreprocessCfg(), {**pcfg, "size": 224}))
    return cfg, open_clip.transform.image_transform_v2(cfg, is_train=False)


SIZES = [(720, 1280), (100, 60), (64, 64), (480, 640), (1080, 1920), (37, 301), (300, 200), (64, 200),
         (225, 224)]


def _assert_pp_close(ours: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    assert ours.shape == ref.shape, what
    d = (ours.float() - ref).abs()
    assert d.max().item() < PP_MAX_ABS, f"{what}: max abs diff {d.max().item():.4f}"
    assert d.mean().item() < PP_MEAN_ABS, f"{what}: mean abs diff {d.mean().item():.5f}"


@pytest.mark.parametrize("kind", ["random", "gradient", "smooth"])
def test_preprocess_matches_open_clip_pil_transform_tiny(kind, tiny_pil_transform):
    clip = load_clip(TINY_CLIP_NAME, device="cpu")
    for h, w in SIZES:
        f = frame(h, w, kind, seed=h + w)
        ref = tiny_pil_transform(PIL.Image.fromarray(f))
        ours = clip.preprocess(f)
        assert ours.shape == (1, 3, 64, 64) and ours.dtype == torch.float32
        _assert_pp_close(ours[0], ref, f"tiny {kind} {h}x{w}")


@pytest.mark.parametrize("kind", ["random", "gradient", "smooth"])
def test_preprocess_matches_open_clip_pil_transform_224(kind, vit_b32_openai_pil_transform):
    cfg, transform = vit_b32_openai_pil_transform
    spec = PreprocessSpec(image_size=224, mean=tuple(cfg.mean), std=tuple(cfg.std),
                          interpolation=cfg.interpolation, resize_mode=cfg.resize_mode)
    for h, w in SIZES:
        f = frame(h, w, kind, seed=h * w)
        ref = transform(PIL.Image.fromarray(f))
        ours = preprocess_frames(f, spec, torch.device("cpu"), torch.float32)
        _assert_pp_close(ours[0], ref, f"224 {kind} {h}x{w}")


def test_preprocess_batch_equals_frame_by_frame(tiny_pil_transform):
    clip = load_clip(TINY_CLIP_NAME, device="cpu")
    batch = np.stack([frame(180, 320, k, seed=i) for i, k in enumerate(["random", "gradient", "smooth"])])
    out = clip.preprocess(batch)
    assert out.shape == (3, 3, 64, 64)
    for i in range(3):
        torch.testing.assert_close(out[i], clip.preprocess(batch[i])[0])
        _assert_pp_close(out[i], tiny_pil_transform(PIL.Image.fromarray(batch[i])), f"batch item {i}")


def test_black_and_white_frames_reach_the_model_very_different():
    clip = load_clip(TINY_CLIP_NAME, device="cpu")
    black = clip.preprocess(np.zeros((1, 120, 160, 3), np.uint8))
    white = clip.preprocess(np.full((1, 120, 160, 3), 255, np.uint8))
    assert white.mean().item() - black.mean().item() > 3.0
    mean = torch.tensor(clip.mean).view(1, 3, 1, 1)
    std = torch.tensor(clip.std).view(1, 3, 1, 1)
    # exactly one /255: black -> -mean/std, white -> (1 - mean)/std
    torch.testing.assert_close(black, (-mean / std).expand_as(black), atol=1e-5, rtol=0)
    torch.testing.assert_close(white, ((1 - mean) / std).expand_as(white), atol=1e-5, rtol=0)
    fb, fw = clip.encode_images(np.zeros((1, 64, 64, 3), np.uint8)), clip.encode_images(
        np.full((1, 64, 64, 3), 255, np.uint8))
    assert (fb - fw).abs().max().item() > 1e-3


# ----------------------------------------------------------------------------------------------------------
# transformers CLIP folder -> open_clip


def _tiny_hf_clip(hidden_act: str, eos_token_id: int, seed: int = 0):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.CLIPConfig(
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=77, vocab_size=49408, hidden_act=hidden_act,
                         eos_token_id=eos_token_id),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, hidden_act=hidden_act),
        projection_dim=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.CLIPModel(cfg).eval()
        with torch.no_grad():
            # random init leaves some weights at defaults (zeros/ones): perturb all so the mapping is tested
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.02)
            model.logit_scale.fill_(math.log(42.0))
    return model


def _features(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@pytest.mark.parametrize("hidden_act,eos_token_id,fmt", [
    ("quick_gelu", 49407, "safetensors"),
    # legacy eos id (argmax pooling, as in openai/clip-vit-large-patch14) and .bin weights
    ("gelu", 2, "bin"),
])
def test_transformers_clip_folder_is_converted(tmp_path, hidden_act, eos_token_id, fmt):
    hf = _tiny_hf_clip(hidden_act, eos_token_id)
    folder = tmp_path / "org" / "tiny-hf-clip"
    if fmt == "safetensors":
        hf.save_pretrained(folder)
        assert (folder / "model.safetensors").is_file()
    else:
        folder.mkdir(parents=True)
        hf.config.save_pretrained(folder)
        torch.save(hf.state_dict(), folder / "pytorch_model.bin")

    clip = load_clip("org/tiny-hf-clip", model_path=tmp_path, device="cpu")
    assert clip.image_size == 32 and clip.embed_dim == 32 and clip.context_length == 77
    assert clip.logit_scale == pytest.approx(42.0, rel=1e-5)
    assert clip.logit_scale == pytest.approx(hf.logit_scale.exp().item(), rel=1e-6)
    expected_act = open_clip.transformer.QuickGELU if hidden_act == "quick_gelu" else torch.nn.GELU
    assert isinstance(clip.model.visual.transformer.resblocks[0].mlp.gelu, expected_act)

    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    tokens = clip.tokenizer(["a photo of a cat", "a blurry photo", "an extremely sharp and colourful photo"])
    with torch.no_grad():
        hf_img = F.normalize(_features(hf.get_image_features(pixel_values=pixels)), dim=-1)
        hf_txt = F.normalize(_features(hf.get_text_features(input_ids=tokens)), dim=-1)
        oc_img = F.normalize(clip.model.encode_image(pixels), dim=-1)
        oc_txt = F.normalize(clip.model.encode_text(tokens), dim=-1)
    torch.testing.assert_close(oc_img, hf_img, atol=1e-4, rtol=0)
    torch.testing.assert_close(oc_txt, hf_txt, atol=1e-4, rtol=0)
    # end to end through the ClipModel API
    f = frames(2, 40, 60)
    with torch.no_grad():
        hf_frames = F.normalize(_features(hf.get_image_features(pixel_values=clip.preprocess(f))), dim=-1)
    torch.testing.assert_close(clip.encode_images(f), hf_frames, atol=1e-4, rtol=0)
    torch.testing.assert_close(clip.encode_text(["a photo of a cat"]), hf_txt[:1], atol=1e-4, rtol=0)
    assert "transformers" in clip.source


def test_transformers_folder_with_foreign_weights_is_refused(tmp_path):
    hf = _tiny_hf_clip("quick_gelu", 49407)
    folder = tmp_path / "org" / "odd-clip"
    hf.save_pretrained(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["vision_config"]["hidden_act"] = "relu"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="hidden_act"):
        load_clip("org/odd-clip", model_path=tmp_path, device="cpu")


# ----------------------------------------------------------------------------------------------------------
# open_clip checkpoint folders


def test_open_clip_checkpoint_folder_with_config(tmp_path):
    ref = load_clip(TINY_CLIP_NAME, device="cpu")
    from safetensors.torch import save_file

    folder = tmp_path / "local" / "tiny-openclip"
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in ref.model.state_dict().items()},
              folder / "open_clip_model.safetensors")
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": builtin_config("tiny-clip"),
        "preprocess_cfg": {"mean": list(ref.mean), "std": list(ref.std), "interpolation": "bicubic",
                           "resize_mode": "shortest"}}))
    clip = load_clip("local/tiny-openclip", model_path=tmp_path, device="cpu")
    assert clip.model is not ref.model and str(folder) in clip.source
    f = frames(3)
    torch.testing.assert_close(clip.encode_images(f), ref.encode_images(f), atol=1e-6, rtol=0)
    torch.testing.assert_close(clip.encode_text(["Good photo."]), ref.encode_text(["Good photo."]), atol=1e-6,
                               rtol=0)


def test_local_folder_named_like_the_model_takes_priority(tmp_path):
    """``{model_path}/video-assets/tiny-clip/*.pt`` without a config: architecture from the name."""
    ref = load_clip(TINY_CLIP_NAME, device="cpu")
    sd = {k: v.clone() for k, v in ref.model.state_dict().items()}
    sd["logit_scale"] = torch.tensor(math.log(50.0))
    sd["visual.proj"] = sd["visual.proj"].flip(1)
    folder = tmp_path / "video-assets" / "tiny-clip"
    folder.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, folder / "epoch_3.pt")
    clip = load_clip(TINY_CLIP_NAME, model_path=tmp_path, device="cpu")
    assert clip.logit_scale == pytest.approx(50.0, rel=1e-6)
    f = frames(2)
    torch.testing.assert_close(clip.encode_images(f), ref.encode_images(f).flip(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(clip.encode_text(["x"]), ref.encode_text(["x"]), atol=1e-6, rtol=0)


def test_folder_without_usable_weights_is_a_clear_error(tmp_path):
    folder = tmp_path / "org" / "empty-clip"
    folder.mkdir(parents=True)
    (folder / "README.md").write_text("nothing here")
    with pytest.raises(ModelLoadError) as info:
        load_clip("org/empty-clip", model_path=tmp_path, device="cpu")
    assert str(folder) in str(info.value) and "README.md" in str(info.value)


# ----------------------------------------------------------------------------------------------------------
# errors: unknown names, missing folders without network (fast, never leaving 127.0.0.1)


@pytest.mark.parametrize("name,match", [
    ("not-a-model", "accepted clip_model_name forms"),
    ("ViT-L-14", "pretrained tag"),
    ("ViT-L-14/no-such-tag", "known tags"),
    ("", "empty clip_model_name"),
    ("hf-hub:just-a-name", "hf-hub:org/repo"),
])
def test_unknown_model_names_raise_model_load_error(name, match):
    with pytest.raises(ModelLoadError, match=match):
        load_clip(name, device="cpu")


def test_unknown_org_name_without_folder_lists_accepted_forms(tmp_path, no_network):
    with pytest.raises(ModelLoadError) as info:
        load_clip("someone/some-clip", model_path=tmp_path, device="cpu")
    msg = str(info.value)
    assert str(tmp_path / "someone" / "some-clip") in msg and "openai/clip-vit-large-patch14" in msg


def test_name_resolution():
    r = resolve_clip_model_name("openai/clip-vit-large-patch14")
    assert (r.arch, r.pretrained, r.quick_gelu) == ("ViT-L-14", "openai", True)
    assert resolve_clip_model_name("OpenAI/CLIP-ViT-Base-Patch32").arch == "ViT-B-32"
    assert resolve_clip_model_name("openai/clip-vit-base-patch16").arch == "ViT-B-16"
    assert resolve_clip_model_name("openai/clip-vit-large-patch14-336").arch == "ViT-L-14-336"
    r = resolve_clip_model_name("ViT-B-32/laion2b_s34b_b79k")
    assert (r.kind, r.arch, r.pretrained) == ("pretrained", "ViT-B-32", "laion2b_s34b_b79k")
    assert r.quick_gelu is False
    r = resolve_clip_model_name("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    assert (r.kind, r.hub_repo) == ("hf-hub", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    assert resolve_clip_model_name("org/my-clip").kind == "local"
    # OpenAI weights were trained with QuickGELU: the architecture config used for them says so
    for name in ("openai/clip-vit-base-patch32", "ViT-L-14/openai", "openai/clip-vit-large-patch14-336"):
        assert build.arch_config(resolve_clip_model_name(name))["quick_gelu"] is True
    laion = resolve_clip_model_name("ViT-B-32/laion2b_s34b_b79k")
    assert not build.arch_config(laion).get("quick_gelu")


def test_copy_in_the_hub_cache_is_used_offline(tmp_path, no_network):
    """``hf-hub:org/repo`` with model_path as hub cache: a cached snapshot loads without network."""
    ref = load_clip(TINY_CLIP_NAME, device="cpu")
    from safetensors.torch import save_file

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = tmp_path / "models--org--tiny-hub"
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    save_file({k: v.contiguous() for k, v in ref.model.state_dict().items()},
              snapshot / "open_clip_model.safetensors")
    (snapshot / "open_clip_config.json").write_text(json.dumps({"model_cfg": builtin_config("tiny-clip")}))
    clip = load_clip("hf-hub:org/tiny-hub", model_path=tmp_path, device="cpu")
    assert clip.name == "hf-hub:org/tiny-hub" and str(snapshot) in clip.source
    f = frames(2)
    torch.testing.assert_close(clip.encode_images(f), ref.encode_images(f), atol=1e-6, rtol=0)
    assert no_network == []


def test_missing_local_folder_offline_fails_fast_and_says_how_to_fill_it(tmp_path, no_network):
    t0 = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        load_clip("openai/clip-vit-large-patch14", model_path=tmp_path, device="cpu")
    assert time.monotonic() - t0 < 5.0
    msg = str(info.value)
    folder = tmp_path / "openai" / "clip-vit-large-patch14"
    assert f"no local folder {folder}" in msg
    assert f"download openai/clip-vit-large-patch14 --local-dir {folder}" in msg
    assert "HF_HUB_OFFLINE" in msg
    assert no_network == []  # offline: not even a probe


def test_missing_model_without_model_path_offline(no_network):
    t0 = time.monotonic()
    with pytest.raises(ModelLoadError, match="no model_path given") as info:
        load_clip("ViT-B-32/openai", device="cpu")
    assert time.monotonic() - t0 < 5.0
    assert "hf download timm/vit_base_patch32_clip_224.openai" in str(info.value)


def test_unreachable_hub_fails_fast(tmp_path, no_network, monkeypatch):
    """Not offline by configuration, but the endpoint refuses connections: a quick probe, then the error."""
    with socket.socket() as s:  # a local port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    with pytest.raises(ModelLoadError, match="unreachable") as info:
        load_clip("hf-hub:org/some-open-clip-model", model_path=tmp_path, device="cpu")
    assert time.monotonic() - t0 < 5.0
    assert str(tmp_path / "org" / "some-open-clip-model") in str(info.value)
    assert no_network == [("127.0.0.1", port)]


# ----------------------------------------------------------------------------------------------------------
# devices and dtypes


def test_float16_on_cpu_falls_back_to_float32_with_a_log_message(caplog):
    with caplog.at_level(logging.WARNING, logger="video_assets.models.device"):
        clip = load_clip(TINY_CLIP_NAME, device="cpu", dtype="float16")
    assert clip.dtype == torch.float32
    assert next(clip.model.parameters()).dtype == torch.float32
    assert any("float16" in r.getMessage() and "float32" in r.getMessage() for r in caplog.records)
    assert clip is load_clip(TINY_CLIP_NAME, device="cpu", dtype="float32")  # same effective key
    assert clip.preprocess(frames(1)).dtype == torch.float32


def test_bfloat16_on_cpu_when_it_works():
    ref = load_clip(TINY_CLIP_NAME, device="cpu")
    clip = load_clip(TINY_CLIP_NAME, device="cpu", dtype="bfloat16")
    if clip.dtype != torch.bfloat16:
        pytest.skip("bfloat16 does not run on this CPU build (fell back to float32)")
    f = frames(3)
    assert clip.preprocess(f).dtype == torch.bfloat16
    out = clip.encode_images(f)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))
    assert F.cosine_similarity(out, ref.encode_images(f)).min().item() > 0.98
    assert clip.logit_scale == pytest.approx(ref.logit_scale, rel=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(dtype="int8"), "unsupported dtype"),
    (dict(device="tpu"), "device"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_device_dtype_batch_size(kwargs, match):
    with pytest.raises((ModelLoadError, ValueError), match=match):
        load_clip(TINY_CLIP_NAME, **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    (dict(dtype="int8"), r"dtype must be one of float32, .*bfloat16.*; got 'int8'"),
    (dict(dtype="torch.int8"), r"dtype must be one of .*; got 'torch.int8'"),
    (dict(device="tpu"), r"device must be 'cpu', 'cuda', 'cuda:N', 'auto' or empty .*; got 'tpu'"),
    (dict(device="cuda:x"), r"device must be .*; got 'cuda:x'"),
])
def test_bad_device_or_dtype_is_a_value_error_when_the_operator_is_built(kwargs, match):
    """Checked with the other parameters, before any model is loaded: the model named here does not exist."""
    from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore
    from video_assets.pipeline.settings import ModelSettings

    for operator in (VideoQualityScore, VideoAdaptiveKeyframesSampling):
        with pytest.raises(ValueError, match=match):
            operator(clip_model_name="video-assets/no-such-model", **kwargs)
    with pytest.raises(ValueError, match=match):
        ModelSettings(**kwargs)  # the pipeline's model settings (the Launchpad's) run the same check


def test_device_and_dtype_spellings_that_mean_something_are_accepted():
    from video_assets.operators import VideoQualityScore

    # syntax only: cuda:1 on a machine without it runs on the CPU, as before
    for device in ("cpu", " cpu ", "cuda", "cuda:1", "auto", "AUTO", "", None):
        VideoQualityScore(clip_model_name=TINY_CLIP_NAME, device=device)
    for dtype in ("float32", "FP16", "half", "bf16", "torch.bfloat16", "", None):
        VideoQualityScore(clip_model_name=TINY_CLIP_NAME, device="cpu", dtype=dtype)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_requested_without_cuda_is_a_model_load_error():
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        load_clip(TINY_CLIP_NAME, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_float16_matches_cpu_and_pil(tiny_pil_transform):
    ref = load_clip(TINY_CLIP_NAME, device="cpu")
    g = load_clip(TINY_CLIP_NAME, device="cuda", dtype="float16")
    assert g.dtype == torch.float16 and next(g.model.parameters()).dtype == torch.float16
    f = np.stack([frame(720, 1280, k, seed=i) for i, k in enumerate(["random", "gradient", "smooth"])])
    pp = g.preprocess(f)
    assert pp.device.type == "cuda" and pp.dtype == torch.float16
    for i in range(3):
        # float16 storage adds up to ~0.002 rounding (|values| < 2.2) on top of the resize differences
        _assert_pp_close(pp[i].float().cpu(), tiny_pil_transform(PIL.Image.fromarray(f[i])), f"cuda fp16 {i}")
    out = g.encode_images(f)
    assert out.dtype == torch.float32 and out.device.type == "cuda"
    assert F.cosine_similarity(out.cpu(), ref.encode_images(f)).min().item() > 0.99
    torch.testing.assert_close(g.encode_text(["a"]).cpu(), ref.encode_text(["a"]), atol=5e-3, rtol=0)
