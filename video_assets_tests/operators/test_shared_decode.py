"""One decode for quality scores and keyframes: QualityAndKeyframes equals the two operators run separately,
decodes less, and the Dagster step uses it when both assets are selected (and still materialises one alone)."""

import pickle
from functools import partial

import dagster as dg
import numpy as np
import pytest
import torch

from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore
from video_assets.operators.batching import run_overlapped
from video_assets.operators.combined import QualityAndKeyframes, shared_decode_mismatch
from video_assets.orchestration.assets import KEYFRAMES_KEY, MODEL_STEP, QUALITY_KEY
from video_assets.orchestration.resources import WarehouseResource
from video_assets.pipeline.runner import (
    extract_keyframes,
    score_quality,
    score_quality_and_extract_keyframes,
    shared_decode_problem,
)
from video_assets.pipeline.settings import KeyframeSettings, ModelSettings, QualitySettings
from video_assets.pipeline.tables import KEYFRAMES_ASSET, QUALITY_ASSET, read_frame
from video_assets.video import TruncatedVideoWarning, VideoReader
from video_assets_tests.pipeline_helpers import DEMO_CSV, make_videos, materialize_partition
from video_assets_tests.videos import encode_video, read_index

TINY = "video-assets/tiny-clip"


@pytest.fixture(scope="module")
def clips(videos, tmp_path_factory):
    """Videos with B-frames, a long GOP, VFR, a start offset, a cut-short file, a broken one and a missing one."""
    d = tmp_path_factory.mktemp("shared")
    full = encode_video(d / "fast.mp4", n_frames=60, gop=12, container_options={"movflags": "faststart"})
    cut = d / "fast_cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    broken = d / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 2)
    return [str(videos["h264_bframes.mp4"]), str(videos["long_gop.mp4"]), str(broken), str(videos["vfr.mkv"]),
            str(cut), str(videos["start_offset.mp4"]), str(d / "missing.mp4")]


def _ops(out_dir, quality=None, keyframes=None):
    q = dict(clip_model_name=TINY, device="cpu", count_k=6, batch_size=5, decode_workers=2)
    k = dict(clip_model_name=TINY, device="cpu", text="a white square", fps=6.0, max_num_frames=3, all_depth=2,
             batch_size=7, decode_workers=2, output_tos_dir=str(out_dir), return_keyframes=True)
    q.update(quality or {})
    k.update(keyframes or {})
    return VideoQualityScore(**q), VideoAdaptiveKeyframesSampling(**k)


