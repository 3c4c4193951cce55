"""One place that turns a URI into an fsspec filesystem and a path.

Supported: local paths, ``file://``, ``http(s)://``, ``s3://bucket/key`` and ``tos://bucket/key``.
``tos://`` is Volcengine TOS through its S3-compatible API: the endpoint comes from
``VIDEO_ASSETS_TOS_ENDPOINT`` (or ``TOS_ENDPOINT_URL``), credentials from
``TOS_ACCESS_KEY``/``TOS_SECRET_KEY`` when set, otherwise from the usual AWS variables. ``s3://`` uses
botocore's normal configuration (``AWS_ENDPOINT_URL_S3`` included). The pure URI helpers (schemes, ``file://``
paths, redaction) are in :mod:`video_assets.storage.uri`.
"""

from __future__ import annotations

import os
import threading

import fsspec

from video_assets.storage.policy import http_client_factory
from video_assets.storage.uri import (
    describe_uri,
    is_local,
    is_remote_uri,
    join_uri,
    local_path,
    redact_text,
    scheme_of,
)

# The URI helpers lived here before storage/uri.py; importers of video_assets.storage.fs keep working.
__all__ = ["describe_uri", "filesystem_for", "is_remote_uri", "join_uri", "redact_text", "scheme_of",
           "write_bytes"]


def _tos_options() -> dict:
    endpoint = os.environ.get("VIDEO_ASSETS_TOS_ENDPOINT") or os.environ.get("TOS_ENDPOINT_URL")
    opts: dict = {}
    if endpoint:
        opts["client_kwargs"] = {"endpoint_url": endpoint}
    key, secret = os.environ.get("TOS_ACCESS_KEY"), os.environ.get("TOS_SECRET_KEY")
    if key and secret:
        opts["key"], opts["secret"] = key, secret
    return opts


def filesystem_for(uri: str, storage_options: dict | None = None, *, policy=None,
                   limits=None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(filesystem, path)`` for ``uri``; ``path`` is what that filesystem's methods expect.

    ``policy`` (a :class:`~video_assets.storage.policy.SourcePolicy`): http(s) connections are checked against
    it after DNS and on every redirect. ``limits`` (a :class:`~video_assets.video.limits.ReadLimits`): HTTP
    connect/read timeouts and the retry budget of s3/tos requests. Both are optional; ``storage_options`` win
    over anything set here.
    """
    uri = os.fspath(uri)
    scheme = scheme_of(uri)
    opts = dict(storage_options or {})
    if scheme in ("", "file"):
        return fsspec.filesystem("file"), local_path(uri)
    if scheme in ("s3", "s3a", "tos"):
        if scheme == "tos":
            opts = {**_tos_options(), **opts}
        opts = _s3_retry_options(opts, limits)
        fs = fsspec.filesystem("s3", **opts)
        if limits is not None:
            fs.retries = 1  # s3fs's own retry loop (5 by default) would multiply botocore's bounded attempts
        return fs, uri.split("://", 1)[1]
    if scheme in ("http", "https"):
        if policy is not None and "get_client" not in opts:
            connect = getattr(limits, "http_connect_timeout_sec", None)
            read = getattr(limits, "http_read_timeout_sec", None)
            opts["get_client"] = http_client_factory(policy, connect, read)
            # bounded redirects (aiohttp's default is 10); every hop is checked by the client's hooks
            opts.setdefault("max_redirects", max(1, policy.max_redirects + 1))
        return fsspec.filesystem(scheme, **opts), uri
    return fsspec.filesystem(scheme, **opts), uri


def _s3_retry_options(opts: dict, limits) -> dict:
    """Bounded retries for s3/tos: botocore's "standard" mode retries 5xx, throttling (SlowDown, 503) and
    connection errors, never 403/404; s3fs's own retry loop is reduced to one attempt so the two do not
    multiply. Timeouts come from ``limits`` when given."""
    if limits is None:
        return opts
    opts = dict(opts)
    config = dict(opts.get("config_kwargs") or {})
    config.setdefault("retries", {"total_max_attempts": 1 + int(limits.max_retries), "mode": "standard"})
    if limits.http_connect_timeout_sec is not None:
        config.setdefault("connect_timeout", limits.http_connect_timeout_sec)
    if limits.http_read_timeout_sec is not None:
        config.setdefault("read_timeout", limits.http_read_timeout_sec)
    opts["config_kwargs"] = config
    return opts


def write_bytes(uri: str, data: bytes, storage_options: dict | None = None) -> None:
    """Write ``data`` to ``uri`` so that no reader sees a half-written object.

    Local files go to a temporary name in the same folder and are renamed into place; object stores publish a
    PUT atomically already.
    """
    fs, path = filesystem_for(uri, storage_options)
    if is_local(uri):
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return
    fs.pipe_file(path, data)
