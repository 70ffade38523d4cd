"""Where candlecast may download from: CDD over https, or a mirror the operator configured.

The base URL comes from configuration only (``CANDLECAST_CDD_BASE_URL``), never from flow
parameters. Whatever is configured, link-local and cloud metadata addresses are refused, and
CDD's own host is only reached over https.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from candlecast.core.errors import InvalidInputError

CDD_HOSTS = frozenset({"www.cryptodatadownload.com", "cryptodatadownload.com"})
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})
METADATA_ADDRESSES = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, AWS/GCP/Azure metadata
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
)


def public_url(url: str) -> str:
    """``url`` without user info, query or fragment: safe for logs, messages and tables."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return url if parts.scheme else parts.path
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _forbidden_address(host: str) -> str | None:
    try:
        addresses = {ipaddress.ip_address(host.strip("[]"))}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError:
            return None  # unresolvable now: the download will fail with a clear error
        addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}
    for address in addresses:
        if any(address in network for network in METADATA_ADDRESSES):
            return str(address)
    return None


def check_base_url(url: str) -> str:
    """``url`` if candlecast may download from it, else :class:`InvalidInputError` saying why.

    Allowed: https on CDD's host; any other http(s) host, local directory or ``file://`` URL
    as an explicitly configured mirror. Refused: other schemes, CDD's host over plain http,
    link-local and cloud metadata addresses (also when a name resolves to one).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("", "file"):
        return url
    if scheme not in ("http", "https"):
        raise InvalidInputError(
            f"CDD base URL scheme {scheme!r} refused: use https, http or a path"
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidInputError(f"CDD base URL {public_url(url)!r} has no host")
    if host in CDD_HOSTS and scheme != "https":
        raise InvalidInputError("CryptoDataDownload is reached over https only")
    if host in METADATA_HOSTS:
        raise InvalidInputError(f"CDD base URL host {host!r} is a cloud metadata service: refused")
    address = _forbidden_address(host)
    if address is not None:
        raise InvalidInputError(
            f"CDD base URL host {host!r} is a link-local or metadata address ({address}): refused"
        )
    return url