def _assert_same(pairs, q_rows, k_rows):
    assert len(pairs) == len(q_rows) == len(k_rows)
    for (cq, ck), sq, sk in zip(pairs, q_rows, k_rows):
        assert cq.keys() == sq.keys() and ck.keys() == sk.keys()
        for key in ("video_id", "source", "error", "frame_indices", "timestamps", "truncated", "warnings",
                    "prompts"):
            assert cq[key] == sq[key], (sq["source"], key)
        if sq["score"] is None:
            assert cq["score"] is None
        else:
            assert cq["score"] == pytest.approx(sq["score"], abs=1e-6)
            assert np.allclose(cq["frame_scores"], sq["frame_scores"], atol=1e-6)
        for key in ("video_id", "source", "error", "frame_ids", "timestamps", "tos_paths", "num_candidates",
                    "effective_fps", "truncated", "warnings"):
            assert ck[key] == sk[key], (sk["source"], key)
        # Keyframe scores come from float16 embeddings: the last-bit differences of float32 features that
        # batching with other videos' frames causes can round a component to the next float16 (~4e-6 here).
        assert np.allclose(ck["scores"], sk["scores"], atol=1e-4)
        assert len(ck.get("keyframes", [])) == len(sk.get("keyframes", []))
        for a, b in zip(ck.get("keyframes", []), sk.get("keyframes", [])):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("quality,keyframes", [
    ({}, {}),
    # windows that differ: quality looks at 0.5..1.5 s only, keyframes at the whole video, capped
    ({"sample_mode": "by_interval_time", "interval_sec": 0.25, "start_time_sec": 0.5, "end_time_sec": 1.5},
     {"fps": 3.0, "max_candidates": 4}),
    # quality's window lies past the end of some videos: that side fails alone, keyframes still work
    ({"start_time_sec": 4.0, "count_k": 3, "prompt": ["quality", "sharpness"]}, {"fps": 2.0}),
])
def test_combined_equals_two_separate_passes(clips, tmp_path, quality, keyframes):
    q, k = _ops(tmp_path / "kf", quality, keyframes)
    with pytest.warns(TruncatedVideoWarning):
        q_rows = q.details(clips)
    k_rows = k.details(clips)
    written = {p: open(p, "rb").read() for r in k_rows for p in r["tos_paths"]}
    assert written  # images were exported

    with pytest.warns(TruncatedVideoWarning):
        pairs = QualityAndKeyframes(q, k).details(clips)
    _assert_same(pairs, q_rows, k_rows)
    assert {p: open(p, "rb").read() for p in written} == written  # rewritten, byte for byte
    for _, ck in pairs:  # the right pixels were exported
        assert [read_index(f) for f in ck.get("keyframes", [])] == ck["frame_ids"]
    errors = [(cq["error"] is not None, ck["error"] is not None) for cq, ck in pairs]
    assert errors[2] == (True, True) and errors[-1] == (True, True)  # broken, missing: both sides
    assert pairs[4][0]["truncated"] or pairs[4][0]["error"]  # the cut-short file says so
    if quality.get("start_time_sec") == 4.0:  # 60 frames at 30 fps: no quality frames, keyframes fine
        assert "no frames in the sampling window" in pairs[0][0]["error"] and pairs[0][1]["error"] is None


class _DecodeCounter:
    """Counts readers opened, fetch calls and frames decoded, via the readers' own DecodeStats."""

    def __init__(self, monkeypatch):
        self.opened = self.fetches = self.frames = 0
        real_init, real_close, real_fetch = VideoReader.__init__, VideoReader.close, VideoReader.fetch
        counter = self

        def init(reader, *a, **kw):
            real_init(reader, *a, **kw)
            counter.opened += 1

        def close(reader):
            counter.frames += reader.stats.frames_decoded
            reader.stats.frames_decoded = 0  # close may run twice
            real_close(reader)

        def fetch(reader, *a, **kw):
            counter.fetches += 1
            return real_fetch(reader, *a, **kw)

        monkeypatch.setattr(VideoReader, "__init__", init)
        monkeypatch.setattr(VideoReader, "close", close)
        monkeypatch.setattr(VideoReader, "fetch", fetch)


def test_each_video_is_decoded_once(videos, monkeypatch):
    paths = [str(videos[n]) for n in ("h264_bframes.mp4", "long_gop.mp4", "short_gop.mp4", "hevc.mkv")]
    # no export: the selected keyframes' re-fetch is the same in both modes and would blur the count
    q, k = _ops("", keyframes={"output_tos_dir": "", "return_keyframes": False})
    separate = _DecodeCounter(monkeypatch)
    q_rows, k_rows = q.details(paths), k.details(paths)
    monkeypatch.undo()
    shared = _DecodeCounter(monkeypatch)
    pairs = QualityAndKeyframes(q, k).details(paths)
    monkeypatch.undo()
    _assert_same(pairs, q_rows, k_rows)
    assert (separate.opened, separate.fetches) == (2 * len(paths), 2 * len(paths))
    assert (shared.opened, shared.fetches) == (len(paths), len(paths))
    assert 0 < shared.frames < separate.frames


def test_factory_is_picklable_and_settings_must_agree(tmp_path):
    factory = partial(QualityAndKeyframes, quality=dict(clip_model_name=TINY, device="cpu"),
                      keyframes=dict(clip_model_name=TINY, device="cpu", output_tos_dir=str(tmp_path)))
    op = pickle.loads(pickle.dumps(factory))()
    assert isinstance(op.quality, VideoQualityScore) and op.keyframes.output_tos_dir == str(tmp_path)
    q, k = _ops(tmp_path, keyframes={"video_format": "mkv"})
    assert "container hints differ" in shared_decode_mismatch(q, k)
    with pytest.raises(ValueError, match="cannot share one decode: container hints differ"):
        QualityAndKeyframes(q, k)
    q, k = _ops(tmp_path, quality={"storage_options": {"block_size": 1 << 20}})
    assert "storage_options" in shared_decode_mismatch(q, k)


