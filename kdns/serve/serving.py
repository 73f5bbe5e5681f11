"""What happens to a query the C loop does not answer: the one slow path of both transports.

`Serving.answer(data, peer, stats)` is called by the UDP loop for each datagram the C part
hands back (for every datagram without it) and by the TCP server for each message:

1. the tap (kdns.testing's faults and query list; None in production) may answer instead,
   or make the answer late;
2. over UDP, a reply already made for the same bytes is replayed, as the C part does;
3. the responder answers from the snapshot, or says that an upstream must help: a client
   outside --allow-recursion then gets our own records or REFUSED, and without a forwarder
   the answer is SERVFAIL;
4. the reply is counted in the listener's statistics, rate limited (UDP, --rrl-rate),
   logged (--log-queries) and shown to the tap.

What must wait (an upstream, a tap's delay) comes back as a `Pending`, which the transport
finishes in a task of its own (`Serving.finish`): the UDP loop goes on with other queries.

A zone transfer (AXFR, IXFR over TCP) from a client `--allow-transfer` allows comes back as
a `kdns.transfer.Transfer`, whose messages the TCP server sends one after the other; the
others get REFUSED (kdns.transfer has the rules).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

import trio

from kdns import transfer, upstream, wire
from kdns.codes import FORMERR, IXFR, REFUSED, TYPES, rcode_name
from kdns.guard import DROP, SEND, RateLimiter, RecursionAcl
from kdns.responder import UpstreamQuery
from kdns.serve.forward import Forwarder
from kdns.state import DnsState
from kdns.stats import QueryStats
from kdns.transfer import Transfer, TransferQuery

log = logging.getLogger("kdns.query")

MAX_TCP = 65535  # the largest reply over TCP


@dataclass(frozen=True, slots=True)
class Detour:
    """What a tap does with a query instead of answering it on time."""

    reply: bytes | None = None  # sent instead of the answer (None: nothing at all)
    delay: float = 0.0  # above 0: the usual answer, this many seconds late (`reply` unused)


class Tap(Protocol):
    """The one seam for tests (kdns.testing): it sees every query and may detour it."""

    def detour(self, query: bytes) -> Detour | None: ...

    def seen(self, proto: str, peer: tuple, query: bytes, reply: bytes | None) -> None: ...


@dataclass(slots=True)
class Pending:
    """A query whose answer must wait: for an upstream, or for a tap's delay."""

    data: bytes
    peer: tuple
    stats: QueryStats
    started: float  # time.perf_counter() when it arrived
    upstream: UpstreamQuery | None = None
    delay: float = 0.0


