"""Pure helpers on URIs and local paths: no I/O, no fsspec, no network.

One rule for each question, used everywhere in the package:

- the scheme is what precedes ``://``, compared in lower case (``FILE:///x`` is a ``file`` URI);
- a ``file://`` URI names the local path after its ``file://`` (:func:`strip_file_scheme`); a string without
  a scheme is a local path;
- the bucket of ``s3://``/``tos://`` URIs is the first path segment after the scheme, without ``user@``;
- logs and errors show URIs through :func:`describe_uri` (credentials and query strings removed).
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

REMOTE_SCHEMES = ("http", "https", "s3", "s3a", "tos")

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_FILE_PREFIX = "file://"


def scheme_of(uri: str) -> str:
    """The URI's scheme in lower case; "" for a local path."""
    m = _SCHEME.match(uri)
    return m.group(1).lower() if m else ""


def is_remote_uri(uri: str) -> bool:
    return scheme_of(uri) in REMOTE_SCHEMES


def is_local(uri: str) -> bool:
    """A local path or a ``file://`` URI."""
    return scheme_of(os.fspath(uri)) in ("", "file")


def strip_file_scheme(uri: str) -> str:
    """The path of a ``file://`` URI (any case of the scheme); any other string unchanged."""
    uri = os.fspath(uri)
    return uri[len(_FILE_PREFIX):] if scheme_of(uri) == "file" else uri


def local_path(uri: str) -> str:
    """The absolute path a local path or ``file://`` URI names: ``~`` expanded, relative paths against the
    working directory, symlinks not resolved."""
    return os.path.abspath(os.path.expanduser(strip_file_scheme(uri)))


def bucket_of(uri: str) -> str:
    """The bucket of an object-store URI (``s3://bucket/key``, ``tos://user@bucket/key`` -> ``bucket``)."""
    return os.fspath(uri).split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]


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
    try:
        parts = urlsplit(uri)
    except ValueError:  # e.g. an invalid IPv6 literal: keep only the scheme
        return f"{scheme_of(uri)}://<unparseable>"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = "<redacted>" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>()\[\]{}]+")
# Signed-URL and token parameters that may appear without their URL (library messages, headers).
_SECRET_PARAM = re.compile(r"(?i)\b(x-amz-signature|x-amz-credential|x-amz-security-token|signature|"
                           r"awsaccesskeyid|access_token|token|sig|x-tos-signature|x-tos-credential|"
                           r"x-tos-security-token)=[^&\s'\"]+")


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through :func:`describe_uri` and stray signature/token parameters
    blanked: use on any message that may quote a library error."""
    text = _URL_IN_TEXT.sub(lambda m: describe_uri(m.group(0)), str(text))
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=<redacted>", text)
