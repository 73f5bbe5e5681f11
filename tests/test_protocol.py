"""The DNS protocol as a client sees it, over real UDP and TCP sockets on loopback.

EDNS0, UDP sizes and truncation, header bits, the memo of packed answers giving the same
bytes as the full path, hostile and malformed packets, TCP framing and idle timeouts, and an
IPv6 listener. Raw packets are built with dnspython (`make_query(...).to_wire()`) and edited
with struct; replies are checked byte by byte where the bytes are the point, and through
dnspython's parser otherwise.

"No reply" is never checked by waiting for a timeout: a sentinel query is sent after the
packets under test on the same socket, and kdns answers in order, so every reply that arrives
before the sentinel's answer is a reply to one of them.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from contextlib import asynccontextmanager
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest
import trio
import trio.testing

from testkit.dnswire import (
    AA,
    CD,
    DEMO_QUESTIONS,
    FORMERR,
    KUBERNETES,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    QR,
    RA,
    RD,
    REFUSED,
    SENTINEL_ID,
    SENTINEL_NAME,
    TC,
    TIMEOUT,
    WEB,
    frame,
    header,
    is_sentinel_reply,
    parse,
    qsection,
    query,
    rcode,
    rrs,
    with_counts,
    with_flags,
)
from testkit.repo import DEMO, have_ipv6_loopback, write

# --- helpers -------------------------------------------------------------------------------


def memoized(running, name: str, rdtype: str) -> bool:
    """Whether kdns holds a packed answer for (name, type): the next such query takes the fast path."""
    key = dns.name.from_text(name).canonicalize().to_wire()
    tail = struct.pack("!HH", dns.rdatatype.from_text(rdtype), 1)
    return tail in running.server.responder.memo.get(key, {})


@asynccontextmanager
async def udp_socket(running):
    family = trio.socket.AF_INET6 if ":" in running.host else trio.socket.AF_INET
    with trio.socket.socket(family, trio.socket.SOCK_DGRAM) as sock:
        await sock.connect((running.host, running.port))
        yield sock


async def udp_ask(sock, packet: bytes) -> bytes:
    """Send one packet, return the reply (fails the test if none comes)."""
    await sock.send(packet)
    with trio.fail_after(TIMEOUT):
        return await sock.recv(65535)


async def udp_replies(sock, packets: list[bytes]) -> list[bytes]:
    """Send `packets` then the sentinel; every reply that came before the sentinel's answer."""
    for packet in packets:
        await sock.send(packet)
    await sock.send(query(SENTINEL_NAME, qid=SENTINEL_ID))
    got = []
    with trio.fail_after(TIMEOUT):
        while True:
            reply = await sock.recv(65535)
            if is_sentinel_reply(reply):
                assert rcode(reply) == NOERROR and header(reply)[3] == 1, "the sentinel itself must be answered"
                return got
            got.append(reply)
            assert len(got) <= len(packets), "more replies than packets"


class Framed:
    """DNS over TCP from the client side: two-byte length framing over a trio stream."""

    def __init__(self, stream: trio.SocketStream):
        self.stream = stream
        self.buffer = bytearray()

    async def send(self, *messages: bytes) -> None:
        await self.stream.send_all(b"".join(frame(m) for m in messages))

    async def recv(self) -> bytes | None:
        """The next whole message, or None when the server closed the connection."""
        while True:
            if len(self.buffer) >= 2:
                size = int.from_bytes(self.buffer[:2], "big")
                if len(self.buffer) >= 2 + size:
                    message = bytes(self.buffer[2 : 2 + size])
                    del self.buffer[: 2 + size]
                    return message
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                assert not self.buffer, "connection closed in the middle of a message"
                return None
            self.buffer += chunk


@asynccontextmanager
async def tcp(running):
    stream = await running.tcp_connect()
    async with stream:
        yield Framed(stream)


async def tcp_ask(conn: Framed, packet: bytes) -> bytes:
    await conn.send(packet)
    with trio.fail_after(TIMEOUT):
        reply = await conn.recv()
    assert reply is not None, "connection closed instead of answering"
    return reply


async def tcp_replies(conn: Framed, messages: list[bytes]) -> list[bytes]:
    """Send `messages` then the sentinel on one connection; the replies before the sentinel's."""
    await conn.send(*messages, query(SENTINEL_NAME, qid=SENTINEL_ID))
    got = []
    with trio.fail_after(TIMEOUT):
        while True:
            reply = await conn.recv()
            assert reply is not None, "connection closed before the sentinel was answered"
            if is_sentinel_reply(reply):
                return got
            got.append(reply)
            assert len(got) <= len(messages), "more replies than messages"


async def assert_serving(running) -> None:
    """A well-formed query is answered correctly over UDP and TCP."""
    for over_tcp in (False, True):
        r = await running.query(KUBERNETES, "A", tcp=over_tcp)
        assert r.rcode() == dns.rcode.NOERROR
        assert rrs(r.answer) == {f"{KUBERNETES}. 5 IN A 10.96.0.1"}


async def ask(running, packet: bytes, *, over_tcp: bool = False) -> bytes:
    """One packet over a fresh UDP socket or TCP connection; its reply."""
    if over_tcp:
        async with tcp(running) as conn:
            return await tcp_ask(conn, packet)
    async with udp_socket(running) as sock:
        return await udp_ask(sock, packet)


async def replies_to(running, packets: list[bytes], *, over_tcp: bool = False) -> list[bytes]:
    """The replies kdns sends to `packets` (see `udp_replies`), over UDP or one TCP connection."""
    if over_tcp:
        async with tcp(running) as conn:
            return await tcp_replies(conn, packets)
    async with udp_socket(running) as sock:
        return await udp_replies(sock, packets)


