"""Questions per video: the manifest's query column, the operator's per-video queries, the keyframe rows per
(video, query) and the frame-embedding table they come with."""

from __future__ import annotations

import json
import os

import pytest

from video_assets.pipeline.manifests import read_manifest
from video_assets_tests.videos import read_index


def test_manifest_query_column_and_its_aliases(tmp_path):
    long_q = "what happens " * 400  # far beyond CLIP's 77 tokens: kept whole in the table
    rows = [
        {"uri": "a.mp4", "question": "Where is the dog?"},
        {"uri": "a.mp4", "question": "What colour is the car?"},
        {"uri": "b.mp4", "question": ""},
        {"uri": "c.mp4", "question": None},
        {"uri": "d.mp4", "question": long_q},
        {"uri": "e.mp4", "question": 42},
    ]
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    m = read_manifest(str(path))
    assert m.frame["query"].tolist() == ["Where is the dog?", "What colour is the car?", None, None, long_q, "42"]
    assert "question" not in m.user_columns  # the query is a core column, not a user column
    assert m.frame["duplicate_of"].notna().tolist() == [False, True, False, False, False, False]
    for alias in ("query", "text", "Query"):
        csv = tmp_path / f"{alias}.csv"
        csv.write_text(f"uri,{alias},label\nx.mp4,a red car,1\ny.mp4,,2\n")
        m = read_manifest(str(csv))
        assert m.frame["query"].tolist() == ["a red car", None] and m.user_columns == ["label"]
    plain = tmp_path / "plain.csv"
    plain.write_text("uri\nx.mp4\n")
    assert read_manifest(str(plain)).frame["query"].tolist() == [None]


TINY = "video-assets/tiny-clip"


def kf_op(**kw):
    from video_assets.operators import VideoAdaptiveKeyframesSampling

    base = dict(text="a white square", clip_model_name=TINY, fps=10.0, max_num_frames=4, all_depth=2,
                return_keyframes=False, device="cpu")
    base.update(kw)
    return VideoAdaptiveKeyframesSampling(**base)


def independent_selection(path, query, max_num_frames=4):
    """AKS on float16-stored CLIP embeddings of the 10-fps candidates, computed without the operator."""
    import numpy as np

    from video_assets.keyframes import aks_select
    from video_assets.models import load_clip
    from video_assets.video import sample_frames

    clip = load_clip(TINY, device="cpu")
    cand = sample_frames(path, "by_fps", target_fps=10.0)
    stored = clip.encode_images(cand.frames).cpu().numpy().astype(np.float16).astype(np.float64)
    scores = stored @ clip.encode_text([query])[0].cpu().numpy().astype(np.float64)
    chosen = aks_select(scores, max_num_frames=max_num_frames, all_depth=2)
    return [cand.indices[i] for i in chosen], [float(scores[i]) for i in chosen]


@pytest.fixture
def count_fetches(monkeypatch):
    """Counts VideoReader.fetch calls per source: one per decode pass over a video."""
    from collections import Counter

    from video_assets.video.reader import VideoReader

    counts: Counter = Counter()
    original = VideoReader.fetch

    def fetch(self, *a, **kw):
        counts[self.description] += 1
        return original(self, *a, **kw)

    monkeypatch.setattr(VideoReader, "fetch", fetch)
    return counts


def test_one_query_per_video_and_the_default_for_none(videos):
    a, b = str(videos["h264_bframes.mp4"]), str(videos["hevc.mkv"])
    rows = kf_op().details([a, b, a], texts=["a black square", None, "a grey stripe"])
    assert [r["query"] for r in rows] == ["a black square", "a white square", "a grey stripe"]
    for r, (path, q) in zip(rows, [(a, "a black square"), (b, "a white square"), (a, "a grey stripe")]):
        ids, scores = independent_selection(path, q)
        assert r["error"] is None and r["frame_ids"] == ids
        assert r["scores"] == pytest.approx(scores, abs=1e-9)
    assert kf_op()([a], texts=["a black square"])[0]["frame_ids"] == rows[0]["frame_ids"]


def test_many_queries_come_from_one_decode_and_one_embedding_pass(videos, count_fetches, tmp_path):
    a, b = str(videos["h264_bframes.mp4"]), str(videos["vp9.webm"])
    qs = ["a black square", "a white square", "a red stripe", "", "a black square"]
    op = kf_op()
    model, embedded = op.model, []
    encode = model.encode_pixels

    def counting_encode(pixels):
        embedded.append(pixels.shape[0])
        return encode(pixels)

    model.encode_pixels = counting_encode  # count the frames this call embeds
    try:
        rows = op.details([a, b], texts=[qs, ["a red stripe"]])
    finally:
        del model.encode_pixels
    assert isinstance(rows[0], list) and [r["query"] for r in rows[0]] == qs
    assert isinstance(rows[1], list) and [r["query"] for r in rows[1]] == ["a red stripe"]
    assert dict(count_fetches) == {rows[0][0]["source"]: 1, rows[1][0]["source"]: 1}  # one decode each
    assert sum(embedded) == rows[0][0]["num_candidates"] + rows[1][0]["num_candidates"]  # each candidate once
    for r in rows[0]:
        assert r["frame_ids"] == independent_selection(a, r["query"])[0]
    assert rows[0][0]["frame_ids"] == rows[0][4]["frame_ids"]  # the same question twice: the same answer
    # with export: the union of the chosen frames is decoded once more, and every row gets its own paths
    count_fetches.clear()
    out = kf_op(output_tos_dir=str(tmp_path / "kf")).details([a], texts=[qs[:3]])[0]
    assert count_fetches[out[0]["source"]] == 2
    for r in out:
        assert len(r["tos_paths"]) == len(r["frame_ids"]) == 4
        assert [int(p.rsplit("/", 1)[1].split("-")[0]) for p in r["tos_paths"]] == r["frame_ids"]