@dataclass
class Serving:
    """What the listeners answer with; a reload swaps the parts between two queries."""

    dns: DnsState
    forwarder: Forwarder | None = None
    log_queries: bool = False
    acl: RecursionAcl = field(default_factory=lambda: RecursionAcl(()))  # who may have names forwarded
    rrl: RateLimiter | None = None  # UDP response rate limiting, when enabled
    tap: Tap | None = None
    transfer_acl: tuple = ()  # ipaddress networks whose clients may transfer the zones (--allow-transfer)

    @property
    def fast(self) -> bool:
        """Whether the C loop may answer replays on its own: nothing needs each query in Python."""
        return self.rrl is None and not self.log_queries and self.tap is None

    def answer(self, data: bytes, peer: tuple, stats: QueryStats) -> bytes | Pending | Transfer | None:
        """The reply to send at once, a `Pending` to finish later, a `Transfer` (TCP: its
        messages), or None (nothing to send)."""
        stats.received += 1
        if self.tap is not None:
            detour = self.tap.detour(data)
            if detour is not None:
                if detour.delay > 0:
                    return Pending(data, peer, stats, time.perf_counter(), delay=detour.delay)
                return self._counted(data, peer, stats, detour.reply, time.perf_counter())
        return self._answer(data, peer, stats)

    def _answer(self, data: bytes, peer: tuple, stats: QueryStats, started: float | None = None) -> bytes | Pending | Transfer | None:
        responder = self.dns.responder
        udp = stats.proto == "udp"
        if udp:
            hit = responder.replayed(data)
            if hit is not None:  # counted under its key, untimed, as the C part does
                stats.counts[hit[1]] += 1  # the key responder.replay_key made
                return self._deliver(data, peer, stats, hit[0])
        if started is None:
            started = time.perf_counter()
        try:
            reply = responder.handle(data, None if udp else MAX_TCP, peer[0])
        except Exception:  # a bug in the serving core: log it, keep serving
            log.exception("%s: failed to handle a %d-byte query from %s", stats.proto, len(data), peer)
            return None
        if reply is None:
            return None  # not a query (too short for a header, or a response): no reply
        if isinstance(reply, TransferQuery):
            outcome = self._transfer(reply, peer)
            if isinstance(outcome, Transfer):
                first = next(outcome.messages)  # counted and shown as the reply
                self._counted(data, peer, stats, first, started)
                outcome.messages = itertools.chain((first,), outcome.messages)
                return outcome
            return self._counted(data, peer, stats, outcome, started)
        if type(reply) is UpstreamQuery:
            if not self.acl.allows(peer[0]):
                reply = upstream.local_only(reply.query, reply.prefix, reply.prefix_count, reply.limit)
            elif self.forwarder is not None:
                return Pending(data, peer, stats, started, upstream=reply)
            else:
                reply = wire.upstream_failure(reply.query)
        return self._counted(data, peer, stats, reply, started)  # type: ignore[arg-type]  # an UpstreamQuery went above

    def _transfer(self, tq: TransferQuery, peer: tuple) -> bytes | Transfer:
        """A zone transfer over TCP, or why not (REFUSED, FORMERR)."""
        query = tq.query
        name = ".".join(query.labels) + "."
        if not transfer.allowed(peer[0], self.transfer_acl):
            log.info("zone transfer of %s refused to %s: not allowed by --allow-transfer", name, peer[0])
            return wire.simple_reply(query, REFUSED)
        snap = self.dns.responder.snapshot
        zone = transfer.zone_of_query(snap, query)
        if zone is None:
            return wire.simple_reply(query, REFUSED)  # not a zone apex kdns serves
        only_soa = False
        if query.qtype == IXFR:
            serial = transfer.client_serial(tq.data)
            if serial is None:
                return wire.simple_reply(query, FORMERR)  # RFC 1995: an IXFR query carries the client's SOA
            only_soa = transfer.current(serial, snap.soa(zone)[0])
        out = Transfer(iter(()), zone)
        out.messages = transfer.messages(snap, query, zone, self.dns.responder.zones, out, only_soa)
        log.info("zone transfer of %s (serial %d) to %s%s", name, snap.soa(zone)[0], peer[0], ": SOA only, serial current" if only_soa else "")
        return out

    async def finish(self, pending: Pending) -> bytes | Transfer | None:
        """The reply to a `Pending` query, once its wait is over."""
        if pending.delay:
            await trio.sleep(pending.delay)
            result = self._answer(pending.data, pending.peer, pending.stats, pending.started)
            if type(result) is not Pending:
                return result  # type: ignore[return-value]  # not Pending
            pending = result
        assert pending.upstream is not None  # a Pending without a delay waits for an upstream
        reply = await self.ask_upstream(pending.upstream)
        return self._counted(pending.data, pending.peer, pending.stats, reply, pending.started)

    def give_up(self, pending: Pending) -> bytes | None:
        """No room to wait (too many questions in flight): SERVFAIL at once, queue nothing."""
        if pending.upstream is None:
            return None  # a tap's late answer: dropped, the client asks again
        reply = wire.upstream_failure(pending.upstream.query)
        return self._counted(pending.data, pending.peer, pending.stats, reply, pending.started)

    async def ask_upstream(self, uq: UpstreamQuery) -> bytes:
        """The upstream's reply (SERVFAIL without a forwarder). A bug on the way is logged
        and answered SERVFAIL: it must not end the listener's task group."""
        if self.forwarder is None:
            return wire.upstream_failure(uq.query)
        try:
            return await self.forwarder.reply(uq)
        except Exception:
            logging.getLogger("kdns.serve").exception("failed to forward a query for %r", uq.question)
            return wire.upstream_failure(uq.query)

    def _counted(self, data: bytes, peer: tuple, stats: QueryStats, reply: bytes | None, started: float) -> bytes | None:
        stats.count(data, reply, self.dns.responder.zones, time.perf_counter() - started)
        return self._deliver(data, peer, stats, reply)

    def _deliver(self, data: bytes, peer: tuple, stats: QueryStats, reply: bytes | None) -> bytes | None:
        """Rate limiting (UDP), the query log and the tap: what goes out, if anything."""
        if reply is not None and self.rrl is not None and stats.proto == "udp":
            verdict = self.rrl.check(peer[0], time.monotonic())
            if verdict == DROP:
                return None
            if verdict != SEND:
                reply = wire.as_truncated(reply)  # a slip: "ask again over TCP"
        if self.log_queries:
            log_query(stats.proto, peer, data, reply)
        if self.tap is not None:
            self.tap.seen(stats.proto, peer, data, reply)
        return reply


def log_query(proto: str, peer, query: bytes, reply: bytes | None) -> None:
    """One line per query (`--log-queries`): client, name, type, rcode, size."""
    try:
        labels, end = wire.read_name(query, 12, compressed=False)
        name = ".".join(label.decode("latin-1") for label in labels) + "."
        qtype = TYPES.get(int.from_bytes(query[end : end + 2], "big"), "other")
    except (wire.BadName, IndexError):
        name, qtype = "?", "?"
    log.info("%s %s %s %s %s %d", peer[0], proto, name, qtype, rcode_name(reply) or "no reply", len(reply or b""))
