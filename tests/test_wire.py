"""kdns/wire.py on its own: reading queries, packing answers once and splicing them into any
query for the same question, and the small replies. Bytes are built and read back with
dnspython; no server. (tests/test_protocol.py checks the same through sockets.)"""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from kdns import codes, wire
from kdns.answer import Answer, Record
from testkit.dnswire import frame, query, rrs, with_counts, with_flags

ZONES = ("cluster.local", "in-addr.arpa", "ip6.arpa")
WEB = "web.shop.svc.cluster.local"


def parsed(data: bytes) -> wire.Query:
    return wire.parse_query(data)


def reply_to(q: bytes, result: Answer, *, limit: int = wire.MAX_TCP, serial: int = 7) -> dns.message.Message:
    query_ = parsed(q)
    entry = wire.pack_answer(query_, result, ZONES)
    soa = wire.soa_record(result.soa_zone, serial, 5) if result.soa_zone else b""
    edns = None if query_.edns is None else (query_.edns.udp_size, query_.edns.do)
    return dns.message.from_wire(wire.render(entry, query_.qid, query_.flags, query_.question, soa, edns, limit))


# -- reading queries ------------------------------------------------------------------------


def test_a_query_is_read_with_its_question_as_sent():
    q = parsed(query("WeB.Shop.svc.cluster.local", "AAAA", qid=0x1234, use_edns=0, payload=4096, want_dnssec=True))
    assert q.qid == b"\x12\x34" and q.flags & codes.RD
    assert q.labels == ("web", "shop", "svc", "cluster", "local")
    assert q.question[:4] == b"\x03WeB" and q.qname.startswith(b"\x03web")  # as asked; the memo key lowercased
    assert (q.qtype, q.qclass) == (codes.AAAA, codes.CLASS_IN)
    assert q.edns == wire.Edns(4096, 0, True)


@pytest.mark.parametrize(("packet", "reply_rcode"), [
    (b"\x12\x34\x01", None),  # shorter than a header: dropped
    (with_flags(query(), set_bits=0x8000), None),  # a response: dropped
    (with_flags(query(), set_bits=2 << 11), dns.rcode.NOTIMP),  # opcode STATUS
    (with_counts(query(), 2, 0, 0, 0), dns.rcode.FORMERR),
    (query()[:-3], dns.rcode.FORMERR),  # the question's type and class cut off
    (with_counts(query(), 1, 0, 0, 1), dns.rcode.FORMERR),  # a record announced, none there
])
def test_what_cannot_be_answered_says_how_to_reply(packet, reply_rcode):
    with pytest.raises(wire.Malformed) as caught:
        parsed(packet)
    if reply_rcode is None:
        assert caught.value.reply is None
    else:
        reply = caught.value.reply
        assert reply[:2] == packet[:2] and reply[3] & 0x0F == reply_rcode and reply[2] & 0x80


def test_compression_loops_and_forward_pointers_are_bad_names():
    looped = b"\x00" * 12 + b"\xc0\x0c"
    with pytest.raises(wire.BadName):
        wire.read_name(looped, 12, compressed=True)
    with pytest.raises(wire.BadName):
        wire.read_name(b"\x00" * 12 + b"\xc0\x20" + b"\x00" * 40, 12, compressed=True)
    with pytest.raises(wire.BadName, match="compressed"):
        wire.read_name(b"\x00" * 12 + b"\x03abc\xc0\x0c", 12, compressed=False)


def test_names_longer_than_255_bytes_are_bad():
    label = b"\x3f" + b"a" * 63
    with pytest.raises(wire.BadName, match="longer than 255"):
        wire.read_name(label * 4 + b"\x00", 0, compressed=False)
    assert wire.read_name(label * 3 + b"\x3d" + b"a" * 61 + b"\x00", 0, compressed=False)[1] == 255


def test_question_name_is_lowercased_text():
    assert wire.question_name(query("WEB.shop.svc.cluster.local")) == WEB
    assert wire.question_name(b"\x00" * 12 + b"\x05ab") is None


# -- packed answers -------------------------------------------------------------------------


ANSWER = Answer(codes.NOERROR, answer=(Record(WEB, codes.A, 5, "10.96.100.10"),))


