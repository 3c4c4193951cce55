"""Manifests: lists of videos to process, read from a local path or any fsspec URI
(s3://, tos://, http(s)://).

Formats, chosen by the file's suffix:

- CSV (``.csv``) and TSV (``.tsv``): a header row; a column ``uri`` (or ``video_path``), optional
  ``video_id``, any other columns are user columns and are carried into every output table;
- JSON Lines (``.jsonl``, ``.ndjson``): one JSON object per line with the same keys; ``.json``: an array of
  such objects (or JSON Lines);
- Parquet (``.parquet``, ``.pq``): the same columns;
- plain text (``.txt``, ``.lst``, ``.list``, ``.uris``): one URI per line; blank lines and ``#`` comments
  skipped.

Relative paths resolve against the folder that holds the manifest (a local folder or an object-store prefix).
A local relative path that does not exist there but does under :data:`DATA_DIR` (``data/``, the folder the
pipeline's source policy allows besides the inbox; so ``data/demo_manifest.csv`` also works when copied into
the inbox) resolves there; either way :attr:`Manifest.warnings` says so, naming the folder the paths resolved
against.
Rows that name the same video (the same resolved URI) are kept in the manifest table with ``duplicate_of`` set
to the first row's ``video_id``, and are processed once. An optional column ``query`` (or ``question`` or
``text``) holds a question about the row's video: the keyframes step selects frames for each distinct query of a
video (one decode of the video for all of them), while the quality step still scores each video once.

Manifests come from other people, so one bad line never loses the others: a malformed line (wrong field count,
broken quoting, invalid JSON, a missing or unusable URI, bytes that are not UTF-8) becomes a row with ``uri``
empty and ``error`` saying ``manifest line N: why``; it is never processed, and :attr:`Manifest.warnings` names
the lines. Only a manifest that cannot be read at all (no header, no ``uri`` column, unreadable Parquet or JSON
array, not one usable row) raises :class:`ManifestError` naming the manifest and the line(s).

Partition keys are derived from the manifest's file name: :func:`base_partition_key` (sanitised, lowercase,
at most 64 characters of ``[a-z0-9._-]``) and, when another manifest already owns that key,
:func:`assign_partition_key` adds a short hash of the manifest's URI — deterministic and stable.

The package, one concern per module: :mod:`.manifest` (the :class:`Manifest` type and its error),
:mod:`.formats` (the format readers), :mod:`.rows` (normalising and checking rows, resolving paths),
:mod:`.keys` (partition keys). Everything public is importable from here.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

from video_assets.pipeline.manifests.formats import (
    MANIFEST_FORMATS,
    URI_COLUMNS,
    is_manifest_name,
    manifest_format,
    read_bytes,
    read_records,
)
from video_assets.pipeline.manifests.keys import (
    MAX_KEY_LENGTH,
    assign_partition_key,
    base_partition_key,
    manifest_identity,
    manifest_stem,
    sanitize_partition_key,
)
from video_assets.pipeline.manifests.manifest import CORE_COLUMNS, INVALID_URI, Manifest, ManifestError, unique_rows
from video_assets.pipeline.manifests.rows import DATA_DIR, MAX_URI_CHARS, QUERY_COLUMNS, normalise, resolve_uri
from video_assets.storage import describe_uri

__all__ = [
    "CORE_COLUMNS", "DATA_DIR", "INVALID_URI", "MANIFEST_FORMATS", "MAX_KEY_LENGTH", "MAX_URI_CHARS",
    "QUERY_COLUMNS", "URI_COLUMNS", "Manifest", "ManifestError", "assign_partition_key", "base_partition_key",
    "is_manifest_name", "manifest_format", "manifest_identity", "manifest_stem", "read_bytes", "read_manifest",
    "resolve_uri", "sanitize_partition_key", "unique_rows",
]


def read_manifest(uri: str, data: bytes | None = None, storage_options: dict | None = None,
                  reserved_columns: Iterable[str] = ()) -> Manifest:
    """Read and normalise the manifest at ``uri`` (``data``: its content, when already fetched).

    A user column named like a core column (:data:`CORE_COLUMNS`) or one of ``reserved_columns`` is carried
    in :attr:`Manifest.frame` as ``user_<name>`` (and a warning says so) so that it cannot shadow them; the
    tables store user columns under their own names in one JSON column, so the pipeline reserves nothing else.
    """
    uri = os.fspath(uri)
    name = describe_uri(uri)
    fmt = manifest_format(uri)
    if fmt is None:
        raise ManifestError(f"{name}: not a manifest (expected one of {', '.join(sorted(MANIFEST_FORMATS))})")
    if data is None:
        data = read_bytes(uri, storage_options)
    sha = hashlib.sha256(data).hexdigest()
    records = read_records(name, fmt, data)
    frame, user_cols, warnings, user_names = normalise(uri, name, records, set(reserved_columns))
    return Manifest(uri=uri, format=fmt, frame=frame, user_columns=user_cols, sha256=sha, warnings=warnings,
                    user_names=user_names)