def headless(namespace: str, name: str, ips: list[str]) -> str:
    """A headless Service with one named port and one EndpointSlice of ready, nameless endpoints."""
    endpoints = "\n".join(f'  - addresses: ["{ip}"]' for ip in ips)
    return f"""---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  clusterIP: None
  ports:
    - {{name: http, port: 80, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-slice
  namespace: {namespace}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
endpoints:
{endpoints}
ports:
  - {{name: http, port: 80, protocol: TCP}}
"""


MANY = "many.big.svc.cluster.local"  # 100 endpoints: 100 A records (~1650 bytes) fit no UDP reply
MID = "mid.big.svc.cluster.local"  # 60 endpoints: 60 A records (~1000 bytes) need EDNS
FEW = "few.big.svc.cluster.local"  # 8 endpoints: 8 SRV records fit 512 bytes, their glue does not
MANY_IPS = [f"10.1.{i // 200}.{i % 200 + 1}" for i in range(100)]
MID_IPS = [f"10.2.0.{i + 1}" for i in range(60)]
FEW_IPS = [f"10.3.0.{i + 1}" for i in range(8)]


@pytest.fixture
async def big(kdns, tmp_path: Path):
    """kdns serving headless Services with many endpoints (namespace `big`)."""
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: big}\n"
    text += headless("big", "many", MANY_IPS) + headless("big", "mid", MID_IPS) + headless("big", "few", FEW_IPS)
    return await kdns(write(tmp_path / "big.yaml", text))


# --- EDNS0 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("over_tcp", [False, True], ids=["udp", "tcp"])
async def test_edns_query_gets_opt_with_payload_1232(demo, over_tcp):
    """A query with EDNS0 gets an OPT record back: version 0, UDP size 1232, DO clear."""
    for _ in range(2):  # fresh, then from the memo
        r = await demo.query(WEB, "A", tcp=over_tcp, use_edns=0, payload=4096)
        assert r.rcode() == dns.rcode.NOERROR
        assert r.edns == 0
        assert r.payload == 1232
        assert not r.ednsflags & dns.flags.DO
        assert rrs(r.answer) == {f"{WEB}. 5 IN A 10.96.100.10"}


@pytest.mark.parametrize("name,rdtype", [(WEB, "A"), ("nope.shop.svc.cluster.local", "A"), ("example.com", "A")])
async def test_edns_do_bit_is_echoed(demo, name, rdtype):
    """DO set in the query is set in the reply's OPT (positive, negative and refused answers)."""
    for _ in range(2):
        r = await demo.query(name, rdtype, use_edns=0, want_dnssec=True)
        assert r.edns == 0 and r.payload == 1232
        assert r.ednsflags & dns.flags.DO
        r = await demo.query(name, rdtype, use_edns=0, want_dnssec=False)
        assert r.edns == 0 and not r.ednsflags & dns.flags.DO


async def test_edns_opt_bytes(demo):
    """The OPT record is exactly: root owner, type 41, size 1232, rcode/version 0, flags, no data."""
    async with udp_socket(demo) as sock:
        for want_dnssec, flags in ((False, 0), (True, 0x8000)):
            packet = query(WEB, "A", use_edns=0, want_dnssec=want_dnssec)
            reply = await udp_ask(sock, packet)
            assert header(reply)[5] == 1
            assert reply.endswith(b"\x00\x00\x29" + struct.pack("!HBBHH", 1232, 0, 0, flags, 0))


async def test_edns_options_in_query_are_accepted(demo):
    """An OPT carrying options (a cookie, client subnet) is still EDNS0: answered, OPT returned."""
    options = [dns.edns.GenericOption(10, b"\x01" * 8), dns.edns.ECSOption("192.0.2.0", 24)]
    for _ in range(2):
        r = await demo.query(WEB, "A", use_edns=0, options=options)
        assert r.rcode() == dns.rcode.NOERROR and r.edns == 0 and r.payload == 1232
        assert rrs(r.answer) == {f"{WEB}. 5 IN A 10.96.100.10"}


@pytest.mark.parametrize("name,rdtype", [(WEB, "A"), ("nope.shop.svc.cluster.local", "A"), ("cluster.local", "SOA")])
async def test_no_edns_no_opt(demo, name, rdtype):
    """A query without EDNS gets a reply without an OPT record."""
    async with udp_socket(demo) as sock:
        for _ in range(2):
            reply = await udp_ask(sock, query(name, rdtype))
            r = parse(reply)
            assert r.edns == -1 and r.opt is None
            assert all(rrset.rdtype != dns.rdatatype.OPT for rrset in r.additional)


@pytest.mark.parametrize("over_tcp", [False, True], ids=["udp", "tcp"])
async def test_edns_version_1_gets_badvers(demo, over_tcp):
    """EDNS version 1 gets BADVERS with our version 0 and no answer, even once the name is memoized."""
    await demo.query(WEB, "A", use_edns=0)  # the version-0 answer is now in the memo
    assert memoized(demo, WEB, "A")
    for _ in range(2):
        r = await demo.query(WEB, "A", tcp=over_tcp, use_edns=1)
        assert r.rcode() == dns.rcode.BADVERS
        assert r.edns == 0 and r.payload == 1232
        assert not r.answer and not r.authority
        assert r.question[0].name == dns.name.from_text(WEB)


# --- UDP size and truncation ---------------------------------------------------------------


