"""TCP clients that send queries and never read the answers (issue 13), through real sockets.

The hostile client binds its sockets to 127.0.0.2 (a loopback address of its own: no root
needed), shrinks its receive buffer and pipelines thousands of queries without reading, so
that kdns's send buffer for the connection fills. A normal client asks from 127.0.0.1.
"""

from __future__ import annotations

import socket
import struct

import dns.message
import dns.rcode
import trio

from testkit.dnswire import rrs
from testkit.repo import DEMO

WEB = "web.shop.svc.cluster.local"
WAIT = 5.0
FLOOD = 4000  # queries pipelined on one connection: ~250 KB of replies, more than the buffers hold


def framed(qid: int) -> bytes:
    q = dns.message.make_query(WEB, "A")
    q.id = qid
    data = q.to_wire()
    return struct.pack("!H", len(data)) + data


async def non_reader(server, source: str = "127.0.0.2") -> trio.SocketStream:
    """A connection from `source` that has sent FLOOD queries (as far as kdns took them) and
    reads nothing."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.bind((source, 0))
    await sock.connect((server.host, server.port))
    stream = trio.SocketStream(sock)
    payload = b"".join(framed(i % 65536) for i in range(FLOOD))
    with trio.move_on_after(1.0):  # kdns stops reading once it cannot send
        try:
            await stream.send_all(payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    return stream


async def wait_until(condition, timeout: float = WAIT) -> bool:
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(0.05)
        return True
    return False


async def normal_query(server) -> dns.message.Message:
    q = dns.message.make_query(WEB, "A")
    async with await trio.open_tcp_stream(server.host, server.port) as stream:
        await stream.send_all(struct.pack("!H", len(q.to_wire())) + q.to_wire())
        data = b""
        with trio.fail_after(WAIT):
            while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
                chunk = await stream.receive_some(65537)
                assert chunk, "kdns closed the connection before answering"
                data += chunk
    return dns.message.from_wire(data[2:])


async def test_a_client_that_does_not_read_is_closed_soon(kdns):
    """Its replies fill the connection's send buffer; kdns closes the connection once a reply
    has waited --tcp-send-timeout (2 s by default) for room, long before the 30 s idle timeout."""
    server = await kdns(DEMO, args=["--tcp-idle-timeout", "30"])
    tcp = server.server._tcp[0]
    stream = await non_reader(server)
    async with stream:
        assert tcp.active == 1
        assert await wait_until(lambda: tcp.active == 0), "the connection was not closed"
        assert tcp.stuck == 1
    reply = await normal_query(server)
    assert rrs(reply.answer) == {f"{WEB}. 5 IN A 10.96.100.10"}


async def test_one_client_cannot_take_every_tcp_slot(kdns):
    """With room for 10 connections and 3 per client, a client opening 10 connections that
    never read holds 3 at most; a client from another address is answered meanwhile."""
    server = await kdns(DEMO, args=["--tcp-max-connections", "10", "--tcp-max-per-client", "3", "--tcp-idle-timeout", "30",
                                    "--tcp-send-timeout", "30"])
    tcp = server.server._tcp[0]
    streams = [await non_reader(server) for _ in range(10)]
    try:
        assert await wait_until(lambda: tcp.active <= 3)
        assert tcp.active >= 1
        reply = await normal_query(server)
        assert reply.rcode() == dns.rcode.NOERROR and rrs(reply.answer) == {f"{WEB}. 5 IN A 10.96.100.10"}
    finally:
        for stream in streams:
            await stream.aclose()


async def test_http_connections_are_capped_and_the_endpoints_keep_answering(kdns):
    """Idle connections to an HTTP listener past its cap are closed unread, and /health
    answers again once one of them goes (issue 13: nothing a client sends grows a table)."""
    from kdns.observe import MAX_HTTP_CONNECTIONS

    server = await kdns(DEMO, args=["--health", "127.0.0.1:0"])
    port = server.server.http_bound["/health"].port

    async def get_health() -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(4096):
                    data += chunk
            return data

    idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(MAX_HTTP_CONNECTIONS)]
    try:
        await trio.sleep(0.2)  # (the server has accepted them all)
        assert await get_health() == b""  # one too many: closed unread
        await idle.pop().aclose()
        for _ in range(50):  # (until the server has seen that one go)
            got = await get_health()
            if got:
                break
            await trio.sleep(0.05)
        assert got.startswith(b"HTTP/1.1 200 OK")
    finally:
        for stream in idle:
            await stream.aclose()
