"""One place that turns a URI into an fsspec filesystem and a path.

Supported: local paths, ``file://``, ``http(s)://``, ``s3://bucket/key`` and ``tos://bucket/key``.
``tos://`` is Volcengine TOS through its S3-compatible API: the endpoint comes from ``VIDEO_ASSETS_TOS_ENDPOINT``
(or ``TOS_ENDPOINT_URL``), credentials from ``TOS_ACCESS_KEY``/``TOS_SECRET_KEY`` when set, otherwise from the
usual AWS variables. ``s3://`` uses botocore's normal configuration (``AWS_ENDPOINT_URL_S3`` included).
"""

from __future__ import annotations

import os
import re
import threading
from urllib.parse import urlsplit, urlunsplit

import fsspec

_REMOTE_SCHEMES = ("http", "https", "s3", "s3a", "tos")


def scheme_of(uri: str) -> str:
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", uri)
    return m.group(1).lower() if m else ""


def is_remote_uri(uri: str) -> bool:
    return scheme_of(uri) in _REMOTE_SCHEMES


def _tos_options() -> dict:
    endpoint = os.environ.get("VIDEO_ASSETS_TOS_ENDPOINT") or os.environ.get("TOS_ENDPOINT_URL")
    opts: dict = {}
    if endpoint:
        opts["client_kwargs"] = {"endpoint_url": endpoint}
    key, secret = os.environ.get("TOS_ACCESS_KEY"), os.environ.get("TOS_SECRET_KEY")
    if key and secret:
        opts["key"], opts["secret"] = key, secret
    return opts


def filesystem_for(uri: str, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(filesystem, path)`` for ``uri``; ``path`` is what that filesystem's methods expect."""
    uri = os.fspath(uri)
    scheme = scheme_of(uri)
    opts = dict(storage_options or {})
    if scheme in ("", "file"):
        path = uri[len("file://"):] if scheme == "file" else uri
        return fsspec.filesystem("file"), os.path.abspath(os.path.expanduser(path))
    if scheme in ("s3", "s3a", "tos"):
        if scheme == "tos":
            opts = {**_tos_options(), **opts}
        return fsspec.filesystem("s3", **opts), uri.split("://", 1)[1]
    if scheme in ("http", "https"):
        return fsspec.filesystem(scheme, **opts), uri
    return fsspec.filesystem(scheme, **opts), uri


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a local path or URI with '/' (no normalisation of the base's scheme)."""
    base = os.fspath(base)
    if not scheme_of(base):
        return os.path.join(base, *parts)
    out = base.rstrip("/")
    for p in parts:
        out += "/" + p.strip("/")
    return out


def describe_uri(uri: str) -> str:
    """The URI as it may appear in logs and errors: user:password and query strings (signatures) removed."""
    uri = os.fspath(uri)
    if not scheme_of(uri):
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = "<redacted>" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def write_bytes(uri: str, data: bytes, storage_options: dict | None = None) -> None:
    """Write ``data`` to ``uri`` so that no reader sees a half-written object.

    Local files go to a temporary name in the same folder and are renamed into place; object stores publish a
    PUT atomically already.
    """
    fs, path = filesystem_for(uri, storage_options)
    if scheme_of(os.fspath(uri)) in ("", "file"):
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return
    fs.pipe_file(path, data)
