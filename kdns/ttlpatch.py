"""The TTL fields of a reply made from the forwarding cache, to count them down on replay.

A fresh answer of the forwarding cache is rendered once (`Forwarder.fresh`) and kept in the
replay table for its whole fresh life (issue 15): the replay writes, into a copy of the kept
bytes, each TTL as `max(0, base - whole seconds since the base time)`, which is what
`upstream.aged` gives at that moment (the same whole seconds: `int(now - stored)`), so a
replay and a fresh render are the same bytes.

`table(reply, skip, passed)` walks the reply as it was sent (after a Corefile's rewrite
changed owner names, truncation for the client's UDP size, compression pointers in our own
records) once, and gives the TTL fields to patch as `PATCH`-packed (offset in the reply minus
its ID, TTL at the base time) pairs. The first `skip` records of the answer section are our
own (an ExternalName's CNAME: `UpstreamQuery.prefix`), whose TTLs do not count down; the OPT
pseudo-record's "TTL" (extended rcode and flags) is never touched. `patched` applies a table;
kdns/_udpbatch.c does the same in C. Pure: no clock, no I/O.
"""

from __future__ import annotations

import struct

PATCH = struct.Struct("!HI")  # offset in the reply minus its ID (2 bytes), TTL at the base time (4)
OPT = 41


class BadReply(ValueError):
    """The bytes are not a reply this module can walk (never for replies kdns renders)."""


def _skip_name(data: bytes, pos: int) -> int:
    """Where the name at `pos` ends (after its zero byte or its compression pointer)."""
    for _ in range(128):
        if pos >= len(data):
            raise BadReply("a name runs past the end")
        length = data[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            if pos + 2 > len(data):
                raise BadReply("a compression pointer runs past the end")
            return pos + 2
        if length & 0xC0:
            raise BadReply(f"label type {length >> 6:#x}")
        pos += 1 + length
    raise BadReply("a name of more than 127 labels")


def ttl_fields(reply: bytes) -> list[tuple[int, int, int]]:
    """(section record number, offset of the TTL field in `reply`, RR type) of every record
    after the question, in order; BadReply when the bytes do not parse."""
    if len(reply) < 12:
        raise BadReply("shorter than a header")
    qd, an, ns, ar = struct.unpack_from("!4H", reply, 4)
    pos = 12
    for _ in range(qd):
        pos = _skip_name(reply, pos) + 4
    fields = []
    for number in range(an + ns + ar):
        pos = _skip_name(reply, pos)
        if pos + 10 > len(reply):
            raise BadReply("a record runs past the end")
        rtype, _, _, rdlength = struct.unpack_from("!HHIH", reply, pos)
        fields.append((number, pos + 4, rtype))
        pos += 10 + rdlength
    if pos != len(reply):
        raise BadReply("bytes after the last record" if pos < len(reply) else "a record runs past the end")
    return fields


def table(reply: bytes, skip: int, passed: int) -> tuple[bytes, int | None]:
    """The TTL patches of `reply` (rendered `passed` whole seconds after the base time), and
    the smallest base TTL among those still above 0 (None if none): the reply's TTLs are
    exact for as long as each patched one is `max(0, base - seconds since the base)`."""
    out = []
    first_zero = None
    for number, offset, rtype in ttl_fields(reply):
        if number < skip or rtype == OPT:
            continue
        (value,) = struct.unpack_from("!I", reply, offset)
        base = value + passed  # (a TTL already at 0 stays there: its base is at most `passed`)
        if value > 0 and (first_zero is None or base < first_zero):
            first_zero = base
        if offset - 2 > 0xFFFF or base > 0xFFFFFFFF:
            raise BadReply("an offset or a TTL out of range")
        out.append(PATCH.pack(offset - 2, base))
    return b"".join(out), first_zero


def patched(body: bytes, patches: bytes, passed: int) -> bytes:
    """`body` (a reply minus its ID) with each TTL of `patches` counted down by `passed`
    whole seconds, never below 0."""
    if not patches:
        return body
    out = bytearray(body)
    for offset, base in PATCH.iter_unpack(patches):
        struct.pack_into("!I", out, offset, base - passed if base > passed else 0)
    return bytes(out)
