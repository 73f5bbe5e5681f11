"""Forwarding to upstream resolvers: the cache, failover, health probes, prefetch.

`Forwarder.reply(uq)` turns a `responder.UpstreamQuery` (what the responder could not answer alone) into reply bytes:

1. a fresh cache entry is served at once, with its TTLs counted down (and, if it is
   popular and about to expire, refreshed in the background: prefetch);
2. otherwise the upstreams of the name's group are asked, healthy ones first in the order of
   the group's policy (kdns.pool: random by default, as CoreDNS), each with a timeout: UDP
   first on a connected socket (the kernel drops datagrams from anyone else; a reply must
   also carry our random ID and our question), then TCP when the reply is truncated, or TCP
   at once as the group's transport says. Identical questions in flight share one upstream
   exchange;
3. when every upstream fails, an expired entry still within the serve-stale window is served
   with a short TTL (RFC 8767); failing that, SERVFAIL.

An upstream that fails max_fails times in a row (2 by default) is marked unhealthy and skipped
(unless nothing else is left) until a background probe (`. NS`, every health_check seconds)
gets an answer from it. Names under a stub domain go only to that domain's upstreams; names
under a domain of no upstreams (--upstream-except) get SERVFAIL, as CoreDNS's `forward ...
{ except }` with no plugin after it; names under an --upstream-default domain go to the
default group even inside a stub domain (an `except` handed on to a later `forward .`). `detect_loop` runs once at start and refuses upstreams that
send our own queries back to us.
"""

from __future__ import annotations

import logging
import random
import secrets
import select
import socket
import struct
import time
from dataclasses import dataclass, field

import trio

from kdns import pool, wire
from kdns import upstream as up
from kdns.cache import Entry as CacheEntry
from kdns.cache import ForwardCache, Key
from kdns.codes import CD, RCODES, REFUSED, SERVFAIL
from kdns.pool import DEFAULT, PoolOptions
from kdns.responder import UpstreamQuery
from kdns.stats import duration_bucket

log = logging.getLogger("kdns.forward")

MAX_TRIES = 3  # upstreams asked for one question
STALE_TTL = 30  # RFC 8767's recommended TTL for stale answers
# What one exchange with an upstream may fail with: network errors (trio's streams report a
# reset connection as BrokenResourceError), a timeout, a reply that does not fit the query.
EXCHANGE_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, up.ReplyError, wire.BadName)


@dataclass(eq=False)
class Upstream:
    host: str
    port: int
    fails: int = 0
    healthy: bool = True

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


@dataclass(eq=False)
class Group:
    """The upstreams one name goes to, with their options; `turn` counts its questions
    (for round_robin). No upstreams: names of an `except` zone (SERVFAIL)."""

    upstreams: list[Upstream]
    options: PoolOptions = DEFAULT
    turn: int = 0


@dataclass(slots=True)
class Fresh:
    """A reply made from a fresh cache entry, and whether it is a positive answer. Until
    `until` (the cache's clock: `time.monotonic` in kdns serve) it stays the same bytes but the
    ID and its TTLs, which count down whole seconds since `stored` (`passed` of them when it
    was rendered: kdns.ttlpatch)."""

    reply: bytes
    until: float
    success: bool
    stored: float = 0.0
    passed: int = 0


@dataclass
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    result: up.UpstreamAnswer | None = None


