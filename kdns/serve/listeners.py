"""Binding the sockets kdns listens on: DNS over UDP and TCP on the same port, and HTTP.

Everything here runs before anything is served, so that a port in use is a start-up error
with one line saying which (`ListenError`). Port 0 asks for a free port; UDP and TCP then
get the same one (`bind_dns` retries until both are free).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass

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


def bind_dns(address: ListenAddress, *, reuse_port: bool = False) -> list[tuple[Bound, socket.socket]]:
    """UDP and TCP on the same port; with port 0, retry until both get the same one."""
    for _ in range(PORT_TRIES):
        udp = _open(lambda a: bind_udp(a, reuse_port=reuse_port), address, "udp")
        actual = ListenAddress(address.host, udp.getsockname()[1])
        try:
            tcp = bind_tcp(actual, reuse_port=reuse_port)
        except OSError as exc:
            udp.close()
            if address.port == 0 and exc.errno == errno.EADDRINUSE:
                continue  # that free UDP port is taken for TCP: pick another
            raise ListenError(f"cannot listen on tcp {actual}: {exc.strerror}") from None
        return [(Bound("udp", actual), udp), (Bound("tcp", actual), tcp)]
    raise ListenError(f"cannot find a port free for both udp and tcp on {address.host}")


def bind_http(routes: dict[str, tuple[ListenAddress | None, Callable]]) -> list[HttpListener]:
    """One listener per distinct address (`routes`: path -> (address or None, route));
    endpoints on the same address share it. On an error, those bound already are closed."""
    by_address: dict[ListenAddress, dict] = {}
    for path, (address, route) in routes.items():
        if address is not None:
            by_address.setdefault(address, {})[path] = route
    listeners: list[HttpListener] = []
    try:
        for address, paths in by_address.items():
            sock = _open(bind_tcp, address, f"http ({', '.join(paths)})")
            listeners.append(HttpListener(ListenAddress(address.host, sock.getsockname()[1]), sock, paths))
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
