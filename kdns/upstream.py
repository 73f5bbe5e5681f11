"""Talking to upstream resolvers, minus the sockets: queries out, replies in, replies re-served.

kdns asks upstreams with a query of its own making (a random ID, RD set, the question as the
client asked it, EDNS0 with our buffer size and the client's DO bit) so that the reply can be
cached and served to any client. `parse_reply` checks that a reply answers that query and
turns it into an `UpstreamAnswer`: its records re-encoded without compression (so they can be
placed in any message: after the client's question, or after a CNAME of ours), the offsets
of their TTL fields (so that a cached reply is served with TTLs counting down), and how long
it may be cached. `render` builds the client's reply from it.

An upstream is not trusted further than it must be: `scrub` keeps only the records that belong
to the answer (the question's CNAME chain, the answered name's zone, never a name in kdns's own
zones), and `parse_reply` reads records only as far as they fit, written out in full, in one
reply (`MAX_RECORDS`): compression pointers cannot make a 64 KB reply cost megabytes.

Pure: no sockets and no clock; elapsed time is a parameter.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from kdns import names, wire
from kdns.codes import AA, CD, CNAME, NOERROR, NS, NXDOMAIN, OPT, QR, RA, RD, REFUSED, SOA, TC, TKEY, TSIG

DEFAULT_PORT = 53
# The RDATA layouts `parse_reply` checks, field by field: "n" a name (compression allowed:
# it is written out in full, since our reply puts it at another offset), "h" 2 bytes, "4" 4
# bytes, "f" 16 bytes, "s" 18 bytes (SIG's fixed part), "c" a character-string, "C" one or
# more character-strings to the end, "r" the rest as it is. The RDATA must be exactly its
# fields. These are the types RFC 3597 section 4 says may carry compressed names, plus the
# common ones with a fixed shape; every other type is copied as it is (RFC 3597).
_LAYOUTS = {
    1: "4",  # A
    2: "n", 3: "n", 4: "n", 5: "n", 7: "n", 8: "n", 9: "n", 12: "n", 39: "n",  # NS MD MF CNAME MB MG MR PTR DNAME
    6: "nn44444",  # SOA
    13: "cc",  # HINFO
    14: "nn", 17: "nn",  # MINFO RP
    15: "hn", 18: "hn", 21: "hn", 36: "hn",  # MX AFSDB RT KX
    16: "C", 99: "C",  # TXT SPF
    24: "snr",  # SIG
    26: "hnn",  # PX
    28: "f",  # AAAA
    30: "nr",  # NXT
    33: "hhhn",  # SRV
    35: "hhcccn",  # NAPTR
}
_FIXED = {"h": 2, "4": 4, "f": 16, "s": 18}
# Types whose layout above is class IN's (RFC 1035, 3596, 2782...): in other classes their
# RDATA is opaque, except CHAOS's A, a name and a 16-bit address (RFC 1035 section 3.4.1).
_IN_ONLY = {1, 28, 26, 33, 35, 36}
_CLASS_LAYOUTS = {(3, 1): "nh"}
# Records that belong to one hop (RFC 8945 TSIG, RFC 2930 TKEY): never passed on.
_HOP_TYPES = {TKEY, TSIG}
DNAME = 39
# The upstream's records, written out in full, must fit in one reply with the question, a
# header and our OPT record: the most any client can get from us (over TCP).
MAX_RECORDS = wire.MAX_TCP - 12 - 11
# What a cache entry costs beyond its record bytes (measured with tracemalloc on CPython
# 3.11: the Entry, the UpstreamAnswer, its tuples, the key and the cache's bookkeeping), and
# per record (a TTL offset and a TTL in two tuples).
ENTRY_OVERHEAD = 800
RECORD_OVERHEAD = 56

# One record as `parse_reply` read it: (section, owner lowercased, owner in wire form as
# written, type, class, TTL, RDATA with its names written out in full).
_Record = tuple[int, tuple[bytes, ...], bytes, int, int, int, bytes]


class ReplyError(ValueError):
    """An upstream reply that does not answer our query or cannot be read."""


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    """An upstream's answer in a form that fits into any reply of ours."""

    rcode: int
    records: bytes  # answer, authority and additional records (no OPT), uncompressed
    counts: tuple[int, int, int]  # records per section
    answer_size: int  # bytes of `records` that are the answer section
    ttl_offsets: tuple[int, ...]  # where each record's TTL field is in `records`
    ttls: tuple[int, ...]  # and its value when the reply arrived
    lifetime: int  # seconds it may be cached: 0 = not at all
    truncated: bool

    @property
    def answer_records(self) -> bytes:
        return self.records[: self.answer_size]

    @property
    def size(self) -> int:
        """Bytes this answer takes in the cache (an estimate that errs on the high side)."""
        return ENTRY_OVERHEAD + len(self.records) + RECORD_OVERHEAD * len(self.ttls)