def test_one_packed_answer_fits_every_spelling_of_the_question():
    for spelling, qid in ((WEB, 1), (WEB.upper(), 2), ("wEb.ShOp.SvC.cLuStEr.LoCaL", 3)):
        reply = reply_to(query(spelling, "A", qid=qid), ANSWER)
        assert reply.id == qid and reply.question[0].name.to_text() == spelling + "."
        assert rrs(reply.answer) == {f"{WEB}. 5 IN A 10.96.100.10"}
        assert reply.flags & dns.flags.AA and reply.flags & dns.flags.RD and reply.flags & dns.flags.QR


def test_negative_answers_end_with_the_zones_current_soa():
    nx = Answer(codes.NXDOMAIN, soa_zone="cluster.local")
    for serial in (7, 8):  # the same packed bytes, a new serial
        reply = reply_to(query("nope.shop.svc.cluster.local"), nx, serial=serial)
        assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer
        [soa] = reply.authority
        assert soa.name.to_text() == "cluster.local." and soa[0].serial == serial and soa[0].minimum == 5


def test_srv_with_glue_loses_the_glue_before_it_is_truncated():
    targets = [f"ep-{i}.{WEB}" for i in range(12)]
    srv = Answer(codes.NOERROR, answer=tuple(Record(f"_http._tcp.{WEB}", codes.SRV, 5, (0, 8, 80, t)) for t in targets),
                 additional=tuple(Record(t, codes.A, 5, f"10.244.0.{i}") for i, t in enumerate(targets)))
    q = query(f"_http._tcp.{WEB}", "SRV")
    full = reply_to(q, srv)
    assert len(full.answer[0]) == 12 and len(full.additional) == 12
    short = reply_to(q, srv, limit=800)  # the whole reply is 923 bytes, without the glue 669
    assert len(short.answer[0]) == 12 and not short.additional and not short.flags & dns.flags.TC
    tiny = reply_to(q, srv, limit=600)
    assert tiny.flags & dns.flags.TC and not tiny.answer and tiny.question


def test_edns_queries_get_our_opt_record_with_do_echoed():
    for do in (False, True):
        reply = reply_to(query(WEB, use_edns=0, payload=4096, want_dnssec=do), ANSWER)
        assert reply.edns == 0 and reply.payload == wire.MAX_UDP and bool(reply.ednsflags & dns.flags.DO) == do


@pytest.mark.parametrize(("edns", "limit"), [(None, 512), ((100, False), 512), ((1232, False), 1232), ((4096, True), 1232)])
def test_udp_limit_follows_edns_within_bounds(edns, limit):
    assert wire.udp_limit(edns) == limit


# -- the small replies ------------------------------------------------------------------------


def test_small_replies_keep_the_question_and_say_what_they_are():
    q = parsed(query(WEB, use_edns=0))
    servfail = dns.message.from_wire(wire.simple_reply(q, codes.SERVFAIL))
    assert servfail.rcode() == dns.rcode.SERVFAIL and servfail.question and servfail.edns == 0
    failed = dns.message.from_wire(wire.upstream_failure(q))
    assert failed.rcode() == dns.rcode.SERVFAIL and failed.flags & dns.flags.RA
    truncated = dns.message.from_wire(wire.truncated_reply(q))
    assert truncated.flags & dns.flags.TC and not truncated.answer
    badvers = dns.message.from_wire(wire.badvers_reply(parsed(query(WEB, use_edns=1))), ignore_trailing=False)
    assert badvers.rcode() == dns.rcode.BADVERS and badvers.edns == 0


def test_header_reply_keeps_id_opcode_and_rd():
    reply = wire.header_reply(with_counts(query(qid=0x0102), 2, 0, 0, 0), codes.FORMERR)
    assert reply[:2] == b"\x01\x02" and len(reply) == 12
    flags = struct.unpack("!H", reply[2:4])[0]
    assert flags & 0x8000 and flags & codes.RD and flags & 0x0F == codes.FORMERR


def test_as_truncated_keeps_the_question_and_the_opt_record():
    full = reply_to(query(WEB, use_edns=0, qid=9), ANSWER)
    cut = dns.message.from_wire(wire.as_truncated(full.to_wire()))
    assert cut.id == 9 and cut.flags & dns.flags.TC and not cut.answer and cut.edns == 0 and cut.question
    assert frame(b"ab") == b"\x00\x02ab"  # (testkit's framing, used by the TCP tests)
