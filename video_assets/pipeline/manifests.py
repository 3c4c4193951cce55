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
Rows that name the same video (the same resolved URI) are kept in the manifest table with ``duplicate_of`` set
to the first row's ``video_id``, and are processed once. Malformed lines raise :class:`ManifestError` naming
the manifest and the line(s).

Partition keys are derived from the manifest's file name: :func:`base_partition_key` (sanitised, lowercase,
at most 64 characters of ``[a-z0-9._-]``) and, when another manifest already owns that key,
:func:`assign_partition_key` adds a short hash of the manifest's URI — deterministic and stable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import posixpath
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import pandas as pd

from video_assets.errors import VideoAssetsError
from video_assets.operators.common import stable_video_id
from video_assets.storage import describe_uri, filesystem_for
from video_assets.storage.fs import scheme_of

# suffix -> format
MANIFEST_FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
    ".parquet": "parquet", ".pq": "parquet", ".txt": "text", ".lst": "text", ".list": "text", ".uris": "text",
}
URI_COLUMNS = ("uri", "video_path")
# Columns every manifest table has, in this order (user columns follow).
CORE_COLUMNS = ("row", "video_id", "uri", "source_uri", "duplicate_of")
MAX_KEY_LENGTH = 64
_MAX_REPORTED_ERRORS = 10


class ManifestError(VideoAssetsError, ValueError):
    """A manifest cannot be read or has malformed lines; the message names the manifest and the lines."""


@dataclass
class Manifest:
    """A parsed manifest. ``frame`` has :data:`CORE_COLUMNS` then ``user_columns``."""

    uri: str
    format: str
    frame: pd.DataFrame
    user_columns: list[str]
    sha256: str
    warnings: list[str] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return len(self.frame)

    @property
    def num_duplicates(self) -> int:
        return int(self.frame["duplicate_of"].notna().sum())

    @property
    def unique(self) -> pd.DataFrame:
        """One row per distinct video, in manifest order."""
        return unique_rows(self.frame)


def unique_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["duplicate_of"].isna()].reset_index(drop=True)


def manifest_format(uri: str) -> str | None:
    """The manifest format implied by ``uri``'s suffix, or None when it is not a manifest."""
    name = posixpath.basename(uri.split("?", 1)[0]).lower()
    return MANIFEST_FORMATS.get(os.path.splitext(name)[1])


def is_manifest_name(uri: str) -> bool:
    name = posixpath.basename(uri.rstrip("/"))
    return not name.startswith((".", "_", "~")) and manifest_format(name) is not None


# ----------------------------------------------------------------------------------------------------------
# reading


def read_manifest(uri: str, data: bytes | None = None, storage_options: dict | None = None,
                  reserved_columns: Iterable[str] = ()) -> Manifest:
    """Read and normalise the manifest at ``uri`` (``data``: its content, when already fetched).

    ``reserved_columns``: names the output tables use; a user column with such a name is renamed
    ``user_<name>`` (and a warning says so) so that it cannot shadow a result.
    """
    uri = os.fspath(uri)
    name = describe_uri(uri)
    fmt = manifest_format(uri)
    if fmt is None:
        raise ManifestError(f"{name}: not a manifest (expected one of {', '.join(sorted(MANIFEST_FORMATS))})")
    if data is None:
        data = read_bytes(uri, storage_options)
    sha = hashlib.sha256(data).hexdigest()
    if fmt == "parquet":
        records = _parquet_records(name, data)
    else:
        text = _decode(name, data)
        records = {"csv": lambda: _csv_records(name, text, ","),
                   "tsv": lambda: _csv_records(name, text, "\t"),
                   "jsonl": lambda: _jsonl_records(name, text), "json": lambda: _json_records(name, text),
                   "text": lambda: _text_records(text)}[fmt]()
    frame, user_cols, warnings = _normalise(uri, name, records, set(reserved_columns))
    return Manifest(uri=uri, format=fmt, frame=frame, user_columns=user_cols, sha256=sha, warnings=warnings)


def read_bytes(uri: str, storage_options: dict | None = None) -> bytes:
    fs, path = filesystem_for(uri, storage_options)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        raise ManifestError(f"{describe_uri(uri)}: manifest not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{describe_uri(uri)}: is a folder, not a manifest") from None


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{name}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def _raise_collected(name: str, errors: list[str], total: int) -> None:
    if errors:
        more = f" (and {total - len(errors)} more)" if total > len(errors) else ""
        raise ManifestError(f"{name}: {total} malformed line(s){more}:\n  " + "\n  ".join(errors))


# Each record: (line label, dict)
Record = tuple[str, dict]


