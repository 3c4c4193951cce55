"""Manifest parsing (every format, relative paths, duplicates, malformed lines) and partition keys."""

import io
import json
import re

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from video_assets.operators.common import stable_video_id
from video_assets.pipeline.manifests import (
    ManifestError,
    assign_partition_key,
    base_partition_key,
    manifest_identity,
    read_manifest,
    resolve_uri,
    sanitize_partition_key,
)
from video_assets.pipeline.registry import ManifestRegistry
from video_assets_tests.pipeline_helpers import DEMO_CSV, s3_client

FORBIDDEN = set("|,[]/ ")


def _check_demo(m, folder):
    f = m.frame
    assert list(f.columns[:5]) == ["row", "video_id", "uri", "source_uri", "duplicate_of"]
    assert len(f) == 5 and len(m.unique) == 4 and m.num_duplicates == 1
    names = ("a.mp4", "b.mp4", "c.mp4", "broken.mp4")
    assert f["uri"].tolist()[:4] == [str(folder / "videos" / n) for n in names]
    assert f["uri"].iloc[4] == str(folder / "videos" / "a.mp4")  # ./videos/../videos/a.mp4 normalised
    assert f["duplicate_of"].isna().tolist() == [True] * 4 + [False] and f["duplicate_of"].iloc[4] == "a"
    assert f["video_id"].iloc[2] == stable_video_id(str(folder / "videos" / "c.mp4"))  # blank id -> derived
    assert f["source_uri"].iloc[0] == "videos/a.mp4"
    assert "label" in m.user_columns and f["label"].tolist()[0] == "clean"
    assert any("duplicated" in w for w in m.warnings)


def test_csv_relative_paths_user_columns_duplicates(tmp_path):
    p = tmp_path / "batch.csv"
    p.write_text(DEMO_CSV)
    m = read_manifest(str(p))
    _check_demo(m, tmp_path)
    assert m.format == "csv" and m.frame["row"].tolist() == [2, 3, 4, 5, 6]  # file line numbers
    assert len(m.sha256) == 64


def test_every_format_gives_the_same_manifest(tmp_path):
    csv_frame = read_manifest(str(tmp_path / "m.csv"), data=DEMO_CSV.encode()).frame
    rows = pd.read_csv(io.StringIO(DEMO_CSV), dtype=str, keep_default_na=False).to_dict("records")
    jsonl = "\n".join(json.dumps(r) for r in rows) + "\n\n"
    (tmp_path / "m.jsonl").write_text(jsonl)
    (tmp_path / "m.json").write_text(json.dumps(rows))
    (tmp_path / "m.tsv").write_text(DEMO_CSV.replace(",", "\t"))
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    (tmp_path / "m.parquet").write_bytes(buf.getvalue())
    for name in ("m.jsonl", "m.json", "m.tsv", "m.parquet"):
        m = read_manifest(str(tmp_path / name))
        _check_demo(m, tmp_path)
        pd.testing.assert_frame_equal(m.frame.drop(columns="row"), csv_frame.drop(columns="row"))


def test_plain_text_and_video_path_column(tmp_path):
    (tmp_path / "list.txt").write_text(
        "# my videos\nvideos/a.mp4\n\n  /abs/b.mp4  \ns3://bkt/c.mp4\nvideos/a.mp4\n")
    m = read_manifest(str(tmp_path / "list.txt"))
    assert m.frame["uri"].tolist() == [str(tmp_path / "videos/a.mp4"), "/abs/b.mp4", "s3://bkt/c.mp4",
                                       str(tmp_path / "videos/a.mp4")]
    assert m.frame["row"].tolist() == [2, 4, 5, 6] and m.num_duplicates == 1 and m.user_columns == []
    (tmp_path / "vp.csv").write_text("video_path,camera\nx.mp4,front\n")
    m = read_manifest(str(tmp_path / "vp.csv"))
    assert m.frame["uri"].tolist() == [str(tmp_path / "x.mp4")] and m.user_columns == ["camera"]


