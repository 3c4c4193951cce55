"""Typed results (their failure constructors, the detail dicts, the one mapping to each table's Arrow schema) and
operator stages (picklable without the model; N stages over one decode equal N separate passes)."""

import pickle
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest
import torch

from video_assets.operators import VideoAdaptiveKeyframesSampling, VideoQualityScore
from video_assets.operators.common import make_inputs
from video_assets.operators.results import KeyframesResult, QualityResult, as_dicts, with_device
from video_assets.operators.stage import SharedDecode, Stage
from video_assets.pipeline.tables import (
    KEYFRAMES_SCHEMA,
    QUALITY_SCHEMA,
    build_table,
    embeddings_row,
    embeddings_schema,
    keyframes_row,
    quality_row,
)
from video_assets.video import VideoReader

TINY = "video-assets/tiny-clip"


def _broken(tmp_path) -> str:
    p = tmp_path / "broken.mp4"
    p.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 2)
    return str(p)


def _ops(tmp_path, **k):
    q = VideoQualityScore(clip_model_name=TINY, device="cpu", count_k=5, batch_size=4, decode_workers=2)
    k = VideoAdaptiveKeyframesSampling(clip_model_name=TINY, device="cpu", text="a white square", fps=4.0,
                                       max_num_frames=3, all_depth=2, batch_size=6, decode_workers=2,
                                       output_tos_dir=str(tmp_path / "kf"), return_keyframes=False, **k)
    return q, k


# -- results ---------------------------------------------------------------------------------------------------
def test_failure_constructors_give_the_operators_own_failed_rows(videos, tmp_path):
    q, k = _ops(tmp_path)
    missing = str(tmp_path / "missing.mp4")
    [q_row] = q.score_details(video_paths=[missing])
    [k_row] = k.details([missing])
    qf = q.failed_result(missing, "worker crashed")
    kf = k.failed_result(missing, "worker crashed")
    assert isinstance(qf, QualityResult) and isinstance(kf, KeyframesResult)
    assert not qf.ok and qf.score is None and qf.error == "worker crashed"
    for row, failed in ((q_row, qf.as_dict()), (k_row, kf.as_dict())):
        assert set(failed) == set(row)  # every key a reader of the operator's rows expects
        assert (failed["video_id"], failed["source"]) == (row["video_id"], row["source"])
        for key, value in row.items():
            if key not in ("error", "scored_at"):
                assert failed[key] == value, key
    assert kf.query == "a white square"
    # the constructor on its own
    r = QualityResult.failed("abc", "<x>", "bad", prompts=["quality", "sharpness"], multi_prompt=True)
    assert r.as_dict()["score"] is None and r.as_dict()["prompts"] == ["quality", "sharpness"]
    assert KeyframesResult.failed("abc", "<x>", "bad", query="q").as_dict()["tos_paths"] == []


def test_detail_dicts_come_from_the_typed_results(videos, tmp_path):
    q, k = _ops(tmp_path)
    paths = [str(videos["short_gop.mp4"]), _broken(tmp_path)]
    typed, dicts = q.results(video_paths=paths), q.score_details(video_paths=paths)
    assert [r.as_dict().keys() for r in typed] == [d.keys() for d in dicts]
    assert typed[0].score == pytest.approx(dicts[0]["score"], abs=1e-6) and typed[1].score is None
    assert isinstance(typed[0].scored_at, datetime) and typed[0].scored_at.tzinfo is not None
    assert datetime.fromisoformat(dicts[0]["scored_at"]).tzinfo is not None
    assert q(video_paths=paths)[1] is None and q(video_paths=paths)[0] == pytest.approx(typed[0].score, abs=1e-6)
    kt = k.results(paths, texts=[["a white square", "a red stripe"], None])
    assert isinstance(kt[0], list) and [r.query for r in kt[0]] == ["a white square", "a red stripe"]
    assert isinstance(kt[1], KeyframesResult) and kt[1].error
    assert as_dicts(kt)[0][1]["frame_ids"] == list(kt[0][1].frame_ids)
    assert [list(r.frame_ids) for r in kt[0]] == [d["frame_ids"] for d in k.details(paths[:1],
                                                                                   texts=[["a white square",
                                                                                           "a red stripe"]])[0]]
    streamed = list(q.iter_results(paths))
    assert [r.frame_indices for r in streamed] == [r.frame_indices for r in typed]