def _csv_records(name: str, text: str, delimiter: str) -> list[Record]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    records: list[Record] = []
    errors: list[str] = []
    n_errors = 0
    line = 0  # the line a record starts on
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            n_errors += 1
            if len(errors) < _MAX_REPORTED_ERRORS:
                errors.append(f"line {start}: {e}")
            break  # the reader cannot resynchronise after a quoting error
        line = start
        if not fields or all(not f.strip() for f in fields):
            continue  # blank line
        if header is None:
            header = [f.strip() for f in fields]
            dupes = sorted({h for h in header if header.count(h) > 1})
            if dupes:
                raise ManifestError(f"{name}: line {line}: duplicated column name(s) {dupes}")
            if not any(h.lower() in URI_COLUMNS for h in header):
                raise ManifestError(f"{name}: line {line}: the header has no 'uri' or 'video_path' column "
                                    f"(columns: {header})")
            continue
        if len(fields) != len(header):
            n_errors += 1
            if len(errors) < _MAX_REPORTED_ERRORS:
                errors.append(f"line {line}: expected {len(header)} fields, got {len(fields)}")
            continue
        records.append((f"line {line}", dict(zip(header, fields))))
    _raise_collected(name, errors, n_errors)
    if header is None:
        raise ManifestError(f"{name}: empty manifest (no header row)")
    return records


def _jsonl_records(name: str, text: str) -> list[Record]:
    records: list[Record] = []
    errors: list[str] = []
    n_errors = 0
    for i, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            n_errors += 1
            if len(errors) < _MAX_REPORTED_ERRORS:
                errors.append(f"line {i}: invalid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(obj, dict):
            n_errors += 1
            if len(errors) < _MAX_REPORTED_ERRORS:
                errors.append(f"line {i}: expected a JSON object, got {type(obj).__name__}")
            continue
        records.append((f"line {i}", obj))
    _raise_collected(name, errors, n_errors)
    return records


def _json_records(name: str, text: str) -> list[Record]:
    if not text.lstrip().startswith("["):
        return _jsonl_records(name, text)
    try:
        arr = json.loads(text)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{name}: line {e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    bad = [i for i, o in enumerate(arr) if not isinstance(o, dict)]
    if bad:
        raise ManifestError(f"{name}: array item(s) {bad[:_MAX_REPORTED_ERRORS]} are not JSON objects")
    return [(f"item {i}", o) for i, o in enumerate(arr)]


def _text_records(text: str) -> list[Record]:
    out = []
    for i, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if s and not s.startswith("#"):
            out.append((f"line {i}", {"uri": s}))
    return out


def _parquet_records(name: str, data: bytes) -> list[Record]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as e:  # pyarrow raises several types for bad files
        raise ManifestError(f"{name}: not a readable Parquet file ({type(e).__name__}: {e})") from None
    if not any(c.lower() in URI_COLUMNS for c in table.column_names):
        raise ManifestError(f"{name}: no 'uri' or 'video_path' column (columns: {table.column_names})")
    return [(f"row {i + 1}", r) for i, r in enumerate(table.to_pylist())]


def _normalise(uri: str, name: str, records: list[Record], reserved: set[str]
               ) -> tuple[pd.DataFrame, list[str], list[str]]:
    rows: list[dict] = []
    user_cols: list[str] = []
    renames: dict[str, str] = {}
    errors: list[str] = []
    n_errors = 0
    warnings: list[str] = []
    first_of_uri: dict[str, str] = {}
    uri_of_id: dict[str, str] = {}
    for label, rec in records:
        lower = {k.lower(): k for k in rec if isinstance(k, str)}
        uri_key = lower.get("uri") or lower.get("video_path")
        raw = rec.get(uri_key) if uri_key else None
        if not isinstance(raw, str) or not raw.strip():
            n_errors += 1
            if len(errors) < _MAX_REPORTED_ERRORS:
                what = "missing" if raw is None or (isinstance(raw, str) and not raw.strip()) else \
                    f"not a string ({type(raw).__name__})"
                errors.append(f"{label}: 'uri'/'video_path' is {what}")
            continue
        raw = raw.strip()
        try:
            resolved = resolve_uri(raw, uri)
        except ValueError as e:
            n_errors += 1
            if len(errors) < _MAX_REPORTED_ERRORS:
                errors.append(f"{label}: {e}")
            continue
        id_key = lower.get("video_id")
        vid = rec.get(id_key) if id_key else None
        vid = str(vid).strip() if vid is not None and str(vid).strip() else stable_video_id(resolved)
        row: dict[str, Any] = {"row": _row_number(label), "video_id": vid, "uri": resolved, "source_uri": raw,
                               "duplicate_of": first_of_uri.get(resolved)}
        if row["duplicate_of"] is None:
            first_of_uri[resolved] = vid
            if vid in uri_of_id and uri_of_id[vid] != resolved:
                new = f"{vid}-{stable_video_id(resolved)[:6]}"
                warnings.append(f"{label}: video_id {vid!r} is already used by another video; "
                                f"renamed {new!r}")
                vid = row["video_id"] = new
                first_of_uri[resolved] = vid
            uri_of_id[vid] = resolved
        for k, v in rec.items():
            if k in (uri_key, id_key):
                continue
            col = renames.get(k)
            if col is None:
                col = str(k)
                if col in CORE_COLUMNS or col in reserved:
                    col = f"user_{col}"
                    warnings.append(f"user column {k!r} clashes with an output column; carried as {col!r}")
                renames[k] = col
                user_cols.append(col)
            row[col] = v
        rows.append(row)
    _raise_collected(name, errors, n_errors)
    if not rows:
        raise ManifestError(f"{name}: the manifest lists no videos")
    frame = pd.DataFrame(rows, columns=list(CORE_COLUMNS) + user_cols)
    frame["row"] = frame["row"].astype("int64")
    dupes = int(frame["duplicate_of"].notna().sum())
    if dupes:
        warnings.append(f"{dupes} duplicated row(s) (same video as an earlier row); "
                        "each video is processed once")
    return frame, user_cols, warnings


def _row_number(label: str) -> int:
    return int(label.rsplit(" ", 1)[1])


def resolve_uri(raw: str, manifest_uri: str) -> str:
    """Resolve a video reference from a manifest: URIs and absolute paths stay; relative paths are joined to
    the manifest's folder (local folder or object-store prefix)."""
    if scheme_of(raw):
        return raw
    if raw.startswith("~"):
        return os.path.expanduser(raw)
    if os.path.isabs(raw):
        return os.path.normpath(raw)
    scheme = scheme_of(manifest_uri)
    if scheme in ("", "file"):
        path = manifest_uri[len("file://"):] if scheme == "file" else manifest_uri
        return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(os.path.expanduser(path))), raw))
    head, rest = manifest_uri.split("://", 1)
    bucket, _, key = rest.partition("/")
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(key), raw))
    if joined == ".." or joined.startswith("../"):
        raise ValueError(f"relative path {raw!r} leaves the bucket of {describe_uri(manifest_uri)}")
    return f"{head}://{bucket}/{joined}"


