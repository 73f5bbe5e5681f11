"""kdns, knotd and the dnslib peer as processes on 127.0.0.1: start, pin, probe, stop.

`make_servers` builds the three of `make bench` (perf/README.md says why these peers);
`perf/workers.py` starts its own with the same `Server`, `KNOT_CONF` and `wait_ready`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

from perf.bench import ROOT, cluster, cpu_seconds, status_kb

HERE = Path(__file__).resolve().parent
SERVER_CORE, CLIENT_CORE = "1", "0"
START_TIMEOUT = 30.0


class BenchError(Exception):
    """A server failed to start, died, or answered wrongly: the run is not valid."""


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(["taskset", "-c", SERVER_CORE, *self.argv], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                         preexec_fn=die_with_parent)  # noqa: PLW1509 (the benchmark runs no threads)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def pin(self) -> None:
        """Put every thread on the server core again. `taskset` only sets the affinity
        that threads inherit; knotd pins its UDP worker to a core of its own choosing
        (core 0 here, dnsperf's), so it is overridden thread by thread."""
        for _ in range(3):
            tids = [int(t) for t in os.listdir(f"/proc/{self.proc.pid}/task")]
            for tid in tids:
                with contextlib.suppress(ProcessLookupError):
                    if os.sched_getaffinity(tid) != {int(SERVER_CORE)}:
                        os.sched_setaffinity(tid, {int(SERVER_CORE)})
            if all(self.affinity(tid) in (None, {int(SERVER_CORE)}) for tid in tids):
                return
        raise BenchError(f"cannot pin every thread of {self.name} to core {SERVER_CORE}")

    @staticmethod
    def affinity(tid: int) -> set[int] | None:
        try:
            return os.sched_getaffinity(tid)
        except ProcessLookupError:  # the thread has ended
            return None

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited with status {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """utime + stime of the whole process (all threads, exited ones included)."""
        return cpu_seconds(self.proc.pid)

    def rss_mb(self) -> float:
        return status_kb(self.proc.pid, "VmRSS") / 1024


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the benchmark dies, even by SIGKILL."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (the servers bind it a moment later)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise BenchError("no free port on 127.0.0.1")


KNOT_CONF = """\
server:
    rundir: "{dir}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{dir}"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "{zones}"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: {zone}
  - domain: {reverse}
"""


def make_servers(work: Path, manifests: Path, zones: dict[str, Path]) -> list[Server]:
    """kdns, knotd and the dnslib peer, not started yet, in the order they run."""
    kdns_port, knot_port, dnslib_port = free_port(), free_port(), free_port()
    knot_dir = work / "knot"
    knot_dir.mkdir()
    conf = knot_dir / "knot.conf"
    conf.write_text(KNOT_CONF.format(dir=knot_dir, port=knot_port, zones=zones[cluster.ZONE].parent,
                                     zone=cluster.ZONE, reverse=cluster.REVERSE_ZONE))
    kdns = Path(sys.executable).parent / "kdns"
    return [
        Server("kdns", [str(kdns), "serve", "--manifests", str(manifests), "--listen", f"127.0.0.1:{kdns_port}",
                        "--log-level", "warning"], kdns_port, work / "kdns.log"),
        Server("knot", [find_knotd(), "-c", str(conf)], knot_port, work / "knot.log"),
        Server("dnslib", [sys.executable, str(HERE / "dnslib_server.py"), str(dnslib_port), *map(str, zones.values())],
               dnslib_port, work / "dnslib.log"),
    ]


def find_knotd() -> str:
    path = shutil.which("knotd") or ("/usr/sbin/knotd" if Path("/usr/sbin/knotd").exists() else None)
    if path is None:
        raise BenchError("knotd not found: apt-get install knot")
    return path


def ask(port: int, qname: str, qtype: str, timeout: float = 2.0) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype)  # as dnsperf sends them: RD set, no EDNS
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout)


def wait_ready(server: Server, probe: str) -> None:
    """Until `server` answers `probe` A with NOERROR (bounded by START_TIMEOUT)."""
    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            reply = ask(server.port, probe, "A", timeout=0.5)
            if reply.rcode() == dns.rcode.NOERROR and reply.answer:
                return
            last = dns.rcode.to_text(reply.rcode())
        except (dns.exception.Timeout, OSError) as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise BenchError(f"{server.name} did not answer {probe} within {START_TIMEOUT:.0f} s (last: {last}):\n{server.log_tail()}")