async def test_demo_replies_fit_512_without_edns(demo):
    """Without EDNS every reply about the demo cluster is at most 512 bytes (and not truncated)."""
    async with udp_socket(demo) as sock:
        for name, rdtype, _ in DEMO_QUESTIONS:
            reply = await udp_ask(sock, query(name, rdtype))
            assert len(reply) <= 512, (name, rdtype)
            assert not header(reply)[1] & TC, (name, rdtype)


async def test_big_answer_is_truncated_without_edns(big):
    """60 A records do not fit 512 bytes: TC=1, question echoed, no records, at most 512 bytes."""
    async with udp_socket(big) as sock:
        packet = query(MID, "A", qid=0x4242)
        for _ in range(2):
            reply = await udp_ask(sock, packet)
            qid, flags, qd, an, ns, ar = header(reply)
            assert len(reply) <= 512
            assert qid == 0x4242 and flags & TC and flags & QR
            assert (qd, an, ns, ar) == (1, 0, 0, 0)
            assert qsection(reply) == qsection(packet)
            assert rcode(reply) == NOERROR


async def test_edns_1232_carries_what_512_cannot(big):
    """With EDNS size 1232 the 60 A records (about 1000 bytes) arrive whole over UDP."""
    r = await big.query(MID, "A", use_edns=0, payload=1232)
    assert not r.flags & dns.flags.TC
    assert rrs(r.answer) == {f"{MID}. 5 IN A {ip}" for ip in MID_IPS}


async def test_client_udp_size_below_1232_is_honoured(big):
    """EDNS size 800 keeps the reply within 800 bytes: the 1000-byte answer is truncated."""
    async with udp_socket(big) as sock:
        reply = await udp_ask(sock, query(MID, "A", use_edns=0, payload=800))
        assert len(reply) <= 800 and header(reply)[1] & TC
        r = parse(reply)
        assert not r.answer and r.edns == 0 and r.payload == 1232  # the OPT stays in a truncated reply


@pytest.mark.parametrize("payload", [1232, 4096, 65535])
async def test_too_big_for_1232_is_truncated_whatever_the_client_size(big, payload):
    """100 A records (over 1232 bytes) get TC=1 over UDP even when the client offers more: kdns
    never sends more than 1232 bytes over UDP."""
    async with udp_socket(big) as sock:
        for _ in range(2):
            reply = await udp_ask(sock, query(MANY, "A", use_edns=0, payload=payload))
            assert len(reply) <= 1232
            r = parse(reply)
            assert r.flags & dns.flags.TC
            assert not r.answer and r.edns == 0


@pytest.mark.parametrize("name,ips", [(MANY, MANY_IPS), (MID, MID_IPS)], ids=["100", "60"])
async def test_tcp_carries_the_whole_answer(big, name, ips):
    """Over TCP the full answer arrives: one A record per ready endpoint, no TC."""
    for use_edns in (None, 0):
        r = await big.query(name, "A", tcp=True, use_edns=use_edns)
        assert not r.flags & dns.flags.TC
        assert rrs(r.answer) == {f"{name}. 5 IN A {ip}" for ip in ips}


async def test_tcp_reply_larger_than_16k_is_well_formed(kdns, tmp_path):
    """Compression pointers reach 16 KiB: names written later must not be pointed at."""
    hosts = [f"web-{i}" for i in range(200)]
    v4 = "\n".join(f'  - {{addresses: ["10.9.{i // 200}.{i % 200 + 1}"], hostname: {h}}}' for i, h in enumerate(hosts))
    v6 = "\n".join(f'  - {{addresses: ["fd00:9::{i + 1:x}"], hostname: {h}}}' for i, h in enumerate(hosts))
    slices = ""
    for family, endpoints in (("IPv4", v4), ("IPv6", v6)):
        slices += f"""---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: db-{family.lower()}, namespace: shop, labels: {{kubernetes.io/service-name: db}}}}
addressType: {family}
endpoints:
{endpoints}
ports:
  - {{name: pg, port: 5432, protocol: TCP}}
"""
    service = "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\nspec: {clusterIP: None}\n"
    running = await kdns(write(tmp_path / "db.yaml", service + slices))
    for _ in range(2):  # packed fresh, then from the memo
        r = await running.query("_pg._tcp.db.shop.svc.cluster.local", "SRV", tcp=True)
        assert len(r.to_wire()) > 0x4000
        assert len(rrs(r.answer)) == 200
        assert len(rrs(r.additional)) == 400
        assert "web-199.db.shop.svc.cluster.local. 5 IN AAAA fd00:9::c8" in rrs(r.additional)


async def test_tc_then_tcp_retry_like_a_resolver(big):
    """What a stub resolver does: UDP gives TC=1, the TCP retry gets all 100 records."""
    r = await big.query(MANY, "A", use_edns=0)
    assert r.flags & dns.flags.TC
    r = await big.query(MANY, "A", tcp=True, use_edns=0)
    assert len(r.answer[0]) == 100


async def test_additional_section_dropped_without_tc(big):
    """SRV whose answer fits 512 bytes but whose glue does not: the additional section is left
    out and TC stays clear (RFC 2181 9); over TCP and with EDNS the glue is there."""
    full = await big.query(FEW, "SRV", tcp=True)
    assert len(full.to_wire()) > 512  # the precondition: the whole reply needs more than 512
    assert len(full.answer[0]) == 8 and len(full.additional) > 0
    glue = rrs(full.additional)
    assert glue == {f"{ip.replace('.', '-')}.{FEW}. 5 IN A {ip}" for ip in FEW_IPS}

    async with udp_socket(big) as sock:
        for _ in range(2):
            reply = await udp_ask(sock, query(FEW, "SRV"))
            assert len(reply) <= 512
            r = parse(reply)
            assert not r.flags & dns.flags.TC
            assert rrs(r.answer) == rrs(full.answer)
            assert not r.additional
    r = await big.query(FEW, "SRV", use_edns=0)
    assert not r.flags & dns.flags.TC
    assert rrs(r.answer) == rrs(full.answer) and rrs(r.additional) == glue


