"""The trio shell: sockets in, `Responder.handle` in the middle, sockets out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from kdns import upstream, wire
from kdns.codes import RCODES, TYPES
from kdns.guard import RateLimiter, RecursionAcl
from kdns.responder import Responder

log = logging.getLogger("kdns.query")


@dataclass
class Serving:
    """What the listeners answer with; a reload swaps the parts between two queries."""

    responder: Responder
    forwarder: object | None = None  # kdns.serve.forward.Forwarder (imported lazily there)
    log_queries: bool = False
    # Called with (proto, peer, query, reply) after each reply (kdns.testing records them).
    on_query: Callable[[str, tuple, bytes, bytes | None], None] | None = None
    # Fault switches of kdns.testing, by lowercased question name; empty in production.
    faults: dict[str, Fault] = field(default_factory=dict)
    acl: RecursionAcl = field(default_factory=lambda: RecursionAcl(()))  # who may have names forwarded
    rrl: RateLimiter | None = None  # UDP response rate limiting, when enabled

    async def ask_upstream(self, uq) -> bytes:
        """The upstream's reply to a UpstreamQuery (SERVFAIL without a forwarder). A bug on the way
        is logged and answered SERVFAIL: it must not end the listener's task group."""
        if self.forwarder is None:
            return wire.upstream_failure(uq.query)
        try:
            return await self.forwarder.reply(uq)
        except Exception:
            logging.getLogger("kdns.serve").exception("failed to forward a query for %r", uq.question)
            return wire.upstream_failure(uq.query)

    def refuse_recursion(self, uq, client: str | None) -> bytes | None:
        """The reply for a UpstreamQuery from a client not allowed recursion; None if allowed."""
        if self.acl.allows(client):
            return None
        return upstream.local_only(uq.query, uq.prefix, uq.prefix_count, uq.limit)


@dataclass(frozen=True)
class Fault:
    """What to do instead of answering a name normally (see kdns.testing)."""

    rcode: int | None = None  # answer with this rcode and no records
    delay: float = 0.0  # answer normally, this many seconds late
    truncate: bool = False  # answer with TC set and no records
    drop: bool = False  # do not answer at all


def question_name(query: bytes) -> str | None:
    """The lowercased question name of a query ("web.default.svc.cluster.local"), or None."""
    try:
        labels, _ = wire.read_name(query, 12, compressed=False)
    except (wire.BadName, IndexError):
        return None
    return ".".join(label.decode("latin-1") for label in labels).lower()


def fault_reply(fault: Fault, query: bytes) -> bytes | None:
    """The reply a fault gives instead of the answer (None: no reply, or answer late)."""
    if fault.drop or fault.delay:
        return None
    try:
        parsed = wire.parse_query(query)
    except wire.Malformed as exc:
        return exc.reply
    if fault.truncate:
        return wire.truncated_reply(parsed)
    return wire.simple_reply(parsed, fault.rcode or 0)


def notify(state: Serving, proto: str, peer, query: bytes, reply: bytes | None) -> None:
    if state.log_queries:
        log_query(proto, peer, query, reply)
    if state.on_query is not None:
        state.on_query(proto, peer, query, reply)


def log_query(proto: str, peer, query: bytes, reply: bytes | None) -> None:
    """One line per query (`--log-queries`): client, name, type, rcode, size."""
    try:
        labels, end = wire.read_name(query, 12, compressed=False)
        name = ".".join(label.decode("latin-1") for label in labels) + "."
        qtype = TYPES.get(int.from_bytes(query[end : end + 2], "big"), "other")
    except (wire.BadName, IndexError):
        name, qtype = "?", "?"
    rcode = RCODES.get(reply[3] & 0xF, str(reply[3] & 0xF)) if reply and len(reply) > 3 else "no reply"
    log.info("%s %s %s %s %s %d", peer[0], proto, name, qtype, rcode, len(reply or b""))
