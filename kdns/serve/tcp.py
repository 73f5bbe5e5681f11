"""DNS over TCP: two-byte length framing, several queries per connection, idle timeout,
and a graceful drain at shutdown.

Each connection is read in chunks; every complete message in the buffer is answered in
order. A connection that sends nothing for `idle_timeout` seconds is closed, which also
bounds how long a length prefix larger than what follows can hold a connection open.
Messages that cannot be answered (shorter than a header, a response) get no reply, and the
connection carries on with the next message: the framing is still intact.

`TcpServer.drain()` stops accepting, closes connections that are waiting for a query, and
lets the ones in the middle of a query finish theirs.
"""

from __future__ import annotations

import logging
import socket
import time

import trio

from kdns import upstream
from kdns.config import ListenAddress
from kdns.responder import Forward
from kdns.serve import Serving, fault_reply, notify, question_name
from kdns.stats import QueryStats

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


class TcpServer:
    def __init__(self, sock: socket.socket, state: Serving, stats: QueryStats, idle_timeout: float):
        self.sock = sock
        self.state = state
        self.stats = stats
        self.idle_timeout = idle_timeout
        self.draining = False
        self.active = 0  # open connections
        self._accepting = trio.CancelScope()
        self._waiting: set[trio.CancelScope] = set()  # connections idle between queries

    async def serve(self) -> None:
        """Accept and serve connections until cancelled, or until drained and all are done."""
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self.sock))
        async with trio.open_nursery() as connections:
            with self._accepting:
                await trio.serve_listeners(self._connection, [listener], handler_nursery=connections)

    def drain(self) -> None:
        self.draining = True
        self._accepting.cancel()
        for scope in list(self._waiting):
            scope.cancel()

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.active += 1
        try:
            await self._serve_connection(stream)
        finally:
            self.active -= 1

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        buffer = bytearray()
        try:
            client = stream.socket.getpeername()
        except OSError:
            return  # gone already
        async with stream:
            try:
                while not self.draining:
                    with trio.move_on_after(self.idle_timeout) as idle:
                        self._waiting.add(idle)
                        try:
                            chunk = await stream.receive_some(MAX_MESSAGE + 2)
                        finally:
                            self._waiting.discard(idle)
                    if idle.cancelled_caught or not chunk:
                        return  # idle for too long, draining, or the client closed its side
                    buffer += chunk
                    while len(buffer) >= 2:
                        size = buffer[0] << 8 | buffer[1]
                        if len(buffer) < 2 + size:
                            break
                        message = bytes(buffer[2 : 2 + size])
                        del buffer[: 2 + size]
                        reply = await self._answer(message, client)
                        if reply is not None:
                            with trio.move_on_after(self.idle_timeout) as stuck:
                                await stream.send_all(len(reply).to_bytes(2, "big") + reply)
                            if stuck.cancelled_caught:
                                return  # the client does not read its answers
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                log.debug("tcp connection ended: %s", exc)

    async def _answer(self, message: bytes, client) -> bytes | None:
        state = self.state
        if state.faults:  # kdns.testing's fault switches
            fault = state.faults.get(question_name(message) or "")
            if fault is not None:
                if fault.delay:
                    await trio.sleep(fault.delay)
                else:
                    reply = fault_reply(fault, message)
                    notify(state, "tcp", client, message, reply)
                    return reply
        try:
            reply = state.responder.handle(message, MAX_MESSAGE, client[0], self.stats)
        except Exception:  # a bug in the serving core: log it, keep serving
            log.exception("tcp: failed to handle a %d-byte message", len(message))
            return None
        if type(reply) is Forward:
            started = time.perf_counter()
            fwd = reply
            reply = await state.forwarder.reply(fwd) if state.forwarder is not None else upstream.failure(fwd.query)
            state.responder.count(self.stats, message, reply, time.perf_counter() - started)
        notify(state, "tcp", client, message, reply)
        return reply
