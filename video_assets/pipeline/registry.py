"""What the warehouse remembers besides the tables (under ``{warehouse}/_registry/``).

- :class:`ManifestRegistry`: one small JSON file per partition key, ``_registry/manifests/{key}.json``, saying
  which manifest the key stands for and the SHA-256 of the content last registered. The ``video_manifest``
  asset reads it to find its manifest (also when a run is launched from the UI), and the manifest sensor uses
  it to keep keys stable and to skip manifests whose content did not change.
- :class:`UploadLedger`: ``_registry/video_uploads.parquet``, the videos the upload sensor has already put
  into a manifest, with their content fingerprints, so that an upload seen again is not batched twice. The
  sensor saves it before it writes the manifests it lists (a write-ahead log): after a crash in between, the
  next evaluation writes the missing manifests from the ledger instead of batching the uploads again.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from video_assets.pipeline.inbox import is_content_hash
from video_assets.pipeline.manifests import (
    Manifest,
    ManifestError,
    assign_partition_key,
    base_partition_key,
    is_manifest_name,
    manifest_identity,
)
from video_assets.storage import describe_uri, filesystem_for, join_uri, write_bytes

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class ManifestRegistry:
    def __init__(self, warehouse: str, storage_options: dict | None = None):
        self.warehouse = warehouse
        self.storage_options = storage_options
        self.root = join_uri(warehouse, "_registry", "manifests")

    def entry_uri(self, key: str) -> str:
        return join_uri(self.root, f"{key}.json")

    def get(self, key: str) -> dict | None:
        fs, path = filesystem_for(self.entry_uri(key), self.storage_options)
        try:
            return json.loads(fs.cat_file(path))
        except FileNotFoundError:
            return None

    def owner_of(self, key: str) -> str | None:
        entry = self.get(key)
        return entry.get("manifest_identity") if entry else None

    def key_for(self, manifest_uri: str) -> str:
        """The partition key of this manifest: the one it is registered under, else the one it would get."""
        return assign_partition_key(manifest_uri, self.owner_of)

    def register(self, manifest_uri: str, sha256: str, manifest: Manifest | None = None,
                 key: str | None = None) -> tuple[str, dict, bool]:
        """Record ``manifest_uri`` with content hash ``sha256``; returns (key, entry, changed) where
        ``changed`` is False when the same content was already registered under that key."""
        key = key or self.key_for(manifest_uri)
        old = self.get(key)
        ident = manifest_identity(manifest_uri)
        if old and old.get("sha256") == sha256 and old.get("manifest_identity") == ident:
            return key, old, False
        entry = {
            "partition_key": key, "manifest_uri": manifest_uri, "manifest_identity": ident, "sha256": sha256,
            "registered_at": (old or {}).get("registered_at") or _now(), "updated_at": _now(),
        }
        if manifest is not None:
            entry.update(format=manifest.format, rows=manifest.num_rows, videos=len(manifest.unique),
                         duplicates=manifest.num_duplicates)
        write_bytes(self.entry_uri(key), json.dumps(entry, indent=1).encode(), self.storage_options)
        return key, entry, True

    def register_file(self, manifest_uri: str) -> tuple[str, bool]:
        """Read, validate and register a manifest; returns (partition key, changed)."""
        from video_assets.pipeline.manifests import read_bytes, read_manifest

        data = read_bytes(manifest_uri, self.storage_options)
        manifest = read_manifest(manifest_uri, data=data, storage_options=self.storage_options)
        key, _, changed = self.register(manifest_uri, manifest.sha256, manifest)
        return key, changed

    def keys(self) -> list[str]:
        fs, path = filesystem_for(self.root, self.storage_options)
        try:
            names = fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(n.rsplit("/", 1)[-1][:-5] for n in names if n.endswith(".json"))

    def manifest_uri_for(self, key: str, inbox_manifests: str | None = None) -> str:
        """The manifest behind ``key``: the registered one, else (a partition added by hand in the UI) a
        manifest under ``inbox_manifests`` whose base key is ``key``. Raises ManifestError when there is
        none."""
        entry = self.get(key)
        if entry:
            return entry["manifest_uri"]
        if inbox_manifests:
            fs, root = filesystem_for(inbox_manifests, self.storage_options)
            try:
                found = sorted(fs.find(root.rstrip("/"), withdirs=False))
            except FileNotFoundError:
                found = []
            prefix = inbox_manifests.split("://", 1)[0] + "://" if "://" in inbox_manifests else ""
            for p in found:
                if is_manifest_name(p) and base_partition_key(p) == key:
                    return prefix + p
        raise ManifestError(f"no manifest is registered for partition {key!r} (looked in "
                            f"{describe_uri(self.root)}" + (f" and {describe_uri(inbox_manifests)}"
                                                            if inbox_manifests else "") +
                            "); drop the manifest into the inbox's manifests/ folder")


# mtime and size let a manifest be written again exactly from the ledger (see UploadLedger.batch); ledgers
# written before they existed read them as null.
LEDGER_SCHEMA = pa.schema([("uri", pa.string()), ("fingerprint", pa.string()), ("manifest_uri", pa.string()),
                           ("batched_at", pa.string()), ("mtime", pa.float64()), ("size", pa.int64())])


class UploadLedger:
    def __init__(self, warehouse: str, storage_options: dict | None = None):
        self.uri = join_uri(warehouse, "_registry", "video_uploads.parquet")
        self.storage_options = storage_options
        self.rows: list[dict] = []
        self._by_uri: dict[str, str] = {}
        self._by_content: dict[str, str] = {}
        self._manifest_of: dict[str, str] = {}  # uri -> manifest it was last batched into
        self._by_manifest: dict[str, list[dict]] = {}  # manifest -> its rows, in batch order

    def load(self) -> UploadLedger:
        fs, path = filesystem_for(self.uri, self.storage_options)
        try:
            data = fs.cat_file(path)
        except FileNotFoundError:
            return self
        self.rows = pq.read_table(io.BytesIO(data)).to_pylist()
        for r in self.rows:
            self._index(r)
        return self

    def _index(self, r: dict) -> None:
        self._by_uri[r["uri"]] = r["fingerprint"]
        self._manifest_of[r["uri"]] = r["manifest_uri"]
        self._by_manifest.setdefault(r["manifest_uri"], []).append(r)
        if is_content_hash(r["fingerprint"]):
            self._by_content.setdefault(r["fingerprint"], r["uri"])

    def seen(self, uri: str, fp: str) -> str | None:
        """Why this upload needs no new manifest (None when it does)."""
        if self._by_uri.get(uri) == fp:
            return "already batched with the same content"
        other = self._by_content.get(fp) if is_content_hash(fp) else None
        if other and other != uri:
            return f"same content as {describe_uri(other)}, already batched"
        return None

    def batched_into(self, uri: str, fp: str) -> str | None:
        """The manifest this upload (same URI, same content) was put into, or None."""
        return self._manifest_of.get(uri) if self._by_uri.get(uri) == fp else None

    def batch(self, manifest_uri: str) -> list[dict] | None:
        """The rows of the manifest at ``manifest_uri`` as they were batched (``uri``, ``fingerprint``,
        ``mtime``, ``size``), or None when the ledger cannot rebuild it (unknown, or an older ledger)."""
        rows = self._by_manifest.get(manifest_uri)
        if not rows or any(r.get("mtime") is None or r.get("size") is None for r in rows):
            return None
        return [dict(r) for r in rows]

    def add(self, entries: Iterable[dict]) -> None:
        for e in entries:
            r = {"uri": e["uri"], "fingerprint": e["fingerprint"], "manifest_uri": e["manifest_uri"],
                 "batched_at": e.get("batched_at") or _now(), "mtime": e.get("mtime"), "size": e.get("size")}
            self.rows.append(r)
            self._index(r)

    def save(self) -> None:
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(self.rows, schema=LEDGER_SCHEMA), buf)
        write_bytes(self.uri, buf.getvalue(), self.storage_options)


__all__ = ["ManifestError", "ManifestRegistry", "UploadLedger"]
