"""What happens to a query the C loop does not answer: the one slow path of both transports.

`Serving.answer(data, peer, stats)` is called by the UDP loop for each datagram the C part
hands back (for every datagram without it) and by the TCP server for each message:

1. the tap (kdns.testing's faults and query list; None in production) may answer instead,
   or make the answer late;
2. over UDP, a reply already made for the same bytes is replayed, as the C part does (one
   made from the forwarding cache only while its TTLs stand, and to --allow-recursion
   clients);
3. the responder answers from the snapshot, or says that an upstream must help: a client
   outside --allow-recursion then gets our own records or REFUSED, and without a forwarder
   the answer is SERVFAIL; a fresh entry of the forwarding cache is answered at once (and,
   over UDP, kept for replay until its TTLs count down another second);
4. the reply is counted in the listener's statistics, rate limited (UDP, --rrl-rate),
   logged (--log-queries) and shown to the tap.

What must wait (an upstream that is asked, a tap's delay) comes back as a `Pending`, which the transport
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
from typing import Protocol, cast

import trio

from kdns import transfer, ttlpatch, upstream, wire
from kdns.codes import FORMERR, IXFR, REFUSED, TYPES, rcode_name
from kdns.guard import DROP, SEND, RateLimiter, RecursionAcl
from kdns.responder import UpstreamQuery
from kdns.serve.forward import Forwarder, Fresh
from kdns.state import DnsState
from kdns.stats import QueryStats
from kdns.stats import forwarded_key as stats_forwarded_key
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

    def answer_udp(self, data: bytes, peer: tuple, stats: QueryStats, labels: tuple[str, ...] | None = None) -> bytes | Pending | Transfer | None:
        """`answer` for a UDP datagram the C loop did not find in the replay table, shorter when
        nothing needs each query (no tap, rate limiting or query log: when the C loop runs):
        the path of every first-time name. `labels`: the question name's labels, which the C
        loop has read. (Not looked up in the replay table again: a datagram whose twin came
        earlier in the same run is answered afresh, the same bytes.)"""
        if self.tap is not None or self.rrl is not None or self.log_queries:
            return self.answer(data, peer, stats)
        stats.received += 1
        responder = self.dns.responder
        started = time.perf_counter()
        try:
            quick = responder.plain_udp(data, peer[0], labels)
            reply, key = quick if quick is not None else responder.answer_keyed(data, None, peer[0])
        except Exception:  # a bug in the serving core: log it, keep serving
            log.exception("udp: failed to handle a %d-byte query from %s", len(data), peer)
            return None
        if key is not None:  # kept for replay: its key holds what the statistics count
            stats.count_key(key, time.perf_counter() - started, len(data), len(reply))  # type: ignore[arg-type]
            return reply  # type: ignore[return-value]
        return self._then(data, peer, stats, reply, None, started, True)

    def _answer(self, data: bytes, peer: tuple, stats: QueryStats, started: float | None = None) -> bytes | Pending | Transfer | None:
        responder = self.dns.responder
        udp = stats.proto == "udp"
        if udp:
            hit = responder.replay_entry(data[2:])
            if hit is not None:
                if len(hit) == 2:
                    stats.counts[hit[1]] += 1  # counted under its key, untimed, as the C part does
                    return self._deliver(data, peer, stats, data[:2] + hit[0])
                # A reply made from the forwarding cache: until its deadline, only for clients
                # that may have names forwarded, its TTLs counted down (the C part does the same).
                now = time.monotonic()
                if now < hit[2] and self.acl.allows(peer[0]):
                    stats.counts[hit[1]] += 1
                    return self._deliver(data, peer, stats, data[:2] + ttlpatch.patched(hit[0], hit[4], int(now - hit[3])))
        if started is None:
            started = time.perf_counter()
        try:
            reply, key = responder.answer_keyed(data, None if udp else MAX_TCP, peer[0])
        except Exception:  # a bug in the serving core: log it, keep serving
            log.exception("%s: failed to handle a %d-byte query from %s", stats.proto, len(data), peer)
            return None
        return self._then(data, peer, stats, reply, key, started, udp)

    def _then(self, data: bytes, peer: tuple, stats: QueryStats, reply: bytes | UpstreamQuery | TransferQuery | None, key: object,
              started: float, udp: bool) -> bytes | Pending | Transfer | None:
        """What follows the responder's reply: the forwarder, the recursion allow list, counting."""
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
        if isinstance(reply, UpstreamQuery):
            uq = reply
            if not self.acl.allows(peer[0]):
                reply = upstream.local_only(uq.query, uq.prefix, uq.prefix_count, uq.limit)
            elif self.forwarder is not None:
                fresh = self.forwarder.fresh(uq)  # a fresh cache entry: answered here, no task
                if fresh is None:
                    return Pending(data, peer, stats, started, upstream=uq)
                reply = fresh.reply
                responder = self.dns.responder
                # (kept for replay unless it is this client's alone: autopath)
                if udp and uq.replayable and self.forwarder.cache.clock is time.monotonic:  # (the C part's clock)
                    end = 8 + len(uq.query.question)  # (where the question name ends: 12 + its length)
                    fkey = stats_forwarded_key(data, reply, responder.zones, fresh.success, end) if responder.replay_key else None
                    self._remember_forwarded(data, reply, fkey, fresh, uq.prefix_count)
                    if fkey is not None:
                        stats.count_key(fkey, time.perf_counter() - started, len(data), len(reply))
                        return self._deliver(data, peer, stats, reply)
            else:
                reply = wire.upstream_failure(uq.query)
        elif key is not None:  # kept for replay: its key holds what the statistics count
            made = reply
            stats.count_key(cast(tuple, key), time.perf_counter() - started, len(data), len(made))
            return self._deliver(data, peer, stats, made)
        return self._counted(data, peer, stats, reply, started)

    def _remember_forwarded(self, data: bytes, reply: bytes, key: object, fresh: Fresh, own: int) -> None:
        """Keep a reply made from the forwarding cache for replay until its deadline or the first
        of its TTLs reaches 0, whichever comes first; its TTLs counted down on replay
        (kdns.ttlpatch; `own`: our records first in the answer, whose TTLs stay)."""
        try:
            patches, first_zero = ttlpatch.table(reply, own, fresh.passed)
        except ttlpatch.BadReply:  # (never for a reply we rendered: then it is not replayed)
            logging.getLogger("kdns.serve").exception("not replaying a reply made from the forwarding cache")
            return
        until = fresh.until if first_zero is None else min(fresh.until, fresh.stored + first_zero)
        self.dns.responder.remember_forwarded(data, reply, key, until, fresh.stored, patches)

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
            if not isinstance(result, Pending):
                return result
            pending = result
        assert pending.upstream is not None
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
