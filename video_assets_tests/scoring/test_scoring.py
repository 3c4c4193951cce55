"""CLIP-IQA rule and prompt parsing, checked against plain computations."""

import math

import numpy as np
import pytest
import torch

from video_assets.scoring import NAMED_PROMPTS, clip_iqa_probs, parse_prompts, prompt_label, reduce_scores


def test_all_sixteen_named_pairs_resolve():
    assert len(NAMED_PROMPTS) == 16
    for name, (pos, neg) in NAMED_PROMPTS.items():
        pairs, is_list = parse_prompts(name)
        assert pairs == [(pos, neg)] and not is_list
        assert pos.endswith("photo.") and neg.endswith("photo.") and pos != neg
        assert prompt_label((pos, neg)) == name


def test_custom_pairs_and_lists():
    assert parse_prompts(("Sharp photo.", "Blurry photo.")) == ([("Sharp photo.", "Blurry photo.")], False)
    assert parse_prompts("A crisp frame.|A smeared frame.") == ([("A crisp frame.", "A smeared frame.")], False)
    pairs, is_list = parse_prompts(["quality", "sharpness", ("Warm light.", "Cold light."), "a|b"])
    assert is_list and pairs == [NAMED_PROMPTS["quality"], NAMED_PROMPTS["sharpness"], ("Warm light.", "Cold light."),
                                 ("a", "b")]
    assert parse_prompts(["quality", "noisiness"])[1] is True
    assert prompt_label(("a", "b")) == "a|b"


@pytest.mark.parametrize("bad", ["not-a-prompt", "|", ("only one",), [], 3, ("", "x")])
def test_bad_prompts_are_rejected(bad):
    with pytest.raises(ValueError, match="prompt"):
        parse_prompts(bad)


def test_probability_matches_plain_formula():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(5, 16, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=-1)
    probs = clip_iqa_probs(img, txt, logit_scale=100.0)
    assert probs.shape == (5, 2)
    for i in range(5):
        for p in range(2):
            a = 100.0 * float(img[i] @ txt[2 * p])
            b = 100.0 * float(img[i] @ txt[2 * p + 1])
            expected = math.exp(a) / (math.exp(a) + math.exp(b)) if max(a, b) < 700 else float(a > b)
            assert float(probs[i, p]) == pytest.approx(expected, rel=1e-5, abs=1e-6)
            assert 0.0 <= float(probs[i, p]) <= 1.0


def test_reduce_modes():
    s = np.array([[0.1, 0.9], [0.5, 0.3], [0.3, 0.6]])
    assert reduce_scores(s, "avg") == pytest.approx([0.3, 0.6])
    assert reduce_scores(s, "max") == pytest.approx([0.5, 0.9])
    assert reduce_scores(s, "min") == pytest.approx([0.1, 0.3])
    assert reduce_scores(s, "median") == pytest.approx([0.3, 0.6])
    with pytest.raises(ValueError, match="reduce_mode"):
        reduce_scores(s, "mean")