def test_queries_for_bad_videos_and_wrong_arguments(videos, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    rows = kf_op().details([str(bad), str(videos["hevc.mkv"])], texts=[["q1", "q2"], []])
    assert [r["query"] for r in rows[0]] == ["q1", "q2"]
    assert all(r["error"] and "broken.mp4" in r["error"] for r in rows[0])
    assert rows[1] == []  # no question asked: no rows
    with pytest.raises(ValueError, match="texts has 1 entries for 2 videos"):
        kf_op().details([str(bad), str(bad)], texts=["q"])
    with pytest.raises(ValueError, match=r"texts\[0\]: a query must be a string"):
        kf_op().details([str(bad)], texts=[[1]])
    with pytest.raises(ValueError, match="not a string"):
        kf_op().details([str(bad)], texts="q")


def test_pipeline_keyframe_rows_per_video_and_question(tmp_path, videos):
    """A QA manifest through the Dagster assets: one quality row per video, one keyframe row per (video,
    question), each with the user values of its own manifest row, and one decode per video."""
    import dagster as dg
    import pandas as pd

    from video_assets.orchestration.resources import WarehouseResource
    from video_assets.pipeline.tables import KEYFRAMES_ASSET, QUALITY_ASSET, read_frame, user_values
    from video_assets_tests.pipeline_helpers import materialize_partition

    a, b = videos["h264_bframes.mp4"], videos["hevc.mkv"]
    manifest = tmp_path / "qa.csv"
    pd.DataFrame([
        {"uri": str(a), "question": "Where is the dog?", "answer": "left"},
        {"uri": str(a), "question": "What colour is the car?", "answer": "red"},
        {"uri": str(a), "question": "Where is the dog?", "answer": "again"},  # same question again: one row
        {"uri": str(b), "question": "", "answer": "none"},  # no question: the step's text
    ]).to_csv(manifest, index=False)
    wh = WarehouseResource(warehouse=str(tmp_path / "wh"), inbox=str(tmp_path / "inbox"))
    run_config = {"ops": {"video_quality_and_keyframes": {"config": {"keyframes": {"max_num_frames": 2,
                                                                                   "text": "a white square"}}}}}
    with dg.instance_for_test() as instance:
        key, result = materialize_partition(wh, str(manifest), instance, run_config=run_config)
        assert result.success
        assert all(c.passed for c in result.get_asset_check_evaluations()
                   if c.check_name.startswith("row_count"))
    quality = read_frame(wh.table_uri(QUALITY_ASSET, key))
    keyframes = read_frame(wh.table_uri(KEYFRAMES_ASSET, key))
    assert sorted(quality["uri"]) == sorted([str(a), str(b)])
    got = sorted(zip(keyframes["uri"], keyframes["query"], user_values(keyframes)["answer"]))
    assert got == sorted([(str(a), "Where is the dog?", "left"), (str(a), "What colour is the car?", "red"),
                          (str(b), "a white square", "none")])
    assert set(keyframes["text"]) == {"a white square"} and keyframes["error"].isna().all()
    # the operator called directly with the step's settings answers the same questions with the same frames
    from video_assets.operators import VideoAdaptiveKeyframesSampling

    direct = VideoAdaptiveKeyframesSampling(text="a white square", max_num_frames=2, return_keyframes=False,
                                            device="cpu").details([str(a), str(b)],
                                                                  texts=[["Where is the dog?",
                                                                          "What colour is the car?"], None])
    expect = {(str(a), r["query"]): r["frame_ids"] for r in direct[0]} | {(str(b), direct[1]["query"]):
                                                                             direct[1]["frame_ids"]}
    assert {(u, q): list(ids) for u, q, ids in zip(keyframes["uri"], keyframes["query"],
                                                    keyframes["frame_ids"])} == expect


def test_frame_embeddings_answer_new_questions_like_the_operator(tmp_path, videos, count_fetches):
    """video_frame_embeddings from the keyframes pass: materialised alone it decodes only the candidates
    (one pass per video, no images), it round-trips float16 vectors, and select_from_embeddings on it gives the
    operator's frames for a question it was never asked."""
    import dagster as dg
    import numpy as np
    import pandas as pd

    from video_assets.keyframes import select_from_embeddings
    from video_assets.operators import VideoAdaptiveKeyframesSampling
    from video_assets.orchestration.resources import WarehouseResource
    from video_assets.pipeline.tables import EMBEDDINGS_ASSET, read_table
    from video_assets.search import search
    from video_assets_tests.pipeline_helpers import materialize_partition

    paths = [str(videos[n]) for n in ("h264_bframes.mp4", "vp9.webm", "long_gop.mp4")]
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"uri": paths + [str(tmp_path / "missing.mp4")], "label": ["a", "b", "c", "d"]}).to_csv(
        manifest, index=False)
    wh = WarehouseResource(warehouse=str(tmp_path / "wh"), inbox=str(tmp_path / "inbox"))
    with dg.instance_for_test() as instance:
        materialize_partition(wh, str(manifest), instance, selection=[dg.AssetKey("video_manifest")])
        count_fetches.clear()
        key, result = materialize_partition(wh, str(manifest), instance,
                                            selection=[dg.AssetKey(EMBEDDINGS_ASSET)])
        assert result.success
    assert sorted(count_fetches.values()) == [1, 1, 1]  # one candidate pass per readable video, no export
    assert not (tmp_path / "wh" / "keyframes").exists()
    table = read_table(wh.table_uri(EMBEDDINGS_ASSET, key))
    assert table.schema.field("embeddings").type.value_type.value_type == "halffloat"
    rows = table.to_pylist()
    assert [r["uri"] for r in rows] == paths + [str(tmp_path / "missing.mp4")]
    assert rows[3]["error"] and rows[3]["embeddings"] is None
    op = VideoAdaptiveKeyframesSampling(max_num_frames=4, return_keyframes=False, return_embeddings=True,
                                        device="cpu")
    direct = op.details(paths, texts=["a grey stripe on the right"] * 3)
    for r, d in zip(rows[:3], direct):
        emb = np.array(r["embeddings"], dtype=np.float16)
        assert r["embed_dim"] == emb.shape[1] == 64 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=2e-3)
        assert r["frame_ids"] == d["candidate_frame_ids"] and np.array_equal(emb, d["embeddings"])
    # a new question from the table: the operator's frame ids, without decoding anything
    count_fetches.clear()
    chosen = select_from_embeddings(wh.table_uri(EMBEDDINGS_ASSET, key), "a grey stripe on the right",
                                    max_num_frames=4, device="cpu")
    assert not count_fetches
    assert [c["frame_ids"] for c in chosen[:3]] == [d["frame_ids"] for d in direct]
    assert [c["scores"] for c in chosen[:3]] == [d["scores"] for d in direct]
    # exporting them decodes only those frames, and writes what the operator would have written
    out = tmp_path / "exported"
    exporter = VideoAdaptiveKeyframesSampling(output_tos_dir=str(out), img_type=".png", device="cpu")
    written, arrays = exporter.export_frames(chosen[0]["uri"], chosen[0]["frame_ids"])
    assert [int(os.path.basename(p).split("-")[0]) for p in written] == chosen[0]["frame_ids"]
    assert [read_index(a) for a in arrays] == chosen[0]["frame_ids"]
    hits = search(str(tmp_path / "wh"), "a grey stripe on the right", k=3, device="cpu")
    # the best frame overall: AKS's exact budget always keeps a video's best-scoring candidate
    assert hits.videos_read == 3 and hits.frames[0].score == max(max(d["scores"]) for d in direct)


