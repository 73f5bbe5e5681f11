"""DNS over TCP: two-byte length framing, several queries per connection, idle timeout,
and a graceful drain at shutdown.

Each connection is read in chunks; every complete message in the buffer is answered in
order. A connection that sends nothing for `idle_timeout` seconds is closed, which also
bounds how long a length prefix larger than what follows can hold a connection open.
Messages that cannot be answered (shorter than a header, a response) get no reply, and the
connection carries on with the next message: the framing is still intact.

What one client can hold is bounded: each connection's kernel buffers are set to
`SOCKET_BUFFER` bytes each way (the kernel doubles it for its bookkeeping), a reply the client
does not take within `send_timeout` closes the connection (its send buffer stayed full: it
sends queries and does not read the answers), and one client address may have at most
`max_per_client` connections open: beyond, its own connection idle the longest is closed, or
the new one. So one client cannot take every slot of `max_connections`.

`TcpServer.drain()` stops accepting, closes connections that are waiting for a query, and
lets the ones in the middle of a query finish theirs.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import trio

from kdns.config import ServeConfig
from kdns.serve.serving import MAX_TCP, Pending, Serving
from kdns.stats import QueryStats
from kdns.transfer import Transfer

log = logging.getLogger("kdns.tcp")

MAX_MESSAGE = MAX_TCP
SOCKET_BUFFER = 64 << 10  # SO_SNDBUF and SO_RCVBUF of each connection: one largest message fits


@dataclass(frozen=True)
class TcpLimits:
    idle_timeout: float  # --tcp-idle-timeout: between queries
    message_timeout: float  # --tcp-message-timeout: from the first byte of a query to its last
    max_connections: int  # --tcp-max-connections: beyond, the longest idle connection goes, or the new one
    max_queries: int  # --tcp-max-queries: per connection, then it is closed
    max_per_client: int = 100  # --tcp-max-per-client: connections from one address
    send_timeout: float = 2.0  # --tcp-send-timeout: for the client to take one reply

    @classmethod
    def of(cls, config: ServeConfig) -> TcpLimits:
        return cls(config.tcp_idle_timeout, config.tcp_message_timeout, config.tcp_max_connections, config.tcp_max_queries,
                   config.tcp_max_per_client, config.tcp_send_timeout)


class TcpServer:
    def __init__(self, sock: socket.socket, state: Serving, stats: QueryStats, limits: TcpLimits):
        self.sock = sock
        self.state = state
        self.stats = stats
        self.limits = limits
        self.draining = False
        self.active = 0  # open connections
        self.reaped = 0  # idle connections closed to make room, or new ones refused (for metrics)
        self.stuck = 0  # connections closed because the client did not take a reply
        self._accepting = trio.CancelScope()
        # Connections idle between queries: their wait's cancel scope -> (since when, client address).
        self._waiting: dict[trio.CancelScope, tuple[float, str]] = {}
        self._clients: dict[str, int] = {}  # client address -> open connections

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

    @property
    def idle_timeout(self) -> float:
        return self.limits.idle_timeout

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            client = stream.socket.getpeername()
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                stream.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError:
            await stream.aclose()  # gone already
            return
        address = client[0]
        limits = self.limits
        if self._clients.get(address, 0) >= limits.max_per_client:
            room = self._make_room(address)  # its own idle connection goes, never someone else's
        else:
            room = self.active < limits.max_connections or self._make_room()
        if not room:
            self.reaped += 1
            await stream.aclose()  # full, and every connection is busy: this one goes at once
            return
        self.active += 1
        self._clients[address] = self._clients.get(address, 0) + 1
        try:
            await self._serve_connection(stream, client)
        finally:
            self.active -= 1
            left = self._clients.pop(address) - 1
            if left:
                self._clients[address] = left

    def _make_room(self, address: str | None = None) -> bool:
        """Close the connection that has been idle the longest (of `address`, if given), if any is idle."""
        idle = [(since, scope) for scope, (since, who) in self._waiting.items() if address is None or who == address]
        if not idle:
            return False
        oldest = min(idle, key=lambda pair: pair[0])[1]
        del self._waiting[oldest]
        oldest.cancel()
        self.reaped += 1
        return True

    async def _serve_connection(self, stream: trio.SocketStream, client: tuple) -> None:
        buffer = bytearray()
        answered = 0
        started = 0.0  # when the query now in `buffer` began to arrive
        limits = self.limits
        async with stream:
            try:
                while not self.draining:
                    if buffer:  # a query has begun: it must be whole within the message timeout
                        scope = trio.move_on_at(started + limits.message_timeout)
                    else:
                        scope = trio.move_on_after(limits.idle_timeout)
                        self._waiting[scope] = (trio.current_time(), client[0])
                    with scope:
                        try:
                            chunk = await stream.receive_some(MAX_MESSAGE + 2)
                        finally:
                            self._waiting.pop(scope, None)
                    if scope.cancelled_caught or not chunk:
                        return  # idle or slow for too long, reaped, draining, or closed by the client
                    if not buffer:
                        started = trio.current_time()
                    buffer += chunk
                    while len(buffer) >= 2:
                        size = buffer[0] << 8 | buffer[1]
                        if len(buffer) < 2 + size:
                            break
                        message = bytes(buffer[2 : 2 + size])
                        del buffer[: 2 + size]
                        started = trio.current_time()  # the next query's clock starts now
                        reply = await self._answer(message, client)
                        # A zone transfer is several messages, made one by one as the client takes them.
                        for part in _messages(reply):
                            with trio.move_on_after(limits.send_timeout) as stuck:
                                await stream.send_all(len(part).to_bytes(2, "big") + part)
                            if stuck.cancelled_caught:
                                self.stuck += 1
                                return  # the client does not read its answers
                        answered += 1
                        if answered >= limits.max_queries:
                            return  # enough for one connection: the client reconnects
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                log.debug("tcp connection ended: %s", exc)

    async def _answer(self, message: bytes, client) -> bytes | Transfer | None:
        reply = self.state.answer(message, client, self.stats)
        if isinstance(reply, Pending):
            return await self.state.finish(reply)
        return reply


def _messages(reply: bytes | Transfer | None) -> Iterable[bytes]:
    """What to send for one query: nothing, its reply, or a zone transfer's messages."""
    if reply is None:
        return ()
    if isinstance(reply, Transfer):
        return reply.messages
    return (reply,)
