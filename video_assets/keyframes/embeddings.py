"""Stored frame embeddings, and keyframe selection from them without decoding the video again.

The keyframes pass embeds every candidate frame once. Kept as unit-norm float16 vectors (512 dims of ViT-B/32:
1 KB per frame, so about 3.6 MB per hour of video at 1 fps), they answer new queries: a candidate's relevance
is its cosine similarity to the query's text embedding, and AKS selects from those scores.

The operator scores its candidates with the same two functions (:func:`stored_embeddings`, then
:func:`relevance`) on the same float16 values, so a stored table reproduces the operator's selection exactly,
given the same text embedding (same model, device and dtype).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from video_assets.keyframes.aks import aks_select

log = logging.getLogger(__name__)

# The columns of a stored embedding set (the ``video_frame_embeddings`` table has these and more).
EMBEDDINGS_COLUMN = "embeddings"
READ_COLUMNS = ("video_id", "uri", "frame_ids", "timestamps", EMBEDDINGS_COLUMN, "model", "embed_dim", "error")


def embeddings_type(dim: int) -> pa.DataType:
    """Arrow type of one video's embeddings: a list of ``dim``-sized float16 vectors (one per candidate)."""
    return pa.list_(pa.list_(pa.float16(), int(dim)))


def stored_embeddings(features: Any) -> np.ndarray:
    """Unit-norm features (a torch tensor or array, (n, d)) as they are stored: a float16 (n, d) array."""
    if hasattr(features, "detach"):  # a torch tensor, on any device
        features = features.detach().float().cpu().numpy()
    return np.asarray(features, dtype=np.float16)


def relevance(embeddings: np.ndarray, text_feature: Any) -> np.ndarray:
    """Cosine similarity of each stored embedding (n, d) to a unit-norm text feature (d,), as float64.

    float64 on both sides: the float16 inputs are exact in float64, so the result does not depend on the BLAS
    kernel's float32 accumulation order, and a score recomputed from a table equals the operator's.
    """
    if hasattr(text_feature, "detach"):
        text_feature = text_feature.detach().float().cpu().numpy()
    text = np.asarray(text_feature, dtype=np.float32).astype(np.float64)
    return np.asarray(embeddings, dtype=np.float64) @ text


def embeddings_of(column: pa.Array | pa.ChunkedArray, row: int) -> np.ndarray:
    """Row ``row`` of an embeddings column as a float16 (n, d) array (no copy of the other rows)."""
    value = column[row]
    if not value.is_valid:
        return np.empty((0, 0), np.float16)
    vectors = value.values  # FixedSizeListArray (n vectors of d)
    dim = vectors.type.list_size
    flat = vectors.flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float16, copy=False).reshape(-1, dim)


def read_embeddings(table_or_uri: pa.Table | str, storage_options: dict | None = None,
                    video_ids: Sequence[str] | None = None) -> pa.Table:
    """The stored embedding set: a ``pa.Table`` as given, or a Parquet file (local path or URI) read with only
    the columns selection needs. ``video_ids``: keep only those videos."""
    if isinstance(table_or_uri, pa.Table):
        table = table_or_uri
    else:
        from video_assets.storage import filesystem_for

        fs, path = filesystem_for(str(table_or_uri), storage_options)
        with fs.open(path, "rb") as f:
            names = pq.ParquetFile(f).schema_arrow.names
            f.seek(0)
            table = pq.read_table(f, columns=[c for c in READ_COLUMNS if c in names])
    missing = [c for c in ("video_id", "frame_ids", EMBEDDINGS_COLUMN, "model") if c not in table.column_names]
    if missing:
        raise ValueError(f"{_describe(table_or_uri)} is not a frame-embedding table (missing columns: "
                         f"{', '.join(missing)})")
    if video_ids is not None:
        import pyarrow.compute as pc

        table = table.filter(pc.is_in(table["video_id"], value_set=pa.array(list(video_ids), pa.string())))
    return table