async def test_srv_answer_too_big_is_truncated(big):
    """60 SRV records do not fit 512 bytes even without their glue: TC=1 and no records."""
    r = await big.query(MID, "SRV")
    assert r.flags & dns.flags.TC
    assert not r.answer and not r.additional
    r = await big.query(MID, "SRV", tcp=True)
    assert len(r.answer[0]) == 60 and not r.flags & dns.flags.TC


async def test_truncation_same_bytes_fresh_and_from_memo(big):
    """A reply cut for size is the same whether packed fresh or served from the memo after a
    bigger query filled it: no EDNS (fresh), EDNS 1232 (memo), no EDNS again (memo)."""
    async with udp_socket(big) as sock:
        for name, rdtype in ((MID, "A"), (FEW, "SRV"), (MANY, "A")):
            first = await udp_ask(sock, query(name, rdtype, qid=1))
            assert memoized(big, name, rdtype)
            await udp_ask(sock, query(name, rdtype, qid=2, use_edns=0))
            again = await udp_ask(sock, query(name, rdtype, qid=3))
            assert first[:2] == b"\x00\x01" and again[:2] == b"\x00\x03"
            assert first[2:] == again[2:], (name, rdtype)


# --- header bits and case ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,rdtype,code", [(WEB, "A", NOERROR), ("nope.shop.svc.cluster.local", "A", NXDOMAIN), ("cluster.local", "MX", NOERROR)]
)
async def test_aa_set_ra_clear_on_zone_answers(demo, name, rdtype, code):
    """Answers from our zones are authoritative (AA) and say no recursion (RA clear); QR set."""
    async with udp_socket(demo) as sock:
        for _ in range(2):
            reply = await udp_ask(sock, query(name, rdtype))
            flags = header(reply)[1]
            assert flags & QR and flags & AA and not flags & RA
            assert rcode(reply) == code


async def test_refused_is_not_authoritative(demo):
    """A name outside our zones is REFUSED without AA."""
    async with udp_socket(demo) as sock:
        reply = await udp_ask(sock, query("example.com", "A"))
        assert rcode(reply) == REFUSED
        assert not header(reply)[1] & (AA | RA)


@pytest.mark.parametrize("over_tcp", [False, True], ids=["udp", "tcp"])
async def test_rd_and_cd_copied_id_echoed(demo, over_tcp):
    """RD and CD are copied from the query (set and unset), and the ID is echoed, on both paths."""
    async with udp_socket(demo) as sock, tcp(demo) as conn:
        for i, (bits, name) in enumerate(
            [(bits, name) for bits in (0, RD, CD, RD | CD) for name in (WEB, "nope.shop.svc.cluster.local", "example.com")] * 2
        ):
            packet = with_flags(query(name, qid=0x1000 + i), set_bits=bits, clear_bits=(RD | CD) & ~bits)
            reply = await (tcp_ask(conn, packet) if over_tcp else udp_ask(sock, packet))
            qid, flags = header(reply)[:2]
            assert qid == 0x1000 + i
            assert flags & (RD | CD) == bits, (name, bits)
            assert not flags & RA


async def test_question_and_owner_names_keep_the_query_case(demo):
    """The question comes back exactly as asked (0x20), and owner names follow its spelling, on
    the first query (packed fresh) and a repeated one (from the memo)."""
    name = "WeB.ShOp.svc.CLUSTER.local"
    async with udp_socket(demo) as sock:
        for qid in (1, 2):
            packet = query(name, "A", qid=qid)
            reply = await udp_ask(sock, packet)
            assert qsection(reply) == qsection(packet)
            r = parse(reply)
            assert r.question[0].name.to_text() == name + "."
            assert [rrset.name.to_text() for rrset in r.answer] == [name + "."]
            assert rrs(r.answer) == {f"{WEB}. 5 IN A 10.96.100.10"}
        srv = "_HTTP._Tcp.API.shop.SVC.cluster.local"
        for qid in (3, 4):
            packet = query(srv, "SRV", qid=qid)
            reply = await udp_ask(sock, packet)
            assert qsection(reply) == qsection(packet)
            r = parse(reply)
            assert [rrset.name.to_text() for rrset in r.answer] == [srv + "."]


async def test_the_client_spelling_reaches_targets_and_the_soa(demo):
    """As CoreDNS's handler_case_test: a resolver that randomises case (0x20) sees its own
    spelling of the zone in an NXDOMAIN's SOA (owner, and both names in it), and in the zone
    part of SRV targets and of their additional records; the records themselves are the
    lowercase ones (compared case-insensitively by dnspython)."""
    async with udp_socket(demo) as sock:
        for qid in (1, 2):  # packed fresh, then from the memo
            r = parse(await udp_ask(sock, query("nope.shop.svc.ClUsTeR.lOcAl", "A", qid=qid)))
            assert r.rcode() == dns.rcode.NXDOMAIN
            [soa] = r.authority
            assert soa.name.to_text() == "ClUsTeR.lOcAl."
            assert (soa[0].mname.to_text(), soa[0].rname.to_text()) == ("ns.dns.ClUsTeR.lOcAl.", "hostmaster.ClUsTeR.lOcAl.")
        for qid in (3, 4):
            name = "_postgres._tcp.db.shop.svc.cLuStEr.LoCaL"
            r = parse(await udp_ask(sock, query(name, "SRV", qid=qid)))
            assert [rrset.name.to_text() for rrset in r.answer] == [name + "."]
            targets = {rr.target.to_text() for rr in r.answer[0]}
            assert targets and all(t.endswith(".cLuStEr.LoCaL.") for t in targets), targets
            assert all(rrset.name.to_text().endswith(".cLuStEr.LoCaL.") for rrset in r.additional)
        lower = parse(await udp_ask(sock, query("_postgres._tcp.db.shop.svc.cluster.local", "SRV", qid=5)))
        assert rrs(lower.answer) == rrs(r.answer) and rrs(lower.additional) == rrs(r.additional)