def test_runner_tables_equal_the_separate_steps(tmp_path):
    vids = make_videos(tmp_path / "videos")
    import pandas as pd

    manifest = pd.DataFrame({"video_id": list(vids), "uri": [str(p) for p in vids.values()],
                             "label": ["x"] * len(vids)})
    qs, ks, models = QualitySettings(count_k=5), KeyframeSettings(fps=3.0, max_num_frames=2), ModelSettings(
        device="cpu", decode_workers=2)
    wh = str(tmp_path / "wh")
    q_sep = score_quality(manifest, qs, models, partition_key="p")
    k_sep = extract_keyframes(manifest, ks, wh, "p", models)
    calls = []
    q_one, k_one = score_quality_and_extract_keyframes(
        manifest, qs, ks, wh, "p", models, progress_callback=lambda *a: calls.append(a), progress_every_sec=0)
    assert calls[-1][:2] == (4, 4)  # one progress for the shared step
    for sep, one in ((q_sep, q_one), (k_sep, k_one)):
        a, b = sep.to_pandas(), one.to_pandas()
        assert list(a.columns) == list(b.columns) and len(a) == 4
        for col in a.columns:
            if col in ("scored_at", "extracted_at"):
                continue
            if col in ("quality_score", "scores", "frame_scores"):
                for x, y in zip(a[col], b[col]):
                    assert (x is None and y is None) or np.allclose(np.asarray(x, float), np.asarray(y, float),
                                                                    atol=1e-6, equal_nan=True), col
            else:
                assert a[col].astype(str).tolist() == b[col].astype(str).tolist(), col
    assert shared_decode_problem(qs, ks, models) is None
    assert "container hints differ" in shared_decode_problem(qs, KeyframeSettings(video_format="mkv"), models)
    # settings that read videos differently: the same tables, from two passes
    q2, k2 = score_quality_and_extract_keyframes(manifest, qs, KeyframeSettings(fps=3.0, max_num_frames=2,
                                                                                video_format="mkv"),
                                                 wh, "p", models)
    assert q2.column("quality_score").to_pylist() == pytest.approx(q_sep.column("quality_score").to_pylist())
    assert k2.column("frame_ids").to_pylist() == k_sep.column("frame_ids").to_pylist()


def test_run_overlapped_feeds_two_models_in_their_own_batches():
    seen: list[tuple[int, int]] = []

    def embed(stream):
        def f(x):
            seen.append((stream, x.shape[0]))
            return x.flatten(1)[:, :1] + 1000 * stream
        return f

    def prepare(item, emit):
        for start in range(0, item, 3):  # chunks of 3 frames; frame value = its index
            idx = torch.arange(start, min(item, start + 3), dtype=torch.float32)
            emit(idx.view(-1, 1, 1, 1).expand(-1, 3, 2, 2), 0)
            emit(idx.view(-1, 1, 1, 1).expand(-1, 3, 2, 2)[:1], 1)
        return item

    out = run_overlapped([7, 0, 5], describe=str, prepare=prepare, embed=(embed(0), embed(1)),
                         finish=lambda item, meta, feats: (feats[0].flatten().tolist(), feats[1].flatten().tolist()),
                         batch_size=(4, 2), decode_workers=2)
    assert out[0].value == (list(map(float, range(7))), [1000.0, 1003.0, 1006.0])
    assert out[1].value == ([], [])
    assert out[2].value == (list(map(float, range(5))), [1000.0, 1003.0])
    assert all(n <= 4 for s, n in seen if s == 0) and all(n <= 2 for s, n in seen if s == 1)
    with pytest.raises(ValueError, match="2 entries for 1"):
        run_overlapped([1], str, prepare, embed=embed(0), finish=lambda *a: None, batch_size=(1, 2))


