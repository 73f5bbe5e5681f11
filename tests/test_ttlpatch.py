"""Replies made from the forwarding cache replayed for their whole fresh life, their TTLs
counted down on replay (issue 15; kdns.ttlpatch, kdns/_udpbatch.c).

Pure tests: the walk over a reply's records (compressed and not, OPT last) and the patching,
and, over a cache on a manual clock, that a replayed reply is byte for byte what the
forwarder renders afresh at each moment up to its deadline. Socket tests run kdns on
loopback with the C loop and with the Python one (the C loop reads the clock itself: those
wait for the second to turn).
"""

from __future__ import annotations

import itertools
import socket
import struct

import dns.edns
import dns.message
import dns.rrset
import pytest
import trio

from kdns import ttlpatch
from kdns import upstream as up
from kdns.cache import ForwardCache
from kdns.config import DnsConfig
from kdns.index import Index
from kdns.responder import Responder, UpstreamQuery
from kdns.serve import udp
from kdns.serve.forward import Forwarder, Upstream, _key
from kdns.serve.serving import Serving
from kdns.sources.manifests import ManifestSet
from kdns.state import DnsState
from kdns.stats import replay_key
from testkit.clock import ManualClock
from testkit.repo import DEMO
from testkit.stubdns import StubDNS


def query(name: str, qtype: int = 1, qid: int = 0x1234, payload: int | None = None) -> bytes:
    labels = b"".join(bytes([len(x)]) + x.encode() for x in name.split("."))
    opt = b"" if payload is None else b"\x00\x00\x29" + struct.pack("!HIH", payload, 0, 0)
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 1 if opt else 0) + labels + b"\0" + struct.pack("!HH", qtype, 1) + opt


def upstream_reply(name: str, *records: tuple[str, int, str, str], authority: tuple[str, int, str, str] | None = None,
                   rcode: int = 0, qtype: str = "A") -> dns.message.Message:
    ours = dns.message.make_query(name, qtype, id=7, use_edns=0, payload=1232)
    reply = dns.message.make_response(ours)
    reply.set_rcode(rcode)
    for owner, ttl, rtype, value in records:
        reply.answer.append(dns.rrset.from_text(owner, ttl, "IN", rtype, value))
    if authority is not None:
        owner, ttl, rtype, value = authority
        reply.authority.append(dns.rrset.from_text(owner, ttl, "IN", rtype, value))
    return reply


# -- the walk and the patching ------------------------------------------------------------------

def sample() -> dns.message.Message:
    msg = dns.message.make_response(dns.message.make_query("www.example.org", "A", use_edns=0, payload=1232))
    msg.answer.append(dns.rrset.from_text("www.example.org.", 100, "IN", "CNAME", "web.example.org."))
    msg.answer.append(dns.rrset.from_text("web.example.org.", 200, "IN", "A", "192.0.2.1", "192.0.2.2"))
    msg.authority.append(dns.rrset.from_text("example.org.", 300, "IN", "NS", "ns.example.org."))
    msg.additional.append(dns.rrset.from_text("ns.example.org.", 400, "IN", "A", "192.0.2.53"))
    return msg


def test_the_walk_finds_every_ttl_of_a_compressed_reply_and_leaves_opt_alone():
    wire = sample().to_wire()  # (dnspython compresses the names; its OPT goes last)
    fields = ttlpatch.ttl_fields(wire)
    assert [rtype for _, _, rtype in fields] == [5, 1, 1, 2, 1, 41]
    assert [struct.unpack_from("!I", wire, offset)[0] for _, offset, _ in fields[:-1]] == [100, 200, 200, 300, 400]
    patches, first_zero = ttlpatch.table(wire, 0, 0)
    assert len(patches) == 5 * ttlpatch.PATCH.size and first_zero == 100
    aged = dns.message.from_wire(wire[:2] + ttlpatch.patched(wire[2:], patches, 150))
    assert [(r.rdtype, r.ttl) for r in aged.answer + aged.authority + aged.additional] == [(5, 0), (1, 50), (2, 150), (1, 250)]
    original = dns.message.from_wire(wire)
    assert (aged.edns, aged.payload, aged.ednsflags) == (original.edns, original.payload, original.ednsflags) == (0, 8192, 0)