def parse_upstream(text: str) -> tuple[str, int]:
    """`HOST`, `HOST:PORT`, `[V6]:PORT` or a bare IPv6 address -> (canonical IP, port); ValueError
    saying what is wrong otherwise."""
    host, port = text.strip(), DEFAULT_PORT
    if host.startswith("["):
        inner, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"not an address: {text!r}")
        host, port_text = inner, rest[1:]
        port = int(port_text) if port_text.isdigit() else (DEFAULT_PORT if not port_text else -1)
    elif host.count(":") == 1:
        host, port_text = host.split(":")
        port = int(port_text) if port_text.isdigit() else -1
    ip = names.canonical_ip(host)
    if ip is None:
        raise ValueError(f"not an address: {text!r}")
    if not 0 < port <= 65535:
        raise ValueError(f"not a port number in {text!r}")
    return ip, port


def parse_resolv_conf(text: str) -> list[str]:
    """The nameserver addresses of a resolv.conf (scoped IPv6 ones are skipped)."""
    servers = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            ip = names.canonical_ip(fields[1])
            if ip is not None and ip not in servers:
                servers.append(ip)
    return servers


def build_query(qid: int, question: bytes, *, do: bool, cd: bool, rd: bool = True) -> bytes:
    """Our query for `question` (name, type, class as the client sent them); `rd` off only
    for a health probe that asks for it (CoreDNS's health_check no_rec)."""
    flags = (RD if rd else 0) | (CD if cd else 0)
    opt = b"\x00\x00\x29" + struct.pack("!HBBHH", wire.MAX_UDP, 0, 0, 0x8000 if do else 0, 0)
    return struct.pack("!6H", qid, flags, 1, 0, 0, 1) + question + opt


def parse_reply(data: bytes, qid: int, question: bytes, max_ttl: int, zones: tuple[str, ...] = ()) -> UpstreamAnswer:
    """Check that `data` answers our query (ID, QR, question), re-encode its records and keep
    only those `scrub` lets through (`zones`: the zones kdns serves itself)."""
    data = bytes(data)  # (labels are slices of it, used as keys)
    if len(data) < 12:
        raise ReplyError("shorter than a DNS header")
    rid, flags, qdcount, ancount, nscount, arcount = struct.unpack_from("!6H", data)
    if rid != qid or not flags & QR:
        raise ReplyError("not a reply to our query")
    rcode = flags & 0xF
    truncated = bool(flags & TC)
    if qdcount != 1:
        if qdcount == 0 and rcode != NOERROR:
            return UpstreamAnswer(rcode, b"", (0, 0, 0), 0, (), (), 0, truncated)  # e.g. FORMERR
        raise ReplyError(f"{qdcount} questions in a reply")
    try:
        qlabels, qend = wire.read_name(data, 12, compressed=True)
    except wire.BadName as exc:
        raise ReplyError(str(exc)) from None
    if data[12 : qend + 4].lower() != question.lower():
        raise ReplyError("the reply is for another question")
    pos = qend + 4

    # Every record written out in full must fit in one reply of ours with the question: what
    # does not could reach no client, so the rest is not even read (a 64 KB reply of pointers
    # can stand for megabytes of names). Such a reply counts as truncated.
    budget = MAX_RECORDS - len(question)
    parsed: list[_Record] = []
    try:
        for i in range(ancount + nscount + arcount):
            section = 0 if i < ancount else (1 if i < ancount + nscount else 2)
            owner, pos = wire.read_name(data, pos, compressed=True)
            if pos + 10 > len(data):
                raise ReplyError("record header runs past the end")
            rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", data, pos)
            rdata_start = pos + 10
            pos = rdata_start + rdlength
            if pos > len(data):
                raise ReplyError("record data runs past the end")
            if rtype == OPT or rtype in _HOP_TYPES:
                continue
            if ttl & 0x80000000:
                ttl = 0  # RFC 2181: a TTL with the top bit set counts as 0
            rdata = _rdata(data, rtype, rclass, rdata_start, rdlength)
            owner_wire = _encode(owner)
            budget -= len(owner_wire) + 10 + len(rdata)
            if budget < 0:
                truncated = True
                break
            parsed.append((section, tuple(label.lower() for label in owner), owner_wire, rtype, rclass, ttl, rdata))
    except wire.BadName as exc:
        raise ReplyError(str(exc)) from None

    out = bytearray()
    offsets: list[int] = []
    ttls: list[int] = []
    counts = [0, 0, 0]
    answer_size = 0
    min_answer_ttl: int | None = None
    negative_ttl: int | None = None
    for section, _, owner_wire, rtype, rclass, ttl, rdata in scrub(parsed, tuple(label.lower() for label in qlabels), zones):
        out += owner_wire
        offsets.append(len(out) + 4)
        ttls.append(ttl)
        out += struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata
        counts[section] += 1
        if section == 0:
            answer_size = len(out)
            min_answer_ttl = ttl if min_answer_ttl is None else min(min_answer_ttl, ttl)
        elif section == 1 and rtype == SOA and len(rdata) >= 20:
            minimum = struct.unpack_from("!I", rdata, len(rdata) - 4)[0]
            negative_ttl = min(ttl, minimum)

    # How long it may be cached: RFC 2308 for negative answers (the SOA's TTL and minimum;
    # without an SOA, not at all); the smallest TTL of the answer otherwise. Failures and
    # truncated replies are never cached.
    if truncated or rcode not in (NOERROR, NXDOMAIN):
        lifetime = 0
    elif rcode == NOERROR and counts[0]:
        lifetime = min_answer_ttl or 0
    else:
        lifetime = negative_ttl or 0
    return UpstreamAnswer(rcode, bytes(out), (counts[0], counts[1], counts[2]), answer_size, tuple(offsets), tuple(ttls), min(lifetime, max_ttl), truncated)