def select_from_embeddings(table_or_uri: pa.Table | str, query: str, max_num_frames: int = 32, t1: float = 0.8,
                           t2: float = -100, all_depth: int = 5, budget: str = "exact", *,
                           video_ids: Sequence[str] | None = None, model_path: str | None = None,
                           device: str | None = None, dtype: str | None = None,
                           storage_options: dict | None = None) -> list[dict]:
    """Keyframes for a new ``query`` from stored embeddings: no video is opened or decoded.

    ``table_or_uri``: a ``video_frame_embeddings`` table (``pa.Table``) or the URI of one of its Parquet files.
    AKS parameters as in :func:`video_assets.keyframes.aks_select`. The query is embedded with the model named
    in the table (``model_path``, ``device``, ``dtype`` as for the operators: the defaults match the keyframes
    operator's, and matching them gives the operator's frame ids exactly).

    Returns one dict per stored video, in table order: ``video_id``, ``uri``, ``query``, ``frame_ids``,
    ``timestamps``, ``scores``, ``num_candidates``, ``error`` (the stored error for a video that had none, or
    None). To write the chosen frames as images,
    ``VideoAdaptiveKeyframesSampling(output_tos_dir=...).export_frames(r["uri"], r["frame_ids"])`` decodes
    only those frames.
    """
    if not isinstance(query, str):
        raise ValueError(f"query must be a string, got {type(query).__name__}")
    aks_select([0.0], max_num_frames, t1, t2, all_depth, budget)  # validates the AKS parameters before any I/O
    table = read_embeddings(table_or_uri, storage_options, video_ids)
    text_of = TextEncoder(model_path, device, dtype)
    emb_col = table[EMBEDDINGS_COLUMN]
    out = []
    for i, row in enumerate(table.select([c for c in READ_COLUMNS if c in table.column_names
                                          and c != EMBEDDINGS_COLUMN]).to_pylist()):
        result = {"video_id": row["video_id"], "uri": row.get("uri"), "query": query, "frame_ids": [],
                  "timestamps": [], "scores": [], "num_candidates": 0, "error": row.get("error")}
        emb = embeddings_of(emb_col, i)
        if len(emb) == 0:
            result["error"] = result["error"] or f"{row.get('uri') or row['video_id']}: no stored embeddings"
            out.append(result)
            continue
        scores = relevance(emb, text_of(row["model"], query))
        chosen = aks_select(scores, max_num_frames, t1, t2, all_depth, budget)
        ids, times = row["frame_ids"], row.get("timestamps") or []
        result.update(frame_ids=[ids[j] for j in chosen], scores=[float(scores[j]) for j in chosen],
                      timestamps=[times[j] for j in chosen] if times else [], num_candidates=len(scores))
        out.append(result)
    return out


class TextEncoder:
    """Text features per (model, query), the model loaded once per name (what the operator would load)."""

    def __init__(self, model_path: str | None, device: str | None, dtype: str | None):
        self.model_path, self.device, self.dtype = model_path, device, dtype
        self._models: dict[str, Any] = {}

    def model(self, name: str):
        if name not in self._models:
            from video_assets.models import load_clip
            from video_assets.models.settings import effective_dtype
            from video_assets.operators.common import default_model_path, resolve_device

            device = resolve_device(self.device)
            self._models[name] = load_clip(name, default_model_path(self.model_path) or None, device,
                                           effective_dtype(self.dtype, device))
        return self._models[name]

    def __call__(self, name: str, query: str) -> np.ndarray:
        return self.model(name).encode_text([query])[0].float().cpu().numpy()


def _describe(table_or_uri: Any) -> str:
    return "the given table" if isinstance(table_or_uri, pa.Table) else str(table_or_uri)


def embeddings_array(per_video: Sequence[np.ndarray | None], dim: int) -> pa.Array:
    """An embeddings column from one float16 (n, d) array per video (None: a null row), without a Python list
    per vector."""
    offsets, flat, valid = [0], [], []
    for e in per_video:
        valid.append(e is not None)
        if e is not None:
            if e.ndim != 2 or e.shape[1] != dim:
                raise ValueError(f"embeddings of shape {e.shape} for an embedding size of {dim}")
            flat.append(np.ascontiguousarray(e, dtype=np.float16).reshape(-1))
        offsets.append(offsets[-1] + (len(e) if e is not None else 0))
    values = pa.array(np.concatenate(flat) if flat else np.empty(0, np.float16), pa.float16())
    vectors = pa.FixedSizeListArray.from_arrays(values, int(dim))
    mask = pa.array([not v for v in valid], pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), vectors, mask=mask)