def test_with_device_fills_only_missing_devices():
    a = QualityResult.failed("v", "s", "e", prompts=["quality"])
    b = KeyframesResult.failed("v", "s", "e", device="cuda:1")
    out = with_device((a, [b]), "cpu")
    assert out[0].device == "cpu" and out[1][0].device == "cuda:1"
    assert as_dicts(out)[0]["device"] == "cpu" and "device" not in a.as_dict()


def test_table_mappings_give_exactly_the_table_schemas():
    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    ok = QualityResult("v1", "a.mp4", ("quality",), scores=(0.75,), frame_scores=((0.5,), (1.0,)),
                       frame_indices=(3, 9), timestamps=(0.1, 0.3), truncated=True, warnings=("w",), scored_at=t)
    bad = QualityResult.failed("v2", "b.mp4", "no such file", prompts=["quality"])
    ctx = dict(partition_key="p", model="m", prompt="quality", reduce_mode="avg", sample_mode="by_count_uniform",
               sample_settings="{}", settings_hash="h")
    table = build_table(QUALITY_SCHEMA, [quality_row(ok, "id1", "file:///a.mp4", "cpu", **ctx),
                                         quality_row(bad, "id2", "file:///b.mp4", "cpu", **ctx)], ["{}", None])
    assert table.schema == QUALITY_SCHEMA
    rows = table.to_pylist()
    assert rows[0]["quality_score"] == 0.75 and rows[0]["frame_scores"] == [0.5, 1.0]
    assert rows[0]["scored_at"] == t and rows[0]["device"] == "cpu" and rows[0]["truncated"] is True
    assert rows[1]["quality_score"] is None and rows[1]["frame_indices"] is None
    assert rows[1]["error"] == "no such file" and rows[1]["video_id"] == "id2"

    emb = np.eye(2, 4, dtype=np.float16)
    kr = KeyframesResult("v1", "a.mp4", "q", tos_paths=("s3://b/1.jpg",), frame_ids=(7,), timestamps=(0.5,),
                         scores=(0.25,), num_candidates=2, effective_fps=1.0, candidate_frame_ids=(3, 7),
                         candidate_timestamps=(0.1, 0.5), embeddings=emb, device="cuda:0")
    kbad = KeyframesResult.failed("v2", "b.mp4", "broken", query="q")
    kctx = dict(partition_key="p", text="q", model="m", settings="{}", settings_hash="h", extracted_at=t)
    kt = build_table(KEYFRAMES_SCHEMA, [keyframes_row(kr, "id1", "a", "cpu", **kctx),
                                        keyframes_row(kbad, "id2", "b", "cpu", **kctx)], [None, None])
    assert kt.schema == KEYFRAMES_SCHEMA
    k0, k1 = kt.to_pylist()
    assert k0["keyframe_paths"] == ["s3://b/1.jpg"] and k0["num_keyframes"] == 1 and k0["device"] == "cuda:0"
    assert k1["keyframe_paths"] is None and k1["num_candidates"] is None and k1["error"] == "broken"

    row, vectors = embeddings_row(kr, "id1", "a", "cpu", partition_key="p", model="m", embed_dim=4,
                                  settings_hash="h", extracted_at=t)
    assert row["frame_ids"] == [3, 7] and vectors is emb
    schema = embeddings_schema(4)
    names = set(schema.names) - {"embeddings", "user"}
    assert set(row) == names
    row, vectors = embeddings_row(None, "id3", "c", "cpu", partition_key="p", model="m", embed_dim=4,
                                  settings_hash="h", extracted_at=t)
    assert vectors is None and row["error"] == "no result"
    assert pa.Table.from_pylist([row]).num_rows == 1


# -- stages ----------------------------------------------------------------------------------------------------
class MeanStage(Stage):
    """A third model on the same decode: every 7th frame, "preprocessed" to its mean grey level per channel;
    its result is one mean per frame."""

    name = "mean"

    def __init__(self, fail_on: str | None = None):
        self.preprocess = _channel_means
        self.fail_on = fail_on

    def positions(self, reader):
        if self.fail_on and self.fail_on in reader.description:
            raise ValueError("this stage does not want this video")
        return np.arange(0, len(reader.index), 7)

    def meta(self, state, report):
        return list(state.got), report.truncated

    def finish(self, item, meta, features):
        return meta[0], features.mean(dim=1).tolist()

    def result(self, item, outcome):
        return outcome.error if outcome.value is None else outcome.value


