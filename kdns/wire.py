"""The DNS wire format: reading queries, packing answers, splicing replies. (Over 400 lines:
it is the one dnslib adapter and the one query parser, which is its point; the packing that
needs no dnslib is in `packing`.)

kdns packs an answer once and reuses the bytes. `pack_answer` turns an `result.Answer` into
an `Entry`: the reply minus its first 12 bytes, its question and its SOA record, compressed
against the lowercased question. Because name compression only records offsets, and a
question's offsets depend on its length and not on its case, an `Entry` fits every query
for the same name and type whatever its case (0x20 randomisation included). `render` splices
in the query's ID, flags and question exactly as asked, appends the zone's current SOA (so a
new serial does not invalidate packed negative answers) and the OPT record, and truncates for
UDP.

Parsing: `parse_query` reads a query itself: the header, the question (strictly: no
compression in it) and every other record's framing, with a bounded walk over compression
pointers. Only these few fields matter to a server, and a parser of our own can promise
what dnslib's recursive name decoder cannot: that no input costs more than one pass (its
loop check misses two pointers aimed at each other). What cannot be parsed raises
`Malformed`, carrying the reply to send (FORMERR, NOTIMP) or None when the packet must be
dropped (no readable header, or not a query at all). A query signed with TSIG is
`Malformed` too: kdns knows no keys, so it gets NOTAUTH with a TSIG record saying BADKEY
(RFC 8945 section 5.2.2, as NSD and knot answer), unsigned; a TSIG record anywhere but last
in the additional section is FORMERR (section 5.1). dnslib does the RDATA and
name-compression work of `pack_answer`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from dnslib import AAAA, CNAME, MX, NS, PTR, RR, SOA, SRV, TXT, A, DNSLabel
from dnslib.label import DNSBuffer

from kdns import codes, names, packing
from kdns.codes import AA, BADKEY, BADVERS, CD, CLASS_ANY, FORMERR, NOTAUTH, NOTIMP, OPCODE_MASK, OPT, QR, RA, RD, SERVFAIL, TC, TSIG
from kdns.packing import Entry
from kdns.result import Answer, Record

COPIED_FLAGS = RD | CD  # copied from the query into the reply

SOA_TIMERS = (7200, 1800, 86400)  # refresh, retry, expire of our SOA records (CoreDNS's)
MIN_UDP = 512  # RFC 1035, and what a query without EDNS gets
MAX_UDP = 1232  # what we advertise and the most we send over UDP (DNS flag day 2020)
MAX_TCP = 65535

_OPT_TAIL = struct.pack("!HBBHH", MAX_UDP, 0, 0, 0, 0)
OPT_RR = b"\x00\x00\x29" + _OPT_TAIL  # root owner, type OPT, our UDP size, no flags
OPT_RR_DO = b"\x00\x00\x29" + struct.pack("!HBBHH", MAX_UDP, 0, 0, 0x8000, 0)  # DO echoed (RFC 3225)


class Malformed(Exception):
    """A packet that cannot be answered normally. `reply` is what to send, or None to drop."""

    def __init__(self, reason: str, reply: bytes | None):
        super().__init__(reason)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Edns:
    udp_size: int
    version: int
    do: bool


@dataclass(slots=True, unsafe_hash=True)
class Query:
    """A query as `parse_query` or `plain_query` read it: a value (nobody changes one); not
    frozen only because a frozen dataclass takes 2-3 µs to build, a first-time name's budget."""

    qid: bytes  # the two ID bytes
    flags: int
    question: bytes  # qname + qtype + qclass exactly as received
    qname: bytes  # the question name in wire form, lowercased: the memo key
    labels: tuple[str, ...]  # lowercase labels (latin-1 decoded, so any byte survives)
    qtype: int
    qclass: int
    edns: Edns | None

    @property
    def qtail(self) -> bytes:
        return self.question[-4:]


MAX_NAME = 255  # bytes of a name in wire form, terminator included (RFC 1035)
MAX_POINTERS = 64  # compression pointers followed in one name before it counts as a loop


def _formerr(data: bytes, reason: str) -> Malformed:
    return Malformed(reason, header_reply(data, FORMERR))


class BadName(ValueError):
    """A name that cannot be read from a message."""