def test_daft_rows_naming_one_video_share_its_decode(videos, count_fetches):
    """The Daft keyframes UDF with a question column: rows of a batch that name the same video become one
    video with a list of queries (one decode), and each row gets its own question's frames."""
    pytest.importorskip("daft")
    from video_assets.daft.udf import _per_row_queries

    a, b = str(videos["h264_bframes.mp4"]), str(videos["hevc.mkv"])
    op = kf_op()
    rows = [r.as_dict() for r in _per_row_queries(op, [a, b, a, a], None,
                                                  ["a black square", None, "a red stripe", "a black square"])]
    assert sorted(count_fetches.values()) == [1, 1]
    assert [r["query"] for r in rows] == ["a black square", "a white square", "a red stripe", "a black square"]
    for r, path in zip(rows, [a, b, a, a]):
        assert r["frame_ids"] == independent_selection(path, r["query"])[0]


def test_a_very_long_query_is_kept_whole_and_answered(videos):
    """CLIP's tokenizer reads at most its context length (77 tokens; 32 in the tiny model) and drops the rest;
    the row keeps the whole question, and its answer is that of the question's first tokens."""
    a = str(videos["h264_bframes.mp4"])
    long_q = "where is the white square " * 200
    rows = kf_op().details([a], texts=[[long_q, "where is the white square " * 10]])[0]
    assert rows[0]["error"] is None and rows[0]["query"] == long_q and len(rows[0]["frame_ids"]) == 4
    # both are longer than the tiny model's 32-token context, and the same up to it: the same answer
    assert rows[0]["frame_ids"] == rows[1]["frame_ids"] and rows[0]["scores"] == rows[1]["scores"]
