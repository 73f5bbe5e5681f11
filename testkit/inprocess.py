"""kdns inside the test's own trio loop: the real server (manifest source, index, UDP and TCP
shell) on a free loopback port, asked over real sockets with dnspython's trio backend."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dns.asyncquery
import dns.message
import trio

from kdns.app import Server
from kdns.settings import build_config, parse_flags
from testkit.dnswire import TIMEOUT


@dataclass
class Running:
    server: Server
    host: str
    port: int

    async def query(self, name: str, rdtype: str | int = "A", *, tcp: bool = False, **make) -> dns.message.Message:
        """Ask over UDP (default) or TCP; `make` goes to dns.message.make_query (use_edns...)."""
        q = dns.message.make_query(name, rdtype, **make)
        if tcp:
            return await dns.asyncquery.tcp(q, self.host, port=self.port, timeout=TIMEOUT)
        return await dns.asyncquery.udp(q, self.host, port=self.port, timeout=TIMEOUT, ignore_trailing=False)

    async def udp_raw(self, payload: bytes, timeout: float = 1.0) -> bytes | None:
        """Send raw bytes over UDP; the reply, or None if none came within `timeout`."""
        family = trio.socket.AF_INET6 if ":" in self.host else trio.socket.AF_INET
        with trio.socket.socket(family, trio.socket.SOCK_DGRAM) as sock:
            await sock.connect((self.host, self.port))
            await sock.send(payload)
            with trio.move_on_after(timeout):
                return await sock.recv(65535)
        return None

    async def tcp_connect(self) -> trio.SocketStream:
        return await trio.open_tcp_stream(self.host, self.port)


async def start(nursery: trio.Nursery, *manifests: Path | str, args: list[str] | tuple[str, ...] = (),
                listen: str = "127.0.0.1:0", clock: Callable[[], float] | None = None) -> Running:
    """`kdns serve --listen LISTEN --manifests M... ARGS` in `nursery`, once it answers.
    `clock`: the forwarding cache's (a testkit.clock.ManualClock), instead of time.monotonic."""
    argv = ["--listen", listen, "--reload-interval", "0.1", *args]
    for m in manifests:
        argv += ["--manifests", str(m)]
    config = build_config(parse_flags(argv))
    # In a thread: start-up may probe upstreams for loops, and those may be stub servers
    # running in this very trio loop.
    make = functools.partial(Server, config) if clock is None else functools.partial(Server, config, clock=clock)
    server = await trio.to_thread.run_sync(make)
    bound = await nursery.start(server.serve)
    return Running(server, bound[0].address.host, bound[0].address.port)
