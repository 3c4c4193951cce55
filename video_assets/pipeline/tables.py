"""The tables: explicit Arrow schemas, atomic Parquet writes to ``{warehouse}/{asset}/{key}.parquet``.

Every partition of a table has exactly the same schema, so a folder of partitions reads as one dataset
(``duckdb.sql("select * from 'data/warehouse/video_quality_scores/*.parquet'")``,
``pd.read_parquet("data/warehouse/video_quality_scores/")``): the manifest's own columns, which differ between
manifests, are one JSON object per row in the last column, ``user`` (:data:`USER_COLUMN`). The schemas carry
pandas metadata so that nullable integer columns read as pandas' ``Int64`` (not float64 with NaN).

A write goes through :func:`video_assets.storage.write_bytes`: a local file is written under a temporary name
and renamed into place, an object store publishes the PUT atomically, so a reader never sees half a file and
re-materialising a partition replaces its file.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from video_assets.keyframes.embeddings import EMBEDDINGS_COLUMN, embeddings_type
from video_assets.storage import filesystem_for, join_uri, write_bytes

if TYPE_CHECKING:  # the results are plain data; the tables need not import the operators
    from video_assets.operators.results import KeyframesResult, QualityResult

log = logging.getLogger(__name__)

MANIFEST_ASSET = "video_manifest"
QUALITY_ASSET = "video_quality_scores"
KEYFRAMES_ASSET = "video_keyframes"
EMBEDDINGS_ASSET = "video_frame_embeddings"
ASSETS = (MANIFEST_ASSET, QUALITY_ASSET, KEYFRAMES_ASSET, EMBEDDINGS_ASSET)

_TS = pa.timestamp("us", tz="UTC")
USER_COLUMN = "user"

MANIFEST_SCHEMA = pa.schema([
    pa.field("partition_key", pa.string(), nullable=False),
    pa.field("row", pa.int64(), nullable=False),  # line (CSV/JSONL/text) or row (Parquet) in the manifest
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string(), nullable=False),  # resolved
    pa.field("source_uri", pa.string(), nullable=False),  # as written in the manifest
    pa.field("duplicate_of", pa.string()),  # video_id of the first row naming the same video
    pa.field("query", pa.string()),  # the row's question for the keyframes step (null: the step's text)
    pa.field("duration_sec", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("rotation", pa.int32()),  # clockwise degrees the stored picture is turned for display
    pa.field("stream_index", pa.int32()),  # the container's video stream that was read
    pa.field("num_frames", pa.int64()),
    pa.field("codec", pa.string()),
    pa.field("size_bytes", pa.int64()),
    pa.field("readable", pa.bool_()),  # null when not probed
    # what the probe noticed in a readable video (cut short, ...): the quality and keyframes tables' warnings
    pa.field("warnings", pa.list_(pa.string())),
    pa.field("error", pa.string()),  # why the video is not readable (null when it is)
    pa.field("probed_at", _TS),
    pa.field("manifest_uri", pa.string(), nullable=False),
    pa.field("manifest_sha256", pa.string(), nullable=False),
    pa.field(USER_COLUMN, pa.string()),  # JSON object: the manifest's user columns
])

QUALITY_SCHEMA = pa.schema([
    pa.field("partition_key", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string(), nullable=False),
    pa.field("quality_score", pa.float64()),  # null when the video could not be scored
    pa.field("frame_scores", pa.list_(pa.float64())),
    pa.field("frame_indices", pa.list_(pa.int64())),
    pa.field("timestamps", pa.list_(pa.float64())),
    pa.field("truncated", pa.bool_()),
    pa.field("warnings", pa.list_(pa.string())),
    pa.field("model", pa.string(), nullable=False),
    pa.field("device", pa.string()),
    pa.field("prompt", pa.string(), nullable=False),
    pa.field("reduce_mode", pa.string(), nullable=False),
    pa.field("sample_mode", pa.string(), nullable=False),
    pa.field("sample_settings", pa.string(), nullable=False),  # JSON
    pa.field("settings_hash", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("scored_at", _TS),
    pa.field(USER_COLUMN, pa.string()),  # JSON object: the manifest's user columns
])

KEYFRAMES_SCHEMA = pa.schema([
    pa.field("partition_key", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string(), nullable=False),
    pa.field("keyframe_paths", pa.list_(pa.string())),
    pa.field("frame_ids", pa.list_(pa.int64())),
    pa.field("timestamps", pa.list_(pa.float64())),
    pa.field("scores", pa.list_(pa.float64())),
    pa.field("num_keyframes", pa.int32()),
    pa.field("num_candidates", pa.int32()),
    pa.field("effective_fps", pa.float64()),
    pa.field("truncated", pa.bool_()),
    pa.field("warnings", pa.list_(pa.string())),
    pa.field("text", pa.string(), nullable=False),  # the step's default query (Launchpad ``text``)
    pa.field("query", pa.string(), nullable=False),  # the query these keyframes answer: the row's, else text
    pa.field("model", pa.string(), nullable=False),
    pa.field("device", pa.string()),
    pa.field("settings", pa.string(), nullable=False),  # JSON
    pa.field("settings_hash", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("extracted_at", _TS),
    pa.field(USER_COLUMN, pa.string()),  # JSON object: the manifest's user columns
])



def _with_pandas_metadata(schema: pa.Schema) -> pa.Schema:
    """``schema`` with the pandas metadata that makes its nullable integer columns ``Int64`` in pandas (what
    ``pd.read_parquet`` and ``Table.to_pandas()`` then give without a ``types_mapper``)."""
    frame = schema.empty_table().to_pandas()
    for f in schema:
        if pa.types.is_integer(f.type) and f.nullable:
            frame[f.name] = frame[f.name].astype("Int64")
    return schema.with_metadata(pa.Schema.from_pandas(frame, preserve_index=False).metadata)


MANIFEST_SCHEMA = _with_pandas_metadata(MANIFEST_SCHEMA)
QUALITY_SCHEMA = _with_pandas_metadata(QUALITY_SCHEMA)
KEYFRAMES_SCHEMA = _with_pandas_metadata(KEYFRAMES_SCHEMA)
SCHEMAS = {MANIFEST_ASSET: MANIFEST_SCHEMA, QUALITY_ASSET: QUALITY_SCHEMA, KEYFRAMES_ASSET: KEYFRAMES_SCHEMA}


def embeddings_schema(dim: int) -> pa.Schema:
    """The ``video_frame_embeddings`` table for a model with ``dim``-sized embeddings: one row per video, its
    candidate frames and their unit-norm CLIP image embeddings as float16 vectors (1 KB per frame at 512 dims).
    Partitions embedded with models of different sizes differ in that one column's vector size."""
    return _with_pandas_metadata(pa.schema([
        pa.field("partition_key", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("frame_ids", pa.list_(pa.int64())),  # the candidates, ascending
        pa.field("timestamps", pa.list_(pa.float64())),
        pa.field(EMBEDDINGS_COLUMN, embeddings_type(dim)),  # one vector per candidate, in frame_ids order
        pa.field("model", pa.string(), nullable=False),
        pa.field("embed_dim", pa.int32(), nullable=False),
        pa.field("effective_fps", pa.float64()),
        pa.field("device", pa.string()),
        pa.field("settings_hash", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("extracted_at", _TS),
        pa.field(USER_COLUMN, pa.string()),  # JSON object: the manifest's user columns
    ]))


# -- the one mapping from the operators' results to table rows ------------------------------------------------
# The column names that differ from the results' (LAS) names are renamed here and nowhere else:
# ``score`` -> ``quality_score``, ``tos_paths`` -> ``keyframe_paths``. ``context``: the columns that are the
# same for every row of a table (partition_key, model, settings, ...); ``device``: where the model ran when
# the result does not say.

def quality_row(r: QualityResult, video_id: str, uri: str, device: str | None, **context: Any) -> dict:
    """A ``video_quality_scores`` row (without ``user``)."""
    ok = r.error is None
    return {"video_id": video_id, "uri": uri, "quality_score": r.score,
            "frame_scores": r.per_frame if ok else None, "frame_indices": list(r.frame_indices) if ok else None,
            "timestamps": list(r.timestamps) if ok else None, "truncated": r.truncated,
            "warnings": list(r.warnings), "device": r.device or device, "error": r.error,
            "scored_at": r.scored_at, **context}


def keyframes_row(r: KeyframesResult, video_id: str, uri: str, device: str | None, **context: Any) -> dict:
    """A ``video_keyframes`` row (without ``user``)."""
    ok = r.error is None
    return {"video_id": video_id, "uri": uri, "keyframe_paths": list(r.tos_paths) if ok else None,
            "frame_ids": list(r.frame_ids) if ok else None, "timestamps": list(r.timestamps) if ok else None,
            "scores": list(r.scores) if ok else None, "num_keyframes": len(r.frame_ids) if ok else None,
            "num_candidates": r.num_candidates if ok else None, "effective_fps": r.effective_fps,
            "truncated": r.truncated, "warnings": list(r.warnings), "query": r.query,
            "device": r.device or device, "error": r.error, **context}


def embeddings_row(r: KeyframesResult | None, video_id: str, uri: str, device: str | None,
                   **context: Any) -> tuple[dict, Any]:
    """A ``video_frame_embeddings`` row without its vectors (without ``user``), and the vectors (None when the
    video has none). ``r``: the video's first keyframes result (every query's has the candidates)."""
    ok = r is not None and r.error is None and r.embeddings is not None
    row = {"video_id": video_id, "uri": uri,
           "frame_ids": list(r.candidate_frame_ids or ()) if ok else None,
           "timestamps": list(r.candidate_timestamps or ()) if ok else None,
           "effective_fps": r.effective_fps if r is not None else None,
           "device": (r.device if r is not None else None) or device,
           "error": r.error if r is not None else "no result", **context}
    return row, (r.embeddings if ok else None)


def table_uri(warehouse: str, asset: str, partition_key: str) -> str:
    return join_uri(warehouse, asset, f"{partition_key}.parquet")


def keyframes_dir(warehouse: str, partition_key: str) -> str:
    return join_uri(warehouse, "keyframes", partition_key)


def build_table(schema: pa.Schema, rows: Sequence[dict],
                user: Sequence[str | None] | None = None) -> pa.Table:
    """Rows (dicts with the schema's fields) into a table with exactly ``schema``; ``user``: the
    :data:`USER_COLUMN` value of each row (JSON text, see :func:`user_json`), when the rows do not hold it."""
    # pandas marks missing values with NaN (also in string columns), Arrow wants None; column by column with
    # the test inlined, as a 100,000-row manifest has millions of cells
    columns = {k: [None if v.__class__ is float and v != v else v for v in (r.get(k) for r in rows)]
               for k in schema.names}
    if user is not None:
        if len(user) != len(rows):
            raise ValueError(f"{len(user)} user values for {len(rows)} rows")
        columns[USER_COLUMN] = list(user)
    return pa.Table.from_pydict(columns, schema=schema)


def user_json(frame: pd.DataFrame, names: Sequence[str] | None = None) -> list[str | None]:
    """Each row of ``frame`` (the user columns) as a JSON object; ``names``: the keys (default: the column
    names). Missing values (None, NaN) are left out; a row without values is None. Values keep their JSON type
    (CSV values are text); anything JSON has no type for (dates, bytes) is written as text."""
    keys = list(names) if names is not None else [str(c) for c in frame.columns]
    if not keys:
        return [None] * len(frame)
    out: list[str | None] = []
    for values in zip(*(frame[c].tolist() for c in frame.columns)):
        obj = {k: _plain(v) for k, v in zip(keys, values) if not _isnull(v)}
        if not obj:
            out.append(None)
            continue
        text = json.dumps(obj, ensure_ascii=False, default=str)
        out.append(text if _utf8_ok(text) else json.dumps(obj, default=str))  # lone surrogates: \u escapes
    return out


def user_values(frame: pd.DataFrame) -> pd.DataFrame:
    """The :data:`USER_COLUMN` of a table read into pandas as one column per user key (absent: None)."""
    objs = [json.loads(v) if isinstance(v, str) else {} for v in frame[USER_COLUMN]]
    return pd.DataFrame.from_records(objs, index=frame.index)


def _plain(v: Any) -> Any:
    """numpy scalars as Python values (json cannot write them)."""
    return v.item() if hasattr(v, "item") and not isinstance(v, (list, dict, str, bytes)) else v


def _utf8_ok(s: str) -> bool:
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _isnull(v: Any) -> bool:
    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def write_table(table: pa.Table, uri: str, storage_options: dict | None = None) -> int:
    """Write ``table`` as Parquet to ``uri`` atomically; returns the bytes written."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    data = buf.getvalue()
    write_bytes(uri, data, storage_options)
    return len(data)


def read_table(uri: str, storage_options: dict | None = None,
               columns: Iterable[str] | None = None) -> pa.Table:
    fs, path = filesystem_for(uri, storage_options)
    with fs.open(path, "rb") as f:
        return pq.read_table(f, columns=list(columns) if columns is not None else None)


def table_exists(uri: str, storage_options: dict | None = None) -> bool:
    fs, path = filesystem_for(uri, storage_options)
    return fs.exists(path)


def read_frame(uri: str, storage_options: dict | None = None) -> pd.DataFrame:
    return read_table(uri, storage_options).to_pandas()


def user_columns_of(table_or_frame: Any, schema: pa.Schema) -> list[str]:
    """The columns of a frame (or table) that are not ``schema``'s: a plain frame's user columns."""
    if isinstance(table_or_frame, pa.Table):
        names = table_or_frame.column_names
    else:
        names = list(table_or_frame.columns)
    return [n for n in names if n not in schema.names]
