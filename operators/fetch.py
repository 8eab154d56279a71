"""Fetching images over http(s) without becoming an SSRF proxy.

Every hop (the first URL and each redirect) is resolved once, every resolved address is checked
against the limits, and the connection goes to the checked address itself, so a DNS answer
cannot change between the check and the connect. Redirects are followed by hand.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from operators.exceptions import (
    BlockedAddress,
    ImageFetchError,
    ImageFetchTimeout,
    ImageTooLarge,
    UnsupportedImageSource,
    error_text,
)
from operators.limits import ImageLimits

Resolver = Callable[[str, int], list[str]]
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata endpoints named explicitly so the refusal says what they are.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
_CHUNK = 64 * 1024


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host`."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def forbidden_reason(address: IpAddress) -> str | None:
    """Why an address may not be fetched from by default, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    checks = (
        (address in METADATA_ADDRESSES, "a cloud metadata address"),
        (address.is_loopback, "a loopback address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    )
    return next((reason for hit, reason in checks if hit), None)


def check_addresses(host: str, addresses: Iterable[str], limits: ImageLimits) -> str:
    """Return the first address if every one is allowed, else raise BlockedAddress."""
    parsed = [ipaddress.ip_address(address.split("%")[0]) for address in addresses]
    if not parsed:
        raise ImageFetchError(f"{host} resolved to no address")
    allowed = [ipaddress.ip_network(network) for network in limits.allowed_networks]
    for address in parsed:
        if limits.allow_private_addresses or any(address in net for net in allowed):
            continue
        reason = forbidden_reason(address)
        if reason:
            raise BlockedAddress(
                f"{host} resolves to {address}, {reason}; fetching from it is refused "
                "(allow_private_addresses is off)"
            )
    return str(parsed[0])


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str


def _parse(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsupportedImageSource(f"only http(s) URLs with a host can be fetched, not {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return _Target(parts.scheme, parts.hostname, port, path)


def fetch_url(url: str, limits: ImageLimits, resolver: Resolver = system_resolver) -> bytes:
    """GET `url`, re-checking every redirect hop; enforce byte limit and overall deadline."""
    deadline = time.monotonic() + limits.fetch_timeout_s
    for _ in range(limits.max_redirects + 1):
        target = _parse(url)
        try:
            address = check_addresses(target.host, _resolve(target, resolver), limits)
            location = _get(target, address, limits, deadline)
        except TimeoutError as exc:
            raise ImageFetchTimeout(
                f"fetching {url} took over the fetch_timeout_s limit of {limits.fetch_timeout_s}s",
                limit="fetch_timeout_s",
            ) from exc
        if isinstance(location, bytes):
            return location
        url = urljoin(url, location)
    raise ImageFetchError(f"more than max_redirects={limits.max_redirects} redirects")


def _resolve(target: _Target, resolver: Resolver) -> list[str]:
    try:
        return resolver(target.host, target.port)
    except OSError as exc:
        raise ImageFetchError(f"cannot resolve {target.host}: {error_text(exc)}") from exc


def _get(target: _Target, address: str, limits: ImageLimits, deadline: float) -> bytes | str:
    """The body, or the Location of a redirect."""
    connection = _connect(target, address, deadline)
    sock = connection.sock  # http.client drops its reference once the response is read
    try:
        connection.request("GET", target.path, headers={"Accept": "image/*"})
        response = connection.getresponse()
        if response.status in (301, 302, 303, 307, 308):
            location = response.getheader("Location")
            if not location:
                raise ImageFetchError(f"redirect {response.status} without a Location")
            return location
        if response.status != 200:
            raise ImageFetchError(f"{target.host} answered HTTP {response.status}")
        return _read_limited(response, sock, limits, deadline)
    except (http.client.HTTPException, ConnectionError, ssl.SSLError) as exc:
        raise ImageFetchError(f"fetching from {target.host} failed: {error_text(exc)}") from exc
    finally:
        connection.close()


def _connect(target: _Target, address: str, deadline: float) -> http.client.HTTPConnection:
    try:
        sock = socket.create_connection((address, target.port), timeout=_remaining(deadline))
    except TimeoutError:
        raise
    except OSError as exc:
        raise ImageFetchError(f"cannot connect to {target.host}: {error_text(exc)}") from exc
    if target.scheme == "https":
        context = ssl.create_default_context()
        sock = context.wrap_socket(sock, server_hostname=target.host)
    connection = http.client.HTTPConnection(target.host, target.port, timeout=_remaining(deadline))
    connection.sock = sock
    return connection


def _read_limited(
    response: http.client.HTTPResponse, sock: socket.socket, limits: ImageLimits, deadline: float
) -> bytes:
    """Read one receive at a time so that a slow sender cannot stretch the deadline."""
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_many_bytes(int(declared), limits)
    chunks: list[bytes] = []
    total = 0
    while True:
        sock.settimeout(_remaining(deadline))
        chunk = response.read1(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > limits.max_bytes:
            raise _too_many_bytes(total, limits)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_many_bytes(size: int, limits: ImageLimits) -> ImageTooLarge:
    return ImageTooLarge(
        f"image is at least {size} bytes, over the max_bytes limit of {limits.max_bytes}",
        limit="max_bytes",
    )


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    return remaining