@pytest.fixture
def demo_manifest(tmp_path):
    folder = tmp_path / "inbox" / "media"  # inside the inbox: a folder the default source policy allows
    make_videos(folder / "videos")
    manifest = folder / "demo.csv"
    manifest.write_text(DEMO_CSV)
    return str(manifest)


def _materializations(result):
    return {m.asset_key: m for m in (e.event_specific_data.materialization
                                     for e in result.get_asset_materialization_events())}


def test_dagster_both_assets_share_a_decode_and_equal_one_at_a_time(tmp_path, demo_manifest):
    run_config = {"ops": {MODEL_STEP: {"config": {"quality": {"count_k": 4},
                                                   "keyframes": {"max_num_frames": 1}}}}}
    one_run = WarehouseResource(warehouse=str(tmp_path / "wh1"), inbox=str(tmp_path / "inbox"))
    apart = WarehouseResource(warehouse=str(tmp_path / "wh2"), inbox=str(tmp_path / "inbox"))
    with dg.instance_for_test() as instance:
        key, result = materialize_partition(one_run, demo_manifest, instance, run_config=run_config)
        assert result.success
        mats = _materializations(result)
        assert mats[QUALITY_KEY].metadata["shared_decode"].value is True
        assert mats[KEYFRAMES_KEY].metadata["shared_decode"].value is True
        assert mats[QUALITY_KEY].metadata["score_histogram"].value.startswith("![histogram]")
        assert mats[KEYFRAMES_KEY].metadata["contact_sheet"].value.startswith("![keyframes]")
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
        assert any("all three assets from one decode per video" in m for m in logs)
        assert mats[dg.AssetKey("video_frame_embeddings")].metadata["shared_decode"].value is True
        checks = result.get_asset_check_evaluations()
        assert len(checks) == 10  # video_manifest has two of them
        assert all(c.passed for c in checks if c.check_name != "failed_share_below_threshold")

        # one asset at a time (what a person does by selecting one in the UI): the step runs as a subset
        materialize_partition(apart, demo_manifest, instance, selection=[dg.AssetKey("video_manifest")])
        _, only_q = materialize_partition(apart, demo_manifest, instance, run_config=run_config,
                                          selection=[QUALITY_KEY])
        assert only_q.success and set(_materializations(only_q)) == {QUALITY_KEY}
        assert _materializations(only_q)[QUALITY_KEY].metadata["shared_decode"].value is False
        assert not (tmp_path / "wh2" / KEYFRAMES_ASSET).exists()
        assert {c.asset_key for c in only_q.get_asset_check_evaluations()} == {QUALITY_KEY}
        _, only_k = materialize_partition(apart, demo_manifest, instance, run_config=run_config,
                                          selection=[KEYFRAMES_KEY])
        assert only_k.success and set(_materializations(only_k)) == {KEYFRAMES_KEY}

    for asset in (QUALITY_ASSET, KEYFRAMES_ASSET):
        a, b = read_frame(one_run.table_uri(asset, key)), read_frame(apart.table_uri(asset, key))
        assert list(a.columns) == list(b.columns)
        if asset == QUALITY_ASSET:
            assert np.allclose(a["quality_score"].fillna(-1), b["quality_score"].fillna(-1), atol=1e-6)
            assert a["frame_indices"].astype(str).tolist() == b["frame_indices"].astype(str).tolist()
        else:
            assert a["frame_ids"].astype(str).tolist() == b["frame_ids"].astype(str).tolist()
            def rel(paths):  # the two warehouses differ; the layout below them must not
                return [None if v is None else [p.split("/keyframes/", 1)[1] for p in v] for v in paths]

            assert rel(a["keyframe_paths"]) == rel(b["keyframe_paths"])
        assert a["error"].tolist() == b["error"].tolist()


def test_the_combined_operator_is_exported_with_the_two():
    import video_assets.operators as ops

    assert ops.QualityAndKeyframes is QualityAndKeyframes and "QualityAndKeyframes" in ops.__all__
