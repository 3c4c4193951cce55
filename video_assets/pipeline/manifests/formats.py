"""Manifest formats: which suffix means which format, fetching a manifest's bytes, decoding its text, and one
reader per format that turns the content into :data:`Record` tuples, one per line or item.

A reader never drops a line: a malformed one becomes a record with its reason (rows.py turns it into a row
with ``error`` set). Only content that cannot be read at all (no header, no ``uri`` column, an unreadable JSON
array or Parquet file) raises :class:`~video_assets.pipeline.manifests.manifest.ManifestError`.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import posixpath
from typing import Any

from video_assets.pipeline.manifests.manifest import ManifestError
from video_assets.storage import describe_uri, filesystem_for

# suffix -> format
MANIFEST_FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
    ".parquet": "parquet", ".pq": "parquet", ".txt": "text", ".lst": "text", ".list": "text", ".uris": "text",
}
URI_COLUMNS = ("uri", "video_path")
_MAX_RECORD_LINES = 64  # a quoted CSV field may span lines, but an unclosed quote must not swallow the file

# Each record: (label such as "line 3", the fields as a dict or None, why it is malformed or None, the raw text)
Record = tuple[str, dict | None, str | None, str]


def manifest_format(uri: str) -> str | None:
    """The manifest format implied by ``uri``'s suffix, or None when it is not a manifest."""
    name = posixpath.basename(uri.split("?", 1)[0]).lower()
    return MANIFEST_FORMATS.get(os.path.splitext(name)[1])


def is_manifest_name(uri: str) -> bool:
    name = posixpath.basename(uri.rstrip("/"))
    return not name.startswith((".", "_", "~")) and manifest_format(name) is not None


def read_records(name: str, fmt: str, data: bytes) -> list[Record]:
    """The records of manifest content ``data`` in format ``fmt`` (``name``: the manifest, for messages)."""
    if fmt == "parquet":
        return _parquet_records(name, data)
    text = _decode(name, data)
    return {"csv": lambda: _csv_records(name, text, ","),
            "tsv": lambda: _csv_records(name, text, "\t"),
            "jsonl": lambda: _jsonl_records(name, text), "json": lambda: _json_records(name, text),
            "text": lambda: _text_records(text)}[fmt]()


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


def not_utf8(text: str) -> str | None:
    """Why ``text`` (one line or value) is not clean Unicode, or None."""
    if text.isascii():
        return None
    for i, ch in enumerate(text):
        if "\udc80" <= ch <= "\udcff":
            return f"not UTF-8 text (byte 0x{ord(ch) - 0xdc00:02x} at column {i + 1})"
        if "\ud800" <= ch <= "\udfff":
            return f"not valid Unicode (lone surrogate at column {i + 1})"
    return None


def _lines(text: str) -> list[str]:
    """Physical lines with their endings (\\n, \\r\\n or \\r; not the other characters str.splitlines knows)."""
    return io.StringIO(text, newline="").readlines()


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
                bad = not_utf8("".join(header))
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


