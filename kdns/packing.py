"""Answers to bytes without dnslib: the packing of `wire.pack_answer`, made for first-time names.

`pack(query, result, zones)` turns an `result.Answer` into an `Entry` (the reply minus its
header and question) the way dnslib's packer does, byte for byte: names are compressed
against the (lowercased) question and the names written before them, following dnslib's rule
(every suffix of a name is remembered at its offset, the first match becomes a pointer; SRV
targets are never compressed, RFC 2782). Only what differs is faster: an owner that is the
question itself is the pointer to offset 12 at once, the question's suffixes are only worked
out when another name needs them, and the index's addresses and names are kept packed for the
next time (`MAX_ADDRESSES`, `MAX_NAMES`: a few hundred kB at most).
It packs the record types kdns answers with (A, AAAA, CNAME, PTR, NS, SRV, TXT) and returns
None for any other, which `wire.pack_answer` then packs with dnslib.

Letter case: because owner names and in-zone CNAME targets are pointers into the question,
and `wire.render` splices in the question exactly as the client sent it, a client that
randomises its case (0x20) sees its own spelling in owners and in the part of a target that
is shared with its question. The zone's SOA ends negative answers: `Entry.soa_at` is where
the zone starts in the question (or -1 when the question is not in that zone), so the
responder writes the SOA's owner and the zone part of its two names as pointers there too
(`soa_record`), as CoreDNS keeps the query's spelling in its SOA. An SRV target cannot be a
pointer: `Entry.zone_at` lists where its zone part lies in the body, and `wire.render`
copies the question's spelling of the zone over it when the two differ.

Negative answers without records are the bulk of first-time names; their Entries hold no
per-name bytes and are shared (`_shared`), so a memo of a hundred thousand NXDOMAINs holds a
few hundred Entry objects. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import TYPE_CHECKING, Any, cast

from kdns import codes, names

if TYPE_CHECKING:
    from kdns.result import Answer, Record
    from kdns.wire import Query

_HEADER = struct.Struct("!HHIH")
_SRV = struct.Struct("!HHH")
_POINTER_12 = b"\xc0\x0c"
MAX_POINTER = 0x3FFF  # the largest offset a 14-bit compression pointer reaches


class Entry:
    """A packed answer, independent of query ID, flags, question case and SOA serial."""

    __slots__ = ("body", "counts", "counts_edns", "flags", "short", "soa", "soa_at", "zone", "zone_at")

    def __init__(self, flags: int, counts: tuple[int, int, int], body: bytes, soa: int, short: Entry | None,
                 soa_at: int = -1, zone_at: tuple[tuple[int, int, int], ...] = (), zone: int = -1):
        an, ns, ar = counts
        self.zone = zone  # index of the zone the question is in (the longest), -1 for none: for statistics
        self.flags = flags  # QR, AA and RCODE; RD and CD come from the query
        self.counts = struct.pack("!4H", 1, an, ns, ar)
        self.counts_edns = struct.pack("!4H", 1, an, ns, ar + 1)
        self.body = body  # answer, authority and additional records, SOA excepted
        self.soa = soa  # index of the zone whose SOA ends the message, or -1
        self.short = short  # the same without the additional section, for small UDP sizes
        # where the SOA's zone starts in the question (its owner points there), or -1: the
        # question is not in that zone and the SOA is written out in full
        self.soa_at = soa_at
        # (body offset, question offset, length) of each SRV target's zone part: the client's
        # spelling of the zone is copied there (`wire.render`)
        self.zone_at = zone_at


_shared: dict[tuple[int, int, int, int, int, int], Entry] = {}  # bounded: flags x counts x zones x offsets
MAX_SHARED = 4096


def shared_entry(flags: int, an: int, ns: int, soa: int, soa_at: int, zone: int) -> Entry:
    """The Entry of an answer with no records of its own (NXDOMAIN, NODATA, the apex SOA):
    one object for every name with the same shape."""
    key = (flags, an, ns, soa, soa_at, zone)
    entry = _shared.get(key)
    if entry is None:
        if len(_shared) >= MAX_SHARED:
            _shared.clear()
        entry = _shared[key] = Entry(flags, (an, ns, 0), b"", soa, None, soa_at, zone=zone)
    return entry


def question_zone(qname: bytes, zones: tuple[str, ...]) -> int:
    """The index in `zones` of the longest zone the lowercase wire name `qname` is in, or -1."""
    best, best_len = -1, -1
    for i, zone in enumerate(zones):
        wire = _zone_wire(zone)
        if len(wire) > best_len and zone_offset(qname, wire) >= 0:
            best, best_len = i, len(wire)
    return best


def is_shared(entry: Entry) -> bool:
    return not entry.body and entry.short is None


def zone_offset(qname: bytes, zone_wire: bytes) -> int:
    """Where `zone_wire` (a lowercase wire name) starts in the lowercase wire name `qname`,
    when `qname` is that zone or a name in it; else -1."""
    at = len(qname) - len(zone_wire)
    if at < 0 or not qname.endswith(zone_wire):
        return -1
    pos = 0
    while pos < at:
        pos += 1 + qname[pos]
    return at if pos == at else -1


def _zone_wire(zone: str, cache: dict[str, bytes] = {}) -> bytes:  # noqa: B006 (a cache, bounded below)
    wire = cache.get(zone)
    if wire is None:
        if len(cache) >= 256:
            cache.clear()
        wire = cache[zone] = names.to_wire(zone)
    return wire


_name_cache: dict[str, bytes] = {}
MAX_NAMES = 8192  # record names kept in wire form (owners and targets from the index)


def name_wire(name: str) -> bytes:
    """`names.to_wire(name)`, remembered for the names answers use again and again."""
    wire = _name_cache.get(name)
    if wire is None:
        if len(_name_cache) >= MAX_NAMES:
            _name_cache.clear()
        wire = _name_cache[name] = names.to_wire(name)
    return wire


_address_cache: dict[str, bytes] = {}
MAX_ADDRESSES = 4096  # addresses kept packed (the index's, asked again and again)


def _address(ip: str) -> bytes:
    parts = ip.split(".")
    # (IPv4 by hand: ipaddress takes three times as long, and the index's addresses are canonical)
    packed = bytes(map(int, parts)) if len(parts) == 4 and ":" not in ip else ipaddress.ip_address(ip).packed
    if len(_address_cache) >= MAX_ADDRESSES:
        _address_cache.clear()
    _address_cache[ip] = packed
    return packed


class _Names:
    """dnslib's compression table for one message: each suffix of a name written (wire form,
    lowercase) -> its offset; the question's suffixes only once some name needs them."""

    __slots__ = ("qname", "table")

    def __init__(self, qname: bytes):
        self.qname = qname
        self.table: dict[bytes, int] | None = None

    def _start(self) -> dict[bytes, int]:
        table: dict[bytes, int] = {}
        qname, pos = self.qname, 0
        while qname[pos]:
            table[qname[pos:]] = 12 + pos
            pos += 1 + qname[pos]
        self.table = table
        return table

    def put(self, out: bytearray, wire: bytes, base: int) -> None:
        """Append `wire` to `out` (which starts at message offset `base`), compressed."""
        table = self.table if self.table is not None else self._start()
        pos, last, start = 0, len(wire) - 1, base + len(out)
        while pos < last:
            suffix = wire[pos:]
            at = table.get(suffix)
            if at is not None:
                out += wire[:pos]
                out += (0xC000 | at).to_bytes(2, "big")
                return
            if start + pos <= MAX_POINTER:
                table[suffix] = start + pos
            pos += 1 + wire[pos]
        out += wire


