"""A `kdns` process started by a test: its stderr lines collected as they come, and the address
it prints with `--print-address` once it answers (the way a test in another language finds a
kdns it started on a free port; docs/testing.md)."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query

from testkit.repo import ROOT

KDNS = [sys.executable, "-m", "kdns"]
START_TIMEOUT = 15.0  # until kdns prints its address
STOP_TIMEOUT = 5.0
HTTP_ALL = ("--health", "127.0.0.1:0", "--ready", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
# The HTTP endpoints' ports are in the log lines (--print-address prints the DNS address only);
# kdns logs them before it prints its address.
HTTP_LINE = re.compile(r"listening on http 127\.0\.0\.\d+:(\d+) for ((?:/[a-z]+ ?)+)")
ADDRESS = re.compile(r"\[?([0-9a-fA-F:.]+)\]?:(\d+)")


class KdnsProcess:
    """A `kdns` process: threads collect its stderr lines and (when piped) its stdout lines.
    `host`/`port` are its DNS address once `wait_address()` has read it; `http[path]` the ports
    of its HTTP endpoints, for the caller (or `kdns_serve`) to fill in."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: list[str] = []  # stderr
        self.printed: list[str] = []  # stdout
        self.host = ""
        self.port = 0
        self.http: dict[str, int] = {}
        self._changed = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(stream, out), daemon=True)
                         for stream, out in ((proc.stderr, self.lines), (proc.stdout, self.printed)) if stream is not None]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, out: list[str]) -> None:
        for line in stream:
            with self._changed:
                out.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_until(self, find, what: str, timeout: float):
        """What `find()` returns once it is not None (called with the lines locked), waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = find()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or not any(r.is_alive() for r in self._readers):
                    raise AssertionError(f"{what} within {timeout}s; stderr: {self.lines}")
                self._changed.wait(min(left, 0.1))

    def wait_address(self, timeout: float = START_TIMEOUT) -> tuple[str, int]:
        """The address printed by `--print-address` (stdout piped), waiting up to `timeout`."""
        line = self.wait_until(lambda: self.printed[0] if self.printed else None, "no address printed", timeout)
        m = ADDRESS.fullmatch(line)
        assert m, f"first stdout line: {line!r}; stderr: {self.lines}"
        self.host, self.port = m.group(1), int(m.group(2))
        return self.host, self.port

    def wait_for(self, pattern: str | re.Pattern, timeout: float = 5.0, since: int = 0) -> re.Match:
        """The first stderr line from index `since` on matching `pattern`, waiting up to `timeout`."""

        def find() -> re.Match | None:
            return next((m for line in self.lines[since:] if (m := re.search(pattern, line))), None)

        return self.wait_until(find, f"no stderr line matching {pattern!r}", timeout)

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
        for reader in self._readers:
            reader.join(timeout=STOP_TIMEOUT)
        return status

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT)
        for reader in self._readers:
            reader.join(timeout=STOP_TIMEOUT)
        for stream in (self.proc.stderr, self.proc.stdout):
            if stream is not None:
                stream.close()


def start(argv: list[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = START_TIMEOUT) -> KdnsProcess:
    """Run `argv` (a `kdns serve ... --print-address` command); the KdnsProcess once it has
    printed the address it answers on (killed if it does not)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    k = KdnsProcess(proc)
    try:
        k.wait_address(timeout)
    except BaseException:
        k.close()
        raise
    return k


@contextlib.contextmanager
def kdns_serve(*args: str, listen: bool = True, http: tuple[str, ...] = HTTP_ALL, http_paths: int | None = None,
               cwd: Path = ROOT, env: dict[str, str] | None = None) -> Iterator[KdnsProcess]:
    """`kdns serve [--listen 127.0.0.1:0] [HTTP flags] ARGS --print-address`; yields the
    KdnsProcess once it answers, with the ports of `http_paths` HTTP endpoints (default: those
    of `http`) read from its log."""
    k = start([*KDNS, "serve", *(["--listen", "127.0.0.1:0"] if listen else []), *http, *map(str, args), "--print-address"],
              cwd=cwd, env=env)
    expected = len(http) // 2 if http_paths is None else http_paths

    def http_ports() -> dict[str, int] | None:
        ports = {path: int(m.group(1)) for line in k.lines if (m := HTTP_LINE.search(line)) for path in m.group(2).split()}
        return ports if len(ports) >= expected else None

    try:
        k.http = k.wait_until(http_ports, f"not {expected} HTTP endpoints logged", STOP_TIMEOUT)
        yield k
    finally:
        k.close()


def lookup(port: int, name: str, rdtype: str = "A", *, tcp: bool = False) -> dns.message.Message:
    """One question to kdns on 127.0.0.1:port with dnspython's synchronous client."""
    q = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=port, timeout=2.0)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=2.0)
