"""The byte bounds and the scrubbing of upstream replies, pure (issue 13): kdns.upstream's
parse_reply and scrub, kdns.cache's byte budget, the Responder's memo and replay tables."""

from __future__ import annotations

import struct

import dns.edns
import dns.message
import pytest
from dnslib import CNAME, NS, QTYPE, RR, SOA, A, DNSRecord

from kdns import responder as responder_module
from kdns import upstream as up
from kdns.cache import ForwardCache
from kdns.config import DnsConfig
from kdns.index import Index
from kdns.responder import Responder
from kdns.sources.manifests import ManifestSet
from testkit.hostiledns import HostileDNS, bomb_name
from testkit.repo import DEMO

ZONES = ("cluster.local", "in-addr.arpa", "ip6.arpa")
QID = 0x4242


def question(name: str, qtype: int = 1) -> bytes:
    return b"".join(bytes([len(x)]) + x.encode() for x in name.rstrip(".").split(".")) + b"\0" + struct.pack("!HH", qtype, 1)


def reply(name: str, answers=(), authority=(), additional=(), rcode: int = 0, qtype: str = "A") -> bytes:
    r = DNSRecord.question(name, qtype)
    r.header.id, r.header.qr, r.header.rcode = QID, 1, rcode
    r.add_answer(*answers)
    r.add_auth(*authority)
    r.add_ar(*additional)
    return r.pack()


def parsed_names(answer: up.UpstreamAnswer) -> list[tuple[int, str, int]]:
    """(section, owner, type) of each record kept, read back from the re-encoded records."""
    out, pos = [], 0
    sections = [0] * answer.counts[0] + [1] * answer.counts[1] + [2] * answer.counts[2]
    for section in sections:
        labels, pos = up.wire.read_name(answer.records, pos, compressed=False)
        rtype, _, _, rdlength = struct.unpack_from("!HHIH", answer.records, pos)
        pos += 10 + rdlength
        out.append((section, ".".join(x.decode() for x in labels), rtype))
    return out


# -- parse_reply: what a reply may cost ----------------------------------------------------


def test_a_reply_of_pointers_is_read_only_as_far_as_a_reply_can_carry():
    name = bomb_name(1)
    query = question(name)
    hostile = HostileDNS()
    data = hostile.reply(struct.pack("!6H", QID, 0x0100, 1, 0, 0, 0) + query, "tcp")
    assert len(data) <= 65535
    answer = up.parse_reply(data, QID, query, 30, ZONES)
    assert answer.truncated and answer.lifetime == 0
    assert len(answer.records) <= up.MAX_RECORDS - len(query)
    assert answer.counts[0] == len(answer.ttls) > 200


def test_a_large_reply_that_fits_is_kept_whole_and_cacheable():
    name = bomb_name(2, "many100-")
    query = question(name)
    data = HostileDNS().reply(struct.pack("!6H", QID, 0x0100, 1, 0, 0, 0) + query, "tcp")
    answer = up.parse_reply(data, QID, query, 30, ZONES)
    assert not answer.truncated and answer.lifetime == 30 and answer.counts == (100, 0, 0)
    assert answer.size == up.ENTRY_OVERHEAD + len(answer.records) + up.RECORD_OVERHEAD * 100


# -- scrub --------------------------------------------------------------------------------


def test_answer_keeps_the_cname_chain_and_drops_the_rest():
    data = reply("www.example.com", answers=[
        RR("other.example.com", QTYPE.A, rdata=A("6.6.6.6"), ttl=60),
        RR("www.example.com", QTYPE.CNAME, rdata=CNAME("a.example.net"), ttl=60),
        RR("b.example.org", QTYPE.A, rdata=A("192.0.2.2"), ttl=60),
        RR("a.example.net", QTYPE.CNAME, rdata=CNAME("b.example.org"), ttl=60),
    ])
    answer = up.parse_reply(data, QID, question("www.example.com"), 30, ZONES)
    assert parsed_names(answer) == [(0, "www.example.com", 5), (0, "b.example.org", 1), (0, "a.example.net", 5)]


def test_cluster_names_are_dropped_from_every_section():
    data = reply("evil.example", answers=[
        RR("evil.example", QTYPE.CNAME, rdata=CNAME("web.shop.svc.cluster.local"), ttl=60),
        RR("web.shop.svc.cluster.local", QTYPE.A, rdata=A("6.6.6.6"), ttl=60),
    ], authority=[RR("cluster.local", QTYPE.NS, rdata=NS("evil.example"), ttl=60),
                  RR(".", QTYPE.SOA, rdata=SOA("a.", "b.", (1, 2, 3, 4, 5)), ttl=60)],
       additional=[RR("kube-dns.kube-system.svc.cluster.local", QTYPE.A, rdata=A("6.6.6.6"), ttl=60),
                   RR("evil.example", QTYPE.A, rdata=A("6.6.6.6"), ttl=60)])
    answer = up.parse_reply(data, QID, question("evil.example"), 30, ZONES)
    assert parsed_names(answer) == [(0, "evil.example", 5), (1, "", 6), (2, "evil.example", 1)]