def read_name(data: bytes, pos: int, *, compressed: bool) -> tuple[list[bytes], int]:
    """The labels of the name at `pos` and the offset just after it in the message.

    Pointers must point backwards and are followed at most MAX_POINTERS times, so loops
    and long chains end in an error rather than in recursion. A question name may not be
    compressed (`compressed=False`): it is the first name in the message.
    """
    labels: list[bytes] = []
    size, end, hops = 1, None, 0
    while True:
        if pos >= len(data):
            raise BadName("name runs past the end")
        length = data[pos]
        if length == 0:
            return labels, (pos + 1 if end is None else end)
        if length & 0xC0 == 0xC0 and compressed:
            if pos + 1 >= len(data):
                raise BadName("name runs past the end")
            target = (length & 0x3F) << 8 | data[pos + 1]
            hops += 1
            if target >= pos or hops > MAX_POINTERS:
                raise BadName("compression pointer loop or forward pointer")
            if end is None:
                end = pos + 2
            pos = target
            continue
        if length & 0xC0:
            raise BadName("compressed or extended label where none is allowed")
        size += 1 + length
        if size > MAX_NAME:
            raise BadName(f"name longer than {MAX_NAME} bytes")
        if pos + 1 + length > len(data):
            raise BadName("name runs past the end")
        labels.append(data[pos + 1 : pos + 1 + length])
        pos += 1 + length


def question_name(query: bytes) -> str | None:
    """The lowercased question name of a query ("web.default.svc.cluster.local"), or None."""
    try:
        labels, _ = read_name(query, 12, compressed=False)
    except (BadName, IndexError):
        return None
    return ".".join(label.decode("latin-1") for label in labels).lower()


def _name(data: bytes, pos: int, *, compressed: bool) -> tuple[list[bytes], int]:
    try:
        return read_name(data, pos, compressed=compressed)
    except BadName as exc:
        raise _formerr(data, str(exc)) from None


def parse_query(data: bytes) -> Query:
    if len(data) < 12:
        raise Malformed("shorter than a DNS header", None)
    flags = int.from_bytes(data[2:4], "big")
    if flags & QR:
        raise Malformed("a response, not a query", None)
    if flags & OPCODE_MASK:
        raise Malformed(f"opcode {(flags & OPCODE_MASK) >> 11} is not implemented", header_reply(data, NOTIMP))
    qdcount, ancount, nscount, arcount = struct.unpack_from("!4H", data, 4)
    if qdcount != 1:
        raise _formerr(data, f"{qdcount} questions")

    labels, pos = _name(data, 12, compressed=False)
    if pos + 4 > len(data):
        raise _formerr(data, "question type or class missing")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    qend = pos + 4

    # The other sections: only an OPT record in the additional section matters to us,
    # but every record must be readable for the query to count as well-formed.
    edns = None
    tsig: tuple[list[bytes], int, int] | None = None  # (key name, RDATA offset, RDATA length)
    pos = qend
    records = ancount + nscount + arcount
    for i in range(records):
        owner, pos = _name(data, pos, compressed=True)
        if pos + 10 > len(data):
            raise _formerr(data, "record header runs past the end")
        rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", data, pos)
        pos += 10 + rdlength
        if pos > len(data):
            raise _formerr(data, "record data runs past the end")
        if rtype == OPT:
            if i < ancount + nscount or edns is not None or owner:
                raise _formerr(data, "misplaced or repeated OPT record")
            edns = Edns(max(MIN_UDP, rclass), (ttl >> 16) & 0xFF, bool(ttl & 0x8000))
        elif rtype == TSIG:
            if i != records - 1 or i < ancount + nscount:
                raise _formerr(data, "a TSIG record that is not the last of the additional section")
            tsig = (owner, pos - rdlength, rdlength)

    query = Query(
        qid=data[:2],
        flags=flags,
        question=data[12:qend],
        qname=data[12 : qend - 4].lower(),
        labels=tuple(label.lower().decode("latin-1") for label in labels),
        qtype=qtype,
        qclass=qclass,
        edns=edns,
    )
    if tsig is not None:
        raise Malformed("signed with a TSIG key kdns does not know", _badkey_reply(data, query, *tsig))
    return query


