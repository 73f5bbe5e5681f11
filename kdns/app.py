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
effect at start (settings.RESTART_ONLY), which are logged and kept.
"""

from __future__ import annotations

import argparse
import errno
import functools
import logging
import os
import socket
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import trio

from kdns import __version__, observe, settings
from kdns.cache import ForwardCache
from kdns.config import ConfigError, ListenAddress, PodsMode, ServeConfig
from kdns.guard import RateLimiter, RecursionAcl
from kdns.index import Change, Index
from kdns.model import EndpointSlice, Kind, ServiceType, Synced
from kdns.responder import Responder
from kdns.serve.forward import Forwarder, Upstream, detect_loop
from kdns.serve.serving import Serving
from kdns.serve.tcp import TcpLimits, TcpServer, bind_tcp
from kdns.serve.udp import batched, bind_udp, loop_kind, serve_udp
from kdns.sources.manifests import ManifestError, ManifestSet, watch_manifests
from kdns.sources.select import Scope, SelectorError, parse_selector
from kdns.state import DnsState
from kdns.stats import QueryStats, replay_key

log = logging.getLogger("kdns")

MANIFESTS = "manifests"
EVENT_QUEUE = 64  # batches; a source blocks (backpressure) when the writer falls behind
DRAIN_DEADLINE = 5.0  # seconds open TCP connections get to finish after the lameduck period


def demo_cluster() -> Path:
    """The bundled demo cluster (config/demo-cluster.yaml in the source tree)."""
    return Path(str(resources.files("kdns") / "data" / "demo-cluster.yaml"))


class StartupError(Exception):
    """kdns cannot start; the message is one line saying why."""


@dataclass(frozen=True, slots=True)
class Bound:
    proto: str  # "udp" or "tcp"
    address: ListenAddress  # with the real port when port 0 was asked for


class Server:
    def __init__(
        self,
        config: ServeConfig,
        *,
        config_path: str | None = None,
        flags: argparse.Namespace | None = None,
        memory: bool = False,
        reuse_port: bool = False,
    ):
        """`memory`: no source at all; objects come from `apply_now` (kdns.testing).
        `reuse_port`: bind the DNS ports with SO_REUSEPORT (`--workers`, kdns.workers)."""
        self.reuse_port = reuse_port
        self.config = config
        self.memory = memory
        self.config_path = config_path  # reloaded on SIGHUP and when it changes
        self.flags = flags  # command-line flags, which keep overriding the file on reloads
        try:
            labels = parse_selector(config.labels) if config.labels else None
        except SelectorError as exc:
            raise StartupError(f"--labels: {exc}") from None
        self.scope = Scope(config.namespaces, labels)
        self.kinds = [Kind.NAMESPACE, Kind.SERVICE, Kind.ENDPOINT_SLICE]
        if config.dns.pods is PodsMode.VERIFIED or config.dns.autopath:
            self.kinds.append(Kind.POD)
        self.manifests: ManifestSet | None = None
        self.cluster = None
        if config.api is not None:
            from kdns.sources.kubernetes import ApiSourceError, ClusterWatch, client_configuration

            try:
                client_configuration(config.api)  # a bad kubeconfig is a start-up error
            except ApiSourceError as exc:
                raise StartupError(str(exc)) from None
            self.cluster = ClusterWatch(config.api, self.kinds, self.scope)
            sources = [kind.value for kind in self.kinds]
        elif memory:
            sources = []
        else:
            sources = [MANIFESTS]
        self.dns = DnsState(config.dns, sources=sources, now=time.time(), replay_key=replay_key)
        if config.api is None and not memory:
            self.manifests = ManifestSet(config.manifests or (str(demo_cluster()),), scope=self.scope)
            try:
                events = self.manifests.load()
            except ManifestError as exc:
                raise StartupError(str(exc)) from None
            self.dns.apply([*events, Synced(MANIFESTS)], time.time())
        self.state = Serving(
            self.dns,
            log_queries=config.log_queries,
            acl=RecursionAcl(config.allow_recursion),
            rrl=_rate_limiter(config, None),
        )
        self.stopping = False  # SIGTERM received: readiness is 503 from then on
        self.c_loop = False  # UDP sockets answer replays in C (kdns/_udpbatch.c); set by serve()
        self.programming: dict[str, tuple[dict[int, int], float]] = {}  # service kind -> DNS programming latency
        self._sockets: list[tuple[Bound, socket.socket]] = []
        self._http: list[tuple[ListenAddress, socket.socket, dict]] = []
        self._stats: list[QueryStats] = []
        self._tcp: list[TcpServer] = []
        self._config_signature = _signature(config_path)
        try:
            for address in config.listen:
                self._bind(address)
            self._bind_http()
            self.state.forwarder = self._forwarder(config, probe=True)
        except BaseException:
            self.close()
            raise

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
        return {path: address for address, _, routes in self._http for path in routes}

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
        if self.cluster is not None:
            return self.cluster.stats()
        if self.manifests is not None:
            return {MANIFESTS: (1 + self.manifests.reads, 0, self.manifests.last_change)}
        return {}

    def describe_source(self) -> str:
        if self.memory:
            return "objects given in-process"
        if self.config.api is not None:
            return self.config.api.describe()
        return ", ".join(map(str, self.manifests.paths)) if self.manifests else ""

    # -- sockets ------------------------------------------------------------------------------

    def close(self) -> None:
        for _, sock in self._sockets:
            sock.close()
        for _, sock, _ in self._http:
            sock.close()

    def join(self, timeout: float = 2.0) -> None:
        """After `serve` returned: wait for the API source's worker threads to end (blocking),
        so that none is still writing a log line while the interpreter shuts down."""
        if self.cluster is not None:
            self.cluster.join(timeout)

    def _bind(self, address: ListenAddress) -> None:
        """UDP and TCP on the same port; with port 0, retry until both get the same one."""
        for _ in range(20):
            udp = self._open("udp", functools.partial(bind_udp, reuse_port=self.reuse_port), address)
            port = udp.getsockname()[1]
            actual = ListenAddress(address.host, port)
            try:
                tcp = bind_tcp(actual, reuse_port=self.reuse_port)
            except OSError as exc:
                udp.close()
                if address.port == 0 and exc.errno == errno.EADDRINUSE:
                    continue  # that free UDP port is taken for TCP: pick another
                raise StartupError(f"cannot listen on tcp {actual}: {exc.strerror}") from None
            self._sockets += [(Bound("udp", actual), udp), (Bound("tcp", actual), tcp)]
            family = "2" if actual.family == 6 else "1"
            self._stats += [QueryStats(f"dns://{actual}", "udp", family), QueryStats(f"dns://{actual}", "tcp", family)]
            return
        raise StartupError(f"cannot find a port free for both udp and tcp on {address.host}")

    def _bind_http(self) -> None:
        """One HTTP listener per distinct address; endpoints on the same address share it."""
        routes = {
            "/health": (self.config.http.health, self._health),
            "/ready": (self.config.http.ready, self._ready),
            "/metrics": (self.config.http.metrics, self._metrics),
        }
        by_address: dict[ListenAddress, dict] = {}
        for path, (address, route) in routes.items():
            if address is not None:
                by_address.setdefault(address, {})[path] = route
        for address, paths in by_address.items():
            sock = self._open("tcp", bind_tcp, address, what=f"http ({', '.join(paths)})")
            actual = ListenAddress(address.host, sock.getsockname()[1])
            self._http.append((actual, sock, paths))

    @staticmethod
    def _open(proto: str, bind, address: ListenAddress, what: str | None = None) -> socket.socket:
        try:
            return bind(address)
        except OSError as exc:
            raise StartupError(f"cannot listen on {what or proto} {address}: {exc.strerror}") from None

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
        cache = ForwardCache(clock=time.monotonic, maxsize=config.cache_size, max_ttl=config.cache_ttl, stale_for=config.serve_stale)
        return Forwarder(upstreams, stubs, cache, timeout=config.upstream_timeout)

    # -- HTTP endpoints ---------------------------------------------------------------------

    def _health(self) -> tuple[int, str, bytes]:
        return 200, "text/plain; charset=utf-8", b"OK"

    def _ready(self) -> tuple[int, str, bytes]:
        if self.ready:
            return 200, "text/plain; charset=utf-8", b"OK"
        why = "shutting down" if self.stopping else "waiting for the first sync"
        return 503, "text/plain; charset=utf-8", why.encode()

    def _metrics(self) -> tuple[int, str, bytes]:
        return 200, "text/plain; version=0.0.4; charset=utf-8", observe.metrics_text(self)

    # -- running ------------------------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; `task_status.started()` gets the bound addresses."""
        send, receive = trio.open_memory_channel(EVENT_QUEUE)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for address, sock, routes in self._http:
                    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
                    nursery.start_soon(observe.serve_http, listener, routes)
                nursery.start_soon(self._write_index, receive)
                if self.manifests is not None:
                    nursery.start_soon(watch_manifests, self.manifests, send, self.config.reload_interval)
                elif self.cluster is not None:
                    nursery.start_soon(self.cluster.run, send)
                    nursery.start_soon(self._warn_if_not_synced)
                if self.forwarder is not None:
                    await nursery.start(self.forwarder.run)
                if self.config_path is not None:
                    nursery.start_soon(self._watch_config)
                stats = iter(self._stats)
                self.c_loop = batched()  # (KDNS_PURE_PYTHON is read once, as the sockets start)
                for bound, sock in self._sockets:
                    if bound.proto == "udp":
                        nursery.start_soon(serve_udp, sock, self.state, next(stats), self.c_loop)
                    else:
                        tcp = TcpServer(sock, self.state, next(stats), _tcp_limits(self.config))
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
                "forwarding other names to %s%s; cache %ds, %d entries",
                ", ".join(map(str, self.forwarder.upstreams)) or "nobody",
                "".join(f"; {d} to {', '.join(map(str, s))}" for d, s in self.forwarder.stubs.items()),
                cfg.cache_ttl,
                cfg.cache_size,
            )
        for bound in self.bound:
            log.info("listening on %s %s", bound.proto, bound.address)
        if any(bound.proto == "udp" for bound in self.bound):
            log.info("udp loop: %s", loop_kind(self.c_loop))
        for address, _, routes in self._http:
            log.info("listening on http %s for %s", address, " ".join(routes))

    async def shutdown(self) -> None:
        """SIGTERM: readiness 503 now; answer for the lameduck period; drain TCP; return."""
        self.stopping = True
        await trio.sleep(self.config.lameduck)
        for tcp in self._tcp:
            tcp.drain()
        with trio.move_on_after(DRAIN_DEADLINE):
            while any(tcp.active for tcp in self._tcp):
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
            self._observe_programming(batch, change)

    def _observe_programming(self, batch: list, change: Change) -> None:
        """coredns_kubernetes_dns_programming_duration_seconds: from the EndpointSlice
        controller's trigger time to the moment the new answers are served."""
        now = time.time()
        for event in batch:
            obj = getattr(event, "obj", None)
            if not isinstance(obj, EndpointSlice) or obj.trigger_time is None:
                continue
            svc = self.index.service(obj.namespace, obj.service)
            if svc is None:
                continue
            kind = "headless_with_selector" if svc.type is ServiceType.HEADLESS else "cluster_ip"
            buckets, total = self.programming.get(kind, ({}, 0.0))
            seconds = max(0.0, now - obj.trigger_time)
            bucket = observe.programming_bucket(seconds)
            buckets[bucket] = buckets.get(bucket, 0) + 1
            self.programming[kind] = (buckets, total + seconds)

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
            await trio.sleep(self.config.reload_interval)
            signature = _signature(self.config_path)
            if signature != self._config_signature:
                self._config_signature = signature
                log.info("%s changed, reloading", self.config_path)
                self.reload()

    def reload(self) -> bool:
        """Re-read the config file (and the flags over it); apply what can change live."""
        if self.config_path is None:
            log.info("no --config file to reload")
            return False
        from kdns.cli import build_config

        flags = self.flags if self.flags is not None else argparse.Namespace(config=self.config_path)
        try:
            new = build_config(argparse.Namespace(**{**vars(flags), "config": self.config_path}), os.environ)
        except ConfigError as exc:
            log.error("reload rejected, keeping the running configuration: %s", exc)
            return False
        old = self.config
        kept = [name for name in settings.RESTART_ONLY if _value(old, name) != _value(new, name)]
        if kept:
            log.warning("reload: %s only change(s) at start; restart kdns to apply", ", ".join(kept))
            new = _keep_restart_only(old, new)
        try:
            self.reconfigure(new)
        except StartupError as exc:
            log.error("reload rejected, keeping the running configuration: %s", exc)
            return False
        log.info("configuration reloaded from %s", self.config_path)
        return True

    def reconfigure(self, new: ServeConfig) -> None:
        """Apply a configuration between two queries (the parts that can change live)."""
        old = self.config
        forwarding = ("upstreams", "stub_domains", "upstream_timeout", "cache_ttl", "cache_size", "serve_stale")
        new_forwarder = any(getattr(new, f) != getattr(old, f) for f in forwarding)
        forwarder = self._forwarder(new, probe=False) if new_forwarder else None  # may raise: nothing changed yet
        if new.dns != old.dns:
            self.dns.reconfigure(new.dns, time.time())
        if new_forwarder:
            if forwarder is not None:
                self._nursery.start_soon(forwarder.run)
            if self.state.forwarder is not None:
                self.state.forwarder.close()  # its background probes; questions in flight finish
            self.state.forwarder = forwarder
        self.state.log_queries = new.log_queries
        for tcp in self._tcp:
            tcp.limits = _tcp_limits(new)
        self.state.acl = RecursionAcl(new.allow_recursion)
        self.state.rrl = _rate_limiter(new, self.state.rrl)
        if new.log_level != old.log_level or new.log_format != old.log_format:
            observe.setup_logging(new.log_level, new.log_format)
        self.config = new