def scrub(records: list[_Record], qname: tuple[bytes, ...], zones: tuple[str, ...]) -> list[_Record]:
    """The records of an upstream's reply that may reach a client, in their order.

    * Answer: only records owned by the question's name or a name on its CNAME chain (and a
      DNAME above one of them).
    * Authority and additional: only records in the answered name's zone, which is what the
      authority section says it is: the deepest owner of an SOA or NS record there that is a
      name of the chain or above one. Without such a record both sections are dropped.
    * Nothing for a name in kdns's own zones (`zones`), in any section: cluster names come
      from the cluster. In the reverse zones kdns forwards the names it has no record for,
      so there a question's own answer and its zone's SOA and NS are kept, nothing else.
    """
    forward, reverse = _zone_labels(zones)
    in_reverse = any(_below(qname, zone) for zone in reverse)

    def foreign(owner: tuple[bytes, ...], section: int, rtype: int) -> bool:
        if any(_below(owner, zone) for zone in forward):
            return False
        if any(_below(owner, zone) for zone in reverse):
            return in_reverse and (section == 0 or (section == 1 and rtype in (SOA, NS)))
        return True

    targets: dict[tuple[bytes, ...], list[tuple[bytes, ...]]] = {}
    for section, owner, _, rtype, _, _, rdata in records:
        if section == 0 and rtype == CNAME:
            targets.setdefault(owner, []).append(tuple(label.lower() for label in wire.read_name(rdata, 0, compressed=False)[0]))
    chain, todo = {qname}, [qname]
    while todo:
        for target in targets.get(todo.pop(), ()):
            if target not in chain:
                chain.add(target)
                todo.append(target)
    apex: tuple[bytes, ...] | None = None
    for section, owner, _, rtype, _, _, _ in records:
        deeper = apex is None or len(owner) > len(apex)
        if section == 1 and rtype in (SOA, NS) and deeper and foreign(owner, section, rtype) and any(_below(name, owner) for name in chain):
            apex = owner
    kept = []
    for record in records:
        section, owner, _, rtype = record[:4]
        if not foreign(owner, section, rtype):
            continue
        if section == 0:
            ok = owner in chain or (rtype == DNAME and any(name != owner and _below(name, owner) for name in chain))
        else:
            ok = apex is not None and _below(owner, apex)
        if ok:
            kept.append(record)
    return kept


def _below(name: tuple[bytes, ...], zone: tuple[bytes, ...]) -> bool:
    """Whether `name` is `zone` or a name under it (labels lowercased)."""
    return not zone or name[-len(zone) :] == zone


@functools.lru_cache(maxsize=16)
def _zone_labels(zones: tuple[str, ...]) -> tuple[tuple[tuple[bytes, ...], ...], tuple[tuple[bytes, ...], ...]]:
    """(forward zones, reverse zones) of `zones` as lowercase label tuples."""
    labels = [(zone, tuple(zone.lower().encode("latin-1").split(b"."))) for zone in zones if zone]
    return (tuple(t for z, t in labels if z not in names.REVERSE_ZONES), tuple(t for z, t in labels if z in names.REVERSE_ZONES))