def plain_query(data: bytes, qend: int, qname: bytes, edns: tuple[int, bool] | None) -> Query | None:
    """`parse_query` for a query whose framing is already checked, as the responder's fast
    path checks it (a query, opcode 0, one question ending at `qend`, no answer or authority
    records, at most an OPT record of version 0 that ends the packet; `edns` is its (UDP
    size, DO)): only the name is left to read, from `qname`, the question name lowercased.
    None when the name is not a well-formed uncompressed name: `parse_query` says why."""
    labels = plain_labels(qname)
    if labels is None:
        return None
    return Query(data[:2], data[2] << 8 | data[3], data[12:qend], qname, labels, data[qend - 4] << 8 | data[qend - 3],
                 data[qend - 2] << 8 | data[qend - 1], None if edns is None else Edns(max(MIN_UDP, edns[0]), 0, edns[1]))


def plain_labels(qname: bytes) -> tuple[str, ...] | None:
    """The labels of `qname`, an uncompressed wire name ending in its root byte (latin-1
    text, as `Query.labels`), or None when it is not well formed."""
    pos, last = 0, len(qname) - 1
    if last >= MAX_NAME:
        return None
    text = qname.decode("latin-1")
    labels = []
    while pos < last:
        length = qname[pos]
        if length > 63:
            return None
        labels.append(text[pos + 1 : pos + 1 + length])
        pos += 1 + length
    return tuple(labels) if pos == last else None


def _badkey_reply(data: bytes, query: Query, key: list[bytes], start: int, length: int) -> bytes:
    """NOTAUTH, and a TSIG record with error BADKEY: the query's key and algorithm names, time
    signed, fudge and original ID, no MAC and no other data (RFC 8945 sections 5.2.2, 5.3.2)."""
    end = start + length
    algorithm, pos = _name(data, start, compressed=True)
    if pos + 10 > end:
        raise _formerr(data, "TSIG record data too short")
    mac_size = int.from_bytes(data[pos + 8 : pos + 10], "big")
    after_mac = pos + 10 + mac_size
    if after_mac + 6 > end or after_mac + 6 + int.from_bytes(data[after_mac + 4 : after_mac + 6], "big") != end:
        raise _formerr(data, "TSIG record data does not match its length")
    rdata = _wire_name(algorithm) + data[pos : pos + 8] + b"\x00\x00" + data[after_mac : after_mac + 2] + struct.pack("!HH", BADKEY, 0)
    record = _wire_name(key) + struct.pack("!HHIH", TSIG, CLASS_ANY, 0, len(rdata)) + rdata
    opt = opt_for(query)
    flags = QR | (query.flags & COPIED_FLAGS) | NOTAUTH
    return query.qid + struct.pack("!5H", flags, 1, 0, 0, 1 + bool(opt)) + query.question + opt + record


def _wire_name(labels: list[bytes]) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


class _Buffer(DNSBuffer):  # type: ignore[misc]  # dnslib has no type information
    """dnslib's buffer, minus one trap: it remembers names written past offset 0x3FFF, where
    a 14-bit compression pointer cannot reach (it would silently point elsewhere)."""

    def encode_name(self, name: DNSLabel) -> None:
        if self.offset + 256 <= 0x4000:  # every suffix of this name will be reachable
            super().encode_name(name)
            return
        before = set(self.names)
        super().encode_name(name)
        for suffix in set(self.names) - before:
            if self.names[suffix] > 0x3FFF:
                del self.names[suffix]


def _label(name: str) -> DNSLabel:
    return DNSLabel(name.encode("latin-1")) if name else DNSLabel(())


def _rdata(record: Record) -> Any:
    t = record.rtype
    d: Any = record.data  # its type follows rtype (see Record)
    if t == codes.A:
        return A(d)
    if t == codes.AAAA:
        return AAAA(d)
    if t == codes.SRV:
        priority, weight, port, target = d
        return SRV(priority, weight, port, _label(target))
    if t == codes.CNAME:
        return CNAME(_label(d))
    if t == codes.PTR:
        return PTR(_label(d))
    if t == codes.NS:
        return NS(_label(d))
    if t == codes.TXT:
        return TXT([part.encode() for part in d]) if isinstance(d, tuple) else TXT(d.encode())
    if t == codes.MX:
        return MX(_label(d[1]), d[0])
    if t == codes.SOA:  # (mname, rname, serial, refresh, retry, expire, minimum): zone transfers (kdns.transfer)
        return SOA(_label(d[0]), _label(d[1]), d[2:])
    raise ValueError(f"cannot pack record type {t}")  # pragma: no cover - answer makes only these


