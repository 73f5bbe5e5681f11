"""DNS over TCP: two-byte length framing, several queries per connection, idle timeout.

Each connection is read in chunks; every complete message in the buffer is answered in
order. A connection that sends nothing for `idle_timeout` seconds is closed, which also
bounds how long a length prefix larger than what follows can hold a connection open.
Messages that cannot be answered (shorter than a header, a response) get no reply, and the
connection carries on with the next message: the framing is still intact.
"""

from __future__ import annotations

import logging
import socket
from functools import partial

import trio

from kdns import upstream
from kdns.config import ListenAddress
from kdns.responder import Forward, Responder
from kdns.serve.forward import Forwarder

log = logging.getLogger("kdns.tcp")

MAX_MESSAGE = 65535
BACKLOG = 128


def bind_tcp(address: ListenAddress) -> socket.socket:
    """A bound, listening TCP socket (raises OSError, e.g. EADDRINUSE)."""
    family = socket.AF_INET6 if address.family == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address.host, address.port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_tcp(sock: socket.socket, responder: Responder, idle_timeout: float, forwarder: Forwarder | None = None) -> None:
    """Accept and serve connections on the listening `sock` until cancelled."""
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    handler = partial(_connection, responder=responder, idle_timeout=idle_timeout, forwarder=forwarder)
    await trio.serve_listeners(handler, [listener])


async def _connection(stream: trio.SocketStream, *, responder: Responder, idle_timeout: float, forwarder: Forwarder | None) -> None:
    buffer = bytearray()
    try:
        client = stream.socket.getpeername()[0]
    except OSError:
        return  # gone already
    async with stream:
        try:
            while True:
                with trio.move_on_after(idle_timeout) as idle:
                    chunk = await stream.receive_some(MAX_MESSAGE + 2)
                if idle.cancelled_caught or not chunk:
                    return  # idle for too long, or the client closed its side
                buffer += chunk
                while len(buffer) >= 2:
                    size = buffer[0] << 8 | buffer[1]
                    if len(buffer) < 2 + size:
                        break
                    message = bytes(buffer[2 : 2 + size])
                    del buffer[: 2 + size]
                    reply = _answer(responder, message, client)
                    if type(reply) is Forward:
                        reply = await forwarder.reply(reply) if forwarder is not None else upstream.failure(reply.query)
                    if reply is not None:
                        with trio.move_on_after(idle_timeout) as stuck:
                            await stream.send_all(len(reply).to_bytes(2, "big") + reply)
                        if stuck.cancelled_caught:
                            return  # the client does not read its answers
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("tcp connection ended: %s", exc)


def _answer(responder: Responder, message: bytes, client: str) -> bytes | Forward | None:
    try:
        return responder.handle(message, MAX_MESSAGE, client)
    except Exception:  # a bug in the serving core: log it, keep serving
        log.exception("tcp: failed to handle a %d-byte message", len(message))
        return None
