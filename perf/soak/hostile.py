"""The hostile inputs of issue 13 for the soak: a hostile upstream and a padding flood.

* `HostileUpstream`: tests/hostiledns.py's server on 127.0.0.2, in a trio loop of its own
  thread; kdns sends it `hostile.test` (`--stub-domain`).
* `hostile_round`: 300 names whose answers are 64 KB of compressed records (about 1 MB
  written out: kdns must neither expand nor cache them), then names whose answers carry
  records for cluster names (none may reach the client). kdns's RSS and its forwarding
  cache's bytes (/metrics) are read before and after.
* `padding_flood`: UDP queries for a cluster name, each padded (EDNS padding) to another
  length; then the statistics' counters (/metrics kdns_table_entries{table="query_stats"}) and
  how long a scrape takes.

Everything goes to 127.0.0.1/127.0.0.2 and is bounded in count and time.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import trio

from perf.soak.upstream import fixed_port
from testkit.hostiledns import EVIL, INJECTED_CLUSTER_NAMES, HostileDNS, bomb_name

HOST = "127.0.0.2"
ZONE = "hostile.test"


class HostileUpstream:
    def __init__(self) -> None:
        self.server = HostileDNS(HOST, fixed_port(HOST))
        self._token = None
        self._cancel: trio.CancelScope | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> int:
        ready = threading.Event()

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._cancel = nursery.cancel_scope
                await nursery.start(self.server.serve)
                ready.set()

        self._thread = threading.Thread(target=lambda: trio.run(main), name="hostile-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("the hostile upstream did not start")
        return self.server.port

    def close(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        try:
            trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        except (trio.RunFinishedError, RuntimeError):
            pass
        self._thread.join(5)


@dataclass
class HostileRound:
    names: int = 0
    truncated: int = 0  # replies with TC (the answer did not fit)
    unanswered: int = 0
    injected_seen: int = 0  # records for cluster names or off the chain that reached the client
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    cache_bytes_after: float = 0.0
    cluster_answered: bool = False  # a cluster name got its answer (NOERROR or NXDOMAIN) after the round


def hostile_round(port: int, rss_kb: Callable[[], int], metrics_text: Callable[[], str], stop: threading.Event, cluster_name: str,
                  names: int = 300, base: int = 0) -> HostileRound:
    result = HostileRound(rss_before_kb=rss_kb())
    for i in range(names):
        if stop.is_set():
            break
        q = dns.message.make_query(bomb_name(base + i), "A")
        try:
            reply = dns.query.tcp(q, "127.0.0.1", port=port, timeout=3)
            result.truncated += bool(reply.flags & dns.flags.TC)
        except (OSError, dns.exception.DNSException):
            result.unanswered += 1
        result.names += 1
    for name in ("inject.hostile.test", "inject-chain.hostile.test"):
        try:
            reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=3)
        except (OSError, dns.exception.DNSException):
            result.unanswered += 1
            continue
        text = " ".join(rrset.to_text() for section in (reply.answer, reply.authority, reply.additional) for rrset in section)
        result.injected_seen += text.count(EVIL) + sum(text.count(n) for n in INJECTED_CLUSTER_NAMES)
    try:
        reply = dns.query.udp(dns.message.make_query(cluster_name, "A"), "127.0.0.1", port=port, timeout=3)
        result.cluster_answered = reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
    except (OSError, dns.exception.DNSException):
        pass
    result.rss_after_kb = rss_kb()
    result.cache_bytes_after = table(metrics_text(), "kdns_table_bytes", "forward_cache")
    return result


@dataclass
class PaddingFlood:
    sent: int = 0
    answered: int = 0
    keys_before: float = 0.0
    keys_after: float = 0.0
    scrape_seconds: list[float] = field(default_factory=list)


def padding_flood(port: int, metrics_text: Callable[[], str], name: str, count: int = 20_000, rate: int = 10_000) -> PaddingFlood:
    """`count` UDP queries for `name`, padded to lengths 0-1199 in turn, at about `rate`/s."""
    result = PaddingFlood()
    start = time.monotonic()
    result.keys_before = table(_timed(metrics_text, result), "kdns_table_entries", "query_stats")
    base = dns.message.make_query(name, "A", use_edns=0).to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setblocking(False)
        for i in range(count):
            padding = i % 1200
            option = struct.pack("!HH", dns.edns.PADDING, padding) + b"\0" * padding
            # The base query's OPT record ends it: grow its RDATA length and append the option.
            data = base[:-2] + struct.pack("!H", len(option)) + option
            try:
                sock.sendto(data, ("127.0.0.1", port))
                result.sent += 1
            except OSError:
                pass
            if i % 100 == 99:
                result.answered += _drain(sock)
                ahead = start + (i + 1) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            result.answered += _drain(sock)
            time.sleep(0.05)
    result.keys_after = table(_timed(metrics_text, result), "kdns_table_entries", "query_stats")
    return result


def _timed(metrics_text: Callable[[], str], result: PaddingFlood) -> str:
    t = time.monotonic()
    text = metrics_text()
    result.scrape_seconds.append(time.monotonic() - t)
    return text


def _drain(sock: socket.socket) -> int:
    n = 0
    for _ in range(10_000):
        try:
            sock.recv(65535)
        except OSError:
            break
        n += 1
    return n


def table(text: str, metric: str, name: str) -> float:
    m = re.search(rf'^{metric}\{{table="{name}"\}} (\S+)$', text, re.MULTILINE)
    return float(m.group(1)) if m else float("nan")