def _txt(data: object) -> bytes | None:
    strings = [data] if isinstance(data, str) else list(data) if isinstance(data, (tuple, list)) else None
    if strings is None or not all(isinstance(s, str) for s in strings):
        return None
    out = bytearray()
    for s in strings:
        raw = s.encode()
        if len(raw) > 255:
            raise ValueError(f"TXT string longer than 255 bytes: {s!r}")
        out.append(len(raw))
        out += raw
    return bytes(out)


def _records(records: tuple[Record, ...], qtext: str, comp: _Names, out: bytearray, base: int,
             zone_at: list[tuple[int, int, int]]) -> bool:
    """Append `records` to `out`; False (and `out` unusable) on a type this module does not pack."""
    for record in records:
        if record.name == qtext:
            out += _POINTER_12
        else:
            comp.put(out, name_wire(record.name), base)
        rtype, data = record.rtype, record.data
        if rtype == codes.A or rtype == codes.AAAA:
            rdata = _address_cache.get(data)  # type: ignore[call-overload]
            if rdata is None:
                rdata = _address(data)  # type: ignore[arg-type]
            if len(rdata) != (4 if rtype == codes.A else 16):
                raise ValueError(f"not an address of a type {rtype} record: {data!r}")
            out += _HEADER.pack(rtype, codes.CLASS_IN, record.ttl, len(rdata))
            out += rdata
        elif rtype in (codes.CNAME, codes.PTR, codes.NS):
            at = len(out)
            out += _HEADER.pack(rtype, codes.CLASS_IN, record.ttl, 0)
            comp.put(out, name_wire(data), base)  # type: ignore[arg-type]
            struct.pack_into("!H", out, at + 8, len(out) - at - 10)
        elif rtype == codes.SRV:
            priority, weight, port, target = cast("tuple[int, int, int, str]", data)
            wire = name_wire(target)
            out += _HEADER.pack(rtype, codes.CLASS_IN, record.ttl, 6 + len(wire))
            out += _SRV.pack(priority, weight, port)
            _zone_part(wire, comp.qname, base + len(out), zone_at)
            out += wire  # never compressed (RFC 2782)
        elif rtype == codes.TXT:
            rdata = _txt(data)
            if rdata is None:
                return False
            out += _HEADER.pack(rtype, codes.CLASS_IN, record.ttl, len(rdata))
            out += rdata
        else:
            return False
    return True


