"""kdns/upstream.py on its own: our queries to upstreams, their replies checked and re-encoded,
and re-served with TTLs counted down by a given elapsed time. Replies are built with
dnspython; no sockets. (tests/test_forward.py checks forwarding through DNS.)"""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from kdns import upstream, wire
from kdns.upstream import ReplyError, UpstreamAnswer

QID = 0x5151


def question(name: str = "example.org", rdtype: str = "A") -> bytes:
    q = dns.message.make_query(name, rdtype).to_wire()
    return q[12:]  # one question, no other records: the question is the rest


def our_query(name: str = "example.org", rdtype: str = "A") -> dns.message.Message:
    return dns.message.from_wire(upstream.build_query(QID, question(name, rdtype), do=False, cd=False))


def rrsets(lines: tuple[str, ...]) -> list[dns.rrset.RRset]:
    """Zone-file lines (`name ttl class type data`) as RRsets, one per name and type."""
    groups: dict[tuple[str, str, str], tuple[int, list[str]]] = {}
    for line in lines:
        owner, ttl, rdclass, rdtype, data = line.split(" ", 4)
        groups.setdefault((owner, rdclass, rdtype), (int(ttl), []))[1].append(data)
    return [dns.rrset.from_text(owner, ttl, rdclass, rdtype, *datas) for (owner, rdclass, rdtype), (ttl, datas) in groups.items()]


def answered(*lines: str, rcode: int = dns.rcode.NOERROR, authority: tuple[str, ...] = (), name: str = "example.org",
             rdtype: str = "A") -> bytes:
    reply = dns.message.make_response(our_query(name, rdtype))
    reply.set_rcode(rcode)
    reply.answer = rrsets(lines)
    reply.authority = rrsets(authority)
    return reply.to_wire()


def parse(data: bytes, name: str = "example.org", rdtype: str = "A", max_ttl: int = 3600) -> UpstreamAnswer:
    return upstream.parse_reply(data, QID, question(name, rdtype), max_ttl)


def test_our_query_asks_for_recursion_with_our_edns():
    q = dns.message.from_wire(upstream.build_query(7, question(), do=True, cd=True))
    assert q.id == 7 and q.flags & dns.flags.RD and q.flags & dns.flags.CD
    assert q.edns == 0 and q.payload == wire.MAX_UDP and q.ednsflags & dns.flags.DO


def test_an_answer_is_cached_for_its_smallest_ttl_capped():
    data = answered("www.example.org. 300 IN CNAME example.org.", "example.org. 60 IN A 192.0.2.2", name="www.example.org")
    got = parse(data, name="www.example.org")
    assert (got.rcode, got.counts, got.lifetime, got.truncated) == (0, (2, 0, 0), 60, False)
    assert parse(data, name="www.example.org", max_ttl=10).lifetime == 10


def test_negative_answers_are_cached_per_soa_minimum():
    soa = ("example.org. 900 IN SOA ns.example.org. host.example.org. 1 7200 1800 86400 30",)
    assert parse(answered(rcode=dns.rcode.NXDOMAIN, authority=soa, name="nx.example.org"), name="nx.example.org").lifetime == 30
    assert parse(answered(authority=soa)).lifetime == 30  # NODATA
    assert parse(answered(rcode=dns.rcode.NXDOMAIN, name="nx.example.org"), name="nx.example.org").lifetime == 0, "no SOA: not cached"


@pytest.mark.parametrize("rcode", [dns.rcode.SERVFAIL, dns.rcode.REFUSED])
def test_failures_are_not_cached(rcode):
    assert parse(answered(rcode=rcode)).lifetime == 0


def test_replies_to_something_else_are_refused():
    data = answered("example.org. 300 IN A 192.0.2.1")
    with pytest.raises(ReplyError, match="not a reply"):
        upstream.parse_reply(data, QID + 1, question(), 3600)
    with pytest.raises(ReplyError, match="another question"):
        parse(data, name="example.net")
    with pytest.raises(ReplyError, match="shorter"):
        parse(data[:11])
    with pytest.raises(ReplyError, match="past the end"):
        parse(data[:-2])


def test_compressed_names_in_records_are_written_out():
    data = answered("www.example.org. 300 IN CNAME example.org.", name="www.example.org")
    got = parse(data, name="www.example.org")
    assert b"\xc0" not in got.records, "records fit after any question: no pointers"
    assert b"\x07example\x03org\x00" in got.records


def test_rendered_reply_has_the_clients_id_and_question_and_counts_ttls_down():
    got = parse(answered("example.org. 300 IN A 192.0.2.1"))
    client = wire.parse_query(dns.message.make_query("ExAmple.org", "A", id=0x0203).to_wire())
    reply = dns.message.from_wire(upstream.render(got, client, 100.5, wire.MAX_UDP))
    assert reply.id == 0x0203 and reply.question[0].name.to_text() == "ExAmple.org."
    assert reply.flags & dns.flags.RA and not reply.flags & dns.flags.AA
    assert [rrset.ttl for rrset in reply.answer] == [200]
    assert [rrset.ttl for rrset in dns.message.from_wire(upstream.render(got, client, 400, wire.MAX_UDP)).answer] == [0]
    stale = dns.message.from_wire(upstream.render(got, client, 400, wire.MAX_UDP, stale_ttl=30))
    assert [rrset.ttl for rrset in stale.answer] == [30]


def test_a_reply_too_big_for_the_client_is_cut_to_its_answer_then_truncated():
    lines = [f"example.org. 300 IN A 192.0.2.{i}" for i in range(1, 41)]
    soa = ("example.org. 900 IN SOA ns.example.org. host.example.org. 1 7200 1800 86400 30",)
    got = parse(answered(*lines, authority=soa))
    client = wire.parse_query(dns.message.make_query("example.org", "A").to_wire())
    whole = upstream.render(got, client, 0, wire.MAX_TCP)
    assert struct.unpack("!H", whole[8:10])[0] == 1  # the authority section
    answer_only = dns.message.from_wire(upstream.render(got, client, 0, len(whole) - 1))
    assert len(answer_only.answer[0]) == 40 and not answer_only.authority
    assert dns.message.from_wire(upstream.render(got, client, 0, 100)).flags & dns.flags.TC


def test_local_only_is_our_cname_or_refused():
    client = wire.parse_query(dns.message.make_query("shop.example.com", "A").to_wire())
    assert dns.message.from_wire(upstream.local_only(client, b"", 0, wire.MAX_UDP)).rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize(("text", "parsed"), [
    ("192.0.2.1", ("192.0.2.1", 53)), ("192.0.2.1:5353", ("192.0.2.1", 5353)), ("2001:db8::1", ("2001:db8::1", 53)),
    ("[2001:db8::1]:54", ("2001:db8::1", 54)), ("[::1]", ("::1", 53)),
])
def test_upstream_addresses(text, parsed):
    assert upstream.parse_upstream(text) == parsed


@pytest.mark.parametrize("text", ["example.org", "192.0.2.1:0", "192.0.2.1:65536", "[::1]x", "192.0.2.1:dns", "fe80::1%eth0"])
def test_upstream_addresses_refused(text):
    with pytest.raises(ValueError, match=r"not a|port"):
        upstream.parse_upstream(text)


def test_resolv_conf_nameservers_in_order_without_duplicates_or_scoped_ones():
    text = "search example.org\nnameserver 192.0.2.1 # first\nnameserver fe80::1%eth0\n; nameserver 192.0.2.9\nnameserver 192.0.2.1\nnameserver 2001:db8::53\n"
    assert upstream.parse_resolv_conf(text) == ["192.0.2.1", "2001:db8::53"]
