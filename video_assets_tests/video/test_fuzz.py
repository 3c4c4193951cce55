"""Fuzzing with hypothesis, asserting only the contract.

- The manifest parser, on random and mutated manifest bytes in every text format: a :class:`Manifest` (whose
  rows are either a video or a malformed line with an error, and which turns into a valid ``video_manifest``
  table) or a :class:`ManifestError`; nothing else.
- ``sample_frames`` on mutated bytes of small valid videos (bit flips, truncation, splices, inserted junk):
  :class:`SampledFrames` or a :class:`VideoAssetsError`, never another exception, in bounded time.

Profiles (``HYPOTHESIS_PROFILE``): ``ci`` (default; the file runs in well under a minute on 2 cores) and
``long`` (thousands of examples, for a local run:
``HYPOTHESIS_PROFILE=long pytest video_assets_tests/video/test_fuzz.py``).
"""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from video_assets.errors import VideoAssetsError
from video_assets.pipeline.manifests import INVALID_URI, Manifest, ManifestError, read_manifest
from video_assets.video import sample_frames
from video_assets.video.limits import ReadLimits
from video_assets_tests.videos import encode_video

settings.register_profile("ci", max_examples=60, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"

# Each sampler call must end within this (the decode deadline is set lower; margin for a loaded machine).
SAMPLE_TIME_LIMIT_SEC = 20.0

# ----------------------------------------------------------------------------------------------------------
# manifests

_GOOD_LINES = {
    "csv": ["uri,label", "a.mp4,x", "s3://b/k.mp4,y", '"c,d.mp4","q""uote"', "../v/e.mp4,"],
    "tsv": ["uri\tlabel", "a.mp4\tx", "s3://b/k.mp4\ty"],
    "jsonl": ['{"uri": "a.mp4", "n": 1}', '{"video_path": "s3://b/k.mp4", "video_id": "k"}',
              '{"uri": "x.mp4", "nested": {"a": [1, 2]}}'],
    "json": ['[{"uri": "a.mp4"},', '{"uri": "b.mp4", "x": null}]'],
    "txt": ["# comment", "a.mp4", "s3://b/k.mp4", "http://127.0.0.1:9/v.mp4"],
}
_JUNK = [b"\x00", b"\xff\xfe", b"\xe9", b"\"", b",", b"\t", b"\r", b"\n", b"{", b"[", b"\\ud800", b"\xed\xa0\x80",
         b"\x1b[31m", b"../" * 5, "é".encode(), "\u2028".encode(), b"9" * 30, b"NaN", b"-1e999"]

line_bytes = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=60).map(lambda s: s.encode("utf-8")),
    st.lists(st.sampled_from(_JUNK), max_size=6).map(b"".join),
)


@st.composite
def manifests(draw):
    fmt = draw(st.sampled_from(sorted(_GOOD_LINES)))
    good = [ln.encode() for ln in _GOOD_LINES[fmt]]
    lines = list(good) if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 8))):
        choice = draw(st.integers(0, 3))
        pos = draw(st.integers(0, len(lines)))
        if choice == 0 or not lines:
            lines.insert(pos, draw(line_bytes))
        elif choice == 1:  # mutate a line: insert junk at a position
            i = draw(st.integers(0, len(lines) - 1))
            cut = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:cut] + draw(line_bytes) + lines[i][cut:]
        elif choice == 2:  # truncate a line
            i = draw(st.integers(0, len(lines) - 1))
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
        else:  # duplicate a line
            lines.insert(pos, lines[draw(st.integers(0, len(lines) - 1))])
    sep = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    bom = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe"]))
    return fmt, bom + sep.join(lines)