def test_the_walk_reads_uncompressed_replies_and_skips_our_own_records():
    """kdns's own render: the upstream's records uncompressed (their TTLs capped at the
    answer's lifetime, 100), ours (`skip`) first, whose TTLs stay."""
    msg = sample()
    answer = up.parse_reply(msg.to_wire(), msg.id, b"\x03www\x07example\x03org\x00\x00\x01\x00\x01", 3600)
    uq = Responder(forwarding_snapshot()).handle(query("www.example.org", payload=1232))
    assert isinstance(uq, UpstreamQuery)
    cname = b"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x05\x00\x02\xc0\x0c"  # (a record of ours, 5 s, compressed)
    reply = up.render(answer, uq.query, 0.0, 4096, prefix=cname, prefix_count=1)
    patches, first_zero = ttlpatch.table(reply, 1, 3)
    assert [base for _, base in ttlpatch.PATCH.iter_unpack(patches)] == [103] * 5
    assert first_zero == 103
    aged = reply[:2] + ttlpatch.patched(reply[2:], patches, 10)
    assert [struct.unpack_from("!I", aged, offset)[0] for _, offset, _ in ttlpatch.ttl_fields(aged)] == [5, 93, 93, 93, 93, 93, 0]
    assert aged[-11:] == reply[-11:] and dns.message.from_wire(aged).edns == 0  # (OPT last, as it was)


@pytest.mark.parametrize("junk", [b"", b"\x00" * 11, query("x.org")[:-2], sample().to_wire()[:-3], sample().to_wire() + b"\x00",
                                  query("x.org")[:12] + b"\x80x" + query("x.org")[13:]])
def test_the_walk_refuses_what_does_not_parse(junk):
    with pytest.raises(ttlpatch.BadReply):
        ttlpatch.table(junk, 0, 0)


def test_a_ttl_already_at_zero_stays_there():
    msg = dns.message.make_response(dns.message.make_query("a.example.org", "A"))
    msg.answer.append(dns.rrset.from_text("a.example.org.", 0, "IN", "A", "192.0.2.1"))
    msg.answer.append(dns.rrset.from_text("a.example.org.", 9, "IN", "TXT", "x"))
    wire = msg.to_wire()
    patches, first_zero = ttlpatch.table(wire, 0, 4)  # rendered 4 s after the base
    assert first_zero == 13
    for passed, ttls in [(4, [0, 9]), (5, [0, 8]), (13, [0, 0]), (99, [0, 0])]:
        assert [r.ttl for r in dns.message.from_wire(wire[:2] + ttlpatch.patched(wire[2:], patches, passed)).answer] == ttls


def test_a_forwarded_entry_counts_its_patches_against_the_replay_bound(monkeypatch):
    """The replay table's bytes include each forwarded entry's patches and its overhead, in
    the current generation and after a copy from the previous one (as the C loop counts it)."""
    from kdns import responder as responder_module

    monkeypatch.setattr(responder_module, "MAX_REPLIES", 4)
    r = Responder(forwarding_snapshot())
    data = query("www.example.org")
    reply = sample().to_wire()
    patches, _ = ttlpatch.table(reply, 0, 0)
    r.remember_forwarded(data, reply, None, 10.0, 1.0, patches)
    cost = responder_module.replay_cost(data, reply) + responder_module.FORWARDED_OVERHEAD + len(patches)
    assert r.replies_bytes == cost and len(patches) == 30
    for i in range(2):  # (two more: the first generation is full, then the previous one)
        r.remember_forwarded(query(f"n{i}.example.org"), reply, None, 10.0, 1.0, patches)
    assert data[2:] in r.replies_old and data[2:] not in r.replies
    assert r.replay_entry(data[2:]) == (reply[2:], None, 10.0, 1.0, patches)
    assert data[2:] in r.replies
    entries = [*r.replies.items(), *r.replies_old.items()]
    assert r.replies_bytes == sum(responder_module.replay_cost(b"..", b"..") + len(k) + len(v[0]) + responder_module.FORWARDED_OVERHEAD
                                  + len(v[4]) for k, v in entries)
    if udp._udpbatch is not None:
        assert udp._udpbatch.FORWARDED_OVERHEAD == responder_module.FORWARDED_OVERHEAD


# -- replayed bytes against fresh renders on a manual clock ------------------------------------

def forwarding_snapshot():
    index = Index(DnsConfig(forwarding=True), now=1)
    index.apply(ManifestSet([str(DEMO)]).load(), now=1)
    return index.snapshot