def test_relative_paths_resolve_against_object_store_prefix():
    assert resolve_uri("videos/a.mp4", "s3://bkt/inbox/manifests/m.csv") == \
        "s3://bkt/inbox/manifests/videos/a.mp4"
    assert resolve_uri("../videos/a.mp4", "s3://bkt/inbox/manifests/m.csv") == "s3://bkt/inbox/videos/a.mp4"
    assert resolve_uri("s3://other/x.mp4", "s3://bkt/m.csv") == "s3://other/x.mp4"
    assert resolve_uri("https://h/x.mp4?sig=1", "/data/m.csv") == "https://h/x.mp4?sig=1"
    with pytest.raises(ValueError, match="leaves the bucket"):
        resolve_uri("../../x.mp4", "s3://bkt/inbox/m.csv")


def test_manifest_read_from_s3(s3_endpoint, s3_bucket):
    client = s3_client(s3_endpoint)
    client.put_object(Bucket=s3_bucket, Key="inbox/manifests/m.csv", Body=b"uri\n../videos/a.mp4\n")
    m = read_manifest(f"s3://{s3_bucket}/inbox/manifests/m.csv")
    assert m.frame["uri"].tolist() == [f"s3://{s3_bucket}/inbox/videos/a.mp4"]


@pytest.mark.parametrize("name,content,errors", [
    ("bad.csv", "uri,label\na.mp4,x\nb.mp4,y,extra\nc.mp4\n",
     {3: "manifest line 3: expected 2 fields, got 3", 4: "manifest line 4: expected 2 fields, got 1"}),
    ("bad.csv", "uri,label\na.mp4,x\n,y\n", {3: "manifest line 3: 'uri'/'video_path' is missing"}),
    ("bad.csv", 'uri,label\na.mp4,x\n"b.mp4"x,y\n', {3: "manifest line 3: ',' expected after '\"'"}),
    ("bad.jsonl", '{"uri": "a.mp4"}\n{"uri": "b.mp4"\n[1, 2]\n',
     {2: "manifest line 2: invalid JSON", 3: "manifest line 3: expected a JSON object, got list"}),
    ("latin.csv", "uri\na.mp4\nvid\xe9o.mp4\n".encode("latin-1"),
     {3: "manifest line 3: not UTF-8 text (byte 0xe9 at column 4)"}),
])
def test_malformed_lines_become_rows_with_an_error(tmp_path, name, content, errors):
    """One bad line never loses the others: it is a row with uri '' and a specific error, named in warnings."""
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    m = read_manifest(str(p))
    bad = m.frame[m.frame["uri"] == ""]
    assert dict(zip(bad["row"], bad["error"])).keys() == errors.keys()
    for row, err in zip(bad["row"], bad["error"]):
        assert err.startswith(errors[row])
        assert any(f"line {row}:" in w for w in m.warnings)
    assert m.unique["uri"].tolist()[:1] == [str(tmp_path / "a.mp4")] and m.num_invalid == len(errors)


@pytest.mark.parametrize("name,content,pattern", [
    ("bad.csv", 'uri,label\n"a.mp4"x,y\n', r"bad\.csv: the manifest lists no videos.*line 2: .*"),
    ("nouri.csv", "path,label\na.mp4,x\n", r"nouri\.csv: line 1: the header has no 'uri' or 'video_path'"),
    ("bad.jsonl", '{"uri": "b.mp4"\n[1, 2]\n',
     r"bad\.jsonl: the manifest lists no videos \(2 malformed.*line 1: invalid JSON"
     r".*line 2: expected a JSON object, got list"),
    ("bad.jsonl", '{"uri": 5}\n', r"bad\.jsonl.*line 1: 'uri'/'video_path' is not a string \(int\)"),
    ("empty.csv", "\n\n", r"empty\.csv: empty manifest"),
    ("none.txt", "# nothing\n", r"none\.txt: the manifest lists no videos"),
    ("latin.csv", "uri\nvid\xe9o.mp4\n".encode("latin-1"), r"latin\.csv: .*line 2: not UTF-8"),
    ("latin.csv", "vid\xe9o\nx.mp4\n".encode("latin-1"), r"latin\.csv: line 1: the header is not UTF-8"),
    ("junk.parquet", b"not parquet", r"junk\.parquet: not a readable Parquet file"),
    ("m.xlsx", "uri\n", r"m\.xlsx: not a manifest"),
])
def test_malformed_manifests_name_file_and_line(tmp_path, name, content, pattern):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ManifestError, match=re.compile(pattern, re.S)):
        read_manifest(str(p))


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(str(tmp_path / "nope.csv"))