@pytest.mark.parametrize(
    "name,rdtype",
    [
        (WEB, "A"),
        ("_postgres._tcp.db.shop.svc.cluster.local", "SRV"),
        ("storefront.shop.svc.cluster.local", "A"),
        ("nope.shop.svc.cluster.local", "A"),
        (dns.reversename.from_address("10.96.100.10").to_text(), "PTR"),
    ],
)
async def test_case_variants_get_identical_bytes(demo, name, rdtype):
    """The same question in different case gets the same reply apart from ID and letter case:
    the question's, and the client's spelling copied into SRV targets (they cannot point at
    the question; test_the_client_spelling_reaches_targets_and_the_soa)."""
    variants = [name.lower(), name.upper(), "".join(c.upper() if i % 2 else c for i, c in enumerate(name))]
    replies = []
    async with udp_socket(demo) as sock:
        for i, variant in enumerate(variants * 2):
            packet = query(variant, rdtype, qid=100 + i)
            reply = await udp_ask(sock, packet)
            assert reply[:2] == packet[:2]
            assert qsection(reply) == qsection(packet)
            n = 12 + len(qsection(packet))
            replies.append((reply[2:12], reply[12:n].lower(), reply[n:] if rdtype != "SRV" else reply[n:].lower()))
    assert all(r == replies[0] for r in replies)


@pytest.mark.parametrize("edns", [None, (0, False), (0, True)], ids=["plain", "edns", "edns-do"])
@pytest.mark.parametrize("over_tcp", [False, True], ids=["udp", "tcp"])
async def test_memo_gives_the_same_bytes_as_the_full_path(demo, edns, over_tcp):
    """For every demo question the first reply (packed fresh) and the second (served from the
    memo when it has records: an answer without, NXDOMAIN, NODATA or the apex SOA, is made
    again, as cheap as a lookup) are byte-identical except the ID."""
    make = {} if edns is None else {"use_edns": edns[0], "want_dnssec": edns[1]}
    async with udp_socket(demo) as sock, tcp(demo) as conn:
        ask = (lambda p: tcp_ask(conn, p)) if over_tcp else (lambda p: udp_ask(sock, p))
        for name, rdtype, code in DEMO_QUESTIONS:
            first = await ask(query(name, rdtype, qid=0x0101, **make))
            if code != REFUSED:
                records = [rrset for rrset in parse(first).answer if rrset.rdtype != dns.rdatatype.SOA]  # (the SOA is added to any)
                assert memoized(demo, name, rdtype) == bool(records), (name, rdtype)
            second = await ask(query(name, rdtype, qid=0x0202, **make))
            assert first[:2] == b"\x01\x01" and second[:2] == b"\x02\x02"
            assert rcode(first) == code, (name, rdtype)
            assert first[2:] == second[2:], (name, rdtype)


# --- opcodes, malformed and hostile packets ------------------------------------------------


@pytest.mark.parametrize("opcode", [1, 2, 4, 5, 15], ids=["IQUERY", "STATUS", "NOTIFY", "UPDATE", "15"])
@pytest.mark.parametrize("over_tcp", [False, True], ids=["udp", "tcp"])
async def test_other_opcodes_get_notimp(demo, opcode, over_tcp):
    """Opcodes other than QUERY get NOTIMP with the query's ID and opcode."""
    packet = with_flags(query(WEB, qid=0x7A7A), set_bits=opcode << 11)
    reply = await ask(demo, packet, over_tcp=over_tcp)
    qid, flags = header(reply)[:2]
    assert qid == 0x7A7A and flags & QR
    assert (flags >> 11) & 0xF == opcode
    assert rcode(reply) == NOTIMP


async def test_notify_with_no_question_gets_notimp(demo):
    """A NOTIFY with no question is still NOTIMP, not FORMERR: the opcode is judged first."""
    packet = struct.pack("!6H", 0x5151, 4 << 11, 0, 0, 0, 0)
    async with udp_socket(demo) as sock:
        reply = await udp_ask(sock, packet)
    assert header(reply)[0] == 0x5151 and rcode(reply) == NOTIMP


@pytest.mark.parametrize("qdcount", [0, 2])
@pytest.mark.parametrize("over_tcp", [False, True], ids=["udp", "tcp"])
async def test_question_count_other_than_one_is_formerr(demo, qdcount, over_tcp):
    """Zero or two questions get FORMERR with the query's ID."""
    base = query(WEB, qid=0x3131)
    if qdcount == 0:
        packet = with_counts(base[:12], 0, 0, 0, 0)
    else:
        packet = with_counts(base, 2, 0, 0, 0) + qsection(query(KUBERNETES))
    reply = await ask(demo, packet, over_tcp=over_tcp)
    assert header(reply)[0] == 0x3131 and header(reply)[1] & QR
    assert rcode(reply) == FORMERR


async def test_shorter_than_a_header_gets_no_reply(demo):
    """Packets of 0 to 11 bytes are dropped silently, over UDP and TCP."""
    base = query(WEB, qid=0x0909)
    short = [base[:n] for n in range(12)]
    async with udp_socket(demo) as sock:
        assert await udp_replies(sock, short) == []
    async with tcp(demo) as conn:
        assert await tcp_replies(conn, short) == []


