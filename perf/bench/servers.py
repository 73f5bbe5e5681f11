"""kdns, knotd, unbound and the dnslib peer as processes on 127.0.0.1: start, pin, probe, stop.

`make_servers` builds the servers of `make bench` (perf/README.md says why these peers), and
`make_upstream` the knotd both forwarders ask;
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
    core: str = SERVER_CORE

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(["taskset", "-c", self.core, *self.argv], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
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
        core = int(self.core)
        for _ in range(3):
            tids = [int(t) for t in os.listdir(f"/proc/{self.proc.pid}/task")]
            for tid in tids:
                with contextlib.suppress(ProcessLookupError):
                    if os.sched_getaffinity(tid) != {core}:
                        os.sched_setaffinity(tid, {core})
            if all(self.affinity(tid) in (None, {core}) for tid in tids):
                return
        raise BenchError(f"cannot pin every thread of {self.name} to core {core}")

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


UPSTREAM_CONF = """\
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
zone:
  - domain: {zone}
    storage: "{zones}"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none
"""

UNBOUND_CONF = """\
server:
    interface: 127.0.0.1@{port}
    port: {port}
    num-threads: 1
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    do-ip6: no
    do-not-query-localhost: no
    module-config: "iterator"
    qname-minimisation: no
    access-control: 127.0.0.0/8 allow
    unblock-lan-zones: yes
    insecure-lan-zones: yes
    cache-max-ttl: {cache_ttl}
    prefetch: yes
{local}
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{upstream}
"""


def unbound_local_data(zones: dict[str, Path]) -> str:
    """The zone files as unbound `local-zone` (static: NXDOMAIN and NODATA with the SOA) and
    `local-data` lines."""
    lines = []
    for zone, path in zones.items():
        lines.append(f'    local-zone: "{zone}." static')
        for line in path.read_text().splitlines():
            if line.strip():
                quote = "'" if '"' in line else '"'
                lines.append(f"    local-data: {quote}{line.strip()}{quote}")
    return "\n".join(lines)


def make_upstream(work: Path, zone_file: Path) -> Server:
    """knotd serving `zone_file` (the outside names): the one upstream both forwarders ask.
    It runs on dnsperf's core: it is only asked while the caches fill."""
    port = free_port()
    up_dir = work / "upstream"
    up_dir.mkdir()
    conf = up_dir / "knot.conf"
    conf.write_text(UPSTREAM_CONF.format(dir=up_dir, port=port, zones=zone_file.parent, zone=cluster.UPSTREAM_ZONE))
    return Server("upstream", [find_knotd(), "-c", str(conf)], port, work / "upstream.log", core=CLIENT_CORE)


def make_servers(work: Path, manifests: Path, zones: dict[str, Path], upstream: Server | None = None,
                 dnslib: bool = True) -> list[Server]:
    """kdns, knotd, unbound (when there is an `upstream`: both forward to it) and the dnslib
    peer (`dnslib`), not started yet, in the order they run."""
    kdns_port, knot_port, unbound_port, dnslib_port = free_port(), free_port(), free_port(), free_port()
    knot_dir = work / "knot"
    knot_dir.mkdir()
    conf = knot_dir / "knot.conf"
    conf.write_text(KNOT_CONF.format(dir=knot_dir, port=knot_port, zones=zones[cluster.ZONE].parent,
                                     zone=cluster.ZONE, reverse=cluster.REVERSE_ZONE))
    kdns = Path(sys.executable).parent / "kdns"
    forwarding = ["--upstream", f"127.0.0.1:{upstream.port}", "--cache-ttl", str(CACHE_TTL)] if upstream is not None else []
    servers = [
        Server("kdns", [str(kdns), "serve", "--manifests", str(manifests), "--listen", f"127.0.0.1:{kdns_port}",
                        "--log-level", "warning", *forwarding], kdns_port, work / "kdns.log"),
        Server("knot", [find_knotd(), "-c", str(conf)], knot_port, work / "knot.log"),
    ]
    if upstream is not None:
        unbound_dir = work / "unbound"
        unbound_dir.mkdir()
        uconf = unbound_dir / "unbound.conf"
        uconf.write_text(UNBOUND_CONF.format(port=unbound_port, dir=unbound_dir, cache_ttl=CACHE_TTL, upstream=upstream.port,
                                             local=unbound_local_data(zones)))
        servers.append(Server("unbound", [find_tool("unbound"), "-d", "-c", str(uconf)], unbound_port, work / "unbound.log"))
    if dnslib:
        servers.append(Server("dnslib", [sys.executable, str(HERE / "dnslib_server.py"), str(dnslib_port), *map(str, zones.values())],
                              dnslib_port, work / "dnslib.log"))
    return servers


CACHE_TTL = 30  # kdns's default --cache-ttl; unbound gets the same cache-max-ttl (and prefetch, as kdns has)


def find_tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        raise BenchError(f"{name} not found: apt-get install {name}")
    return path


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