def test_user_column_clash_and_reused_video_id(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("uri,video_id,quality_score,error\na.mp4,x,0.9,none\nb.mp4,x,0.1,none\n")
    m = read_manifest(str(p))
    # only a core column of the manifest frame is renamed there; the tables keep the manifest's names
    assert m.user_columns == ["quality_score", "user_error"] and m.user_names == ["quality_score", "error"]
    assert read_manifest(str(p), reserved_columns={"quality_score"}).user_columns == ["user_quality_score",
                                                                                       "user_error"]
    assert m.frame["video_id"].tolist()[0] == "x" and m.frame["video_id"].tolist()[1].startswith("x-")
    assert any("renamed" in w for w in m.warnings) and any("clashes" in w for w in m.warnings)


@pytest.mark.parametrize("name", ["My Videos, [2024] | batch/1", "  ..weird__name--  ", "vidéos été", "UPPER",
                                  "a" * 200, "", "|,[]/", "x.y-z_1"])
def test_partition_keys_are_sanitised_and_stable(name):
    key = sanitize_partition_key(name)
    assert key and len(key) <= 64 and not (set(key) & FORBIDDEN)
    assert re.fullmatch(r"[a-z0-9][a-z0-9._-]*", key) and not key.endswith((".", "_", "-"))
    assert sanitize_partition_key(name) == key  # stable
    assert sanitize_partition_key(key) == key  # idempotent


def test_partition_key_examples():
    assert base_partition_key("/in/manifests/Batch 2024-01.csv") == "batch_2024-01"
    assert base_partition_key("s3://b/in/manifests/vidéos été.jsonl") == "videos_ete"
    assert base_partition_key("/in/uploads-20261122-abc.csv") == "uploads-20261122-abc"
    assert base_partition_key("/in/x.tar.txt") == "x.tar"


def test_partition_key_collisions_resolve_deterministically(tmp_path):
    owners: dict[str, str] = {}

    def assign(uri):
        key = assign_partition_key(uri, owners.get)
        owners.setdefault(key, manifest_identity(uri))
        return key

    a, b, c = "/in/m/x.csv", "/in/m/x.jsonl", "/in/m/sub/X.csv"
    ka, kb, kc = assign(a), assign(b), assign(c)
    assert ka == "x" and kb.startswith("x-") and kc.startswith("x-") and len({ka, kb, kc}) == 3
    assert re.fullmatch(r"x-[0-9a-f]{6}", kb)
    # stable: asking again gives the same keys; another process with the same registry agrees
    assert (assign(a), assign(b), assign(c)) == (ka, kb, kc)
    fresh = dict(owners)
    assert assign_partition_key(b, fresh.get) == kb


def test_registry_keeps_keys_and_detects_changes(tmp_path):
    reg = ManifestRegistry(str(tmp_path / "wh"))
    (tmp_path / "in" / "sub").mkdir(parents=True)
    m1, m2 = tmp_path / "in" / "day.csv", tmp_path / "in" / "sub" / "day.csv"
    m1.write_text("uri\na.mp4\n")
    m2.write_text("uri\nb.mp4\n")
    k1, changed1 = reg.register_file(str(m1))
    k2, changed2 = reg.register_file(str(m2))
    assert (k1, changed1, changed2) == ("day", True, True) and k2.startswith("day-")
    assert reg.register_file(str(m1)) == ("day", False)  # same content: unchanged
    m1.write_text("uri\na.mp4\nc.mp4\n")
    assert reg.register_file(str(m1)) == ("day", True)  # changed content, same key
    assert reg.get("day")["rows"] == 2 and reg.manifest_uri_for(k2) == str(m2)
    assert reg.keys() == sorted([k1, k2])
    with pytest.raises(ManifestError, match="no manifest is registered for partition 'other'"):
        reg.manifest_uri_for("other")
    # a partition added by hand: found by its name in the inbox
    (tmp_path / "in" / "Other.csv").write_text("uri\na.mp4\n")
    assert reg.manifest_uri_for("other", str(tmp_path / "in")) == str(tmp_path / "in" / "Other.csv")