async def test_responses_get_no_reply(demo):
    """A packet with QR=1 is dropped: a query with QR set, and a real kdns reply sent back."""
    async with udp_socket(demo) as sock:
        reflected = await udp_ask(sock, query(WEB, qid=0x1111))
        packets = [
            with_flags(query(WEB, qid=0x2222), set_bits=QR),
            reflected,
            with_flags(query("nope.cluster.local", qid=0x3333), set_bits=QR),
        ]
        assert await udp_replies(sock, packets) == []
    async with tcp(demo) as conn:
        assert await tcp_replies(conn, packets) == []


@pytest.mark.parametrize("over_tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
async def test_truncated_packets_get_formerr(demo, over_tcp, edns):
    """A valid query cut at every length from 12 (a readable header) to one byte short gets
    FORMERR with its ID, as README promises for unparsable packets with a readable header."""
    full = query(WEB, "SRV", use_edns=0 if edns else None)
    cuts = {n: n.to_bytes(2, "big") + full[2:n] for n in range(12, len(full))}
    replies = await replies_to(demo, list(cuts.values()), over_tcp=over_tcp)
    by_id = {int.from_bytes(r[:2], "big"): r for r in replies}
    assert len(by_id) == len(replies)
    missing = sorted(set(cuts) - set(by_id))
    assert not missing, f"no reply to the query cut at lengths {missing}"
    for n, reply in by_id.items():
        assert header(reply)[1] & QR and rcode(reply) == FORMERR, n
    await assert_serving(demo)


def question_with_pointer() -> bytes:
    """A question `www` + a compression pointer to offset 12 (the question name itself)."""
    return struct.pack("!6H", 0x6161, RD, 1, 0, 0, 0) + b"\x03www\xc0\x0c" + struct.pack("!HH", 1, 1)


def with_additional(owner: bytes, *, pad: int = 0, qid: int = 0x6262) -> bytes:
    """A query for kubernetes A plus an additional record whose owner name is the raw bytes
    `owner`, starting at offset `additional_offset(pad)`. With `pad`, a record with `pad` bytes
    of data comes first, to move that offset."""
    base = query(KUBERNETES, qid=qid)
    records = b""
    count = 1
    if pad:
        records += b"\x00" + struct.pack("!HHIH", 65280, 1, 0, pad) + b"x" * pad
        count = 2
    return with_counts(base, 1, 0, 0, count) + records + owner + struct.pack("!HHIH", 1, 1, 0, 0)


def additional_offset(pad: int = 0) -> int:
    """Where `with_additional(..., pad=pad)` puts the owner name."""
    return len(query(KUBERNETES)) + (11 + pad if pad else 0)


def self_pointer() -> bytes:
    off = additional_offset()
    return with_additional(struct.pack("!H", 0xC000 | off))


def label_then_self_pointer() -> bytes:
    off = additional_offset()
    return with_additional(b"\x01a" + struct.pack("!H", 0xC000 | off))


def pointers_at_each_other() -> bytes:
    """Two overlapping pointers pointing at each other: the bytes C0 C0 BF at offset 191 read as
    a pointer at 191 (C0C0 -> offset 192) and one at 192 (C0BF -> offset 191). Each points
    before its own end, so only real loop detection stops the walk."""
    pad = 191 - additional_offset(0) - 11
    assert additional_offset(pad) == 191
    packet = with_additional(b"\xc0\xc0\xbf", pad=pad)
    assert packet[191:194] == b"\xc0\xc0\xbf"
    return packet


def forward_pointer() -> bytes:
    off = additional_offset()
    return with_additional(struct.pack("!H", 0xC000 | (off + 20)) + b"\x00" * 20)


def pointer_past_the_end() -> bytes:
    return with_additional(b"\xff\xff")


def long_pointer_chain(n: int = 1500) -> bytes:
    """An additional record whose owner is the last of `n` pointers, each pointing at the one
    before it, the first at a root name: all backwards, no loop, but no legal name needs it."""
    base = query(KUBERNETES, qid=0x6262)
    first = len(base) + 11  # the padding record's rdata: a root name, then the pointers
    chain = b"\x00" + b"".join(struct.pack("!H", 0xC000 | (first + (0 if i == 0 else 1 + 2 * (i - 1)))) for i in range(n))
    padding = b"\x00" + struct.pack("!HHIH", 65280, 1, 0, len(chain)) + chain
    owner = struct.pack("!H", 0xC000 | (first + 1 + 2 * (n - 1)))
    return with_counts(base, 1, 0, 0, 2) + padding + owner + struct.pack("!HHIH", 1, 1, 0, 0)


@pytest.mark.parametrize(
    "make",
    [question_with_pointer, self_pointer, label_then_self_pointer, pointers_at_each_other, forward_pointer, pointer_past_the_end],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("over_tcp", [False, True], ids=["udp", "tcp"])
async def test_bad_compression_pointers_get_formerr(demo, make, over_tcp):
    """Compression pointers in the question, pointer loops (self, label then self, two pointers
    at each other), forward pointers and pointers past the end get FORMERR with the query's ID."""
    packet = make()
    replies = await replies_to(demo, [packet], over_tcp=over_tcp)
    assert len(replies) == 1, "no reply"
    assert replies[0][:2] == packet[:2] and rcode(replies[0]) == FORMERR
    await assert_serving(demo)


async def test_long_backward_pointer_chain_is_answered(demo):
    """An additional record whose owner is reached through 1500 backward pointers gets a reply
    with its ID (FORMERR, or an answer): nothing a client sends goes unanswered when the header
    is readable."""
    packet = long_pointer_chain()
    replies = await replies_to(demo, [packet])
    assert len(replies) == 1, "no reply"
    assert replies[0][:2] == packet[:2] and rcode(replies[0]) in (NOERROR, FORMERR)
    await assert_serving(demo)


def opt_rr(size: int = 1232, owner: bytes = b"\x00") -> bytes:
    return owner + struct.pack("!HHIH", 41, size, 0, 0)


@pytest.mark.parametrize(
    "where",
    ["answer", "authority", "two-opts", "named-owner"],
)
async def test_misplaced_opt_gets_formerr(demo, where):
    """An OPT record in the answer or authority section, two OPT records, or an OPT whose owner
    is not the root get FORMERR."""
    base = query(WEB, qid=0x7171)
    if where == "answer":
        packet = with_counts(base, 1, 1, 0, 0) + opt_rr()
    elif where == "authority":
        packet = with_counts(base, 1, 0, 1, 0) + opt_rr()
    elif where == "two-opts":
        packet = with_counts(base, 1, 0, 0, 2) + opt_rr() + opt_rr(4096)
    else:
        packet = with_counts(base, 1, 0, 0, 1) + opt_rr(owner=b"\x03www\x00")
    async with udp_socket(demo) as sock:
        for _ in range(2):
            reply = await udp_ask(sock, packet)
            assert reply[:2] == packet[:2] and rcode(reply) == FORMERR


async def test_name_length_limit(demo):
    """A 255-byte question name (the RFC 1035 maximum) is answered (NXDOMAIN here); a 256-byte
    one is malformed: FORMERR, not a server failure."""

    def name_of(total: int) -> bytes:
        tail = b"\x07cluster\x05local\x00"
        labels, need = b"", total - len(tail)
        while need:
            n = min(63, need - 1)
            if need - 1 - n == 1:
                n -= 1
            labels += bytes([n]) + b"a" * n
            need -= n + 1
        assert len(labels + tail) == total
        return labels + tail

    async with udp_socket(demo) as sock:
        for total, expect in ((254, NXDOMAIN), (255, NXDOMAIN), (256, FORMERR), (300, FORMERR)):
            packet = struct.pack("!6H", total, RD, 1, 0, 0, 0) + name_of(total) + struct.pack("!HH", 1, 1)
            reply = await udp_ask(sock, packet)
            assert header(reply)[0] == total
            assert rcode(reply) == expect, f"{total}-byte name: rcode {rcode(reply)}"


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    """A hostile packet: random bytes, a random header with junk, or a damaged valid query."""
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 80))
    if kind == 1:
        head = struct.pack("!6H", rng.randrange(65536), rng.randrange(65536) & 0x7FFF, *(rng.randrange(4) for _ in range(4)))
        return head + rng.randbytes(rng.randrange(0, 120))
    packet = bytearray(rng.choice(seeds))
    if kind == 2:
        for _ in range(rng.randrange(1, 6)):
            packet[rng.randrange(len(packet))] = rng.randrange(256)
    else:
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(packet))
            packet[i:i] = rng.randbytes(rng.randrange(1, 4)) if rng.random() < 0.5 else b""
            if rng.random() < 0.5:
                del packet[i : i + rng.randrange(1, 4)]
    return bytes(packet)


