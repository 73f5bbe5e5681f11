"""Staying up and staying right under hostile clients (issue 7): TCP abuse, rate limiting,
the recursion allow list, minimal ANY. Everything through real sockets on loopback.

Clients outside the allow list are made by binding the client socket to another loopback
address (127.0.0.2): no namespace or root needed.
"""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import trio

from testkit.dnswire import rrs
from testkit.repo import DEMO, write
from testkit.stubdns import StubDNS

WEB = "web.shop.svc.cluster.local"
WAIT = 5.0


def query(name: str = WEB, rdtype: str = "A", qid: int = 0x4242) -> bytes:
    q = dns.message.make_query(name, rdtype)
    q.id = qid
    return q.to_wire()


async def tcp_ask(stream: trio.SocketStream, packet: bytes) -> bytes:
    await stream.send_all(struct.pack("!H", len(packet)) + packet)
    data = b""
    with trio.fail_after(WAIT):
        while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
            chunk = await stream.receive_some(65537)
            assert chunk, "the connection closed before the answer"
            data += chunk
    return data[2:]


async def closed(stream: trio.SocketStream, timeout: float) -> bool:
    """Whether the server closes `stream` within `timeout` seconds."""
    with trio.move_on_after(timeout):
        try:
            while await stream.receive_some(65537):
                pass
        except trio.BrokenResourceError:
            pass
        return True
    return False


async def udp_from(source: str, server, packet: bytes, timeout: float = 1.0) -> bytes | None:
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind((source, 0))
        await sock.sendto(packet, (server.host, server.port))
        with trio.move_on_after(timeout):
            return await sock.recv(65535)
    return None


# -- TCP ------------------------------------------------------------------------------------


async def test_many_idle_connections_do_not_lock_out_a_new_client(kdns):
    """At --tcp-max-connections the connection idle the longest makes room for a new one."""
    server = await kdns(DEMO, args=["--tcp-max-connections", "5", "--tcp-idle-timeout", "30"])
    idle = [await trio.open_tcp_stream(server.host, server.port) for _ in range(5)]
    for i, stream in enumerate(idle):  # each accepted and answered (the first one idle longest), then silent
        assert dns.message.from_wire(await tcp_ask(stream, query(qid=i))).id == i
    try:
        fresh = await trio.open_tcp_stream(server.host, server.port)
        async with fresh:
            reply = dns.message.from_wire(await tcp_ask(fresh, query()))
            assert rrs(reply.answer) == {f"{WEB}. 5 IN A 10.96.100.10"}
        assert await closed(idle[0], 2.0), "the oldest idle connection was reaped"
    finally:
        for stream in idle:
            await stream.aclose()


async def test_byte_a_second_sender_is_cut_off_while_others_are_answered(kdns, clock):
    """A query that trickles in is dropped after --tcp-message-timeout; meanwhile another
    client gets its answers. (Time between bytes passes on trio's clock: `clock.jump`.)"""
    server = await kdns(DEMO, args=["--tcp-message-timeout", "0.6", "--tcp-idle-timeout", "30"])
    slow = await trio.open_tcp_stream(server.host, server.port)
    packet = struct.pack("!H", len(query())) + query()
    async with slow, await trio.open_tcp_stream(server.host, server.port) as normal:
        cut = False
        with trio.fail_after(WAIT):
            for i, byte in enumerate(packet):
                try:
                    await slow.send_all(bytes([byte]))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    cut = True
                    break
                reply = dns.message.from_wire(await tcp_ask(normal, query(qid=i)))
                assert reply.id == i and reply.rcode() == dns.rcode.NOERROR
                clock.jump(0.2)
        assert cut or await closed(slow, 1.0)


async def test_huge_length_prefix_gets_no_answer_and_is_dropped(kdns):
    """A length prefix of 65535 followed by a few bytes: no answer, and the connection goes."""
    server = await kdns(DEMO, args=["--tcp-message-timeout", "0.5"])
    async with await trio.open_tcp_stream(server.host, server.port) as stream:
        await stream.send_all(b"\xff\xff" + query())
        assert await closed(stream, 3.0)
    assert (await server.query(WEB)).rcode() == dns.rcode.NOERROR