CASES = {
    # name asked, its query's EDNS payload (None: no EDNS), what the upstream says
    "plain": ("www.example.org", None, upstream_reply("www.example.org", ("www.example.org.", 300, "A", "192.0.2.1"))),
    "EDNS, two TTLs": ("two.example.org", 1232, upstream_reply("two.example.org", ("two.example.org.", 12, "CNAME", "x.example.org."),
                                                                ("x.example.org.", 20, "A", "192.0.2.2"))),
    "ExternalName": ("payments.shop.svc.cluster.local", 1232,
                     upstream_reply("payments.example.com", ("payments.example.com.", 45, "A", "192.0.2.3"))),
    "NXDOMAIN": ("nope.example.org", None, upstream_reply("nope.example.org", rcode=3, authority=(
        "example.org.", 17, "SOA", "ns.example.org. hostmaster.example.org. 1 7200 900 1209600 60"))),
    "truncated to the answer": ("big.example.org", 512, upstream_reply(
        "big.example.org", *[("big.example.org.", 40, "TXT", f'"{"x" * 200}{i}"') for i in range(2)],
        authority=("example.org.", 90, "NS", "ns.example.org."), qtype="TXT")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_replayed_reply_is_what_a_fresh_render_gives_until_its_deadline(case):
    """Rendered once 0.25 s after the answer was stored, kept (through Serving), then patched
    at many moments up to its deadline (whole seconds turning, just before and at each): the
    same bytes as the forwarder renders at that moment. The deadline is the start of the
    prefetch window, or when a TTL reaches 0 if sooner."""
    name, payload, reply = CASES[case]
    snapshot = forwarding_snapshot()
    clock = ManualClock(5000.0)
    state = DnsState(snapshot.config, now=1, replay_key=replay_key)
    state.responder = Responder(snapshot, replay_key=replay_key)
    cache = ForwardCache(clock=clock, maxsize=100, max_ttl=30, stale_for=60)
    forwarder = Forwarder([Upstream("127.0.0.1", 53)], {}, cache, timeout=1.0)
    serving = Serving(state, forwarder=forwarder)
    data = query(name, 16 if case.startswith("truncated") else 1, payload=payload)
    uq = state.responder.handle(data)
    assert isinstance(uq, UpstreamQuery)
    stored = cache.put(_key(uq), up.parse_reply(reply.to_wire(), 7, uq.question, 30, snapshot.config.all_zones))
    assert stored is not None
    clock.advance(0.25)
    fresh = forwarder.fresh(uq)
    assert fresh is not None
    serving._remember_forwarded(data, fresh.reply, None, fresh, uq.prefix_count)
    body, _, deadline, base, patches = state.responder.replies[data[2:]]
    lifetime = stored.expires - stored.stored
    parsed = dns.message.from_wire(fresh.reply)
    ttls = [r.ttl for r in parsed.answer + parsed.authority + parsed.additional]
    assert deadline == min(stored.expires - lifetime * 0.1, stored.stored + min(ttls[uq.prefix_count:]))
    moments = sorted({5000.0 + s + d for s in range(int(deadline - 5000.0) + 1) for d in (-0.001, 0.0, 0.5)} | {deadline - 1e-6})
    checked = 0
    for moment in moments:
        if not 5000.25 <= moment < deadline:
            continue
        clock.now = moment
        again = forwarder.fresh(uq)
        assert again is not None
        assert data[:2] + ttlpatch.patched(body, patches, int(moment - base)) == again.reply, (case, moment)
        checked += 1
    assert checked >= 8
    if case == "ExternalName":  # (our CNAME first, its TTL left alone)
        assert dns.message.from_wire(fresh.reply).answer[0].ttl == 5
    if case.startswith("truncated"):
        assert not dns.message.from_wire(fresh.reply).authority


# -- over sockets --------------------------------------------------------------------------------

def burst(port: int, packets: list[bytes]) -> list[bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        sock.settimeout(3.0)
        for packet in packets:
            sock.send(packet)
        return [sock.recv(65535) for _ in packets]


@pytest.fixture
def loop(request, monkeypatch):
    if request.param == "c" and udp._udpbatch is None:
        pytest.skip("kdns/_udpbatch.c is not built here")
    monkeypatch.setenv("KDNS_PURE_PYTHON", "1" if request.param == "python" else "0")
    return request.param


@pytest.mark.parametrize("loop", ["c", "python"], indirect=True)
async def test_a_cached_outside_name_is_replayed_with_its_ttls_counting_down(kdns, nursery, loop):
    """One upstream question, renders in Python in the first second; then three seconds of
    replays whose TTLs go down with each second that turns (the upstream's 300 capped to
    --cache-ttl 30)."""
    upstream = StubDNS("example.org. 300 IN A 127.0.0.77", "example.org. 300 IN AAAA ::77")
    port = await nursery.start(upstream.serve)
    server = await kdns(DEMO, args=["--upstream", f"127.0.0.1:{port}"])
    assert server.server.c_loop is (loop == "c")
    cache = server.server.forwarder.cache
    first = await trio.to_thread.run_sync(burst, server.port, [query("example.org", 28, qid=1, payload=1232)])
    assert dns.message.from_wire(first[0]).answer[0].ttl == 30
    rounds = []
    for round_ in range(4):
        replies = await trio.to_thread.run_sync(burst, server.port, [query("example.org", 28, qid=100 * round_ + i, payload=1232)
                                                                      for i in range(8)])
        messages = [dns.message.from_wire(reply) for reply in replies]
        assert [m.id for m in messages] == [100 * round_ + i for i in range(8)]
        assert all(m.answer[0].to_text() == f"example.org. {m.answer[0].ttl} IN AAAA ::77" and m.edns == 0 for m in messages)
        rounds.append([m.answer[0].ttl for m in messages])
        if round_ == 0:
            rendered = cache.hits  # (a burst's twins that came in one run are all answered in Python)
        await trio.sleep(1.05)
    for earlier, later in itertools.pairwise(rounds):
        assert min(earlier) - 1 >= max(later), rounds
    assert upstream.count("example.org") == 1
    assert cache.hits == rendered  # (never rendered in Python again: every later reply was a replay)
    assert server.server.responder.replay_entries >= 1


@pytest.mark.parametrize("loop", ["c", "python"], indirect=True)
async def test_after_the_deadline_python_answers_and_prefetches(kdns, nursery, loop):
    """With --cache-ttl 4, a name asked twice is replayed (not rendered again) until its
    prefetch window opens 3.6 s after it was stored; the first question after that is
    answered in Python, which refreshes the entry from the upstream."""
    upstream = StubDNS("hot.example.org. 300 IN A 127.0.0.81")
    port = await nursery.start(upstream.serve)
    server = await kdns(DEMO, args=["--upstream", f"127.0.0.1:{port}", "--cache-ttl", "4"])
    cache = server.server.forwarder.cache
    ask = [query("hot.example.org")]
    await trio.to_thread.run_sync(burst, server.port, ask)  # a miss: asked upstream
    await trio.to_thread.run_sync(burst, server.port, ask)  # a fresh hit: rendered, kept for replay
    await trio.sleep(1.1)
    replayed = await trio.to_thread.run_sync(burst, server.port, ask)
    assert dns.message.from_wire(replayed[0]).answer[0].ttl <= 3
    assert (upstream.count("hot.example.org"), cache.hits) == (1, 1)
    await trio.sleep(2.7)  # past 3.6 s: the prefetch window
    reply = await trio.to_thread.run_sync(burst, server.port, ask)
    assert dns.message.from_wire(reply[0]).answer[0].to_text().endswith("IN A 127.0.0.81")
    assert cache.hits == 2
    with trio.fail_after(5):
        while upstream.count("hot.example.org") < 2:
            await trio.sleep(0.02)


POD = """\
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec: {containers: [{name: c, image: busybox}]}
status: {podIP: 127.0.0.1, podIPs: [{ip: 127.0.0.1}]}
"""


def ask_from(source: str, port: int, packet: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(3.0)
        sock.sendto(packet, ("127.0.0.1", port))
        return sock.recv(65535)


@pytest.mark.parametrize("loop", ["c", "python"], indirect=True)
@pytest.mark.parametrize(("name", "asked", "types"), [("example.org.default.svc.cluster.local", "example.org", [5, 1]),
                                                      ("payments.shop.default.svc.cluster.local", "payments.example.com", [5, 5, 1])])
async def test_an_autopath_answer_is_not_replayed_to_another_client(kdns, nursery, tmp_path, loop, name, asked, types):
    """With --autopath, the pod at 127.0.0.1 (namespace default) gets CNAMEs and the
    upstream's records for a search-path expansion of an outside name (or of an ExternalName
    Service's), made from the forwarding cache after the first time; the same bytes from
    127.0.0.2 (no pod) are NXDOMAIN: the reply depends on who asks, so it is never kept for
    replay."""
    upstream = StubDNS("example.org. 300 IN A 127.0.0.141", "payments.example.com. 300 IN A 127.0.0.142")
    port = await nursery.start(upstream.serve)
    pods = tmp_path / "pods.yaml"
    pods.write_text(POD)
    server = await kdns(DEMO, pods, args=["--upstream", f"127.0.0.1:{port}", "--autopath"])
    packet = query(name, qid=9)
    for _ in range(3):
        reply = dns.message.from_wire(await trio.to_thread.run_sync(ask_from, "127.0.0.1", server.port, packet))
        assert [rrset.rdtype for rrset in reply.answer] == types
    other = dns.message.from_wire(await trio.to_thread.run_sync(ask_from, "127.0.0.2", server.port, packet))
    assert other.rcode() == 3 and not other.answer
    assert upstream.count(asked) == 1