FUZZ_SEEDS = [
    query(WEB, "A"),
    query(WEB, "SRV", use_edns=0, want_dnssec=True),
    query("_postgres._tcp.db.shop.svc.cluster.local", "SRV", use_edns=0),
    query("nope.shop.svc.cluster.local", "AAAA"),
    query(dns.reversename.from_address("10.96.100.10").to_text(), "PTR", use_edns=0),
    self_pointer(),
]


def check_fuzz_replies(packet: bytes, replies: list[bytes]) -> None:
    assert len(replies) <= 1, packet.hex()
    for reply in replies:
        assert len(packet) >= 12, f"reply to a {len(packet)}-byte packet"
        assert reply[:2] == packet[:2], packet.hex()
        assert reply[2] & 0x80, packet.hex()


async def test_random_packets_over_udp(demo):
    """500 random and damaged packets: each gets no reply or one with its ID; kdns keeps serving."""
    rng = random.Random(1035)
    async with udp_socket(demo) as sock:
        with trio.fail_after(30):
            for _ in range(500):
                packet = mutate(rng, FUZZ_SEEDS)
                if packet[:2] == SENTINEL_ID.to_bytes(2, "big"):
                    packet = b"\x00" + packet[1:]
                check_fuzz_replies(packet, await udp_replies(sock, [packet]))
    await assert_serving(demo)


async def test_random_messages_over_tcp(demo):
    """150 random and damaged messages on one TCP connection: each gets no reply or one with its
    ID, the framing holds, and the connection stays usable."""
    rng = random.Random(7766)
    async with tcp(demo) as conn:
        with trio.fail_after(30):
            for _ in range(150):
                packet = mutate(rng, FUZZ_SEEDS)
                if packet[:2] == SENTINEL_ID.to_bytes(2, "big"):
                    packet = b"\x00" + packet[1:]
                check_fuzz_replies(packet, await tcp_replies(conn, [packet]))
    await assert_serving(demo)


# --- TCP -----------------------------------------------------------------------------------