def pack_answer(query: Query, result: Answer, zones: tuple[str, ...]) -> Entry:
    """Pack `result` for `query`'s (lowercased) question. `zones` indexes `Entry.soa`.

    `packing.pack` packs the types kdns answers with; an answer with another type of record
    is packed here with dnslib (`_rdata` says which types it knows), with the same names
    compression, so both give the same bytes."""
    entry = packing.pack(query, result, zones)
    return entry if entry is not None else pack_with_dnslib(query, result, zones)


def pack_with_dnslib(query: Query, result: Answer, zones: tuple[str, ...]) -> Entry:
    """`pack_answer` by dnslib, whatever the record types (`_rdata`)."""
    buffer = _Buffer()
    buffer.append(b"\x00" * 12)
    buffer.encode_name(DNSLabel(tuple(label.encode("latin-1") for label in query.labels)))
    buffer.pack("!HH", query.qtype, query.qclass)
    start = buffer.offset
    for record in result.answer + result.authority:
        RR(_label(record.name), record.rtype, ttl=record.ttl, rdata=_rdata(record)).pack(buffer)
    middle = buffer.offset
    for record in result.additional:
        RR(_label(record.name), record.rtype, ttl=record.ttl, rdata=_rdata(record)).pack(buffer)
    data = bytes(buffer.data)

    soa = zones.index(result.soa_zone) if result.soa_zone is not None else -1
    an, ns = len(result.answer), len(result.authority)
    soa_at = -1
    if soa >= 0:
        # `render` appends the SOA after the body: it must be the last record.
        assert not result.additional, "an answer with an SOA has no additional section"
        soa_at = packing.zone_offset(query.qname, names.to_wire(zones[soa]))
        if result.soa_in_answer:
            an += 1
        else:
            ns += 1
    flags = QR | (AA if result.authoritative else 0) | result.rcode
    zone = packing.question_zone(query.qname, zones)
    short = None
    if result.additional:
        short = Entry(flags, (an, ns, 0), data[start:middle], soa, None, soa_at, zone=zone)
    return Entry(flags, (an, ns, len(result.additional)), data[start:], soa, short, soa_at, zone=zone)


def soa_record(zone: str, serial: int, ttl: int, mname: str | None = None, rname: str | None = None) -> bytes:
    """The zone's SOA record, uncompressed so it can end any message.

    CoreDNS's values: `ns.dns.<zone>. hostmaster.<zone>. <serial> 7200 1800 86400 <ttl>`
    (an external zone names its own MNAME and RNAME), with the record's own TTL capped at
    300 seconds.
    """
    owner = names.to_wire(zone)
    mname = names.join("ns.dns", zone) if mname is None else mname
    rname = names.join("hostmaster", zone) if rname is None else rname
    rdata = names.to_wire(mname) + names.to_wire(rname)
    rdata += struct.pack("!5I", serial & 0xFFFFFFFF, *SOA_TIMERS, ttl)
    return owner + struct.pack("!HHIH", codes.SOA, codes.CLASS_IN, min(ttl, 300), len(rdata)) + rdata


def render(entry: Entry, qid: bytes, qflags: int, question: bytes, soa: bytes, edns: tuple[int, bool] | None, limit: int) -> bytes:
    """The reply to send: `entry` with the query's ID, flags and question spliced in.

    `edns` is (client UDP size, DO bit) or None; `limit` the most bytes the transport
    takes. A reply too big for it loses its additional section, then everything but the
    question, with TC set.
    """
    flags = entry.flags | (qflags & COPIED_FLAGS)
    if edns is None:
        reply = b"".join((qid, flags.to_bytes(2, "big"), entry.counts, question, entry.body, soa))
    else:
        opt = OPT_RR_DO if edns[1] else OPT_RR
        reply = b"".join((qid, flags.to_bytes(2, "big"), entry.counts_edns, question, entry.body, soa, opt))
    if entry.zone_at:
        reply = _client_spelling(reply, entry.zone_at, question)
    if len(reply) <= limit:
        return reply
    if entry.short is not None:
        return render(entry.short, qid, qflags, question, soa, edns, limit)
    return _question_only(qid, flags | TC, question, b"" if edns is None else (OPT_RR_DO if edns[1] else OPT_RR))