async def test_queries_per_connection_are_bounded(kdns):
    """After --tcp-max-queries answers kdns closes the connection (the client reconnects)."""
    server = await kdns(DEMO, args=["--tcp-max-queries", "3"])
    async with await trio.open_tcp_stream(server.host, server.port) as stream:
        for i in range(3):
            assert dns.message.from_wire(await tcp_ask(stream, query(qid=i))).id == i
        assert await closed(stream, 2.0)


# -- response rate limiting ----------------------------------------------------------------


async def test_rate_limiting_holds_back_a_flood_with_slips(kdns):
    """With --rrl-rate 5, a burst of 40 UDP queries from one client gets about 5 answers, plus
    every 2nd held-back one as a truncated reply (TC, no records); a client in another /24
    is not affected; TCP is never limited."""
    server = await kdns(DEMO, args=["--rrl-rate", "5", "--rrl-slip", "2"])
    replies = []
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        for i in range(40):
            await sock.sendto(query(qid=i), (server.host, server.port))
        with trio.move_on_after(1.0):
            while len(replies) < 40:
                replies.append(dns.message.from_wire(await sock.recv(65535)))
    full = [r for r in replies if not r.flags & dns.flags.TC]
    slipped = [r for r in replies if r.flags & dns.flags.TC]
    assert 4 <= len(full) <= 7, len(full)
    assert 15 <= len(slipped) <= 19, len(slipped)
    assert all(not r.answer for r in slipped)
    other = await udp_from("127.0.1.1", server, query(qid=999))
    assert other is not None and not dns.message.from_wire(other).flags & dns.flags.TC
    assert rrs((await server.query(WEB, tcp=True)).answer) == {f"{WEB}. 5 IN A 10.96.100.10"}


async def test_slipped_replies_keep_the_opt_record(kdns):
    """A truncated reply slipped to an EDNS client still carries OPT (RFC 6891 section 7),
    so the client knows the server speaks EDNS when it retries over TCP."""
    server = await kdns(DEMO, args=["--rrl-rate", "1", "--rrl-slip", "1"])
    replies = []
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        for i in range(10):
            q = dns.message.make_query(WEB, "A", use_edns=0, payload=1232)
            q.id = i
            await sock.sendto(q.to_wire(), (server.host, server.port))
        with trio.move_on_after(1.0):
            while len(replies) < 10:
                replies.append(dns.message.from_wire(await sock.recv(65535)))
    slipped = [r for r in replies if r.flags & dns.flags.TC]
    assert len(slipped) >= 7, len(slipped)
    assert all(r.edns == 0 and not r.answer for r in slipped)


async def test_no_rate_limiting_by_default(demo):
    for i in range(30):
        reply = await demo.query(WEB)
        assert not reply.flags & dns.flags.TC and reply.answer


# -- recursion only for allowed clients ------------------------------------------------------


async def test_recursion_refused_outside_the_allow_list(kdns, nursery):
    """Names that would be forwarded are forwarded for allowed clients only: 127.0.0.2 is
    outside --allow-recursion 127.0.0.1/32 and gets REFUSED, while cluster names are answered
    for everyone and an ExternalName gets its CNAME alone."""
    upstream = StubDNS("example.org. 300 IN A 127.0.0.77", "payments.example.com. 300 IN A 127.0.0.78")
    port = await nursery.start(upstream.serve)
    server = await kdns(DEMO, args=["--upstream", f"127.0.0.1:{port}", "--allow-recursion", "127.0.0.1/32"])
    allowed = dns.message.from_wire(await udp_from("127.0.0.1", server, query("example.org")))
    assert rrs(allowed.answer) == {"example.org. 30 IN A 127.0.0.77"}
    refused = dns.message.from_wire(await udp_from("127.0.0.2", server, query("example.org")))
    assert refused.rcode() == dns.rcode.REFUSED and not refused.answer
    cluster = dns.message.from_wire(await udp_from("127.0.0.2", server, query(WEB)))
    assert rrs(cluster.answer) == {f"{WEB}. 5 IN A 10.96.100.10"}
    external = dns.message.from_wire(await udp_from("127.0.0.2", server, query("payments.shop.svc.cluster.local")))
    assert external.rcode() == dns.rcode.NOERROR
    assert rrs(external.answer) == {"payments.shop.svc.cluster.local. 5 IN CNAME payments.example.com."}
    assert upstream.count("example.org") == 1 and upstream.count("payments.example.com") == 0


