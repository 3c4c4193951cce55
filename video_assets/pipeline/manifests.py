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
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import posixpath
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from video_assets.errors import VideoAssetsError
from video_assets.ids import stable_video_id
from video_assets.storage import describe_uri, filesystem_for
from video_assets.storage.uri import scheme_of, strip_file_scheme

# suffix -> format
MANIFEST_FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
    ".parquet": "parquet", ".pq": "parquet", ".txt": "text", ".lst": "text", ".list": "text", ".uris": "text",
}
URI_COLUMNS = ("uri", "video_path")
# Columns every manifest table has, in this order (user columns follow).
CORE_COLUMNS = ("row", "video_id", "uri", "source_uri", "duplicate_of", "query", "error")
# The optional per-row question for the keyframes step (the first of these a row has); an empty or missing one
# means the step's default ``text``.
QUERY_COLUMNS = ("query", "question", "text")
MAX_KEY_LENGTH = 64
_MAX_REPORTED_ERRORS = 10
# A malformed line's row has this uri (and its reason in ``error``).
INVALID_URI = ""
MAX_URI_CHARS = 4096  # PATH_MAX; longer references are not real videos
_MAX_RECORD_LINES = 64  # a quoted CSV field may span lines, but an unclosed quote must not swallow the file
_MAX_SOURCE_CHARS = 500  # how much of a malformed line is kept in source_uri
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Relative local paths missing next to the manifest are looked up here (relative to the working directory,
# like the default inbox and warehouse); the pipeline's source policy allows this folder too.
DATA_DIR = "data"


class ManifestError(VideoAssetsError, ValueError):
    """A manifest cannot be read or has malformed lines; the message names the manifest and the lines."""


@dataclass
class Manifest:
    """A parsed manifest. ``frame`` has :data:`CORE_COLUMNS` then ``user_columns``; ``user_names``: those
    columns' names as the manifest spells them (the same, except a column named like a core column, which
    the frame carries as ``user_<name>``). The tables keep the manifest's names (see ``tables.user_json``)."""

    uri: str
    format: str
    frame: pd.DataFrame
    user_columns: list[str]
    sha256: str
    warnings: list[str] = field(default_factory=list)
    user_names: list[str] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return len(self.frame)

    @property
    def num_duplicates(self) -> int:
        return int(self.frame["duplicate_of"].notna().sum())

    @property
    def num_invalid(self) -> int:
        """Malformed lines (rows with ``error`` set; never processed)."""
        return int((self.frame["uri"] == INVALID_URI).sum())

    @property
    def unique(self) -> pd.DataFrame:
        """One row per distinct video, in manifest order."""
        return unique_rows(self.frame)


def unique_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows to process: neither duplicates nor malformed lines (a manifest frame or a manifest table)."""
    return frame[frame["duplicate_of"].isna() & (frame["uri"] != INVALID_URI)].reset_index(drop=True)


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
    if fmt == "parquet":
        records = _parquet_records(name, data)
    else:
        text = _decode(name, data)
        records = {"csv": lambda: _csv_records(name, text, ","),
                   "tsv": lambda: _csv_records(name, text, "\t"),
                   "jsonl": lambda: _jsonl_records(name, text), "json": lambda: _json_records(name, text),
                   "text": lambda: _text_records(text)}[fmt]()
    frame, user_cols, warnings, user_names = _normalise(uri, name, records, set(reserved_columns))
    return Manifest(uri=uri, format=fmt, frame=frame, user_columns=user_cols, sha256=sha, warnings=warnings,
                    user_names=user_names)


def read_bytes(uri: str, storage_options: dict | None = None) -> bytes:
    fs, path = filesystem_for(uri, storage_options)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        raise ManifestError(f"{describe_uri(uri)}: manifest not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{describe_uri(uri)}: is a folder, not a manifest") from None


def _decode(name: str, data: bytes) -> str:
    """UTF-8 (with or without BOM; UTF-16 with a BOM, as spreadsheets export it). Bytes that are not UTF-8 are
    kept as surrogate escapes, so only the lines holding them become malformed rows."""
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise ManifestError(f"{name}: not valid UTF-16 text (byte {e.start}: {e.reason})") from None
    return data.decode("utf-8-sig", errors="surrogateescape")


def _not_utf8(text: str) -> str | None:
    """Why ``text`` (one line or value) is not clean Unicode, or None."""
    if text.isascii():
        return None
    for i, ch in enumerate(text):
        if "\udc80" <= ch <= "\udcff":
            return f"not UTF-8 text (byte 0x{ord(ch) - 0xdc00:02x} at column {i + 1})"
        if "\ud800" <= ch <= "\udfff":
            return f"not valid Unicode (lone surrogate at column {i + 1})"
    return None


def _shown(raw: str) -> str:
    """A malformed line as it may be stored and logged: valid UTF-8, bounded length, no line break."""
    raw = raw.rstrip("\r\n")
    raw = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if _not_utf8(raw) else raw
    raw = raw.encode("utf-8", "replace").decode("utf-8")  # lone surrogates from JSON escapes
    return raw if len(raw) <= _MAX_SOURCE_CHARS else raw[:_MAX_SOURCE_CHARS] + "..."


def _lines(text: str) -> list[str]:
    """Physical lines with their endings (\\n, \\r\\n or \\r; not the other characters str.splitlines knows)."""
    return io.StringIO(text, newline="").readlines()


def _error_summary(errors: list[str], total: int) -> str:
    more = f" (and {total - len(errors)} more)" if total > len(errors) else ""
    return f"{total} malformed line(s){more}:\n  " + "\n  ".join(errors)


# Each record: (label such as "line 3", the fields as a dict or None, why it is malformed or None, the raw text)
Record = tuple[str, dict | None, str | None, str]


def _csv_records(name: str, text: str, delimiter: str) -> list[Record]:
    lines = _lines(text)
    n = len(lines)
    header: list[str] | None = None
    records: list[Record] = []
    pos = 0
    while pos < n:  # one reader per pass; a bad multi-line record restarts a reader on the line after its start
        state = {"pos": pos, "start": pos}

        def feed(state=state):
            while state["pos"] < n and state["pos"] - state["start"] < _MAX_RECORD_LINES:
                state["pos"] += 1
                yield lines[state["pos"] - 1]

        reader = csv.reader(feed(), delimiter=delimiter, strict=True)
        restart_at = None
        while state["pos"] < n:
            start = state["start"] = state["pos"]
            try:
                fields = next(reader)
                error = None
            except StopIteration:
                break
            except csv.Error as e:
                fields, error = None, str(e)
            spans = state["pos"] - start
            line = f"line {start + 1}"
            if error is None and header is None:
                if not fields or all(not f.strip() for f in fields):
                    continue  # blank line
                header = [f.strip() for f in fields]
                bad = _not_utf8("".join(header))
                if bad:
                    raise ManifestError(f"{name}: {line}: the header is {bad}")
                dupes = sorted({h for h in header if header.count(h) > 1})
                if dupes:
                    raise ManifestError(f"{name}: {line}: duplicated column name(s) {dupes}")
                if not any(h.lower() in URI_COLUMNS for h in header):
                    raise ManifestError(f"{name}: {line}: the header has no 'uri' or 'video_path' column "
                                        f"(columns: {header})")
                continue
            if error is None and (not fields or all(not f.strip() for f in fields)):
                continue  # blank line
            if header is None:
                raise ManifestError(f"{name}: {line}: the header row is malformed ({error})")
            if error is None and len(fields) != len(header):
                error = f"expected {len(header)} fields, got {len(fields)}"
            if error is not None:
                if spans > 1:  # an unbalanced quote ran over the next lines: read them again on their own
                    records.append((line, None, f"a quoted field is not closed on this line ({error})",
                                    lines[start]))
                    restart_at = start + 1
                    break
                records.append((line, None, error, lines[start]))
                continue
            records.append((line, dict(zip(header, fields)), None, "".join(lines[start:state["pos"]])))
        pos = restart_at if restart_at is not None else n
    if header is None:
        raise ManifestError(f"{name}: empty manifest (no header row)")
    return records


def _json_line(raw: str) -> tuple[dict | None, str | None]:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        return None, f"invalid JSON ({e.msg} at column {e.colno})"
    except RecursionError:
        return None, "invalid JSON (nested too deeply)"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    return obj, None


def _jsonl_records(name: str, text: str) -> list[Record]:
    records: list[Record] = []
    for i, raw in enumerate(_lines(text), start=1):
        if not raw.strip():
            continue
        obj, error = _json_line(raw)
        records.append((f"line {i}", obj, error, raw))
    return records


def _json_records(name: str, text: str) -> list[Record]:
    if not text.lstrip().startswith("["):
        return _jsonl_records(name, text)
    try:
        arr = json.loads(text)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{name}: line {e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise ManifestError(f"{name}: invalid JSON (nested too deeply)") from None
    if not isinstance(arr, list):  # "[1] x" style trailing data is a JSONDecodeError; this is belt and braces
        raise ManifestError(f"{name}: expected a JSON array of objects")
    return [(f"item {i}", o, None, "") if isinstance(o, dict) else
            (f"item {i}", None, f"expected a JSON object, got {type(o).__name__}", _json_text(o))
            for i, o in enumerate(arr)]


def _json_text(o: Any) -> str:
    try:
        return json.dumps(o)
    except (TypeError, ValueError, RecursionError):
        return repr(o)


def _text_records(text: str) -> list[Record]:
    out: list[Record] = []
    for i, raw in enumerate(_lines(text), start=1):
        s = raw.strip()
        if s and not s.startswith("#"):
            out.append((f"line {i}", {"uri": s}, None, raw))
    return out


def _parquet_records(name: str, data: bytes) -> list[Record]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
        if not any(c.lower() in URI_COLUMNS for c in table.column_names):
            raise ManifestError(f"{name}: no 'uri' or 'video_path' column (columns: {table.column_names})")
        return [(f"row {i + 1}", r, None, "") for i, r in enumerate(table.to_pylist())]
    except ManifestError:
        raise
    except Exception as e:  # pyarrow raises several types for bad files
        raise ManifestError(f"{name}: not a readable Parquet file ({type(e).__name__}: {e})") from None


def _query_of(rec: dict) -> tuple[str | None, str | None]:
    """(the record's query column key, its query: None when missing or blank; other values as text)."""
    lower = {k.lower(): k for k in rec if isinstance(k, str)}
    key = next((lower[c] for c in QUERY_COLUMNS if c in lower), None)
    value = rec.get(key) if key else None
    if value is None or (isinstance(value, float) and value != value):  # NaN: pandas' missing value
        return key, None
    value = value if isinstance(value, str) else json.dumps(value, default=str)
    return key, value if value.strip() else None


def _check_record(rec: dict) -> tuple[str | None, str | None, str | None]:
    """(uri key, id key, why the record is unusable or None)."""
    for k, v in rec.items():
        if not isinstance(k, str):
            return None, None, f"column name {k!r} is not a string"
        bad = _not_utf8(k) or (_not_utf8(v) if isinstance(v, str) else None)
        if bad:
            return None, None, bad
    lower = {k.lower(): k for k in rec}
    uri_key = lower.get("uri") or lower.get("video_path")
    id_key = lower.get("video_id")
    raw = rec.get(uri_key) if uri_key else None
    if not isinstance(raw, str) or not raw.strip():
        what = "missing" if raw is None or (isinstance(raw, str) and not raw.strip()) else \
            f"not a string ({type(raw).__name__})"
        return uri_key, id_key, f"'uri'/'video_path' is {what}"
    raw = raw.strip()
    if len(raw) > MAX_URI_CHARS:
        return uri_key, id_key, f"'uri'/'video_path' is longer than {MAX_URI_CHARS} characters"
    if _CONTROL.search(raw):
        return uri_key, id_key, "'uri'/'video_path' contains control characters"
    vid = rec.get(id_key) if id_key else None
    if isinstance(vid, (dict, list)):
        return uri_key, id_key, f"'video_id' is not a scalar ({type(vid).__name__})"
    return uri_key, id_key, None


def _normalise(uri: str, name: str, records: list[Record], reserved: set[str]
               ) -> tuple[pd.DataFrame, list[str], list[str], list[str]]:
    rows: list[dict] = []
    user_cols: list[str] = []
    user_names: list[str] = []
    renames: dict[str, str] = {}
    errors: list[str] = []
    n_errors = 0
    warnings: list[str] = []
    first_of_uri: dict[str, str] = {}
    uri_of_id: dict[str, str] = {}
    locate = _RelativePaths(uri)
    for label, rec, error, raw_line in records:
        uri_key = id_key = None
        resolved = None
        if error is None:
            bad = _not_utf8(raw_line)
            uri_key, id_key, error = _check_record(rec) if not bad else (None, None, bad)
        if error is None:
            try:
                resolved = locate(rec[uri_key].strip(), resolve_uri(rec[uri_key].strip(), uri))
            except ValueError as e:
                error = str(e)
        if error is not None:
            n_errors += 1
            if len(errors) < _MAX_REPORTED_ERRORS:
                errors.append(f"{label}: {error}")
            shown = rec.get(uri_key) if rec is not None and uri_key and isinstance(rec.get(uri_key), str) \
                else raw_line
            rows.append({"row": _row_number(label), "video_id": f"invalid-{label.replace(' ', '-')}",
                         "uri": INVALID_URI, "source_uri": _shown(shown), "duplicate_of": None,
                         "query": None, "error": f"manifest {label}: {error}"})
            continue
        raw = rec[uri_key].strip()
        vid = rec.get(id_key) if id_key else None
        vid = str(vid).strip() if vid is not None and str(vid).strip() else stable_video_id(resolved)
        query_key, query = _query_of(rec)
        row: dict[str, Any] = {"row": _row_number(label), "video_id": vid, "uri": resolved, "source_uri": raw,
                               "duplicate_of": first_of_uri.get(resolved), "query": query, "error": None}
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
            if k in (uri_key, id_key, query_key):
                continue
            col = renames.get(k)
            if col is None:
                col = str(k)
                if col in CORE_COLUMNS or col in reserved:
                    col = f"user_{col}"
                    warnings.append(f"user column {k!r} clashes with a core column; carried as {col!r}")
                renames[k] = col
                user_cols.append(col)
                user_names.append(str(k))
            row[col] = v
        rows.append(row)
    if n_errors == len(rows):
        detail = f" ({_error_summary(errors, n_errors)})" if n_errors else ""
        raise ManifestError(f"{name}: the manifest lists no videos{detail}")
    warnings += locate.warnings()
    if n_errors:
        warnings.append(f"{_error_summary(errors, n_errors)}\n(kept as rows with an error; not processed)")
    # object columns keep each value as the manifest has it (an integer column with gaps stays integers)
    frame = pd.DataFrame(rows, columns=list(CORE_COLUMNS) + user_cols, dtype=object)
    frame["row"] = frame["row"].astype("int64")
    dupes = int(frame["duplicate_of"].notna().sum())
    if dupes:
        warnings.append(f"{dupes} duplicated row(s) (same video as an earlier row); each video is processed "
                        "once (and its keyframes once per distinct query)")
    return frame, user_cols, warnings, user_names


def _row_number(label: str) -> int:
    return int(label.rsplit(" ", 1)[1])


class _RelativePaths:
    """Relative local paths of one local manifest: where they resolved, and the :data:`DATA_DIR` fallback for
    those missing next to the manifest. One folder listing per folder, not one stat per row."""

    def __init__(self, manifest_uri: str):
        scheme = scheme_of(manifest_uri)
        self.local = scheme in ("", "file")
        path = strip_file_scheme(manifest_uri)
        self.folder = os.path.dirname(os.path.abspath(os.path.expanduser(path))) if self.local else ""
        self.data_dir = os.path.abspath(DATA_DIR)
        self._listings: dict[str, set[str]] = {}
        self.missing: list[str] = []
        self.fallback: list[str] = []

    def _exists(self, path: str) -> bool:
        folder, name = os.path.split(path)
        if folder not in self._listings:
            try:
                self._listings[folder] = set(os.listdir(folder))
            except OSError:
                self._listings[folder] = set()
        return name in self._listings[folder]

    def __call__(self, raw: str, resolved: str) -> str:
        if not self.local or scheme_of(raw) or raw.startswith("~") or os.path.isabs(raw):
            return resolved
        if self._exists(resolved):
            return resolved
        other = os.path.normpath(os.path.join(self.data_dir, raw))
        if self.data_dir != self.folder and self._exists(other):
            self.fallback.append(raw)
            return other
        self.missing.append(raw)
        return resolved

    def warnings(self) -> list[str]:
        out = []
        if self.fallback:
            out.append(f"{len(self.fallback)} relative path(s) such as {self.fallback[0]!r} are not under "
                       f"the manifest's folder {self.folder}; found under {self.data_dir} and resolved there")
        if self.missing:
            out.append(f"{len(self.missing)} relative path(s) such as {self.missing[0]!r} do not exist where "
                       f"they resolve: relative paths resolve against the manifest's folder, {self.folder} "
                       f"(then {self.data_dir}); write them relative to the manifest, or absolute")
        return out


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
        path = strip_file_scheme(manifest_uri)
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
        path = strip_file_scheme(uri)
        return os.path.abspath(os.path.expanduser(path))
    return uri


def assign_partition_key(manifest_uri: str, owner_of: Callable[[str], str | None]) -> str:
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
