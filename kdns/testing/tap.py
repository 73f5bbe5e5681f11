"""What kdns.testing sees of the queries, and the faults it injects: the server's one test
seam (`kdns.serve.serving.Tap`), consulted by the slow path both transports share.

No sockets, no trio; the rest of kdns is imported when a query first arrives, so that
loading the pytest plugin stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdns.codes import TYPES, rcode_name


@dataclass(frozen=True)
class Query:
    """A question the server received: name (as asked, lowercased, no trailing dot), type
    ("A", "AAAA", ...), the client's address and the rcode answered ("NOERROR", ...; None
    when no reply was sent)."""

    name: str
    type: str
    client: str
    rcode: str | None


@dataclass(frozen=True)
class Fault:
    """What to do instead of answering a name normally."""

    rcode: int | None = None  # answer with this rcode and no records
    delay: float = 0.0  # answer normally, this many seconds late
    truncate: bool = False  # answer with TC set and no records
    drop: bool = False  # do not answer at all


class TestTap:
    """Faults by lowercased question name (`faults`), and every query seen, in order (`queries`)."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, queries: list[Query]):
        self.faults: dict[str, Fault] = {}
        self.queries = queries

    def detour(self, query: bytes):
        """A `kdns.serve.serving.Detour` for a name with a fault, else None."""
        if not self.faults:
            return None
        from kdns import wire
        from kdns.serve.serving import Detour

        fault = self.faults.get(wire.question_name(query) or "")
        if fault is None:
            return None
        if fault.delay:
            return Detour(delay=fault.delay)
        return Detour(reply=fault_reply(fault, query))

    def seen(self, proto: str, peer: tuple, query: bytes, reply: bytes | None) -> None:
        from kdns import wire

        qtype = 0
        name = wire.question_name(query) or "?"
        if name != "?":
            end = 12 + sum(len(label) + 1 for label in name.split(".") if label) + 1
            qtype = int.from_bytes(query[end : end + 2], "big")
        self.queries.append(Query(name, TYPES.get(qtype, str(qtype)), peer[0], rcode_name(reply)))


def fault_reply(fault: Fault, query: bytes) -> bytes | None:
    """The reply a fault gives instead of the answer (None: no reply)."""
    from kdns import wire

    if fault.drop:
        return None
    try:
        parsed = wire.parse_query(query)
    except wire.Malformed as exc:
        return exc.reply
    if fault.truncate:
        return wire.truncated_reply(parsed)
    return wire.simple_reply(parsed, fault.rcode or 0)
