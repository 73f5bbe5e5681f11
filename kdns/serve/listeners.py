"""Binding the sockets kdns listens on: DNS over UDP and TCP on the same port, and HTTP.

Everything here runs before anything is served, so that a port in use is a start-up error
with one line saying which (`ListenError`). Port 0 asks for a free port; UDP and TCP then
get the same one (`bind_dns` retries until both are free).

`:PORT` (a ListenAddress with no host) is every address of both families: a socket on
0.0.0.0 and one on [::] (IPV6_V6ONLY, so each family has its own socket and IPv4 clients
keep plain IPv4 addresses for the recursion ACL, rate limiting and autopath), on the same
port. Where the host has no IPv6 at all (the kernel refuses AF_INET6 sockets, or [::] cannot
be bound), the IPv4 socket serves alone and `skipped` says why.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from kdns.config import ListenAddress

RECV_BUFFER = 4 * 1024 * 1024  # bytes of UDP socket buffer asked for (the kernel caps it at rmem_max)
BACKLOG = 128  # TCP connections waiting to be accepted
PORT_TRIES = 20  # ports tried for a UDP and TCP pair on port 0


class ListenError(Exception):
    """A socket could not be bound; the message is one line saying which and why."""


@dataclass(frozen=True, slots=True)
class Bound:
    proto: str  # "udp" or "tcp"
    address: ListenAddress  # with the real port when port 0 was asked for


@dataclass(frozen=True, slots=True)
class HttpListener:
    address: ListenAddress  # with the real port
    sock: socket.socket
    routes: dict  # path -> route (kdns.observe.Route)


def bind_udp(address: ListenAddress, *, reuse_port: bool = False) -> socket.socket:
    """A bound non-blocking UDP socket, with room for a burst while a batch is being answered
    (raises OSError, e.g. EADDRINUSE)."""
    return _bind(address, socket.SOCK_DGRAM, reuse_port, [(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)])


def bind_tcp(address: ListenAddress, *, reuse_port: bool = False) -> socket.socket:
    """A bound, listening TCP socket (raises OSError, e.g. EADDRINUSE)."""
    return _bind(address, socket.SOCK_STREAM, reuse_port, [(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)])


def _bind(address: ListenAddress, kind: int, reuse_port: bool, options: list[tuple[int, int, int]]) -> socket.socket:
    family = socket.AF_INET6 if address.family == 6 else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if reuse_port:  # --workers: several processes share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        for level, option, value in options:
            sock.setsockopt(level, option, value)
        sock.bind((address.host, address.port))
        if kind == socket.SOCK_STREAM:
            sock.listen(BACKLOG)
        else:
            sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


# Where the host has no IPv6: AF_INET6 unsupported, or no IPv6 address to bind (disabled).
NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)
ANY_V4, ANY_V6 = "0.0.0.0", "::"


@dataclass
class Skipped:
    """What `:PORT` could not bind because the host has no IPv6 (for the start-up log)."""

    reasons: list[str] = field(default_factory=list)


def bind_dns(address: ListenAddress, *, reuse_port: bool = False, skipped: Skipped | None = None) -> list[tuple[Bound, socket.socket]]:
    """UDP and TCP on the same port (for `:PORT`, on 0.0.0.0 and [::]); with port 0, retry
    until every socket gets the same one."""
    hosts = [ANY_V4, ANY_V6] if address.everywhere else [address.host]
    for _ in range(PORT_TRIES):
        port = address.port
        bound: list[tuple[Bound, socket.socket]] = []
        try:
            for host in hosts:
                optional = address.everywhere and host == ANY_V6
                pair = _bind_pair(ListenAddress(host, port), reuse_port, optional, address.port == 0, skipped)
                bound += pair
                if pair:
                    port = pair[0][0].address.port  # the next family gets the same port
        except _PortTaken:
            for _, sock in bound:
                sock.close()
            continue  # a free port of one socket is taken for another: pick another
        except BaseException:
            for _, sock in bound:
                sock.close()
            raise
        return bound
    raise ListenError(f"cannot find a port free for both udp and tcp on {address}")


class _PortTaken(Exception):
    """Port 0 gave a port that another socket of the same listen address cannot have."""


def _bind_pair(address: ListenAddress, reuse_port: bool, optional: bool, retry: bool,
               skipped: Skipped | None) -> list[tuple[Bound, socket.socket]]:
    """UDP then TCP on `address`; [] when `optional` and the host has no IPv6. `retry`: the
    port was picked by the kernel (port 0 asked), so a clash means "pick another"."""
    try:
        udp = bind_udp(address, reuse_port=reuse_port)
    except OSError as exc:
        if optional and exc.errno in NO_IPV6:
            if skipped is not None:
                skipped.reasons.append(f"{address}: {exc.strerror}")
            return []
        if retry and exc.errno == errno.EADDRINUSE:
            raise _PortTaken() from None
        raise ListenError(f"cannot listen on udp {address}: {exc.strerror}") from None
    actual = ListenAddress(address.host, udp.getsockname()[1])
    try:
        tcp = bind_tcp(actual, reuse_port=reuse_port)
    except OSError as exc:
        udp.close()
        if retry and exc.errno == errno.EADDRINUSE:
            raise _PortTaken() from None
        raise ListenError(f"cannot listen on tcp {actual}: {exc.strerror}") from None
    return [(Bound("udp", actual), udp), (Bound("tcp", actual), tcp)]


def bind_http(routes: dict[str, tuple[ListenAddress | None, object]], skipped: Skipped | None = None) -> list[HttpListener]:
    """One listener per distinct address (`routes`: path -> (address or None, route));
    endpoints on the same address share it. On an error, those bound already are closed."""
    by_address: dict[ListenAddress, dict] = {}
    for path, (address, route) in routes.items():
        if address is not None:
            by_address.setdefault(address, {})[path] = route
    listeners: list[HttpListener] = []
    try:
        for address, paths in by_address.items():
            what = f"http ({', '.join(paths)})"
            if not address.everywhere:
                sock = _open(bind_tcp, address, what)
                listeners.append(HttpListener(ListenAddress(address.host, sock.getsockname()[1]), sock, paths))
                continue
            sock = _open(bind_tcp, ListenAddress(ANY_V4, address.port), what)
            port = sock.getsockname()[1]
            listeners.append(HttpListener(ListenAddress(ANY_V4, port), sock, paths))
            try:
                v6 = bind_tcp(ListenAddress(ANY_V6, port))
            except OSError as exc:
                if exc.errno not in NO_IPV6:
                    raise ListenError(f"cannot listen on {what} [::]:{port}: {exc.strerror}") from None
                if skipped is not None:
                    skipped.reasons.append(f"{what} [::]:{port}: {exc.strerror}")
            else:
                listeners.append(HttpListener(ListenAddress(ANY_V6, port), v6, paths))
    except ListenError:
        for listener in listeners:
            listener.sock.close()
        raise
    return listeners


def _open(bind: Callable[[ListenAddress], socket.socket], address: ListenAddress, what: str) -> socket.socket:
    try:
        return bind(address)
    except OSError as exc:
        raise ListenError(f"cannot listen on {what} {address}: {exc.strerror}") from None
