"""Partition keys: each manifest's Dagster partition key, derived from its file name.

:func:`base_partition_key` sanitises the name (lowercase, at most 64 characters of ``[a-z0-9._-]``); when
another manifest already owns that key, :func:`assign_partition_key` adds a short hash of the manifest's URI,
so the key is deterministic and stable.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import unicodedata
from collections.abc import Callable

from video_assets.pipeline.manifests.formats import MANIFEST_FORMATS
from video_assets.pipeline.manifests.manifest import ManifestError
from video_assets.storage import describe_uri
from video_assets.storage.uri import scheme_of, strip_file_scheme

MAX_KEY_LENGTH = 64


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
