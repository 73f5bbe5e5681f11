"""Shared fixtures: a real kdns server on loopback, and dnspython as the client.

`kdns` starts the real server (manifest source, index, UDP and TCP shell) inside the test's
trio loop on a free port; queries go over real sockets with dnspython's trio backend.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rdatatype
import pytest
import trio
import trio.testing

from kdns.app import Server
from kdns.cli import _parser
from kdns.settings import build_config

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo-cluster.yaml"
TIMEOUT = 3.0


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


class KdnsProcess:
    """A `kdns` process started by a test: a thread collects its stderr lines. `port` and
    `http[path]` are for the caller to fill in (its DNS port, its HTTP endpoints' ports)."""

    STOP_TIMEOUT = 5.0

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: list[str] = []
        self.port = 0
        self.http: dict[str, int] = {}
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str | re.Pattern, timeout: float = 5.0, since: int = 0) -> re.Match:
        """The first stderr line from index `since` on matching `pattern`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[since:]:
                    if m := re.search(pattern, line):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise AssertionError(f"no stderr line matching {pattern!r} within {timeout}s; stderr: {self.lines}")
                self._changed.wait(min(left, 0.1))

    def matching(self, pattern: str, since: int = 0) -> list[str]:
        with self._changed:
            return [line for line in self.lines[since:] if re.search(pattern, line)]

    def errors(self) -> list[str]:
        return self.matching(" ERROR ")

    def mark(self) -> int:
        """The number of stderr lines so far (for `since=`)."""
        with self._changed:
            return len(self.lines)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        status = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=self.STOP_TIMEOUT)
        return status

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=self.STOP_TIMEOUT)
        self._reader.join(timeout=self.STOP_TIMEOUT)
        self.proc.stderr.close()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def kdns(nursery):
    """Start kdns: `await kdns(path, ..., args=[...])` → Running (bound to 127.0.0.1:0)."""

    async def start(*manifests: Path | str, args: list[str] | tuple[str, ...] = (), listen: str = "127.0.0.1:0") -> Running:
        argv = ["serve", "--listen", listen, "--reload-interval", "0.1", *args]
        for m in manifests:
            argv += ["--manifests", str(m)]
        config = build_config(_parser().parse_args(argv))
        # In a thread: start-up may probe upstreams for loops, and those may be stub servers
        # running in this very trio loop.
        server = await trio.to_thread.run_sync(Server, config)
        bound = await nursery.start(server.serve)
        return Running(server, bound[0].address.host, bound[0].address.port)

    return start


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """trio's clock for a test that takes this fixture (pytest-trio runs it with the clock),
    and so for the kdns it starts in its loop: it moves with real time, and `clock.jump(s)`
    moves it on at once, so a test waits for no timer of kdns's (timeouts, deadlines)."""
    return trio.testing.MockClock(rate=1)


@pytest.fixture
async def demo(kdns) -> Running:
    """kdns serving the bundled demo cluster."""
    return await kdns(DEMO)


def rrs(section) -> set[str]:
    """A message section as a set of zone-file lines, lowercased: `name. ttl IN TYPE data`."""
    out = set()
    for rrset in section:
        for rd in rrset:
            out.add(f"{rrset.name.to_text().lower()} {rrset.ttl} IN {dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text().lower()}")
    return out


def needs(tool: str):
    return pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} is not installed (CI installs it)")