class Forwarder:
    def __init__(
        self,
        upstreams: list[Upstream],
        stubs: dict[str, list[Upstream]],
        cache: ForwardCache,
        *,
        timeout: float,
        stale_ttl: int = STALE_TTL,
        max_concurrent: int = 0,
        options: PoolOptions = DEFAULT,
        stub_options: dict[str, PoolOptions] | None = None,
        defaults: tuple[str, ...] = (),
        rng: random.Random | None = None,
    ):
        """`timeout`: seconds one try may take (--upstream-timeout). `max_concurrent`: distinct
        questions in flight upstream at most, REFUSED beyond (--upstream-max-concurrent,
        CoreDNS's forward max_concurrent); 0: no limit. `options`: the default upstreams'
        policy, transport and health checks; `stub_options`: a stub domain's (else `options`).
        `defaults`: domains whose names go to the default group (the same upstreams, their
        health and turn shared) even inside a stub domain (--upstream-default)."""
        self.upstreams = upstreams
        self.stubs = stubs  # domain (lowercase, no trailing dot) -> its upstreams ([]: SERVFAIL)
        self.default = Group(upstreams, options)
        self.groups = {domain: Group(servers, (stub_options or {}).get(domain, options)) for domain, servers in stubs.items()}
        self.groups.update((domain, self.default) for domain in defaults if domain not in self.groups)
        self.rng = rng or random.Random()
        self.cache = cache
        self.timeout = timeout
        self.stale_ttl = stale_ttl
        self._inflight: dict[Key, _Pending] = {}
        self.max_concurrent = max_concurrent
        self.refused_concurrent = 0  # questions refused for max_concurrent (for metrics and tests)
        self._nursery: trio.Nursery | None = None
        self.requests = 0  # upstream exchanges attempted (for metrics and tests)
        # (upstream, rcode) -> (count per duration bucket, total seconds), for metrics
        self.durations: dict[tuple[str, str], tuple[dict[int, int], float]] = {}

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Host the background work (health probes, prefetches) until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def close(self) -> None:
        """Stop the background work (health probes, prefetches)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def route(self, name: str) -> list[Upstream]:
        """The upstreams for `name`: the longest stub domain it lies in, else the default."""
        return self.group(name).upstreams

    def group(self, name: str) -> Group:
        """The group for `name`: the longest stub domain it lies in, else the default."""
        best = None
        for domain in self.groups:
            if (name == domain or name.endswith("." + domain)) and (best is None or len(domain) > len(best)):
                best = domain
        return self.groups[best] if best is not None else self.default

    def fresh(self, uq: UpstreamQuery) -> Fresh | None:
        """The reply from a fresh cache entry, at once (no task, no await), or None: then
        `reply` asks the upstreams. A popular entry close to expiry is refreshed in the
        background (prefetch), as `reply` does."""
        group = self.group(uq.name)
        if not group.upstreams:
            return None
        key = _key(uq)
        entry = self.cache.fresh(key)
        if entry is None:
            return None
        self._prefetch(entry, key, uq, group)
        elapsed = self.cache.clock() - entry.stored
        reply = self._render(entry.answer, uq, elapsed)
        return Fresh(reply, self.cache.replay_until(entry), _success(entry.answer), entry.stored, int(elapsed))

    def _prefetch(self, entry: CacheEntry, key: Key, uq: UpstreamQuery, group: Group) -> None:
        if self.cache.due_for_refresh(entry) and self._nursery is not None:
            entry.refreshing = True
            self._nursery.start_soon(self._refresh, key, uq.question, key[3], key[4], group, uq.zones)

    async def reply(self, uq: UpstreamQuery) -> bytes:
        query = uq.query
        key = _key(uq)
        do, cd = key[3], key[4]
        group = self.group(uq.name)
        if not group.upstreams:
            if group is self.default:  # only stub domains, and the name is in none: not our business
                return wire.upstream_failure(query, REFUSED)
            return wire.upstream_failure(query)  # an except zone: SERVFAIL, as CoreDNS's NextOrFailure
        entry, fresh = self.cache.get(key)
        if fresh and entry is not None:
            self._prefetch(entry, key, uq, group)
            return self._render(entry.answer, uq, self.cache.clock() - entry.stored)
        if self.max_concurrent and key not in self._inflight and len(self._inflight) >= self.max_concurrent:
            self.refused_concurrent += 1
            return wire.upstream_failure(query, REFUSED)
        # A client over TCP gets a limit beyond any UDP size (wire.MAX_TCP): transport `client`
        # then asks over TCP too.
        answer = await self._resolve(key, uq.question, do, cd, group, uq.zones, uq.limit > wire.MAX_UDP)
        if answer is None:
            if entry is not None:  # every upstream failed: serve stale (RFC 8767)
                self.cache.stale_served += 1
                log.info("serving a stale answer for %s: no upstream answers", uq.name)
                return self._render(entry.answer, uq, 0, stale_ttl=self.stale_ttl)
            return wire.upstream_failure(query)
        return self._render(answer, uq, 0)

    def _render(self, answer: up.UpstreamAnswer, uq: UpstreamQuery, elapsed: float, stale_ttl: int | None = None) -> bytes:
        if uq.revert is not None:  # a Corefile's rewrite: the records' names back to the asked one
            answer = uq.revert(answer)
        return up.render(answer, uq.query, elapsed, uq.limit, stale_ttl=stale_ttl, prefix=uq.prefix, prefix_count=uq.prefix_count)

    async def _resolve(
        self, key: Key, question: bytes, do: bool, cd: bool, group: Group, zones: tuple[str, ...], client_tcp: bool
    ) -> up.UpstreamAnswer | None:
        """Ask the upstreams once per question, however many clients are waiting for it."""
        pending = self._inflight.get(key)
        if pending is not None:
            await pending.done.wait()
            return pending.result
        pending = self._inflight[key] = _Pending()
        try:
            pending.result = await self._ask(question, do, cd, group, zones, client_tcp)
            if pending.result is not None:
                kept = self.cache.put(key, pending.result)
                pending.result = kept.answer if kept is not None else pending.result  # (TTLs raised to a minimum)
        finally:
            del self._inflight[key]
            pending.done.set()
        return pending.result

    async def _refresh(self, key: Key, question: bytes, do: bool, cd: bool, group: Group, zones: tuple[str, ...]) -> None:
        answer = await self._ask(question, do, cd, group, zones, False)
        if answer is not None:
            self.cache.put(key, answer)
        else:
            entry, _ = self.cache.get(key)
            if entry is not None:
                entry.refreshing = False

    async def _ask(self, question: bytes, do: bool, cd: bool, group: Group, zones: tuple[str, ...],
                   client_tcp: bool) -> up.UpstreamAnswer | None:
        upstreams, options = group.upstreams, group.options
        group.turn += 1
        order = pool.order([u.healthy for u in upstreams], options.policy, group.turn, self.rng)
        tcp = pool.over_tcp(options.transport, client_tcp)
        for upstream in (upstreams[i] for i in order[:MAX_TRIES]):
            try:
                answer = await self._exchange(upstream, question, do, cd, zones, tcp=tcp)
            except EXCHANGE_ERRORS as exc:
                self._failed(upstream, _describe(exc), group)
                continue
            upstream.fails = 0
            if answer.rcode in (SERVFAIL, REFUSED):
                # It answered, so it is alive; but maybe another one knows better. (Not a
                # health failure: a DNSSEC-broken domain gets SERVFAIL from everyone.)
                log.debug("upstream %s: rcode %d for a question; trying the next", upstream, answer.rcode)
                continue
            return answer
        return None

    def _failed(self, upstream: Upstream, cause: str, group: Group) -> None:
        upstream.fails += 1
        log.debug("upstream %s: %s", upstream, cause)
        if upstream.healthy and pool.down_after(upstream.fails, group.options.max_fails):
            upstream.healthy = False
            log.warning("upstream %s is unhealthy (%s); skipping it until it answers a probe", upstream, cause)
            if self._nursery is not None:
                self._nursery.start_soon(self._probe, upstream, group.options)

    async def _probe(self, upstream: Upstream, options: PoolOptions) -> None:
        """Ask a down upstream `<health domain> IN NS` every health_check seconds until it
        answers (any reply that fits the query will do, as CoreDNS's)."""
        question = pool.probe_question(options)
        while not upstream.healthy:
            await trio.sleep(pool.probe_delay(options))
            try:
                await self._exchange(upstream, question, False, False, (), tcp=options.transport == "tcp",
                                     rd=options.health_recursion)
            except EXCHANGE_ERRORS:
                upstream.fails += 1
                continue
            upstream.healthy, upstream.fails = True, 0
            log.info("upstream %s answers again", upstream)

    async def _exchange(self, upstream: Upstream, question: bytes, do: bool, cd: bool, zones: tuple[str, ...], *,
                        tcp: bool = False, rd: bool = True) -> up.UpstreamAnswer:
        """One question to one upstream: UDP, then TCP if the reply was truncated (`tcp`: TCP
        alone); its records scrubbed (`upstream.scrub`: `zones` are kdns's own)."""
        self.requests += 1
        qid = secrets.randbelow(65536)
        query = up.build_query(qid, question, do=do, cd=cd, rd=rd)
        started = time.monotonic()
        with trio.fail_after(self.timeout):
            answer = None if tcp else await self._udp(upstream, query, qid, question, zones)
            if answer is None or answer.truncated:
                answer = await self._tcp(upstream, query, qid, question, zones)
        seconds = time.monotonic() - started
        label = (str(upstream), RCODES.get(answer.rcode, str(answer.rcode)))
        buckets, total = self.durations.get(label, ({}, 0.0))
        bucket = duration_bucket(seconds)
        buckets[bucket] = buckets.get(bucket, 0) + 1
        self.durations[label] = (buckets, total + seconds)
        return answer

    async def _udp(self, upstream: Upstream, query: bytes, qid: int, question: bytes, zones: tuple[str, ...]) -> up.UpstreamAnswer:
        with trio.socket.socket(upstream.family, trio.socket.SOCK_DGRAM) as sock:
            await sock.connect((upstream.host, upstream.port))  # only its datagrams reach us
            await sock.send(query)
            while True:
                data = await sock.recv(65535)
                try:
                    return up.parse_reply(data, qid, question, self.cache.max_ttl, zones)
                except up.ReplyError as exc:
                    log.debug("upstream %s: ignoring a datagram: %s", upstream, exc)

    async def _tcp(self, upstream: Upstream, query: bytes, qid: int, question: bytes, zones: tuple[str, ...]) -> up.UpstreamAnswer:
        stream = await trio.open_tcp_stream(upstream.host, upstream.port)
        async with stream:
            await stream.send_all(len(query).to_bytes(2, "big") + query)
            data = b""
            while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
                chunk = await stream.receive_some(65537)
                if not chunk:
                    raise up.ReplyError("the upstream closed the TCP connection early")
                data += chunk
            return up.parse_reply(data[2 : 2 + int.from_bytes(data[:2], "big")], qid, question, self.cache.max_ttl, zones)


def _key(uq: UpstreamQuery) -> Key:
    """The cache key of a question: (name lowercased, type, class, DO, CD)."""
    query = uq.query
    return (uq.question[:-4].lower(), *struct.unpack("!HH", uq.question[-4:]), bool(query.edns and query.edns.do), bool(query.flags & CD))


def _success(answer: up.UpstreamAnswer) -> bool:
    """A positive answer (records in the answer section), as coredns_cache_hits{type="success"} counts them."""
    return answer.rcode == 0 and answer.counts[0] > 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "timeout"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError)):
        return "connection reset"
    return str(exc)


