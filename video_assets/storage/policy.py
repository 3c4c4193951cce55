"""Where video sources may point: schemes, local folders, buckets, hosts and network addresses.

Manifests come from buckets other people write to, so a manifest row is untrusted input. A
:class:`SourcePolicy` is checked before anything is opened (:meth:`SourcePolicy.check`), and for http(s) again
at connect time on every redirect hop and after every DNS resolution (:func:`http_client_factory`), so a
redirect or a DNS answer that points at a private or metadata address is refused as well.

Raw bytes and base64 inputs are data, not locations: the policy does not apply to them.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, replace
from urllib.parse import urljoin, urlsplit

from video_assets.errors import SourcePolicyError
from video_assets.storage.uri import bucket_of, describe_uri, is_local, scheme_of, strip_file_scheme

ALL_SCHEMES = ("file", "http", "https", "s3", "tos")

# Cloud instance-metadata endpoints: AWS/GCP/Azure/OpenStack (IPv4 and AWS's IPv6), AWS ECS task metadata,
# Alibaba Cloud. They hand out credentials, so they stay blocked even where private networks are allowed.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "169.254.170.2", "169.254.170.23", "100.100.100.200"))

_SCHEME_ALIASES = {"": "file", "file": "file", "s3a": "s3"}


class BlockedAddressError(OSError):
    """Raised inside the HTTP client when a connection would go to an address the policy blocks.

    An OSError so that aiohttp passes it through as a connection error; :func:`find_policy_error` digs it out
    of the exception chain so the row gets a SourcePolicyError instead of a generic network error."""


@dataclass(frozen=True)
class SourcePolicy:
    """Rules for the locations videos may be read from.

    - ``schemes``: allowed schemes; ``"file"`` covers local paths and ``file://``, ``"s3"`` covers ``s3a://``.
    - ``local_roots``: folders local paths must lie in after resolving ``..`` and symlinks (None: any folder).
    - ``buckets``: allowed s3/tos buckets (None: any).
    - ``hosts``: allowed http(s) host names; ``"*.example.com"`` matches subdomains (None: any host). IP
      addresses may be listed too.
    - ``allow_private_networks``: allow loopback, private (RFC 1918, fc00::/7), link-local, CGNAT and other
      non-public addresses for http(s). Off by default; local test servers opt in.
    - ``allow_metadata_addresses``: allow cloud metadata endpoints (169.254.169.254, fd00:ec2::254, ...).
      Off by default and also off in :meth:`permissive`: nothing this project does needs them, and reaching
      them from a URL someone else wrote is how credentials get stolen.
    - ``max_redirects``: http(s) redirects followed per request at most.

    ``SourcePolicy()`` allows every scheme, folder, bucket and public host and blocks private networks and
    metadata addresses.
    """

    schemes: tuple[str, ...] = ALL_SCHEMES
    local_roots: tuple[str, ...] | None = None
    buckets: tuple[str, ...] | None = None
    hosts: tuple[str, ...] | None = None
    allow_private_networks: bool = False
    allow_metadata_addresses: bool = False
    max_redirects: int = 5

    def __post_init__(self):
        # Accept lists from callers and configuration, each entry once (the pipeline adds its env lists to
        # configured ones that may hold them already); keep the dataclass hashable.
        object.__setattr__(self, "schemes", tuple(_SCHEME_ALIASES.get(s.lower(), s.lower())
                                                   for s in self.schemes))
        for name in ("local_roots", "buckets", "hosts"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, tuple(dict.fromkeys(v)))
        if self.local_roots is not None:
            object.__setattr__(self, "local_roots", tuple(dict.fromkeys(_resolve_local(r) for r in self.local_roots)))
        if self.hosts is not None:
            object.__setattr__(self, "hosts", tuple(h.lower().rstrip(".") for h in self.hosts))
        if int(self.max_redirects) < 0:
            raise ValueError(f"max_redirects must be >= 0, got {self.max_redirects!r}")

    @classmethod
    def permissive(cls) -> SourcePolicy:
        """What the operators use when called from Python without a policy: any scheme, folder, bucket and
        host, private networks allowed. Metadata addresses stay blocked."""
        return cls(allow_private_networks=True)

    def with_private_networks(self, allow: bool = True) -> SourcePolicy:
        return replace(self, allow_private_networks=allow)

    # -- checks --------------------------------------------------------------------------------------------
    def check(self, uri: str) -> None:
        """Raise SourcePolicyError naming the (redacted) source and the rule it breaks; nothing is opened.

        http(s) host names are resolved here (DNS only) so a name that points at a blocked address fails
        with a clear message; the HTTP client checks the addresses again when it connects."""
        uri = os.fspath(uri)
        raw_scheme = scheme_of(uri)
        scheme = _SCHEME_ALIASES.get(raw_scheme, raw_scheme)
        desc = describe_uri(uri)
        if scheme not in self.schemes:
            shown = raw_scheme + "://" if raw_scheme else "local paths"
            raise SourcePolicyError(f"{desc}: source not allowed: {shown} are not among the allowed sources "
                                    f"({', '.join(self.schemes) or 'none'})")
        if scheme == "file":
            self._check_local(uri, desc)
        elif scheme in ("s3", "tos"):
            bucket = bucket_of(uri)
            if self.buckets is not None and bucket not in self.buckets:
                raise SourcePolicyError(f"{desc}: source not allowed: bucket {bucket!r} is not among the "
                                        f"allowed buckets ({', '.join(self.buckets) or 'none'})")
        elif scheme in ("http", "https"):
            self.check_url(uri)

    def _check_local(self, uri: str, desc: str) -> None:
        if self.local_roots is None:
            return
        real = _resolve_local(strip_file_scheme(uri))
        for root in self.local_roots:
            if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
                return
        raise SourcePolicyError(f"{desc}: source not allowed: local path resolves to a location outside the "
                                f"allowed folders ({', '.join(self.local_roots) or 'none'}); the pipeline "
                                "allows more with VIDEO_ASSETS_ALLOWED_ROOTS")

    def check_url(self, url: str, resolve: bool = True) -> None:
        """The http(s) rules for one URL (the first request or a redirect target)."""
        desc = describe_uri(url)
        parts = urlsplit(url)
        scheme = (parts.scheme or "").lower()
        if scheme not in ("http", "https") or scheme not in self.schemes:
            raise SourcePolicyError(f"{desc}: source not allowed: scheme {scheme or '(none)'}:// is not "
                                    f"among the allowed sources ({', '.join(self.schemes) or 'none'})")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise SourcePolicyError(f"{desc}: source not allowed: URL has no host")
        if self.hosts is not None and not any(_host_matches(host, h) for h in self.hosts):
            raise SourcePolicyError(f"{desc}: source not allowed: host {host!r} is not among the allowed "
                                    f"hosts ({', '.join(self.hosts) or 'none'})")
        literal = _ip_literal(host)
        if literal is not None:
            self.check_address(literal, desc, host)
        elif resolve:
            for addr in _resolve(host):
                self.check_address(addr, desc, host)

    def address_problem(self, addr) -> str | None:
        """Why ``addr`` (an IP address or string) may not be connected to, or None when it may."""
        ip = ipaddress.ip_address(addr) if not isinstance(addr, (ipaddress.IPv4Address,
                                                                 ipaddress.IPv6Address)) else addr
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if ip in METADATA_ADDRESSES and not self.allow_metadata_addresses:
            return f"{ip} is a cloud metadata address"
        if self.allow_private_networks:
            return None
        if ip.is_loopback:
            return f"{ip} is a loopback address"
        if ip.is_link_local:
            return f"{ip} is a link-local address"
        if ip.is_private:
            return f"{ip} is a private-network address"
        if ip.is_multicast or ip.is_unspecified or ip.is_reserved or not ip.is_global:
            return f"{ip} is not a public address"
        return None

    def check_address(self, addr, desc: str, host: str | None = None) -> None:
        problem = self.address_problem(addr)
        if problem:
            via = f" ({host} resolves to it)" if host and host != str(addr) else ""
            hint = "" if "metadata" in problem else "; private networks are not allowed by the source policy"
            raise SourcePolicyError(f"{desc}: source not allowed: {problem}{via}{hint}")


def _resolve_local(path: str) -> str:
    # realpath: '..' and symlinks are resolved before the root check, so neither can step outside a root.
    return os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _host_matches(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and host != pattern[2:]
    return host == pattern


def _ip_literal(host: str):
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _resolve(host: str) -> list:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []  # unresolvable: the connection fails later with the network error; nothing to allow here
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def find_policy_error(exc: BaseException) -> SourcePolicyError | None:
    """The policy violation behind a (wrapped) network error, if that is what it is."""
    seen = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, SourcePolicyError):
            return e
        if isinstance(e, BlockedAddressError):
            return SourcePolicyError(str(e))
        stack.extend([e.__cause__, e.__context__, getattr(e, "os_error", None)])
        stack.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
    return None


# -- HTTP client enforcement ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def http_client_factory(policy: SourcePolicy, connect_timeout: float | None, read_timeout: float | None):
    """A ``get_client`` for fsspec's HTTP filesystem: an aiohttp session that enforces ``policy`` when it
    connects (after DNS, on every redirect hop) and applies the timeouts.

    Three layers, because aiohttp skips the resolver for IP literals: the resolver filters every DNS answer
    (covers DNS rebinding between the upfront check and the connection), a request-start hook checks the
    first URL, and a redirect hook checks each ``Location`` before it is followed."""
    import aiohttp

    class _PolicyResolver(aiohttp.abc.AbstractResolver):
        def __init__(self):
            self._inner = aiohttp.ThreadedResolver()

        async def resolve(self, host, port=0, family=socket.AF_INET):
            results = await self._inner.resolve(host, port, family)
            for r in results:
                problem = policy.address_problem(r["host"].split("%", 1)[0])
                if problem:
                    raise BlockedAddressError(
                        f"{host}: source not allowed: {problem} ({host} resolves to it)")
            return results

        async def close(self):
            await self._inner.close()

    async def on_start(session, ctx, params):
        _check_in_client(policy, str(params.url))

    async def on_redirect(session, ctx, params):
        location = params.response.headers.get("Location") or params.response.headers.get("URI")
        if location:
            _check_in_client(policy, urljoin(str(params.url), location))

    async def get_client(**kwargs):
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(on_start)
        trace.on_request_redirect.append(on_redirect)
        kwargs.setdefault("timeout", aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout,
                                                           sock_read=read_timeout))
        kwargs["connector"] = aiohttp.TCPConnector(resolver=_PolicyResolver())
        kwargs["trace_configs"] = list(kwargs.get("trace_configs") or []) + [trace]
        return aiohttp.ClientSession(**kwargs)

    # Cached per (policy, timeouts): the same function object lets fsspec reuse one filesystem and session.
    return get_client


def _check_in_client(policy: SourcePolicy, url: str) -> None:
    try:
        policy.check_url(url, resolve=False)  # the resolver checks names when they are looked up
    except SourcePolicyError as e:
        raise BlockedAddressError(str(e)) from None


def local_roots_from(values: Iterable[str]) -> tuple[str, ...]:
    """Configured folder strings (``file://`` prefixes allowed) as local roots; empty entries are ignored."""
    out = []
    for v in values:
        v = os.fspath(v).strip()
        if v and is_local(v):
            out.append(strip_file_scheme(v))
    return tuple(out)
