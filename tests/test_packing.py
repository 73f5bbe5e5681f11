"""kdns/packing.py, the packer of first-time answers, against dnslib's packing of the same
answers (wire.pack_with_dnslib, which packs any record type): the same bytes, record for
record, whatever the names, types, sizes and question. Pure: no sockets."""

from __future__ import annotations

import dns.message
import dns.rdatatype
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns import codes, packing, wire
from kdns.result import Answer, Record

ZONES = ("cluster.local", "in-addr.arpa", "ip6.arpa")
LABELS = st.sampled_from(["web", "db", "shop", "svc", "a", "b-1", "x" * 63, "kube-system", "pod"])
ZONE = st.sampled_from(ZONES[:1] + ("example.com",))


@st.composite
def names(draw) -> str:
    return ".".join(draw(st.lists(LABELS, min_size=0, max_size=4)) + [draw(ZONE)])


@st.composite
def records(draw, owner: str) -> Record:
    name = draw(st.sampled_from([owner, draw(names())]))
    rtype = draw(st.sampled_from([codes.A, codes.AAAA, codes.CNAME, codes.PTR, codes.NS, codes.SRV, codes.TXT]))
    ttl = draw(st.integers(0, 2**31 - 1))
    if rtype == codes.A:
        data: object = ".".join(str(draw(st.integers(0, 255))) for _ in range(4))
    elif rtype == codes.AAAA:
        data = draw(st.sampled_from(["::1", "fd00::10", "2001:db8::a:b:c:d", "1:2:3:4:5:6:7:8"]))
    elif rtype == codes.SRV:
        data = (draw(st.integers(0, 65535)), draw(st.integers(0, 65535)), draw(st.integers(0, 65535)), draw(names()))
    elif rtype == codes.TXT:
        data = draw(st.text(alphabet="abc 1.=", max_size=255))
    else:
        data = draw(names())
    return Record(name, rtype, ttl, data)


def query_for(name: str, qtype: int) -> wire.Query:
    return wire.parse_query(dns.message.make_query(name, dns.rdatatype.RdataType(qtype)).to_wire())


@st.composite
def cases(draw) -> tuple[wire.Query, Answer]:
    qname = draw(names())
    query = query_for(qname, draw(st.sampled_from([codes.A, codes.SRV, codes.PTR, codes.AAAA])))
    answer = tuple(draw(st.lists(records(qname), max_size=8)))
    if draw(st.booleans()):  # a negative answer: the SOA of one zone, maybe after a CNAME chain
        chain = tuple(r for r in answer if r.rtype == codes.CNAME)
        rcode = draw(st.sampled_from([codes.NOERROR, codes.NXDOMAIN]))
        return query, Answer(rcode, chain, soa_zone=draw(st.sampled_from(ZONES)), soa_in_answer=draw(st.booleans()) and not chain)
    additional = tuple(draw(st.lists(records(qname), max_size=6)))
    return query, Answer(codes.NOERROR, answer, additional, authoritative=draw(st.booleans()))


def same(a: wire.Entry, b: wire.Entry) -> None:
    assert (a.flags, a.counts, a.counts_edns, a.body, a.soa, a.soa_at, a.zone) == (b.flags, b.counts, b.counts_edns, b.body, b.soa, b.soa_at, b.zone)
    assert (a.short is None) == (b.short is None)
    if a.short is not None and b.short is not None:
        same(a.short, b.short)


@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(case=cases())
def test_the_same_bytes_as_dnslib(case):
    query, answer = case
    fast = packing.pack(query, answer, ZONES)
    assert fast is not None
    same(fast, wire.pack_with_dnslib(query, answer, ZONES))


def test_names_past_the_reach_of_a_pointer_are_written_out():
    """Past offset 0x3FFF a name cannot be pointed at: both packers write such names out in
    full and point only at the ones before."""
    qname = "_http._tcp.web.shop.svc.cluster.local"
    query = query_for(qname, codes.SRV)
    srv = tuple(Record(qname, codes.SRV, 5, (0, 1, 80, f"host-{i}.web.shop.svc.cluster.local")) for i in range(900))
    extra = tuple(Record(f"host-{i}.web.shop.svc.cluster.local", codes.A, 5, f"10.0.{i // 256}.{i % 256}") for i in range(900))
    fast = packing.pack(query, Answer(codes.NOERROR, srv, extra), ZONES)
    assert fast is not None and len(fast.body) > 0x4000
    same(fast, wire.pack_with_dnslib(query, Answer(codes.NOERROR, srv, extra), ZONES))


def test_other_types_are_left_to_dnslib():
    query = query_for("web.shop.svc.cluster.local", codes.HINFO)
    answer = Answer(codes.NOERROR, (Record("web.shop.svc.cluster.local", codes.MX, 5, "mail.example.com"),))
    assert packing.pack(query, answer, ZONES) is None


def test_negative_answers_share_their_entry():
    """NXDOMAINs of one shape (the zone at the same offset) hold one Entry between them."""
    entries = {id(packing.pack(query_for(f"n{i}.shop.svc.cluster.local", codes.A), Answer(codes.NXDOMAIN, soa_zone="cluster.local"), ZONES))
               for i in range(10, 100)}
    assert len(entries) == 1


def test_soa_points_at_the_zone_in_the_question():
    query = query_for("nope.shop.svc.cluster.local", codes.A)
    entry = packing.pack(query, Answer(codes.NXDOMAIN, soa_zone="cluster.local"), ZONES)
    assert entry is not None and entry.soa_at == len(b"\x04nope\x04shop\x03svc")
    outside = packing.pack(query, Answer(codes.NXDOMAIN, soa_zone="in-addr.arpa"), ZONES)
    assert outside is not None and outside.soa_at == -1  # written out in full