async def test_tcp_pipelined_queries_answered_in_order(demo):
    """Several queries in one write all get their answers, in the order asked."""
    questions = [
        (WEB, "A"),
        (WEB, "AAAA"),
        ("nope.shop.svc.cluster.local", "A"),
        ("_http._tcp.api.shop.svc.cluster.local", "SRV"),
        (KUBERNETES, "A"),
    ]
    packets = [query(name, rdtype, qid=0x2000 + i) for i, (name, rdtype) in enumerate(questions)]
    async with tcp(demo) as conn:
        await conn.send(*packets)
        with trio.fail_after(TIMEOUT):
            replies = [await conn.recv() for _ in packets]
    for packet, reply in zip(packets, replies):
        assert reply is not None
        assert reply[:2] == packet[:2] and qsection(reply) == qsection(packet)
    assert rcode(replies[2]) == NXDOMAIN
    assert rrs(parse(replies[0]).answer) == {f"{WEB}. 5 IN A 10.96.100.10"}
    assert rrs(parse(replies[1]).answer) == {f"{WEB}. 5 IN AAAA fd00:10:96::100:a"}


async def test_tcp_query_sent_byte_by_byte(demo):
    """A query dribbled one byte per segment (length prefix included) is answered."""
    packet = query(WEB, qid=0x0B0B)
    stream = await demo.tcp_connect()
    async with stream:
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in frame(packet):
            await stream.send_all(bytes([byte]))
            await trio.testing.wait_all_tasks_blocked()  # kdns has read it and waits for more
        with trio.fail_after(TIMEOUT):
            reply = await Framed(stream).recv()
    assert reply is not None and reply[:2] == packet[:2]
    assert rrs(parse(reply).answer) == {f"{WEB}. 5 IN A 10.96.100.10"}


async def test_tcp_sequential_queries_on_one_connection(demo):
    """One connection carries query, answer, query, answer."""
    async with tcp(demo) as conn:
        for i, (name, ip) in enumerate([(WEB, "10.96.100.10"), (KUBERNETES, "10.96.0.1"), (WEB, "10.96.100.10")]):
            reply = await tcp_ask(conn, query(name, qid=0x3000 + i))
            assert header(reply)[0] == 0x3000 + i
            assert rrs(parse(reply).answer) == {f"{name}. 5 IN A {ip}"}


@pytest.mark.parametrize("junk", [b"", b"\x12\x34\x01\x00\x00", b"\x12\x34"], ids=["zero-length", "5-byte", "2-byte"])
async def test_tcp_unanswerable_message_then_query(demo, junk):
    """A zero-length or too-short message gets no reply; the next query on the connection does."""
    async with tcp(demo) as conn:
        packet = query(WEB, qid=0x4444)
        await conn.send(junk, packet)
        with trio.fail_after(TIMEOUT):
            reply = await conn.recv()
        assert reply is not None and reply[:2] == packet[:2]
        assert rcode(reply) == NOERROR and qsection(reply) == qsection(packet)


async def assert_closed_after_idle(conn: Framed, started: float, idle: float) -> None:
    with trio.fail_after(idle + TIMEOUT):
        assert await conn.recv() is None, "a reply arrived on the idle connection"
    elapsed = time.monotonic() - started
    assert elapsed >= idle * 0.6, f"closed after {elapsed:.2f}s, before the idle timeout"


async def test_tcp_incomplete_message_closed_after_message_timeout(kdns):
    """A length prefix larger than what follows gets no reply; the connection is closed once
    the query has taken --tcp-message-timeout to arrive, and other clients are answered meanwhile."""
    server = await kdns(DEMO, args=["--tcp-idle-timeout", "30", "--tcp-message-timeout", "0.5"])
    async with tcp(server) as stuck:
        await stuck.stream.send_all(b"\x01\x00" + query(WEB)[:10])
        started = time.monotonic()
        await assert_serving(server)  # while the stuck connection is open
        assert time.monotonic() - started < 0.5
        await assert_closed_after_idle(stuck, started, 0.5)


async def test_tcp_silent_connection_closed_after_idle_timeout(kdns):
    """A connection that never sends is closed after the idle timeout and does not stop others."""
    server = await kdns(DEMO, args=["--tcp-idle-timeout", "0.5"])
    async with tcp(server) as silent, tcp(server) as other:
        started = time.monotonic()
        reply = await tcp_ask(other, query(WEB, qid=0x5555))
        assert header(reply)[0] == 0x5555 and rcode(reply) == NOERROR
        await assert_serving(server)
        await assert_closed_after_idle(silent, started, 0.5)


async def test_tcp_activity_keeps_the_connection_open(kdns, clock):
    """The idle timeout counts from the last data: a connection asking every 0.2 s (of trio's
    clock, moved on by the test) outlives 0.5 s."""
    server = await kdns(DEMO, args=["--tcp-idle-timeout", "0.5"])
    async with tcp(server) as conn:
        for i in range(5):
            reply = await tcp_ask(conn, query(WEB, qid=0x6000 + i))
            assert header(reply)[0] == 0x6000 + i
            clock.jump(0.2)


# --- IPv6 ----------------------------------------------------------------------------------


@pytest.mark.skipif(not have_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
async def test_ipv6_listener_answers_udp_and_tcp(kdns):
    """`--listen [::1]:0` serves UDP and TCP on ::1."""
    server = await kdns(DEMO, listen="[::1]:0")
    assert server.host == "::1"
    for over_tcp in (False, True):
        r = await server.query(WEB, "AAAA", tcp=over_tcp)
        assert rrs(r.answer) == {f"{WEB}. 5 IN AAAA fd00:10:96::100:a"}
        assert r.flags & dns.flags.AA
    async with udp_socket(server) as sock:
        reply = await udp_ask(sock, query(WEB, use_edns=0, qid=0x6666))
        assert reply[:2] == b"\x66\x66" and parse(reply).edns == 0