def _channel_means(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames.reshape(len(frames), -1, 3).mean(axis=1)).float()


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def test_three_stages_over_one_decode_equal_three_separate_passes(videos, tmp_path, monkeypatch):
    q, k = _ops(tmp_path)
    paths = [str(videos["short_gop.mp4"]), str(videos["h264_bframes.mp4"]), _broken(tmp_path),
             str(videos["long_gop.mp4"])]
    inputs = make_inputs(paths, None, "mp4", "video_url")
    q_rows, k_rows = q.results(video_paths=paths), k.results(paths)
    own = SharedDecode(q.opener, [MeanStage()]).run(inputs, [_identity], [5], decode_workers=2)

    opened = []
    real_init = VideoReader.__init__

    def init(reader, *a, **kw):
        real_init(reader, *a, **kw)
        opened.append(reader)

    monkeypatch.setattr(VideoReader, "__init__", init)
    with ThreadPoolExecutor(2) as export_pool:
        shared = SharedDecode(q.opener, [q.stage(), k.stage(k.model, inputs, export_pool=export_pool), MeanStage()])
        got = shared.run(inputs, [q.model.encode_pixels, k.model.encode_pixels, _identity], [4, 6, 5],
                         decode_workers=2)
    monkeypatch.undo()
    # one reader per readable video for the three stages, plus one per exported video to write its keyframes
    readable = sum(1 for r in q_rows if r.ok)
    assert len(opened) == readable + sum(1 for r in k_rows if r.tos_paths) == 3 + 3
    for (gq, gk, gm), sq, sk, (sm,) in zip(got, q_rows, k_rows, own):
        assert (gq.frame_indices, gq.error, gq.truncated, gq.warnings) == \
            (sq.frame_indices, sq.error, sq.truncated, sq.warnings)
        assert gq.score == pytest.approx(sq.score, abs=1e-6) if sq.score is not None else gq.score is None
        assert (gk.frame_ids, gk.tos_paths, gk.error, gk.num_candidates) == \
            (sk.frame_ids, sk.tos_paths, sk.error, sk.num_candidates)
        if isinstance(sm, str):
            assert isinstance(gm, str) and gm == sm  # the broken file: the same error on every side
            assert gq.error == gm == gk.error
        else:
            assert gm[0] == sm[0] and np.allclose(gm[1], sm[1])
            assert gm[0] == list(range(0, gm[0][-1] + 1, 7))


def test_one_stage_failing_does_not_fail_the_others(videos, tmp_path):
    q, k = _ops(tmp_path)
    paths = [str(videos["short_gop.mp4"]), str(videos["h264_bframes.mp4"])]
    inputs = make_inputs(paths, None, "mp4", "video_url")
    shared = SharedDecode(q.opener, [q.stage(), MeanStage(fail_on="h264_bframes")])
    (qa, ma), (qb, mb) = shared.run(inputs, [q.model.encode_pixels, _identity], [4, 5], decode_workers=1)
    assert qa.ok and qb.ok and not isinstance(ma, str)
    assert mb.endswith("this stage does not want this video") and "h264_bframes" in mb
    assert qb.frame_indices == q.results(video_paths=paths[1:])[0].frame_indices


def test_stages_pickle_without_the_model_and_decode_in_a_copy(videos, tmp_path):
    q, k = _ops(tmp_path)
    inputs = make_inputs([str(videos["h264_bframes.mp4"])], None, "mp4", "video_url")
    shared = SharedDecode(k.opener, [q.stage(), k.stage(k.model, inputs)])
    data = pickle.dumps(shared)
    assert b"ClipModel" not in data and b"open_clip" not in data and len(data) < 20_000
    copy = pickle.loads(data)
    assert copy.stages[0].text_features is None and copy.stages[1].queries is None  # model side only

    def collect(into):
        def emit(pixels, stream=0):
            into.append((stream, pixels.clone()))
        return emit

    mine, theirs = [], []
    metas = shared.prepare(inputs[0], collect(mine))
    copied = copy.prepare(inputs[0], collect(theirs))
    assert [s for s, _ in mine] == [s for s, _ in theirs] and all(torch.equal(a, b) for (_, a), (_, b)
                                                                  in zip(mine, theirs))
    assert metas[0].indices == copied[0].indices and metas[1]["frame_ids"] == copied[1]["frame_ids"]
    assert sum(p.shape[0] for s, p in mine if s == 0) == len(metas[0].indices)
    assert sum(p.shape[0] for s, p in mine if s == 1) == len(metas[1]["frame_ids"])
