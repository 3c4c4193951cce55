"""Questions per video: the manifest's query column, the operator's per-video queries, the keyframe rows per
(video, query) and the frame-embedding table they come with."""

from __future__ import annotations

import json

import pytest

from video_assets.pipeline.manifests import read_manifest


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