def _encode(labels: list[bytes]) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def _rdata(data: bytes, rtype: int, rclass: int, start: int, length: int) -> bytes:
    """RDATA checked against its type's layout, with any compressed names written out in full."""
    layout = _LAYOUTS.get(rtype) if rclass == 1 or rtype not in _IN_ONLY else _CLASS_LAYOUTS.get((rclass, rtype))
    if layout is None:
        return data[start : start + length]
    out = bytearray()
    pos, end = start, start + length
    for field in layout:
        if field == "n":
            labels, after = wire.read_name(data, pos, compressed=True)
            if after > end:
                raise ReplyError(f"type {rtype} record: a name runs past the record data")
            out += _encode(labels)
        else:
            if field == "r":
                after = end
            elif field == "C":  # character-strings to the end, at least one
                after = pos + 1 + data[pos] if pos < end else end + 1
                while after < end:
                    after += 1 + data[after]
            elif field == "c":
                after = pos + 1 + data[pos] if pos < end else end + 1
            else:
                after = pos + _FIXED[field]
            if after > end:
                raise ReplyError(f"type {rtype} record data is shorter than its fields")
            out += data[pos:after]
        pos = after
    if pos != end:
        raise ReplyError(f"type {rtype} record data is longer than its fields")
    return bytes(out)


def aged(answer: UpstreamAnswer, elapsed: float, *, section_end: int | None = None, stale_ttl: int | None = None) -> bytes:
    """The records with their TTLs capped at the cache lifetime and counted down by
    `elapsed` seconds (never below 0), as a caching resolver serves them.

    `stale_ttl` replaces every TTL (RFC 8767: stale answers go out with a short TTL);
    `section_end` keeps only the records before that offset (the answer section).
    """
    end = len(answer.records) if section_end is None else section_end
    out = bytearray(answer.records[:end])
    passed = int(elapsed)
    cap = answer.lifetime if answer.lifetime > 0 else None
    for offset, ttl in zip(answer.ttl_offsets, answer.ttls):
        if offset >= end:
            break
        if stale_ttl is not None:
            value = stale_ttl
        else:
            value = max(0, (ttl if cap is None else min(ttl, cap)) - passed)
        struct.pack_into("!I", out, offset, value)
    return bytes(out)


def render(
    answer: UpstreamAnswer,
    query: wire.Query,
    elapsed: float,
    limit: int,
    *,
    stale_ttl: int | None = None,
    prefix: bytes = b"",
    prefix_count: int = 0,
) -> bytes:
    """The reply to `query` from an upstream's answer: the client's ID, flags and question,
    `prefix` (our own records, e.g. the CNAME of an ExternalName Service, packed for this
    query), the upstream's records with TTLs counted down, our OPT if the client sent EDNS."""
    an, ns, ar = answer.counts
    an += prefix_count
    flags = QR | RA | (AA if prefix_count else 0) | (query.flags & (RD | CD)) | answer.rcode
    if answer.truncated:
        flags |= TC  # truncated even over TCP: say so rather than pass a part off as whole
    opt = wire.opt_for(query)
    head = query.qid
    body = aged(answer, elapsed, stale_ttl=stale_ttl)
    reply = head + struct.pack("!5H", flags, 1, an, ns, ar + bool(opt)) + query.question + prefix + body + opt
    if len(reply) <= limit:
        return reply
    # Too big for the client's UDP size: the answer section alone, or TC and nothing.
    body = aged(answer, elapsed, section_end=answer.answer_size, stale_ttl=stale_ttl)
    reply = head + struct.pack("!5H", flags, 1, an, 0, bool(opt)) + query.question + prefix + body + opt
    if len(reply) <= limit:
        return reply
    return wire.question_reply(query, flags | TC)


def local_only(query: wire.Query, prefix: bytes, prefix_count: int, limit: int) -> bytes:
    """The reply without the upstream's part: our own records (an ExternalName's CNAME) if
    there are any, for the client's resolver to follow; REFUSED otherwise. TC and the
    question alone if our records do not fit in `limit`."""
    if not prefix_count:
        return wire.upstream_failure(query, REFUSED)
    flags = QR | AA | (query.flags & (RD | CD))
    opt = wire.opt_for(query)
    reply = query.qid + struct.pack("!5H", flags, 1, prefix_count, 0, bool(opt)) + query.question + prefix + opt
    if len(reply) <= limit:
        return reply
    return wire.question_reply(query, flags | TC)