async def test_recursion_refused_for_a_late_answer_too(kdns, nursery):
    """A query made late by kdns.testing's `delay` fault goes through the same slow path as
    any other: outside the allow list, a name that would be forwarded is REFUSED after the
    delay, and the upstream is never asked for it (the late path once skipped the check)."""
    from kdns.testing.match import name_pattern
    from kdns.testing.querylog import QueryLog
    from kdns.testing.tap import TestTap, make_fault

    upstream = StubDNS("example.org. 300 IN A 127.0.0.77")
    port = await nursery.start(upstream.serve)
    server = await kdns(DEMO, args=["--upstream", f"127.0.0.1:{port}", "--allow-recursion", "127.0.0.1/32"])
    tap = TestTap(QueryLog("cluster.local", "default"))
    tap.faults.append(make_fault("delay", name_pattern("example.org.", "cluster.local", "default"), 0.1))
    server.server.state.tap = tap
    refused = dns.message.from_wire(await udp_from("127.0.0.2", server, query("example.org"), timeout=WAIT))
    assert refused.rcode() == dns.rcode.REFUSED and not refused.answer
    assert upstream.count("example.org") == 0
    allowed = dns.message.from_wire(await udp_from("127.0.0.1", server, query("example.org"), timeout=WAIT))
    assert rrs(allowed.answer) == {"example.org. 30 IN A 127.0.0.77"}
    assert [(q.name, q.client, q.rcode) for q in tap.queries] == [("example.org", "127.0.0.2", "REFUSED"), ("example.org", "127.0.0.1", "NOERROR")]


async def test_refused_recursion_with_a_long_cname_chain_fits_udp(kdns, nursery, tmp_path):
    """A client outside the allow list asks for an ExternalName whose chain of long CNAMEs
    (inside the cluster, then out) is bigger than 512 bytes: over UDP without EDNS it gets
    TC within 512 bytes, over TCP the whole chain; the upstream is never asked."""
    upstream = StubDNS("example.org. 300 IN A 127.0.0.77")
    port = await nursery.start(upstream.serve)
    names = [f"{'a' * 60}-{i}" for i in range(8)]
    docs = ["apiVersion: v1\nkind: Namespace\nmetadata: {name: chain}\n"]
    for i, name in enumerate(names):
        target = f"{names[i + 1]}.chain.svc.cluster.local" if i + 1 < len(names) else f"{'x' * 60}.example.org"
        docs.append(f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: chain}}\n"
                    f"spec: {{type: ExternalName, externalName: {target}}}\n")
    manifest = write(tmp_path / "chain.yaml", "---\n".join(docs))
    server = await kdns(manifest, args=["--upstream", f"127.0.0.1:{port}", "--allow-recursion", "127.0.0.1/32"])
    first = f"{names[0]}.chain.svc.cluster.local"
    data = await udp_from("127.0.0.2", server, query(first))
    assert data is not None and len(data) <= 512, len(data or b"")
    reply = dns.message.from_wire(data)
    assert reply.flags & dns.flags.TC and not reply.answer
    async with await trio.open_tcp_stream(server.host, server.port, local_address="127.0.0.2") as stream:
        over_tcp = dns.message.from_wire(await tcp_ask(stream, query(first)))
    assert over_tcp.rcode() == dns.rcode.NOERROR and not over_tcp.flags & dns.flags.TC
    assert [rrset.rdtype for rrset in over_tcp.answer] == [dns.rdatatype.CNAME] * 8
    assert len(over_tcp.to_wire()) > 512
    assert upstream.count(f"{'x' * 60}.example.org") == 0


def forwarded_replays(server) -> int:
    """Replies made from the forwarding cache and then replayed (by the C loop or Python's),
    as the listeners counted them (their statistics keys say which cache hit they are)."""
    return sum(n for stats in server.server.listener_stats() for key, n in stats.counts.items() if key is not None and len(key) > 5)