# ----------------------------------------------------------------------------------------------------------
# partition keys


def sanitize_partition_key(name: str) -> str:
    """Lowercase ASCII letters, digits, ``.``, ``_`` and ``-``; no ``| , [ ] /``; at most 64 characters."""
    s = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", s).lower()
    s = re.sub(r"_{2,}", "_", s).strip("._-")
    if not s:
        s = "manifest"
    if len(s) > MAX_KEY_LENGTH:
        s = s[:MAX_KEY_LENGTH - 9].rstrip("._-") + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return s


def manifest_stem(uri: str) -> str:
    name = posixpath.basename(os.fspath(uri).split("?", 1)[0].rstrip("/"))
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in MANIFEST_FORMATS else name


def base_partition_key(manifest_uri: str) -> str:
    """The key a manifest gets when no other manifest owns it: its sanitised file name without suffix."""
    return sanitize_partition_key(manifest_stem(manifest_uri))


def manifest_identity(manifest_uri: str) -> str:
    """The manifest's URI in one canonical form (absolute local paths), what key ownership is compared on."""
    uri = os.fspath(manifest_uri)
    scheme = scheme_of(uri)
    if scheme in ("", "file"):
        path = uri[len("file://"):] if scheme == "file" else uri
        return os.path.abspath(os.path.expanduser(path))
    return uri


def assign_partition_key(manifest_uri: str, owner_of: Callable[[str], Optional[str]]) -> str:
    """The partition key of ``manifest_uri``: its base key, unless ``owner_of(key)`` says another manifest
    owns it; then the base key plus ``-`` and 6 (then 10, 16) hex digits of SHA-1 over the manifest's URI.

    ``owner_of(key)`` returns the identity (see :func:`manifest_identity`) of the manifest registered under
    ``key``, or None. The result depends only on the URI and on which keys are taken, so it is stable.
    """
    ident = manifest_identity(manifest_uri)
    base = base_partition_key(manifest_uri)
    owner = owner_of(base)
    if owner is None or owner == ident:
        return base
    digest = hashlib.sha1(ident.encode()).hexdigest()
    for n in (6, 10, 16, 40):
        key = f"{base[:MAX_KEY_LENGTH - n - 1].rstrip('._-')}-{digest[:n]}"
        owner = owner_of(key)
        if owner is None or owner == ident:
            return key
    raise ManifestError(f"{describe_uri(manifest_uri)}: cannot find a free partition key (base {base!r})")