def _zone_part(target: bytes, qname: bytes, at: int, zone_at: list[tuple[int, int, int]]) -> None:
    """Note where `target` (written at message offset `at`) shares a tail with the question
    beyond the root: that tail is the part a client's spelling can be copied into."""
    shared = 0
    n, m = len(target), len(qname)
    while shared < n and shared < m and target[n - 1 - shared] == qname[m - 1 - shared]:
        shared += 1
    shared -= 1  # the root byte needs no copying
    if shared <= 0:
        return
    # start the copy at a label boundary of the target
    pos = 0
    while pos < n - 1 - shared:
        pos += 1 + target[pos]
    length = n - 1 - pos
    if length > 0 and qname[m - 1 - length: m - 1] == target[pos: n - 1]:
        zone_at.append((at + pos, m - 1 - length, length))


_negatives: dict[tuple[Any, ...], tuple[Entry, bytes]] = {}  # bounded: MAX_SHARED


def negative_entry(qname: bytes, result: Answer, zones: tuple[str, ...]) -> Entry:
    """`pack` for an answer without records (`result.answer` and `result.additional` empty)
    to the lowercase wire name `qname`: a shared Entry, found by the answer's shape and the
    length of the name (the SOA's zone is the question's own: its offset follows)."""
    key = (result.soa_zone, result.rcode, result.soa_in_answer, result.authoritative, len(qname), zones)
    held = _negatives.get(key)
    if held is not None and qname.endswith(held[1]):
        return held[0]
    entry = _pack_negative(qname, result, zones)
    if entry.soa_at >= 0:  # (else its statistics zone depends on the name: not kept)
        if len(_negatives) >= MAX_SHARED:
            _negatives.clear()
        _negatives[key] = (entry, _zone_wire(result.soa_zone))  # type: ignore[arg-type]
    return entry


