"""Which network addresses a URL source may reach, checked where the socket is opened.

A manifest is written by someone else, so its URLs must not turn the pipeline into a way to read
the machine's own network: loopback services, the cloud metadata endpoint (169.254.169.254), a
private LAN. The check runs on the *resolved* addresses, because a public-looking name can
resolve to 127.0.0.1, and it runs inside the HTTP client's connect step (an httpcore network
backend), so every connection — the first request and each redirect hop — is checked, and the
socket goes to the very address that was checked: a DNS answer that changes between the check
and the connect (rebinding) cannot slip a private address in.

Residual risk, documented in docs/sensors_and_s3.md: environment proxies are not used while the
guard is on (a proxy would resolve the name itself, out of our sight).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(Exception):
    """A URL's host is (or resolves to) an address the source may not reach."""


def _embedded_v4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64), else `ip`."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_kind(ip: IPAddress) -> str | None:
    """Why `ip` may not be reached (`"loopback"`, `"link-local"`, ...), or None if it is public."""
    inner = _embedded_v4(ip)
    for candidate in (inner, ip) if inner != ip else (ip,):
        if candidate.is_loopback:
            return "loopback"
        if candidate.is_link_local:
            return "link-local"
        if candidate.is_multicast:
            return "multicast"
        if candidate.is_unspecified:
            return "unspecified"
        if candidate.is_private:
            return "private"
        if not candidate.is_global:
            return "not globally routable"
    return None


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order, without duplicates."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise BlockedAddress(f"cannot resolve host {host!r}") from None
    out: list[str] = []
    for info in infos:
        addr = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        if addr not in out:
            out.append(addr)
    return out


def checked_addresses(host: str, port: int) -> list[str]:
    """The addresses of `host` if every one is public; raise `BlockedAddress` otherwise.

    All of them must pass (not just one), so the answer the connection uses is one we checked.
    """
    try:
        addresses = [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        addresses = resolve(host, port)
    for addr in addresses:
        kind = address_kind(ipaddress.ip_address(addr))
        if kind is not None:
            shown = host if host == addr else f"{host} (resolves to {addr})"
            raise BlockedAddress(
                f"host {shown} is a {kind} address; set "
                "`allow_private_networks: true` on the source to allow it"
            )
    return addresses


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's blocking backend, connecting only to checked public addresses."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self, host: str, port: int, *args: Any, **kwargs: Any
    ) -> httpcore.NetworkStream:
        """The first checked address that answers; the other options go to httpcore as given."""
        last: Exception | None = None
        for addr in checked_addresses(host, port):
            try:  # TLS still verifies the certificate for `host` (httpcore passes it as SNI)
                return self._inner.connect_tcp(addr, port, *args, **kwargs)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise BlockedAddress("unix sockets are not reachable from a URL source")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def guarded_transport() -> httpx.HTTPTransport:
    """An httpx transport whose every connection goes through `GuardedBackend`.

    httpx has no public switch for the network backend, so the transport's connection pool is
    rebuilt with one (httpx 0.28; `test_url_guard` fails loudly if that ever stops working).
    """
    transport = httpx.HTTPTransport(trust_env=False)
    transport._pool = httpcore.ConnectionPool(  # private: see the docstring
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=GuardedBackend(),
    )
    return transport
