"""Stored frame embeddings: selection for new queries and search across partitions, against brute force."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from video_assets.keyframes import aks_select
from video_assets.keyframes.embeddings import embeddings_array, relevance, select_from_embeddings
from video_assets.models import TINY_CLIP_NAME, load_clip
from video_assets.search import EMBEDDINGS_ASSET, main, search

DIM = 64  # the tiny model's embedding size


def unit(rng, n):
    v = rng.normal(size=(n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)


def embedding_table(rng, partition, videos, model=TINY_CLIP_NAME):
    """A table shaped like video_frame_embeddings: videos = [(video_id, n_frames or None)]."""
    embs = [unit(rng, n) if n else None for _, n in videos]
    return pa.table({
        "partition_key": [partition] * len(videos),
        "video_id": [v for v, _ in videos],
        "uri": [f"/videos/{v}.mp4" for v, _ in videos],
        "frame_ids": [list(range(0, 3 * n, 3)) if n else None for _, n in videos],
        "timestamps": [[j * 0.1 for j in range(n)] if n else None for _, n in videos],
        "embeddings": embeddings_array(embs, DIM),
        "model": [model] * len(videos),
        "embed_dim": pa.array([DIM] * len(videos), pa.int32()),
        "error": [None if n else f"/videos/{v}.mp4: broken" for v, n in videos],
    }), embs


def text_feature(query):
    return load_clip(TINY_CLIP_NAME, device="cpu").encode_text([query])[0].numpy()


def test_select_from_embeddings_is_aks_on_cosine_to_the_query(tmp_path):
    rng = np.random.default_rng(0)
    table, embs = embedding_table(rng, "p", [("a", 40), ("b", 5), ("bad", None)])
    path = tmp_path / "p.parquet"
    pq.write_table(table, path)
    q = "a dog catching a frisbee"
    text = text_feature(q).astype(np.float64)
    for source in (table, str(path)):
        got = select_from_embeddings(source, q, max_num_frames=8, device="cpu")
        assert [r["video_id"] for r in got] == ["a", "b", "bad"]
        for r, emb, n in zip(got, embs, (40, 5, None)):
            if n is None:
                assert r["error"] == "/videos/bad.mp4: broken" and r["frame_ids"] == []
                continue
            scores = emb.astype(np.float64) @ text  # independent: plain numpy on the stored values
            chosen = aks_select(scores, 8)
            assert r["frame_ids"] == [3 * j for j in chosen]
            assert r["timestamps"] == pytest.approx([j * 0.1 for j in chosen])
            assert r["scores"] == pytest.approx([scores[j] for j in chosen], abs=1e-9)
            assert r["num_candidates"] == n and r["error"] is None and r["query"] == q
    only_b = select_from_embeddings(table, q, max_num_frames=2, video_ids=["b"], device="cpu")
    assert [r["video_id"] for r in only_b] == ["b"] and len(only_b[0]["frame_ids"]) == 2


def test_select_from_embeddings_rejects_what_is_not_an_embedding_table(tmp_path):
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"video_id": ["a"], "quality_score": [0.5]}), path)
    with pytest.raises(ValueError, match=r"other\.parquet is not a frame-embedding table.*embeddings"):
        select_from_embeddings(str(path), "q", device="cpu")
    with pytest.raises(ValueError, match="query must be a string"):
        select_from_embeddings(str(path), None, device="cpu")
    with pytest.raises(ValueError, match="max_num_frames"):
        select_from_embeddings(str(path), "q", max_num_frames=0, device="cpu")


@pytest.fixture
def warehouse(tmp_path):
    """Three partitions of random embeddings, one with a video of another model and one with a failed row."""
    rng = np.random.default_rng(1)
    root = tmp_path / "wh" / EMBEDDINGS_ASSET
    root.mkdir(parents=True)
    parts = {
        "p1": [("v1", 30), ("v2", 3), ("v3", None)],
        "p2": [("v4", 50), ("v5", 1)],
        "p3": [("v6", 12)],
    }
    tables = {}
    for name, videos in parts.items():
        t, _ = embedding_table(rng, name, videos)
        if name == "p3":  # same layout, another model: not comparable
            t = t.set_column(t.column_names.index("model"), "model", pa.array(["other/model"]))
        pq.write_table(t, root / f"{name}.parquet", row_group_size=1)
        tables[name] = t
    return tmp_path / "wh", tables


def brute_force(tables, query, k):
    text = text_feature(query).astype(np.float64)
    frames = []
    for t in tables.values():
        for row in range(t.num_rows):
            if t["model"][row].as_py() != TINY_CLIP_NAME or not t["embeddings"][row].is_valid:
                continue
            emb = np.array(t["embeddings"][row].as_py(), dtype=np.float64)
            for j, s in enumerate(emb @ text):
                frames.append((s, t["video_id"][row].as_py(), t["frame_ids"][row].as_py()[j]))
    frames.sort(key=lambda f: -f[0])
    videos, seen = [], set()
    for s, v, _ in frames:
        if v not in seen:
            seen.add(v)
            videos.append((s, v))
    return frames[:k], videos[:k]


@pytest.mark.parametrize("k", [1, 4, 200])
def test_search_ranks_frames_and_videos_like_brute_force(warehouse, k):
    root, tables = warehouse
    q = "a red car on a bridge"
    r = search(str(root), q, k=k, device="cpu")
    frames, videos = brute_force(tables, q, k)
    assert [(f.video_id, f.frame_id) for f in r.frames] == [(v, fid) for _, v, fid in frames]
    assert [f.score for f in r.frames] == pytest.approx([s for s, _, _ in frames], abs=1e-9)
    assert [v.video_id for v in r.videos] == [v for _, v in videos]
    assert r.files_read == 3 and r.videos_read == 4 and r.skipped_other_model == 1
    assert r.model == TINY_CLIP_NAME
    by_id = {v.video_id: v for v in r.videos}
    assert all(by_id[v].partition_key == ("p1" if v in ("v1", "v2") else "p2") for v in by_id)


def test_search_bad_arguments_and_empty_warehouse(tmp_path):
    with pytest.raises(ValueError, match="k must be a positive int"):
        search(str(tmp_path), "q", k=0)
    r = search(str(tmp_path), "q", device="cpu")
    assert r.files_read == 0 and r.frames == [] and r.videos == []


def test_search_command_prints_a_readable_ranking(warehouse, capsys):
    root, tables = warehouse
    assert main(["a red car", "--warehouse", str(root), "-k", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    frames, videos = brute_force(tables, "a red car", 3)
    assert "searched 4 videos in 3 partition(s), skipped 1 of other models" in out
    assert out.index(f"/videos/{videos[0][1]}.mp4") < out.index(f"/videos/{videos[1][1]}.mp4")
    assert main(["a red car", "--warehouse", str(root / "nothing"), "--device", "cpu"]) == 1
    assert "no frame embeddings under" in capsys.readouterr().out
    path = root / EMBEDDINGS_ASSET / "p2.parquet"
    assert main(["a red car", "--table", str(path), "-n", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "/videos/v4.mp4: 2 of 50 frames:" in out and "/videos/v5.mp4: 1 of 1 frames:" in out


def test_relevance_is_the_cosine_of_the_stored_values():
    rng = np.random.default_rng(2)
    emb = unit(rng, 7)
    text = unit(rng, 1)[0].astype(np.float32)
    expect = [sum(float(a) * float(b) for a, b in zip(row, text)) for row in emb]
    assert relevance(emb, text) == pytest.approx(expect, abs=1e-12)