def _tcp_limits(config: ServeConfig) -> TcpLimits:
    return TcpLimits(
        idle_timeout=config.tcp_idle_timeout,
        message_timeout=config.tcp_message_timeout,
        max_connections=config.tcp_max_connections,
        max_queries=config.tcp_max_queries,
    )


def _rate_limiter(config: ServeConfig, current: RateLimiter | None) -> RateLimiter | None:
    if config.rrl_rate <= 0:
        return None
    if current is not None and (current.rate, current.slip) == (config.rrl_rate, config.rrl_slip):
        return current
    return RateLimiter(config.rrl_rate, config.rrl_slip)


def _signature(path: str | None):
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


_FIELDS = {
    "manifests": "manifests", "kubeconfig": "api", "apiserver": "api", "listen": "listen", "namespaces": "namespaces",
    "labels": "labels", "pods": "dns.pods", "autopath": "dns.autopath", "health": "http", "ready": "http", "metrics": "http",
    "workers": "workers",
}


def _value(config: ServeConfig, option: str):
    value = config
    for part in _FIELDS[option].split("."):
        value = getattr(value, part)
    return value


def _keep_restart_only(old: ServeConfig, new: ServeConfig) -> ServeConfig:
    dns = replace(new.dns, pods=old.dns.pods, autopath=old.dns.autopath, ns_addresses=old.dns.ns_addresses)
    return replace(
        new, manifests=old.manifests, api=old.api, listen=old.listen, namespaces=old.namespaces,
        labels=old.labels, http=old.http, workers=old.workers, dns=dns,
    )


