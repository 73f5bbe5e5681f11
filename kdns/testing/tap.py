"""What kdns.testing sees of the queries, and the faults it injects: the server's one test
seam (`kdns.serve.serving.Tap`), consulted by the slow path both transports share.

A `Fault` is a handle: made by `KdnsServer.fail()` / `.delay()` / `.truncate()` / `.drop()` /
`.fault()`, it matches names as the application writes them (kdns.testing.match), one query
type or all, for `times` queries or for ever, and counts the queries it changed (`hits`).
When several faults match a query, the one added last that has not run out applies.

No sockets, no trio; the rest of kdns is imported when a query first arrives, so that
loading the pytest plugin stays cheap.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from kdns.codes import RCODES, TYPES
from kdns.testing.match import NamePattern
from kdns.testing.querylog import Query, QueryLog

if TYPE_CHECKING:
    from kdns.serve.serving import Detour

KINDS = ("rcode", "delay", "truncate", "drop")
# The rcodes a fault can answer with: RFC 1035's and RFC 2136's (a header holds 4 bits).
RCODE_NUMBERS = {name: number for number, name in RCODES.items()} | {
    "YXDOMAIN": 6, "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10,
}
TYPE_NUMBERS = {name: number for number, name in TYPES.items()}


class Fault:
    """A fault: what to do instead of answering the queries it matches.

    `kind` is "rcode" (answer with `rcode` and no records), "delay" (answer normally,
    `delay` seconds late), "truncate" (TC set, no records) or "drop" (no reply at all).
    `hits` counts the queries it changed; `used` says whether it changed any.
    """

    def __init__(self, kind: str, pattern: NamePattern, *, rcode: int | None = None, delay: float = 0.0,
                 qtype: int | None = None, times: int | None = None):
        self.kind = kind
        self.pattern = pattern
        self.rcode = rcode
        self.delay = delay
        self.qtype = qtype
        self.times = times
        self.hits = 0  # queries this fault changed (written by the server's thread)

    @property
    def name(self) -> str:
        """The name as it was given ("redis", "*.example.com", "redis.app.svc.cluster.local.")."""
        return self.pattern.text

    @property
    def used(self) -> bool:
        return self.hits > 0

    @property
    def exhausted(self) -> bool:
        """True once it has changed `times` queries: the next ones get normal answers."""
        return self.times is not None and self.hits >= self.times

    def applies(self, qname: str, qtype: int) -> bool:
        return not self.exhausted and (self.qtype is None or self.qtype == qtype) and self.pattern.matches(qname)

    def __repr__(self) -> str:
        what = {"rcode": RCODES.get(self.rcode or 0, str(self.rcode)), "delay": f"delay {self.delay:g}s"}.get(self.kind, self.kind)
        scope = f" {TYPES.get(self.qtype, self.qtype)}" if self.qtype is not None else ""
        times = f", {self.hits} of {self.times} times" if self.times is not None else f", {self.hits} hits"
        return f"<Fault {what} for {self.name!r}{scope}{times}>"


def make_fault(kind: str, pattern: NamePattern, value: object = None, *, qtype: str | int | None = None,
               times: int | None = None) -> Fault:
    """A checked Fault: unknown kinds, rcodes and types are a ValueError listing the valid ones."""
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; the kinds are: {', '.join(KINDS)}")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise ValueError(f"times must be a whole number of queries, 1 or more (or None: every query), got {times!r}")
    number = None if qtype is None else qtype_number(qtype)
    if kind == "rcode":
        return Fault(kind, pattern, rcode=rcode_number("SERVFAIL" if value is None else value), qtype=number, times=times)
    if kind == "delay":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"a delay is a number of seconds above 0, got {value!r}")
        return Fault(kind, pattern, delay=float(value), qtype=number, times=times)
    if value is not None:
        raise ValueError(f"a {kind} fault takes no value, got {value!r}")
    return Fault(kind, pattern, qtype=number, times=times)


def rcode_number(rcode: object) -> int:
    """"SERVFAIL" (any case) or 2 -> 2; ValueError listing the valid ones otherwise."""
    if isinstance(rcode, str) and rcode.strip().upper() in RCODE_NUMBERS:
        return RCODE_NUMBERS[rcode.strip().upper()]
    if isinstance(rcode, int) and not isinstance(rcode, bool) and 0 <= rcode <= 15:
        return rcode
    raise ValueError(
        f"unknown rcode {rcode!r}; valid: {', '.join(RCODE_NUMBERS)} or a number 0-15 "
        "(for no answer at all use .drop(), for a late one .delay(), for TC .truncate())"
    )


def qtype_number(qtype: object) -> int:
    """"AAAA" (any case) or 28 -> 28; ValueError listing the valid names otherwise."""
    if isinstance(qtype, str) and qtype.strip().upper() in TYPE_NUMBERS:
        return TYPE_NUMBERS[qtype.strip().upper()]
    if isinstance(qtype, int) and not isinstance(qtype, bool) and 0 < qtype < 65536:
        return qtype
    raise ValueError(f"unknown query type {qtype!r}; valid: {', '.join(TYPE_NUMBERS)} or a number 1-65535")


class TestTap:
    """The faults (`faults`, in the order added), and every query seen, in order (`queries`)."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, queries: QueryLog):
        self.faults: list[Fault] = []
        self.queries = queries

    def detour(self, query: bytes) -> Detour | None:
        """A `kdns.serve.serving.Detour` for a query a fault applies to, else None."""
        if not self.faults:
            return None
        from kdns.serve.serving import Detour

        name, qtype = question(query)
        if name is None:
            return None
        for fault in reversed(self.faults):  # the last one added wins
            if fault.applies(name, qtype):
                fault.hits += 1
                if fault.kind == "delay":
                    return Detour(delay=fault.delay)
                return Detour(reply=fault_reply(fault, query))
        return None

    def seen(self, proto: str, peer: tuple, query: bytes, reply: bytes | None) -> None:
        from kdns.codes import rcode_name

        name, qtype = question(query)
        self.queries.append(Query(name or "?", TYPES.get(qtype, str(qtype)), peer[0], rcode_name(reply), proto))


def question(query: bytes) -> tuple[str | None, int]:
    """The question's name (lowercased, no trailing dot) and type; (None, 0) if unreadable."""
    from kdns import wire

    name = wire.question_name(query)
    if name is None:
        return None, 0
    end = 12 + sum(len(label) + 1 for label in name.split(".") if label) + 1
    return name, int.from_bytes(query[end : end + 2], "big")


def fault_reply(fault: Fault, query: bytes) -> bytes | None:
    """The reply a fault gives instead of the answer (None: no reply)."""
    from kdns import wire

    if fault.kind == "drop":
        return None
    try:
        parsed = wire.parse_query(query)
    except wire.Malformed as exc:
        return exc.reply
    if fault.kind == "truncate":
        return wire.truncated_reply(parsed)
    return wire.simple_reply(parsed, fault.rcode or 0)