def test_without_a_zone_in_authority_the_other_sections_are_dropped():
    data = reply("www.example.com", answers=[RR("www.example.com", QTYPE.A, rdata=A("192.0.2.1"), ttl=60)],
                 authority=[RR("example.org", QTYPE.NS, rdata=NS("ns.example.org"), ttl=60)],
                 additional=[RR("ns.example.org", QTYPE.A, rdata=A("192.0.2.53"), ttl=60)])
    answer = up.parse_reply(data, QID, question("www.example.com"), 30, ZONES)
    assert parsed_names(answer) == [(0, "www.example.com", 1)]


def test_a_forwarded_reverse_name_keeps_its_answer_and_soa_only():
    name = "4.3.2.1.in-addr.arpa"
    data = reply(name, answers=[RR(name, QTYPE.PTR, rdata=NS("host.example.org"), ttl=60),
                                RR("10.100.96.10.in-addr.arpa", QTYPE.PTR, rdata=NS("evil.example"), ttl=60)],
                 authority=[RR("1.in-addr.arpa", QTYPE.SOA, rdata=SOA("a.", "b.", (1, 2, 3, 4, 5)), ttl=60),
                            RR("1.in-addr.arpa", QTYPE.TXT, rdata=NS("x"), ttl=60)],
                 additional=[RR("9.3.2.1.in-addr.arpa", QTYPE.PTR, rdata=NS("evil.example"), ttl=60)], qtype="PTR")
    answer = up.parse_reply(data, QID, question(name, 12), 30, ZONES)
    assert parsed_names(answer) == [(0, name, 12), (1, "1.in-addr.arpa", 6)]
    negative = reply(name, authority=[RR("1.in-addr.arpa", QTYPE.SOA, rdata=SOA("a.", "b.", (1, 2, 3, 4, 5)), ttl=60)],
                     rcode=3, qtype="PTR")
    assert up.parse_reply(negative, QID, question(name, 12), 30, ZONES).lifetime == 5  # negative caching still works


def test_without_zones_only_the_chain_rules_apply():
    data = reply("web.shop.svc.cluster.local", answers=[RR("web.shop.svc.cluster.local", QTYPE.A, rdata=A("192.0.2.1"), ttl=60)])
    answer = up.parse_reply(data, QID, question("web.shop.svc.cluster.local"), 30)
    assert answer.counts == (1, 0, 0)


# -- the forwarding cache's byte budget -------------------------------------------------------


def answer_of(records: int) -> up.UpstreamAnswer:
    data = reply("a.example", answers=[RR("a.example", QTYPE.A, rdata=A(f"192.0.2.{i % 250}"), ttl=60) for i in range(records)])
    return up.parse_reply(data, QID, question("a.example"), 30)


def test_cache_holds_at_most_its_bytes_and_entries():
    now = [0.0]
    cache = ForwardCache(clock=lambda: now[0], maxsize=1000, max_ttl=30, stale_for=60, max_bytes=50_000)
    big = answer_of(50)
    for i in range(100):
        cache.put((f"n{i}".encode(), 1, 1, False, False), big)
        assert cache.bytes <= 50_000
    assert len(cache) == 50_000 // big.size
    assert cache.get((b"n99", 1, 1, False, False))[1] and cache.get((b"n0", 1, 1, False, False))[0] is None
    small = ForwardCache(clock=lambda: now[0], maxsize=3, max_ttl=30, stale_for=60, max_bytes=1 << 20)
    for i in range(10):
        small.put((f"n{i}".encode(), 1, 1, False, False), answer_of(1))
    assert len(small) == 3


def test_an_answer_larger_than_the_budget_is_not_cached():
    cache = ForwardCache(clock=lambda: 0.0, maxsize=10, max_ttl=30, stale_for=60, max_bytes=2_000)
    assert cache.put((b"x", 1, 1, False, False), answer_of(50)) is None
    assert len(cache) == 0 and cache.bytes == 0


# -- the Responder's tables -------------------------------------------------------------------


@pytest.fixture(scope="module")
def snapshot():
    index = Index(DnsConfig(), now=1)
    index.apply(ManifestSet([str(DEMO)]).load(), now=1)
    return index.snapshot


def padded(name: str, padding: int) -> bytes:
    q = dns.message.make_query(name, "A", use_edns=0, options=[dns.edns.GenericOption(dns.edns.PADDING, b"\0" * padding)])
    return q.to_wire()


def test_replay_table_is_bounded_in_bytes(snapshot, monkeypatch):
    monkeypatch.setattr(responder_module, "REPLAY_BYTES", 30_000)
    r = Responder(snapshot)
    for padding in range(400):
        r.handle(padded("web.shop.svc.cluster.local", padding))
        assert r.replies_bytes <= 30_000 + responder_module.replay_cost(b"\0" * 512, b"\0" * 1232)
        held = [*r.replies.items(), *r.replies_old.items()]  # both generations
        assert r.replies_bytes == sum(responder_module.replay_cost(b"..", b"..") + len(k) + len(v[0]) for k, v in held)
    assert r.replay_entries < 400


def test_memo_is_bounded_in_bytes(snapshot, monkeypatch):
    monkeypatch.setattr(responder_module, "MEMO_BYTES", 20_000)
    r = Responder(snapshot)
    for i in range(300):
        r.handle(dns.message.make_query(f"n{i}.shop.svc.cluster.local", "A").to_wire())
        assert r.memo_bytes <= 20_000 + 2_000
        held = [*r.memo.items(), *r.memo_old.items()]  # both generations
        assert r.memo_bytes == sum(responder_module.memo_cost(name, e) for name, byname in held for e in byname.values())
    assert r.memo_entries < 300