def detect_loop(upstreams: list[Upstream], own: list[socket.socket], timeout: float = 0.5) -> list[Upstream]:
    """The upstreams that send a query of ours back to one of our own UDP sockets.

    Each upstream gets a query for a random name; if that name arrives on a socket kdns
    listens on, forwarding to it would loop (kdns itself, or something that forwards to
    kdns). Runs before kdns serves; datagrams that arrive meanwhile are not answered (their
    clients retry). An upstream that does not answer in time is not judged.
    """
    probes: dict[socket.socket, tuple[Upstream, bytes]] = {}
    looped: list[Upstream] = []
    try:
        for upstream in upstreams:
            nonce = secrets.token_hex(8).encode()
            question = bytes([len(nonce)]) + nonce + b"\x0fkdns-loop-check\x00" + b"\x00\x0d\x00\x01"  # HINFO
            sock = socket.socket(upstream.family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                sock.connect((upstream.host, upstream.port))
                sock.send(up.build_query(secrets.randbelow(65536), question, do=False, cd=False))
            except OSError:
                sock.close()
                continue
            probes[sock] = (upstream, nonce)
        deadline = time.monotonic() + timeout
        waiting = dict(probes)
        while waiting and time.monotonic() < deadline:
            readable, _, _ = select.select(list(waiting) + own, [], [], max(0.0, deadline - time.monotonic()))
            readable.sort(key=lambda s: s not in own)  # our own sockets first: a loop shows there first
            for sock in readable:
                try:
                    data = sock.recv(65535)
                except OSError:
                    waiting.pop(sock, None)  # refused: nobody there, not a loop
                    continue
                if sock in waiting:
                    waiting.pop(sock)  # it answered (whatever it said): not looping back
                    continue
                for probe, (upstream, nonce) in list(waiting.items()):
                    if nonce in data:
                        looped.append(upstream)
                        waiting.pop(probe)
    finally:
        for sock in probes:
            sock.close()
    return looped