def _check_manifest_contract(name: str, data: bytes) -> None:
    from video_assets.pipeline.runner import build_manifest_table
    from video_assets.pipeline.settings import ManifestSettings

    try:
        m = read_manifest(name, data=data)
    except ManifestError as e:
        assert str(e).startswith(name), str(e)  # the message names the manifest
        return
    assert isinstance(m, Manifest) and len(m.frame) > 0
    invalid = m.frame["uri"] == INVALID_URI
    assert m.frame.loc[invalid, "error"].map(lambda e: isinstance(e, str) and e.startswith("manifest ")).all()
    assert m.frame.loc[~invalid, "error"].isna().all()
    assert len(m.unique) >= 1
    # the whole manifest step too: the table must build (Arrow is strict about text and integer ranges)
    table, _ = build_manifest_table(name, "fuzz", ManifestSettings(probe=False), data=data)
    assert table.num_rows == len(m.frame)


@given(manifests())
def test_manifest_parser_contract(case):
    fmt, data = case
    _check_manifest_contract(f"/fuzz/inbox/m.{fmt}", data)


@given(st.sampled_from(sorted(_GOOD_LINES)), st.binary(max_size=400))
def test_manifest_parser_on_random_bytes(fmt, data):
    _check_manifest_contract(f"/fuzz/inbox/m.{fmt}", data)


# ----------------------------------------------------------------------------------------------------------
# the sampler on mutated video bytes


@pytest.fixture(scope="module")
def seed_videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz_seeds")
    return {
        "mp4": encode_video(d / "s.mp4", n_frames=12, fps=6, gop=4, bframes=2,
                            container_options={"movflags": "faststart"}).read_bytes(),
        "webm": encode_video(d / "s.webm", n_frames=12, fps=6, codec="libvpx-vp9", gop=4,
                             bframes=None).read_bytes(),
    }


@st.composite
def mutations(draw, n: int):
    """A list of edits applied in order to a byte string of length about n."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "splice", "insert", "zero"]))
        a = draw(st.integers(0, max(0, n - 1)))
        if kind == "flip":
            edits.append(("flip", a, draw(st.integers(0, 7))))
        elif kind == "truncate":
            edits.append(("truncate", a, 0))
        elif kind == "splice":
            edits.append(("splice", a, draw(st.integers(0, max(0, n - 1)))))
        elif kind == "insert":
            edits.append(("insert", a, draw(st.binary(min_size=1, max_size=64))))
        else:
            edits.append(("zero", a, draw(st.integers(1, 512))))
    return edits


def _apply(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for kind, a, x in edits:
        a = min(a, max(0, len(b) - 1))
        if kind == "flip" and b:
            b[a] ^= 1 << x
        elif kind == "truncate":
            del b[a:]
        elif kind == "splice" and b:  # copy 256 bytes from x over position a
            chunk = b[x:x + 256]
            b[a:a + len(chunk)] = chunk
        elif kind == "insert":
            b[a:a] = x
        elif kind == "zero":
            b[a:a + x] = bytes(len(b[a:a + x]))
    return bytes(b)


_LIMITS = ReadLimits(timeout_sec=10.0, max_pixels=4096 * 4096, max_decoded_frames=10_000)


@pytest.mark.filterwarnings("ignore:.*could not be decoded")  # the documented warning of a truncated result
@pytest.mark.filterwarnings("ignore:.*frames but only")
@given(data=st.data())
@settings(max_examples=3000 if LONG else 40)
def test_sampler_on_mutated_video_bytes(seed_videos, data):
    fmt = data.draw(st.sampled_from(sorted(seed_videos)))
    original = seed_videos[fmt]
    mutated = _apply(original, data.draw(mutations(len(original))))
    mode = data.draw(st.sampled_from(["by_count_uniform", "by_fps", "by_interval_frames"]))
    kw = {"by_count_uniform": {"count_k": 4}, "by_fps": {"target_fps": 3.0, "count_k": None},
          "by_interval_frames": {"interval_frames": 3, "count_k": None}}[mode]
    t0 = time.monotonic()
    try:
        s = sample_frames(mutated, mode, video_format=fmt, limits=_LIMITS, **kw)
    except VideoAssetsError:
        pass
    else:
        assert s.frames.ndim == 4 and s.frames.shape[-1] == 3 and len(s.indices) == len(s.frames)
        assert list(s.indices) == sorted(s.indices)
    assert time.monotonic() - t0 < SAMPLE_TIME_LIMIT_SEC