def _client_spelling(reply: bytes, zone_at: tuple[tuple[int, int, int], ...], question: bytes) -> bytes:
    """`reply` with the question's spelling copied over the parts of SRV targets it shares
    with the question (`Entry.zone_at`): unchanged when the client asked in lowercase."""
    out = None
    for at, q_at, length in zone_at:
        spelled = question[q_at : q_at + length]
        if reply[at : at + length] != spelled:
            if out is None:
                out = bytearray(reply)
            out[at : at + length] = spelled
    return reply if out is None else bytes(out)


def udp_limit(edns: tuple[int, bool] | None, most: int = MAX_UDP) -> int:
    """The largest UDP reply for a client that offers `edns` (its size, DO) or no EDNS;
    `most`: the server's own limit (--udp-max-size, CoreDNS's bufsize)."""
    if edns is None:
        return MIN_UDP
    return max(MIN_UDP, min(edns[0], most))


# -- the small replies: no records of ours, or none at all ------------------------------------


def header_reply(data: bytes, rcode: int) -> bytes:
    """A reply made of the query's header alone: ID, opcode and RD kept, no sections (for
    a query whose question cannot be read)."""
    flags = int.from_bytes(data[2:4], "big")
    flags = QR | (flags & (OPCODE_MASK | RD)) | rcode
    return data[:2] + flags.to_bytes(2, "big") + b"\x00" * 8


def opt_for(query: Query) -> bytes:
    """Our OPT record for a reply to `query` (DO echoed), or b"" when it had no EDNS."""
    if query.edns is None:
        return b""
    return OPT_RR_DO if query.edns.do else OPT_RR


def _question_only(qid: bytes, flags: int, question: bytes, opt: bytes) -> bytes:
    return b"".join((qid, flags.to_bytes(2, "big"), struct.pack("!4H", 1, 0, 0, bool(opt)), question, opt))


def question_reply(query: Query, flags: int) -> bytes:
    """A reply with these header flags, the question and no records (but our OPT record)."""
    return _question_only(query.qid, flags, query.question, opt_for(query))


def simple_reply(query: Query, rcode: int) -> bytes:
    """A reply with the question and no records (SERVFAIL for a bug, for example)."""
    return question_reply(query, QR | (query.flags & COPIED_FLAGS) | rcode)


def truncated_reply(query: Query) -> bytes:
    """TC set, the question and no records: "ask again over TCP"."""
    return question_reply(query, QR | AA | TC | (query.flags & COPIED_FLAGS))


def upstream_failure(query: Query, rcode: int = SERVFAIL) -> bytes:
    """SERVFAIL (or another rcode) for a query we could not forward: RA set, as a recursive
    answer would have it."""
    return question_reply(query, QR | RA | (query.flags & COPIED_FLAGS) | rcode)


def badvers_reply(query: Query) -> bytes:
    """RFC 6891: an EDNS version we do not speak gets BADVERS and our version (0)."""
    opt = b"\x00\x00\x29" + struct.pack("!HBBHH", MAX_UDP, BADVERS >> 4, 0, 0, 0)
    return _question_only(query.qid, QR | (query.flags & COPIED_FLAGS), query.question, opt)


def as_truncated(reply: bytes) -> bytes:
    """The same reply with TC set and only its question (and its OPT record, which RFC 6891
    keeps in every reply to an EDNS query): "ask again over TCP" (rate limiting)."""
    try:
        _, end = read_name(reply, 12, compressed=False)
    except (BadName, IndexError):
        return reply[:12]
    end += 4
    flags = int.from_bytes(reply[2:4], "big") | TC
    return _question_only(reply[:2], flags, reply[12:end], _opt_record(reply, end))


def _opt_record(reply: bytes, pos: int) -> bytes:
    """The OPT record among the records of `reply` from `pos` on, or b"" (none, or unreadable)."""
    try:
        for _ in range(sum(struct.unpack_from("!3H", reply, 6))):
            _, after = read_name(reply, pos, compressed=True)
            rtype, rdlength = struct.unpack_from("!H6xH", reply, after)
            end = after + 10 + rdlength
            if rtype == OPT and end <= len(reply):
                return reply[pos:end]
            pos = end
    except (BadName, IndexError, struct.error):
        pass
    return b""