def _pack_negative(qname: bytes, result: Answer, zones: tuple[str, ...]) -> Entry:
    soa = zones.index(result.soa_zone) if result.soa_zone is not None else -1
    an = ns = 0
    soa_at = -1
    if soa >= 0:
        zone_wire = _zone_wire(result.soa_zone)  # type: ignore[arg-type]
        if qname.endswith(zone_wire):
            # No records: the SOA is the question's own zone (`answer` found it label by
            # label), so the match is at a label boundary.
            soa_at = len(qname) - len(zone_wire)
        if result.soa_in_answer:
            an += 1
        else:
            ns += 1
    flags = codes.QR | (codes.AA if result.authoritative else 0) | result.rcode
    return shared_entry(flags, an, ns, soa, soa_at, soa if soa_at >= 0 else question_zone(qname, zones))


def pack(query: Query, result: Answer, zones: tuple[str, ...]) -> Entry | None:
    """`result` packed for `query`'s question (a `wire.Query`: its lowercase `qname`, `labels`
    and `question`); None when a record has a type this module does not pack."""
    qname = query.qname
    if not result.answer and not result.additional and not result.authority:
        return negative_entry(qname, result, zones)
    soa = zones.index(result.soa_zone) if result.soa_zone is not None else -1
    an, ns = len(result.answer), 0
    soa_at = -1
    if soa >= 0:
        # `render` appends the SOA after the body: it must be the last record.
        assert not result.additional, "an answer with an SOA has no additional section"
        soa_at = zone_offset(qname, _zone_wire(result.soa_zone))  # type: ignore[arg-type]
        if result.soa_in_answer:
            an += 1
        else:
            ns += 1
    flags = codes.QR | (codes.AA if result.authoritative else 0) | result.rcode
    zone = question_zone(qname, zones)
    qtext = ".".join(query.labels)
    comp = _Names(qname)
    base = 12 + len(query.question)
    out = bytearray()
    zone_at: list[tuple[int, int, int]] = []
    if not _records(result.answer, qtext, comp, out, base, zone_at):
        return None
    if result.authority:  # (a template's: kdns's own answers have only the SOA there)
        if not _records(result.authority, qtext, comp, out, base, zone_at):
            return None
        ns += len(result.authority)
    middle = len(out)
    short_zone_at = tuple(zone_at)
    if not _records(result.additional, qtext, comp, out, base, zone_at):
        return None
    body = bytes(out)
    short = None
    if result.additional:
        short = Entry(flags, (an, ns, 0), body[:middle], soa, None, soa_at, short_zone_at, zone)
    return Entry(flags, (an, ns, len(result.additional)), body, soa, short, soa_at, tuple(zone_at), zone)


def soa_parts(zone: str, serial: int, ttl: int) -> tuple[bytes, bytes, bytes]:
    """The zone's SOA record (CoreDNS's values: `ns.dns.<zone>. hostmaster.<zone>. <serial>
    7200 1800 86400 <ttl>`, the record's own TTL capped at 300 s) in three pieces, for a
    pointer to the zone before each: type to the end of `ns.dns`, `hostmaster`, the numbers."""
    rdlength = 7 + 2 + 11 + 2 + 20
    head = _HEADER.pack(codes.SOA, codes.CLASS_IN, min(ttl, 300), rdlength) + b"\x02ns\x03dns"
    numbers = struct.pack("!5I", serial & 0xFFFFFFFF, 7200, 1800, 86400, ttl)
    return head, b"\x0ahostmaster", numbers


def soa_record(parts: tuple[bytes, ...], offset: int) -> bytes:
    """The SOA record whose owner and names point at the zone at message `offset` (`soa_parts`;
    or one piece, the record after its owner: only the owner points there)."""
    pointer = (0xC000 | offset).to_bytes(2, "big")
    if len(parts) == 1:
        return pointer + parts[0]
    return b"".join((pointer, parts[0], pointer, parts[1], pointer, parts[2]))
