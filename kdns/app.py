"""Composition root: wires the sources, the index writer, the servers and the HTTP endpoints.

`Server(config)` does everything that can fail because of the user's input before any task
starts: it reads the manifests (or checks the API configuration), binds every socket and
checks the upstreams for loops, raising `StartupError` with a one-line message.
`await server.serve()` then runs until cancelled: one task per DNS socket, the source
(manifest watcher or API reflectors), the single index writer that turns batches of events
into published snapshots, the HTTP endpoints and the config-file watcher.

Lifecycle: `shutdown()` (SIGTERM) turns readiness to 503 at once, goes on answering for the
lameduck period, then stops accepting TCP and lets open connections finish their query, with
a deadline. `reload()` (SIGHUP, or the config file changing) re-reads the configuration: a bad
one is logged and ignored; a good one is applied between two queries (a new index if the
answers change, a new forwarder if the upstreams do), except for the options that only take
effect at start (`reload=False` in kdns.options), which are logged and kept: kdns/reload.py
plans what each difference requires.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import time
from collections.abc import Callable

import trio

from kdns import __version__, observe, settings
from kdns.cache import ForwardCache
from kdns.config import ConfigError, ListenAddress, ServeConfig
from kdns.corefile.model import CorefileError
from kdns.explain import View, endpoint
from kdns.guard import RateLimiter, RecursionAcl
from kdns.index import Index
from kdns.reload import Reloader
from kdns.reload import plan as reload_plan
from kdns.responder import Responder
from kdns.serve.forward import Forwarder, Upstream, detect_loop
from kdns.serve.listeners import Bound, HttpListener, ListenError, Skipped, bind_dns, bind_http
from kdns.serve.serving import Serving
from kdns.serve.tcp import TcpLimits, TcpServer
from kdns.serve.udp import batched, loop_kind, serve_udp
from kdns.sources.source import Source, SourceError
from kdns.state import DnsState
from kdns.stats import QueryStats, replay_key

log = logging.getLogger("kdns")

EVENT_QUEUE = 64  # batches; a source blocks (backpressure) when the writer falls behind
DRAIN_DEADLINE = 5.0  # seconds open TCP connections get to finish after the lameduck period


class StartupError(Exception):
    """kdns cannot start; the message is one line saying why."""


class Server:
    def __init__(
        self,
        config: ServeConfig,
        *,
        config_path: str | None = None,
        flags: argparse.Namespace | None = None,
        memory: bool = False,
        reuse_port: bool = False,
        clock: Callable[[], float] = time.monotonic,
        reloader: Reloader | None = None,
    ):
        """`memory`: no source at all; objects come from `apply_now` (kdns.testing).
        `reuse_port`: bind the DNS ports with SO_REUSEPORT (`--workers`, kdns.workers).
        `clock`: the forwarding cache's (tests move a clock of their own on instead of sleeping).
        `reloader`: where the configuration is reloaded from instead of `config_path` (a
        Corefile, kdns.corefile.wiring.CorefileReloader)."""
        self.config = config
        self.clock = clock
        self.config_path = config_path  # reloaded on SIGHUP and when it changes
        self.reloader = reloader
        self.flags = flags  # command-line flags, which keep overriding the file on reloads
        self.stopping = False  # SIGTERM received: readiness is 503 from then on
        self.c_loop = False  # UDP sockets answer replays in C (kdns/_udpbatch.c); set by serve()
        self.programming = observe.ProgrammingLatency()
        self._sockets: list[tuple[Bound, socket.socket]] = []
        self._http: list[HttpListener] = []
        self._stats: list[QueryStats] = []
        self._tcp: list[TcpServer] = []
        self._config_signature = reloader.signature() if reloader is not None else _signature(config_path)
        try:
            self.source = Source(config, memory=memory)
            self.dns = DnsState(config.dns, sources=self.source.names, now=time.time(), replay_key=replay_key)
            self.dns.apply(self.source.initial(), time.time())
            self.state = Serving(self.dns, log_queries=config.log_queries, acl=RecursionAcl(config.allow_recursion),
                                 rrl=_rate_limiter(config), transfer_acl=config.allow_transfer)
            self._no_ipv6 = Skipped()  # what `:PORT` could not bind on a host without IPv6
            for address in config.listen:
                self._sockets += bind_dns(address, reuse_port=reuse_port, skipped=self._no_ipv6)
            self._http = bind_http({
                "/health": (config.http.health, self._health),
                "/ready": (config.http.ready, self._ready),
                "/metrics": (config.http.metrics, self._metrics),
                "/explain": (config.http.explain, observe.QueryRoute(lambda params: endpoint.respond(self.view(), params))),
            }, self._no_ipv6)
            self.state.forwarder = self._forwarder(config, probe=True)
        except (SourceError, ListenError) as exc:
            self.close()
            raise StartupError(str(exc)) from None
        except BaseException:
            self.close()
            raise
        for bound, _ in self._sockets:
            family = "2" if bound.address.family == 6 else "1"
            self._stats.append(QueryStats(f"dns://{bound.address}", bound.proto, family))

    # -- what the rest of kdns reads --------------------------------------------------------

    @property
    def index(self) -> Index:
        return self.dns.index

    @property
    def responder(self) -> Responder:
        return self.dns.responder

    @property
    def forwarder(self) -> Forwarder | None:
        return self.state.forwarder

    @property
    def bound(self) -> list[Bound]:
        return [b for b, _ in self._sockets]

    @property
    def http_bound(self) -> dict[str, ListenAddress]:
        """Each HTTP endpoint's path and where it listens (with the real port)."""
        bound: dict[str, ListenAddress] = {}
        for http in self._http:  # `:PORT`: the IPv4 listener comes first, the port is the same
            for path in http.routes:
                bound.setdefault(path, http.address)
        return bound

    @property
    def synced(self) -> bool:
        """True once every source has delivered its complete initial state (in the snapshot
        answers come from)."""
        return self.dns.snapshot.synced

    @property
    def ready(self) -> bool:
        return self.synced and not self.stopping

    def listener_stats(self) -> list[QueryStats]:
        return list(self._stats)

    @property
    def queries_received(self) -> int:
        """Queries received on every DNS socket, answered or not."""
        return sum(stats.received for stats in self._stats)

    def source_stats(self) -> dict[str, tuple[int, int, float | None]]:
        return self.source.stats()

    def describe_source(self) -> str:
        return self.source.describe()

    # -- sockets ------------------------------------------------------------------------------

    def close(self) -> None:
        for _, sock in self._sockets:
            sock.close()
        for http in self._http:
            http.sock.close()

    def join(self, timeout: float = 2.0) -> None:
        """After `serve` returned: wait for the API source's worker threads to end (blocking),
        so that none is still writing a log line while the interpreter shuts down."""
        self.source.join(timeout)

    def _forwarder(self, config: ServeConfig, *, probe: bool) -> Forwarder | None:
        """The upstreams, checked for loops back to ourselves (`probe`: before anything is served)."""
        if not config.upstreams and not config.stub_domains:
            return None
        upstreams = [Upstream(ip, port) for ip, port in config.upstreams]
        stubs = {domain: [Upstream(ip, port) for ip, port in servers] for domain, servers in config.stub_domains}
        everyone = upstreams + [u for servers in stubs.values() for u in servers]
        own = {(b.address.host, b.address.port) for b in self.bound}
        for u in everyone:
            if (u.host, u.port) in own:
                raise StartupError(f"upstream {u} is kdns itself (it listens there): forwarding to it would loop")
        if probe:
            udp = [sock for bound, sock in self._sockets if bound.proto == "udp"]
            looped = detect_loop(everyone, udp)
            if looped:
                raise StartupError(
                    f"upstream {looped[0]} sends kdns's own queries back to it: forwarding to it would loop "
                    "(is it a resolver that forwards to kdns, such as a resolv.conf pointing at kdns?)"
                )
        cache = ForwardCache(clock=self.clock, maxsize=config.cache_size, max_ttl=config.cache_ttl, stale_for=config.serve_stale,
                             max_bytes=config.cache_max_bytes, policy=config.cache_policy)
        return Forwarder(upstreams, stubs, cache, timeout=config.upstream_timeout, max_concurrent=config.upstream_max_concurrent,
                         options=config.upstream_options, stub_options=dict(config.stub_options),
                         defaults=config.default_domains)

    # -- HTTP endpoints ---------------------------------------------------------------------

    def _health(self) -> tuple[int, str, bytes]:
        return 200, "text/plain; charset=utf-8", b"OK"

    def _ready(self) -> tuple[int, str, bytes]:
        if self.ready:
            return 200, "text/plain; charset=utf-8", b"OK"
        why = "shutting down" if self.stopping else "waiting for the first sync"
        return 503, "text/plain; charset=utf-8", why.encode()

    async def _metrics(self) -> tuple[int, str, bytes]:
        return 200, "text/plain; version=0.0.4; charset=utf-8", await observe.metrics_body(self)

    def view(self) -> View:
        """What `kdns explain` reads of this server: its snapshot and objects now, where the
        objects come from, and its forwarder and cache."""
        return View(self.dns.snapshot, self.dns.index, self.source.locate,
                    lambda name, qtype: endpoint.forward_info(self.forwarder, name, qtype), self.describe_source())

    # -- running ------------------------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; `task_status.started()` gets the bound addresses."""
        send, receive = trio.open_memory_channel(EVENT_QUEUE)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for http in self._http:
                    listener = trio.SocketListener(trio.socket.from_stdlib_socket(http.sock))
                    nursery.start_soon(observe.serve_http, listener, http.routes)
                nursery.start_soon(self._write_index, receive)
                nursery.start_soon(self.source.run, send, self.config.reload_interval)
                if self.source.cluster is not None:
                    nursery.start_soon(self._warn_if_not_synced)
                if self.forwarder is not None:
                    await nursery.start(self.forwarder.run)
                if self.config_path is not None or self.reloader is not None:
                    nursery.start_soon(self._watch_config)
                stats = iter(self._stats)
                self.c_loop = batched()  # (KDNS_PURE_PYTHON is read once, as the sockets start)
                for bound, sock in self._sockets:
                    if bound.proto == "udp":
                        nursery.start_soon(serve_udp, sock, self.state, next(stats), self.c_loop)
                    else:
                        tcp = TcpServer(sock, self.state, next(stats), TcpLimits.of(self.config))
                        self._tcp.append(tcp)
                        nursery.start_soon(tcp.serve)
                self._log_start()
                task_status.started(self.bound)
        finally:
            self.close()

    def _log_start(self) -> None:
        cfg = self.config
        log.info(
            "kdns %s serving zones %s from %s%s; ttl %d, pods %s%s",
            __version__,
            ", ".join(cfg.dns.all_zones),
            self.describe_source(),
            f" ({self._counts()})" if self.synced else " (waiting for the first sync)",
            cfg.dns.ttl,
            cfg.dns.pods.value,
            ", autopath" if cfg.dns.autopath else "",
        )
        if self.forwarder is not None:
            log.info(
                "forwarding other names to %s%s; cache %ds, %d entries, %d bytes",
                ", ".join(map(str, self.forwarder.upstreams)) or "nobody",
                "".join(f"; {d} to {', '.join(map(str, s)) or 'nobody (SERVFAIL)'}" for d, s in self.forwarder.stubs.items()),
                cfg.cache_ttl,
                cfg.cache_size,
                cfg.cache_max_bytes,
            )
        for bound in self.bound:
            log.info("listening on %s %s", bound.proto, bound.address)
        if any(bound.proto == "udp" for bound in self.bound):
            log.info("udp loop: %s", loop_kind(self.c_loop))
        for http in self._http:
            log.info("listening on http %s for %s", http.address, " ".join(http.routes))
        for reason in self._no_ipv6.reasons:
            log.info("not listening on %s: this host has no IPv6", reason)

    async def shutdown(self) -> None:
        """SIGTERM: readiness 503 now; answer for the lameduck period; drain TCP; return."""
        self.stopping = True
        await trio.sleep(self.config.lameduck)
        for tcp in self._tcp:
            tcp.drain()
        with trio.move_on_after(DRAIN_DEADLINE):
            while any(tcp.active for tcp in self._tcp):  # noqa: ASYNC110 - connections end without an event; bounded above
                await trio.sleep(0.02)
        log.info("shut down")

    def _counts(self) -> str:
        return ", ".join(f"{n} {kind}" for kind, n in self.index.counts().items())

    async def _warn_if_not_synced(self) -> None:
        await trio.sleep(self.config.startup_timeout)
        if not self.synced:
            log.warning(
                "not synced with %s after %gs; serving what is known, SERVFAIL for other cluster names until it is",
                self.describe_source(),
                self.config.startup_timeout,
            )

    def apply_now(self, events: list) -> None:
        """Apply events at once, from the trio thread (kdns.testing): the next query sees them."""
        self._apply(events)

    def _apply(self, batch: list) -> None:
        change = self.dns.apply(batch, time.time())
        if not change.empty:
            log.debug("index updated: serial %d, %d name(s) changed", change.snapshot.serial, len(change.names) + len(change.ips))
            self.programming.record(batch, self.dns.index, time.time())

    async def _write_index(self, receive: trio.MemoryReceiveChannel) -> None:
        """The only writer of the index: applies each batch (and whatever queued behind it)."""
        async for batch in receive:
            while True:
                try:
                    batch = batch + receive.receive_nowait()
                except trio.WouldBlock:
                    break
            was_synced = self.synced
            try:
                self._apply(batch)  # holds nothing once done: an initial list can be large
            except Exception:  # a bug: keep serving the last good snapshot, say what was lost
                log.exception("failed to apply %d event(s); answers stay as they were", len(batch))
                continue
            finally:
                del batch
            if self.synced and not was_synced:
                log.info("synced with %s: %s", self.describe_source(), self._counts())

    # -- reloading the configuration ------------------------------------------------------

    async def _watch_config(self) -> None:
        while True:
            # A Corefile is watched only when it says `reload` (its interval), as CoreDNS does.
            interval = self.reloader.interval if self.reloader is not None else self.config.reload_interval
            await trio.sleep(interval or self.config.reload_interval)
            if interval is None:
                continue
            signature = self.reloader.signature() if self.reloader is not None else _signature(self.config_path)
            if signature != self._config_signature:
                self._config_signature = signature
                log.info("%s changed, reloading", self.reloader.describe() if self.reloader is not None else self.config_path)
                self.reload()

    def reload(self) -> bool:
        """Re-read the config file (and the flags over it), or the Corefile; apply what can change live."""
        if self.reloader is not None:
            return self._reload_from(self.reloader)
        if self.config_path is None:
            log.info("no --config file to reload")
            return False
        flags = self.flags if self.flags is not None else argparse.Namespace()
        try:
            new = settings.build_config(argparse.Namespace(**{**vars(flags), "config": self.config_path}), os.environ)
            self.reconfigure(new)
        except (ConfigError, StartupError) as exc:
            log.error("reload rejected, keeping the running configuration: %s", exc)
            return False
        log.info("configuration reloaded from %s", self.config_path)
        return True

    def _reload_from(self, reloader: Reloader) -> bool:
        try:
            self.reconfigure(reloader.load())
        except (CorefileError, ConfigError, StartupError) as exc:
            for problem in getattr(exc, "problems", (exc,)):
                log.error("reload rejected, keeping the running configuration: %s", problem)
            return False
        self._config_signature = reloader.signature()
        log.info("configuration reloaded from %s", reloader.describe())
        return True

    def reconfigure(self, new: ServeConfig) -> None:
        """Apply a configuration between two queries: what can change live (kdns/reload.py);
        the options that only take effect at start are logged and kept."""
        plan = reload_plan(self.config, new)
        if plan.kept:
            log.warning("reload: %s only change(s) at start; restart kdns to apply", ", ".join(plan.kept))
        config = plan.config
        forwarder = self._forwarder(config, probe=False) if plan.new_forwarder else None  # may raise: nothing changed yet
        if plan.new_index:
            self.dns.reconfigure(config.dns, time.time())
        if config.hosts_files != self.config.hosts_files:  # a reloaded Corefile's hosts
            self.source.hosts.zones = config.dns.all_zones
            events = self.source.hosts.reconfigure(config.hosts_files)
            if events:
                self._apply(events)
        if plan.new_forwarder:
            if forwarder is not None:
                self._nursery.start_soon(forwarder.run)
            if self.state.forwarder is not None:
                self.state.forwarder.close()  # its background probes; questions in flight finish
            self.state.forwarder = forwarder
            self.dns.responder.drop_replies()  # (replies made from the old forwarder's cache among them)
        if plan.new_rate_limiter:
            self.state.rrl = _rate_limiter(config)
        if plan.new_logging:
            observe.setup_logging(config.log_level, config.log_format)
        self.state.log_queries = config.log_queries
        if self.source.manifests is not None:
            self.source.manifests.max_bytes = config.manifest_max_bytes
        self.state.acl = RecursionAcl(config.allow_recursion)
        self.state.transfer_acl = config.allow_transfer
        for tcp in self._tcp:
            tcp.limits = TcpLimits.of(config)
        self.config = config


def _rate_limiter(config: ServeConfig) -> RateLimiter | None:
    return RateLimiter(config.rrl_rate, config.rrl_slip) if config.rrl_rate > 0 else None


def _signature(path: str | None):
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