def burst(packets: list[tuple[str, bytes]], server, timeout: float = WAIT) -> dict[int, bytes]:
    """Send every (source address, packet) with blocking sockets, before kdns (in this trio
    loop) reads any, so that they reach it in one batch; {query ID: reply} as they come back."""
    import socket

    socks = {}
    try:
        for source, _ in packets:
            if source not in socks:
                socks[source] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks[source].bind((source, 0))
        for source, packet in packets:
            socks[source].sendto(packet, (server.host, server.port))
        return {qid: reply for sock in socks.values() for qid, reply in _drain(sock, timeout)}
    finally:
        for sock in socks.values():
            sock.close()


def _drain(sock, timeout: float) -> list[tuple[int, bytes]]:
    sock.settimeout(timeout)
    got = []
    try:
        while True:
            data = sock.recv(65535)
            got.append((struct.unpack("!H", data[:2])[0], data))
            sock.settimeout(0.3)
    except OSError:  # (socket.timeout: no more replies)
        return got


@pytest.mark.parametrize("loop", ["c", "python"])
async def test_replayed_forwarded_answers_only_reach_allowed_clients(kdns, nursery, monkeypatch, loop):
    """A fresh answer from the forwarding cache is answered where it arrives and then replayed
    for the same query bytes (by the C loop, or the Python loop) while its TTLs stand; a
    client outside --allow-recursion sending the very same bytes, in the same burst, still
    gets REFUSED, never the replayed answer. The upstream is asked once."""
    from kdns.serve import udp

    if loop == "c" and udp._udpbatch is None:
        pytest.skip("kdns/_udpbatch.c is not built here")
    monkeypatch.setenv("KDNS_PURE_PYTHON", "1" if loop == "python" else "0")
    upstream = StubDNS("example.org. 300 IN A 127.0.0.77")
    port = await nursery.start(upstream.serve)
    server = await kdns(DEMO, args=["--upstream", f"127.0.0.1:{port}", "--allow-recursion", "127.0.0.1/32"])
    assert server.server.c_loop is (loop == "c")
    warm = dns.message.from_wire(await udp_from("127.0.0.1", server, query("example.org")))
    assert rrs(warm.answer) == {"example.org. 30 IN A 127.0.0.77"}  # asked upstream, now cached
    for attempt in range(3):  # (a burst that straddles the turn of a second replays nothing)
        fresh = await udp_from("127.0.0.1", server, query("example.org", qid=0x0F00 + attempt))  # a cache hit: kept for replay
        assert fresh is not None and addresses_of(dns.message.from_wire(fresh)) == {"127.0.0.77"}
        before = forwarded_replays(server)
        packets = [("127.0.0.1" if i % 2 == 0 else "127.0.0.2", query("example.org", qid=0x1000 * attempt + i)) for i in range(20)]
        replies = await trio.to_thread.run_sync(burst, packets, server)
        assert sorted(replies) == sorted(struct.unpack("!H", p[:2])[0] for _, p in packets)
        for source, packet in packets:
            reply = dns.message.from_wire(replies[struct.unpack("!H", packet[:2])[0]])
            if source == "127.0.0.1":
                assert reply.rcode() == dns.rcode.NOERROR and addresses_of(reply) == {"127.0.0.77"}
            else:
                assert reply.rcode() == dns.rcode.REFUSED and not reply.answer, "a replayed forwarded answer reached a refused client"
        if forwarded_replays(server) >= before + 10:  # every allowed query of the burst
            break
    else:
        pytest.fail("no forwarded answer was replayed in three bursts")
    assert upstream.count("example.org") == 1


def addresses_of(reply: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in reply.answer for rd in rrset}


async def test_recursion_allowed_for_private_ranges_by_default(kdns, nursery):
    upstream = StubDNS("example.org. 300 IN A 127.0.0.77")
    port = await nursery.start(upstream.serve)
    server = await kdns(DEMO, args=["--upstream", f"127.0.0.1:{port}"])
    reply = dns.message.from_wire(await udp_from("127.0.0.2", server, query("example.org")))
    assert rrs(reply.answer) == {"example.org. 30 IN A 127.0.0.77"}


# -- amplification ---------------------------------------------------------------------------


async def test_any_gets_one_rrset(kdns):
    """ANY on a name with A, AAAA and SRV records returns one RRset (RFC 8482), small."""
    server = await kdns(DEMO)
    reply = await server.query(WEB, "ANY")
    assert len(reply.answer) == 1 and len(reply.to_wire()) < 120
