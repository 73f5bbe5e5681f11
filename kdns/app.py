"""Composition root: wires the sources, the index writer and the servers together.

`Server(config)` does everything that can fail because of the user's input before any task
starts: it reads the manifests (or checks the API configuration) and binds the sockets,
raising `StartupError` with a one-line message. `await server.serve()` then runs until
cancelled: one task per socket, the source (manifest watcher or API reflectors), and the
single index writer that turns batches of events into published snapshots.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import trio

from kdns import __version__
from kdns.config import ListenAddress, PodsMode, ServeConfig
from kdns.index import Index
from kdns.model import Kind, Synced
from kdns.cache import ForwardCache
from kdns.responder import Responder
from kdns.serve.forward import Forwarder, Upstream, detect_loop
from kdns.serve.tcp import bind_tcp, serve_tcp
from kdns.serve.udp import bind_udp, serve_udp
from kdns.sources.manifests import ManifestError, ManifestSet, watch_manifests
from kdns.sources.select import Scope, SelectorError, parse_selector

log = logging.getLogger("kdns")

MANIFESTS = "manifests"
EVENT_QUEUE = 64  # batches; a source blocks (backpressure) when the writer falls behind


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
    def __init__(self, config: ServeConfig):
        self.config = config
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
        else:
            sources = [MANIFESTS]
        self.index = Index(config.dns, sources=sources, now=time.time())
        if config.api is None:
            self.manifests = ManifestSet(config.manifests or (str(demo_cluster()),), scope=self.scope)
            try:
                events = self.manifests.load()
            except ManifestError as exc:
                raise StartupError(str(exc)) from None
            self.index.apply([*events, Synced(MANIFESTS)], time.time())
        self.responder = Responder(self.index.snapshot)
        self._sockets: list[tuple[Bound, socket.socket]] = []
        try:
            for address in config.listen:
                self._bind(address)
            self.forwarder = self._forwarder()
        except BaseException:
            self.close()
            raise

    def _forwarder(self) -> Forwarder | None:
        """The upstreams, checked for loops back to ourselves before anything is served."""
        config = self.config
        if not config.upstreams and not config.stub_domains:
            return None
        upstreams = [Upstream(ip, port) for ip, port in config.upstreams]
        stubs = {domain: [Upstream(ip, port) for ip, port in servers] for domain, servers in config.stub_domains}
        everyone = upstreams + [u for servers in stubs.values() for u in servers]
        own = {(b.address.host, b.address.port) for b in self.bound}
        for u in everyone:
            if (u.host, u.port) in own:
                raise StartupError(f"upstream {u} is kdns itself (it listens there): forwarding to it would loop")
        udp = [sock for bound, sock in self._sockets if bound.proto == "udp"]
        looped = detect_loop(everyone, udp)
        if looped:
            raise StartupError(
                f"upstream {looped[0]} sends kdns's own queries back to it: forwarding to it would loop "
                "(is it a resolver that forwards to kdns, such as a resolv.conf pointing at kdns?)"
            )
        cache = ForwardCache(clock=time.monotonic, maxsize=config.cache_size, max_ttl=config.cache_ttl, stale_for=config.serve_stale)
        return Forwarder(upstreams, stubs, cache, timeout=config.upstream_timeout)

    @property
    def bound(self) -> list[Bound]:
        return [b for b, _ in self._sockets]

    @property
    def synced(self) -> bool:
        """True once every source has delivered its complete initial state."""
        return self.index.snapshot.synced

    def close(self) -> None:
        for _, sock in self._sockets:
            sock.close()

    def join(self, timeout: float = 2.0) -> None:
        """After `serve` returned: wait for the API source's worker threads to end (blocking),
        so that none is still writing a log line while the interpreter shuts down."""
        if self.cluster is not None:
            self.cluster.join(timeout)

    def _bind(self, address: ListenAddress) -> None:
        """UDP and TCP on the same port; with port 0, retry until both get the same one."""
        for _ in range(20):
            udp = self._open("udp", bind_udp, address)
            port = udp.getsockname()[1]
            actual = ListenAddress(address.host, port)
            try:
                tcp = bind_tcp(actual)
            except OSError as exc:
                udp.close()
                if address.port == 0 and exc.errno == errno.EADDRINUSE:
                    continue  # that free UDP port is taken for TCP: pick another
                raise StartupError(f"cannot listen on tcp {actual}: {exc.strerror}") from None
            self._sockets += [(Bound("udp", actual), udp), (Bound("tcp", actual), tcp)]
            return
        raise StartupError(f"cannot find a port free for both udp and tcp on {address.host}")

    @staticmethod
    def _open(proto: str, bind, address: ListenAddress) -> socket.socket:
        try:
            return bind(address)
        except OSError as exc:
            raise StartupError(f"cannot listen on {proto} {address}: {exc.strerror}") from None

    def describe_source(self) -> str:
        if self.config.api is not None:
            return self.config.api.describe()
        return ", ".join(map(str, self.manifests.paths)) if self.manifests else ""

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; `task_status.started()` gets the bound addresses."""
        send, receive = trio.open_memory_channel(EVENT_QUEUE)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_index, receive)
                if self.manifests is not None:
                    nursery.start_soon(watch_manifests, self.manifests, send, self.config.reload_interval)
                else:
                    nursery.start_soon(self.cluster.run, send)
                    nursery.start_soon(self._warn_if_not_synced)
                if self.forwarder is not None:
                    await nursery.start(self.forwarder.run)
                for bound, sock in self._sockets:
                    if bound.proto == "udp":
                        nursery.start_soon(serve_udp, sock, self.responder, self.forwarder)
                    else:
                        nursery.start_soon(serve_tcp, sock, self.responder, self.config.tcp_idle_timeout, self.forwarder)
                log.info(
                    "kdns %s serving zones %s from %s%s",
                    __version__,
                    ", ".join(self.config.dns.all_zones),
                    self.describe_source(),
                    f": {self._counts()}" if self.synced else " (waiting for the first sync)",
                )
                if self.forwarder is not None:
                    log.info(
                        "forwarding other names to %s%s",
                        ", ".join(map(str, self.forwarder.upstreams)) or "nobody",
                        "".join(f"; {d} to {', '.join(map(str, s))}" for d, s in self.forwarder.stubs.items()),
                    )
                for bound in self.bound:
                    log.info("listening on %s %s", bound.proto, bound.address)
                task_status.started(self.bound)
        finally:
            self.close()

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

    def _apply(self, batch: list) -> None:
        change = self.index.apply(batch, time.time())
        if change.snapshot is not self.responder.snapshot:
            self.responder.publish(change)
            log.debug("index updated: serial %d, %d name(s) changed", change.snapshot.serial, len(change.names) + len(change.ips))

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
