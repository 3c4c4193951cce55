"""Manifest rows: each record a format reader produced is checked and normalised into one row of the
manifest's frame: the URI resolved (relative paths against the manifest's folder, then :data:`DATA_DIR`), the
video id given or derived, duplicates pointed at their first row, the query taken out, user columns carried
(renamed when they clash with a core column). A record that is unusable becomes a row with ``error`` set.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from typing import Any

import pandas as pd

from video_assets.ids import stable_video_id
from video_assets.pipeline.manifests.formats import Record, not_utf8
from video_assets.pipeline.manifests.manifest import CORE_COLUMNS, INVALID_URI, ManifestError
from video_assets.storage import describe_uri
from video_assets.storage.uri import scheme_of, strip_file_scheme

# The optional per-row question for the keyframes step (the first of these a row has); an empty or missing one
# means the step's default ``text``.
QUERY_COLUMNS = ("query", "question", "text")
_MAX_REPORTED_ERRORS = 10
MAX_URI_CHARS = 4096  # PATH_MAX; longer references are not real videos
_MAX_SOURCE_CHARS = 500  # how much of a malformed line is kept in source_uri
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Relative local paths missing next to the manifest are looked up here (relative to the working directory,
# like the default inbox and warehouse); the pipeline's source policy allows this folder too.
DATA_DIR = "data"


def _shown(raw: str) -> str:
    """A malformed line as it may be stored and logged: valid UTF-8, bounded length, no line break."""
    raw = raw.rstrip("\r\n")
    raw = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if not_utf8(raw) else raw
    raw = raw.encode("utf-8", "replace").decode("utf-8")  # lone surrogates from JSON escapes
    return raw if len(raw) <= _MAX_SOURCE_CHARS else raw[:_MAX_SOURCE_CHARS] + "..."


def _error_summary(errors: list[str], total: int) -> str:
    more = f" (and {total - len(errors)} more)" if total > len(errors) else ""
    return f"{total} malformed line(s){more}:\n  " + "\n  ".join(errors)


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
        bad = not_utf8(k) or (not_utf8(v) if isinstance(v, str) else None)
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


def normalise(uri: str, name: str, records: list[Record], reserved: set[str]
              ) -> tuple[pd.DataFrame, list[str], list[str], list[str]]:
    """The manifest frame of ``records`` read from ``uri`` (``name``: how messages call it), with its user
    columns, warnings and the user columns' own names (``reserved``: names a user column must not take)."""
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
            bad = not_utf8(raw_line)
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


