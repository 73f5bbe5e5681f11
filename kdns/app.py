"""Composition root: wires the sources, the index writer and the servers together.

`Server(config)` does everything that can fail because of the user's input before any task
starts: it reads the manifests and binds the sockets, raising `StartupError` with a one-line
message. `await server.serve()` then runs until cancelled: one task per socket, the manifest
watcher, and the single index writer that turns batches of events into published snapshots.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from dataclasses import dataclass

import trio

from kdns import __version__
from kdns.config import ListenAddress, ServeConfig
from kdns.index import Index
from kdns.model import Synced
from kdns.responder import Responder
from kdns.serve.tcp import bind_tcp, serve_tcp
from kdns.serve.udp import bind_udp, serve_udp
from kdns.sources.manifests import ManifestError, ManifestSet, watch_manifests

log = logging.getLogger("kdns")

MANIFESTS = "manifests"
EVENT_QUEUE = 64  # batches; a source blocks (backpressure) when the writer falls behind


class StartupError(Exception):
    """kdns cannot start; the message is one line saying why."""


@dataclass(frozen=True, slots=True)
class Bound:
    proto: str  # "udp" or "tcp"
    address: ListenAddress  # with the real port when port 0 was asked for


class Server:
    def __init__(self, config: ServeConfig):
        self.config = config
        self.index = Index(config.dns, sources=(MANIFESTS,), now=time.time())
        self.manifests = ManifestSet(config.manifests)
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
        except BaseException:
            self.close()
            raise

    @property
    def bound(self) -> list[Bound]:
        return [b for b, _ in self._sockets]

    def close(self) -> None:
        for _, sock in self._sockets:
            sock.close()

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

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; `task_status.started()` gets the bound addresses."""
        send, receive = trio.open_memory_channel(EVENT_QUEUE)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_index, receive)
                nursery.start_soon(watch_manifests, self.manifests, send, self.config.reload_interval)
                for bound, sock in self._sockets:
                    if bound.proto == "udp":
                        nursery.start_soon(serve_udp, sock, self.responder)
                    else:
                        nursery.start_soon(serve_tcp, sock, self.responder, self.config.tcp_idle_timeout)
                counts = self.index.counts()
                log.info(
                    "kdns %s serving zones %s from %s: %s",
                    __version__,
                    ", ".join(self.config.dns.all_zones),
                    ", ".join(self.config.manifests),
                    ", ".join(f"{n} {kind}" for kind, n in counts.items()),
                )
                for bound in self.bound:
                    log.info("listening on %s %s", bound.proto, bound.address)
                task_status.started(self.bound)
        finally:
            self.close()

    async def _write_index(self, receive: trio.MemoryReceiveChannel) -> None:
        """The only writer of the index: applies each batch (and whatever queued behind it)."""
        async for batch in receive:
            while True:
                try:
                    batch = batch + receive.receive_nowait()
                except trio.WouldBlock:
                    break
            change = self.index.apply(batch, time.time())
            if not change.empty:
                self.responder.publish(change)
                log.info("index updated: serial %d, %d name(s) changed", change.snapshot.serial, len(change.names) + len(change.ips))
