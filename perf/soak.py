"""kdns soak: a steady dnsperf load for a bounded time while Services churn, the API server and
the upstream fail on a schedule and bad packets arrive; answers checked all along.

The run, all on 127.0.0.1:

1. A cluster in the test API server of tests/kubeapi.py, in this process (`--services`,
   default 300: ClusterIP with endpoints, 10% headless, 5% of those with StatefulSet
   hostnames, a few ExternalName inside and outside the cluster; perf/soak/cluster.py), and
   the stub upstream of tests/stubdns.py in a thread of its own, holding the outside names.
2. `kdns serve --apiserver URL --listen 127.0.0.1:0 --upstream 127.0.0.1:U --metrics
   127.0.0.1:0 --lameduck 0`, pinned to core 1; dnsperf pinned to core 0 (as this process)
   at `--rate` queries/s (`-Q`, default 20,000) for the whole run, in `--chunk`-second runs
   back to back (default 30), each with `-v` so that every query's latency is known. The
   mix is perf/bench's (pods' search paths, ndots:5) plus the outside names themselves
   (forwarded, then cached) and names of Services that come and go.
3. On a 60-second schedule, repeated: Service churn through the API all the time
   (`--churn-rate` changes/s: new ClusterIPs, new endpoints, deletions, creations); API
   faults (down for 10 s, compaction + dropped watches for a relist, 500s on reconnect);
   upstream faults (drop for 10 s, SERVFAIL for 10 s, stopped for 5 s); bad input (bursts of
   3,000 malformed UDP packets; 1,100 idle TCP connections, byte-a-second senders, huge
   length prefixes).
4. Every 5 s: kdns's RSS and CPU, and about 25 answers checked against what the API holds
   (recently changed Services, stable ones, deleted ones, StatefulSet hostnames, outside
   names, ExternalNames, search-path misses, PTR; two over TCP). A change must be served
   once it is GRACE (2 s) old and the API was reachable meanwhile; during an API fault, and
   until kdns has its watches open again, the last state kdns could know (or any later one)
   is right and nothing else: NXDOMAIN or SERVFAIL for a name that exists is wrong. Before
   and after the load every name is checked once more (initial and final sweeps).
5. A report: queries sent and answered, p99 per dnsperf run, latency during each kind of
   fault, RSS over time, faults and bad inputs made, checks and wrong answers (each printed
   in full), what kdns logged at WARNING and above (by kind), whether kdns stayed up.
   `--record` prepends it to perf/RESULTS.md.

Exit status: 0 if every check was right and kdns ran throughout; 1 if an answer was wrong, a
check query went unanswered outside an upstream fault, or kdns died; 2 if the soak could not
run. Every process and thread started is stopped on the way out (also on Ctrl-C and SIGTERM;
kdns and dnsperf also get a signal if this process is killed outright).

Usage: python perf/soak.py [--minutes N] [--rate QPS] [--services N] [--churn-rate N]
                           [--chunk S] [--record] [--log PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

from bench import kdns_revision, missing_prerequisite, record
from kubeapi import KubeAPI
from soak import abuse
from soak import cluster as soak_cluster
from soak.upstream import Upstream

SERVER_CORE, CLIENT_CORE = 1, 0
DNSPERF_OPTIONS = ["-T", "2", "-c", "2", "-q", "500", "-t", "2", "-v"]
SAMPLE_EVERY = 5.0
QUERY_LINES = 100_000
START_TIMEOUT = 30.0
CHECK_TIMEOUT = 3.0  # per try; three tries
UPSTREAM_GRACE = 10.0  # after an upstream fault, outside names may still fail this long
WATCHED = ("Namespace", "Service", "EndpointSlice")
CYCLE = 60.0
# (offset in each 60 s cycle, fault, seconds it lasts)
SCHEDULE = [
    (3, "UDP burst", 0),
    (5, "API down", 10),
    (10, "upstream drop", 10),  # overlaps the API outage for 5 s: both at once
    (22, "TCP abusers", 0),
    (25, "API relist", 0),
    (30, "upstream SERVFAIL", 10),
    (38, "UDP burst", 0),
    (42, "API 500s", 0),
    (48, "upstream stopped", 5),
]
API_FAULTS = ("API down", "API relist", "API 500s")
UPSTREAM_FAULTS = ("upstream drop", "upstream SERVFAIL", "upstream stopped")
CLK_TCK = os.sysconf("SC_CLK_TCK")
KDNS_COMMAND = "kdns serve --apiserver URL --listen 127.0.0.1:0 --upstream 127.0.0.1:U --metrics 127.0.0.1:0 --lameduck 0"


class SoakError(Exception):
    """The soak could not run (not a finding about kdns)."""


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def pct(values, q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else math.nan


# --- kdns ------------------------------------------------------------------------------------


@dataclass
class LogLine:
    t: float
    level: str
    logger: str
    message: str
    extra: list[str] = field(default_factory=list)  # traceback lines

    @property
    def kind(self) -> str:
        """The message with numbers, addresses and object names generalised."""
        text = re.sub(r"\d+(\.\d+)*", "N", self.message)
        return f"{self.level} {self.logger}: {text}"


class Kdns:
    def __init__(self, api_url: str, upstream_port: int, log_path: Path | None) -> None:
        self.argv = [sys.executable, "-m", "kdns", "serve", "--apiserver", api_url, "--listen", "127.0.0.1:0",
                     "--upstream", f"127.0.0.1:{upstream_port}", "--metrics", "127.0.0.1:0", "--lameduck", "0"]
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.lines: list[LogLine] = []
        self.raw: list[str] = []
        self.port = 0
        self.metrics_port = 0
        self.synced = threading.Event()
        self.lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        wrap = ["setpriv", "--pdeathsig", "TERM"] if shutil.which("setpriv") else []
        self.proc = subprocess.Popen([*wrap, "taskset", "-c", str(SERVER_CORE), *self.argv], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace", cwd=ROOT)
        self._reader = threading.Thread(target=self._read, name="kdns-log", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not (self.synced.is_set() and self.port and self.metrics_port):
            if self.proc.poll() is not None:
                time.sleep(0.2)
                raise SoakError(f"kdns exited with status {self.proc.returncode} at start:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise SoakError(f"kdns did not sync within {START_TIMEOUT:.0f} s:\n{self.tail()}")
            time.sleep(0.05)

    def _read(self) -> None:
        stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (\w+) (\S+): (.*)$")
        for raw in self.proc.stderr:
            raw = raw.rstrip("\n")
            now = time.monotonic()
            with self.lock:
                self.raw.append(raw)
                m = stamp.match(raw)
                if m:
                    self.lines.append(LogLine(now, m.group(1), m.group(2), m.group(3)))
                elif self.lines:
                    self.lines[-1].extra.append(raw)
                else:
                    self.lines.append(LogLine(now, "UNSTRUCTURED", "-", raw))
            if m and not self.port and (p := re.search(r"listening on udp 127\.0\.0\.1:(\d+)", raw)):
                self.port = int(p.group(1))
            if m and not self.metrics_port and (p := re.search(r"listening on http 127\.0\.0\.1:(\d+)", raw)):
                self.metrics_port = int(p.group(1))
            if m and "synced with" in raw:
                self.synced.set()

    def tail(self, n: int = 20) -> str:
        with self.lock:
            return "\n".join(self.raw[-n:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status_kb(self, field_name: str) -> int:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(rf"^{field_name}:\s+(\d+) kB", text, re.MULTILINE).group(1))

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def metrics(self) -> dict[str, float]:
        """The sum of each metric family's samples (histogram: its _count)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        sums: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
            if m:
                with contextlib.suppress(ValueError):
                    sums[m.group(1)] = sums.get(m.group(1), 0.0) + float(m.group(3))
        return sums

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        if self.log_path is not None:
            with self.lock:
                self.log_path.write_text("\n".join(self.raw) + "\n")


# --- the load --------------------------------------------------------------------------------


@dataclass
class Chunk:
    start: float  # seconds from the start of the load
    seconds: float
    sent: int
    completed: int
    lost: int
    rcodes: Counter
    p50: float  # µs
    p99: float
    p999: float
    max: float
    windows: list[tuple[float, float, float]]  # (start s, p99 µs, max µs) of each second's worth of queries


class Load(threading.Thread):
    """dnsperf in `chunk`-second runs back to back until `seconds` have passed; each run's
    output is parsed while the next one runs."""

    def __init__(self, port: int, queries: Path, work: Path, rate: int, seconds: float, chunk: float, t0: float, stop: threading.Event):
        super().__init__(name="dnsperf", daemon=True)
        self.port, self.queries, self.work, self.rate = port, queries, work, rate
        self.seconds, self.chunk, self.t0, self.stop_event = seconds, chunk, t0, stop
        self.chunks: list[Chunk] = []
        self.error: str | None = None
        self.proc: subprocess.Popen | None = None

    def argv(self, seconds: float) -> list[str]:
        wrap = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
        return [*wrap, "taskset", "-c", str(CLIENT_CORE), "dnsperf", "-s", "127.0.0.1", "-p", str(self.port), "-d", str(self.queries),
                "-l", f"{seconds:g}", "-Q", str(self.rate), *DNSPERF_OPTIONS]

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            self.error = f"{type(exc).__name__}: {exc}"

    def _run(self) -> None:
        pending = None
        i = 0
        while not self.stop_event.is_set():
            start = time.monotonic() - self.t0
            remaining = self.seconds - start
            if remaining < 1:
                break
            seconds = round(min(self.chunk, remaining), 1)
            out = self.work / f"dnsperf-{i % 2}.out"
            with out.open("w") as f:
                self.proc = subprocess.Popen(self.argv(seconds), stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if pending is not None:
                self.chunks.append(parse_chunk(*pending, self.rate))
            deadline = time.monotonic() + seconds + 30
            while self.proc.poll() is None:
                if self.stop_event.is_set() or time.monotonic() > deadline:
                    self.proc.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(5)
                    if self.proc.poll() is None:
                        self.proc.kill()
                        self.proc.wait(5)
                    if not self.stop_event.is_set():
                        raise SoakError(f"dnsperf did not finish within {seconds + 30:.0f} s")
                    return
                time.sleep(0.1)
            if self.proc.returncode != 0:
                raise SoakError(f"dnsperf failed ({self.proc.returncode}):\n{out.read_text()[-2000:]}")
            pending = (out, start, seconds)
            i += 1
        if pending is not None:
            self.chunks.append(parse_chunk(*pending, self.rate))

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)


def parse_chunk(path: Path, start: float, seconds: float, rate: int) -> Chunk:
    """dnsperf's summary and per-query latencies (perf/soak/parse.py, run at nice 19 on core 0)."""
    argv = ["nice", "-n", "19", "taskset", "-c", str(CLIENT_CORE), sys.executable, str(HERE / "soak" / "parse.py"), str(path), str(rate)]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SoakError(f"cannot parse dnsperf's output: {done.stderr[-2000:]}")
    out = json.loads(done.stdout)
    if out["sent"] is None or out["completed"] is None or out["lost"] is None:
        raise SoakError(f"no summary in dnsperf's output:\n{out['tail']}")

    def num(x) -> float:
        return math.nan if x is None else x

    return Chunk(start, seconds, out["sent"], out["completed"], out["lost"], Counter(out["rcodes"]), num(out["p50"]), num(out["p99"]),
                 num(out["p999"]), num(out["max"]), [(start + t, num(p), num(m)) for t, p, m in out["windows"]])


# --- faults ----------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    start: float  # seconds from the start of the load
    end: float | None = None  # released
    recovered: float | None = None  # API faults: kdns had every watch open again
    detail: str = ""


class Faults:
    """Injects the scheduled faults and bad inputs; watches kdns's recovery from API faults."""

    def __init__(self, api: KubeAPI, upstream: Upstream, kdns: Kdns, health: soak_cluster.Health, names: list[str], t0: float,
                 stop: threading.Event):
        self.api, self.upstream, self.kdns, self.health = api, upstream, kdns, health
        self.names, self.t0, self.stop = names, t0, stop
        self.lock = threading.Lock()
        self.log: list[Fault] = []
        self.udp: list[abuse.UdpBurst] = []
        self.tcp: list[abuse.TcpAbuse] = []
        self.rng = random.Random(11)
        self.threads: list[threading.Thread] = []
        self.skipped: Counter = Counter()
        self.monitor = threading.Thread(target=self._monitor, name="api-health", daemon=True)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def active(self, at: float | None = None, margin: float = 0.0) -> list[str]:
        """The faults in progress at `at` (API faults until kdns recovered), `margin` s after."""
        at = self.now() if at is None else at
        with self.lock:
            out = []
            for f in self.log:
                end = f.recovered if f.kind in API_FAULTS else f.end
                if f.start <= at and (end is None or at <= end + margin):
                    out.append(f.kind)
            return out

    def upstream_trouble(self, at: float) -> bool:
        return any(k in UPSTREAM_FAULTS for k in self.active(at, UPSTREAM_GRACE))

    def _open(self, kind: str) -> Fault:
        fault = Fault(kind, self.now())
        with self.lock:
            self.log.append(fault)
        log(f"t={fault.start:6.1f}s {kind}")
        return fault

    def _release(self, fault: Fault) -> None:
        with self.lock:
            fault.end = self.now()

    # -- the schedule --

    def begin(self, kind: str, seconds: float) -> Fault | None:
        if kind in API_FAULTS:
            self.health.open_fault(time.monotonic())
        fault = self._open(kind)
        if kind == "API down":
            self.api.down()
        elif kind == "API relist":
            self.api.compact()
            self.api.drop_watches()
            self._release(fault)
        elif kind == "API 500s":
            self.api.fail_next(2 * len(WATCHED), 500)
            self.api.drop_watches()
            self._release(fault)
        elif kind == "upstream drop":
            self.upstream.set_mode("drop")
        elif kind == "upstream SERVFAIL":
            self.upstream.set_mode("servfail")
        elif kind == "upstream stopped":
            self.upstream.stop_listening()
        elif kind == "UDP burst":
            burst = abuse.udp_burst(self.kdns.port, 3000, self.names, self.rng)
            self.udp.append(burst)
            fault.detail = f"{burst.sent} packets"
            self._release(fault)
        elif kind == "TCP abusers":
            thread = threading.Thread(target=self._tcp, args=(fault,), name="tcp-abusers", daemon=True)
            self.threads.append(thread)
            thread.start()
        return fault

    def finish(self, fault: Fault) -> None:
        kind = fault.kind
        if kind == "API down":
            self.api.up()
        elif kind in ("upstream drop", "upstream SERVFAIL"):
            self.upstream.set_mode("ok")
        elif kind == "upstream stopped":
            self.upstream.restart()
        self._release(fault)
        log(f"t={fault.end:6.1f}s {kind}: over")

    def _tcp(self, fault: Fault) -> None:
        try:
            result = abuse.tcp_abuse(self.kdns.port, self.stop)
            self.tcp.append(result)
            fault.detail = ", ".join(f"{k} {v}" for k, v in result.opened.items())
        finally:
            self._release(fault)

    def _monitor(self) -> None:
        """An API fault is over for the checks when it has been released for 0.3 s and kdns
        has a watch open on every resource again (so it has listed or resumed)."""
        while not self.stop.is_set():
            time.sleep(0.05)
            with self.lock:
                api = [f for f in self.log if f.kind in API_FAULTS]
                pending = [f for f in api if f.recovered is None]
                busy = any(f.end is None for f in api)
                last_end = max((f.end for f in pending if f.end is not None), default=None)
            if not pending or busy or self.now() - last_end < 0.3:
                continue
            if all(self.api.watchers(k) >= 1 for k in WATCHED):
                now = time.monotonic()
                self.health.close(now)
                self.api.fail_next(0)
                with self.lock:
                    for f in pending:
                        f.recovered = now - self.t0
                log(f"t={now - self.t0:6.1f}s kdns watches every resource again ({', '.join(f.kind for f in pending)})")

    def wait_recovered(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.health.healthy:
                return True
            time.sleep(0.1)
        return False

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in [*self.threads, self.monitor]:
            with contextlib.suppress(RuntimeError):  # never started
                t.join(max(0.1, deadline - time.monotonic()))


def schedule(seconds: float) -> list[tuple[float, str, float]]:
    """(start, fault, duration) over the run: SCHEDULE every CYCLE seconds, each ending at
    least 5 s before the load does."""
    events = []
    for c in range(math.ceil(seconds / CYCLE)):
        for offset, kind, duration in SCHEDULE:
            at = c * CYCLE + offset
            if at + duration + 5 <= seconds:
                events.append((at, kind, duration))
    return sorted(events)


# --- checks ----------------------------------------------------------------------------------


@dataclass
class Check:
    t: float
    category: str
    name: str
    qtype: str
    proto: str
    got: str
    expected: str
    verdict: str  # "ok", "wrong", "tolerated" (an outside name failing during an upstream fault), "unanswered"
    during: list[str]
    detail: str = ""


def ask(port: int, name: str, qtype: str, proto: str) -> tuple[dns.message.Message | None, str, float]:
    """(reply or None, error, time.monotonic() the answered try was sent): up to three tries."""
    error = ""
    for _ in range(3):
        query = dns.message.make_query(name, qtype)
        sent = time.monotonic()
        try:
            if proto == "tcp":
                return dns.query.tcp(query, "127.0.0.1", port=port, timeout=CHECK_TIMEOUT), "", sent
            return dns.query.udp(query, "127.0.0.1", port=port, timeout=CHECK_TIMEOUT), "", sent
        except dns.exception.Timeout:
            error = "timeout"
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
    return None, error, time.monotonic()


def show(answer) -> str:
    if answer is None:
        return "NXDOMAIN"
    if isinstance(answer, frozenset):
        return "A " + ",".join(sorted(answer)) if answer else "A (none)"
    return str(answer)


def a_answer(reply: dns.message.Message, name: str):
    """NXDOMAIN as None, addresses as a frozenset, anything else as its text."""
    rcode = reply.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return None
    if rcode != dns.rcode.NOERROR:
        return dns.rcode.to_text(rcode)
    owner = dns.name.from_text(name)
    ips = frozenset(rd.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A and rrset.name == owner for rd in rrset)
    return ips if ips else "NODATA"


class Checker:
    """Asks kdns about a sample of names and judges each answer (see the module docstring)."""

    def __init__(self, kdns: Kdns, churn: soak_cluster.Churn, expected: soak_cluster.Expected, faults: Faults | None, t0: float,
                 svcs: list[soak_cluster.Svc]):
        self.kdns, self.churn, self.expected, self.faults, self.t0 = kdns, churn, expected, faults, t0
        self.checks: list[Check] = []
        self.lock = threading.Lock()
        self.rng = random.Random(3)
        self.stable = [s for s in svcs if not s.churnable and s.kind != "external"]
        self.stable_ips = [s for s in self.stable if s.kind == "clusterip"]
        self.externals = [s for s in svcs if s.kind == "external"]
        self.misses = [f"{s.name}.{s.namespace}.{ns}.svc.{soak_cluster.ZONE}" for s in svcs[:60] for ns in ("ns-0", "ns-1")]
        self.misses += [f"{soak_cluster.outside_name(n)}.ns-{n % 6}.svc.{soak_cluster.ZONE}" for n in range(10)]
        self.misses += [f"{soak_cluster.outside_name(n)}.{soak_cluster.ZONE}" for n in range(10)]

    def now(self) -> float:
        return time.monotonic() - self.t0

    def during(self, at: float) -> list[str]:
        return self.faults.active(at) if self.faults else []

    def add(self, check: Check) -> None:
        with self.lock:
            self.checks.append(check)
        if check.verdict in ("wrong", "unanswered"):
            log(f"{check.verdict.upper()}: t={check.t:.1f}s {check.name} {check.qtype} over {check.proto} ({check.category}): "
                f"got {check.got}, expected {check.expected}; during: {', '.join(check.during) or 'no fault'}; {check.detail}")

    # -- one check --

    def cluster_a(self, category: str, name: str, proto: str = "udp") -> None:
        reply, error, sent = ask(self.kdns.port, name, "A", proto)
        at = sent - self.t0
        during = self.during(at)
        acceptable, _ = self.expected.acceptable(name, sent)
        expected = " or ".join(dict.fromkeys(show(a) for a in acceptable))
        if reply is None:
            self.add(Check(at, category, name, "A", proto, error, expected, "unanswered", during))
            return
        got = a_answer(reply, name)
        verdict = "ok" if got in acceptable else "wrong"
        detail = ""
        if verdict == "wrong":
            with self.expected.lock:
                hist = self.expected.history[name][-4:]
            detail = "history (s from load start, answer; 'due' = when kdns had to serve it): " + "; ".join(
                f"{t - self.t0:.2f}s {show(a)} due {self.expected.health.due(t) - self.t0:.2f}s" if t != -math.inf else f"initial {show(a)}"
                for t, a in hist)
        self.add(Check(at, category, name, "A", proto, show(got), expected, verdict, during, detail))

    def fixed(self, category: str, name: str, qtype: str, judge, expected: str, outside: bool = False, proto: str = "udp") -> None:
        """`judge(reply)` -> (answer text, right?). An outside name may fail (SERVFAIL, no
        answer, the ExternalName's CNAME alone) while the upstream is failing."""
        reply, error, sent = ask(self.kdns.port, name, qtype, proto)
        at = sent - self.t0
        during = self.during(at)
        trouble = outside and self.faults is not None and self.faults.upstream_trouble(at)
        if reply is None:
            self.add(Check(at, category, name, qtype, proto, error, expected, "tolerated" if trouble else "unanswered", during))
            return
        got, right, degraded = judge(reply)
        verdict = "ok" if right and not degraded else ("tolerated" if trouble and (right or degraded) else "wrong")
        self.add(Check(at, category, name, qtype, proto, got, expected, verdict, during))

    def outside(self, n: int, proto: str = "udp") -> None:
        want = soak_cluster.outside_ip(n)
        name = soak_cluster.outside_name(n)

        def judge(reply):
            got = a_answer(reply, name)
            if got == "SERVFAIL":
                return "SERVFAIL", False, True
            return show(got), got == frozenset([want]), False
        self.fixed("outside name (forwarded)", name, "A", judge, f"A {want}", outside=True, proto=proto)

    def external(self, svc: soak_cluster.Svc) -> None:
        target = svc.external_name.rstrip(".") + "."
        inside = target.endswith(f".svc.{soak_cluster.ZONE}.")
        want_ip = None if inside else soak_cluster.external_target_ip(int(svc.name.split("-")[1]))

        def judge(reply):
            if reply.rcode() != dns.rcode.NOERROR:
                text = dns.rcode.to_text(reply.rcode())
                return text, False, text == "SERVFAIL" and not inside
            cnames = [rd.target.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.CNAME for rd in rrset]
            ips = {rd.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset}
            text = f"CNAME {','.join(cnames) or '-'}" + (f" A {','.join(sorted(ips))}" if ips else "")
            if cnames != [target]:
                return text, False, False
            if inside:
                return text, True, False
            if not ips:
                return text, True, True  # the CNAME alone: the upstream did not answer
            return text, ips == {want_ip}, False
        expected = f"CNAME {target}" + ("" if inside else f" A {want_ip}")
        self.fixed("ExternalName " + ("inside" if inside else "outside"), svc.fqdn, "A", judge, expected, outside=not inside)

    def miss(self, name: str) -> None:
        def judge(reply):
            return dns.rcode.to_text(reply.rcode()), reply.rcode() == dns.rcode.NXDOMAIN, False
        self.fixed("search-path miss", name, "A", judge, "NXDOMAIN")

    def ptr(self, svc: soak_cluster.Svc) -> None:
        name = dns.reversename.from_address(svc.cluster_ip).to_text()

        def judge(reply):
            targets = [rd.target.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.PTR for rd in rrset]
            return (f"PTR {','.join(targets)}" if targets else dns.rcode.to_text(reply.rcode())), targets == [svc.fqdn + "."], False
        self.fixed("PTR of a stable ClusterIP", name, "PTR", judge, f"PTR {svc.fqdn}.")

    # -- a sample --

    def sample(self) -> None:
        now = time.monotonic()
        rng = self.rng
        with self.churn.lock:
            everyone = self.churn.all_svcs()
            churned = [(s.changed, s) for s in everyone if s.changed > -math.inf]
        settled = [s for t, s in churned if now - 8 <= t <= now - soak_cluster.GRACE and s.present]
        flight = [s for t, s in churned if t > now - soak_cluster.GRACE]
        deleted = [s for t, s in churned if t < now - soak_cluster.GRACE and not s.present]
        for s in rng.sample(settled, min(4, len(settled))):
            self.cluster_a("changed 2-8 s ago", s.fqdn)
        for s in rng.sample(flight, min(2, len(flight))):
            self.cluster_a("changed < 2 s ago", s.fqdn)
        for s in rng.sample(deleted, min(2, len(deleted))):
            self.cluster_a("deleted > 2 s ago", s.fqdn)
        for s in rng.sample(self.stable, 4):
            self.cluster_a("stable", s.fqdn)
        sts = [s for s in everyone if s.statefulset]
        for s in rng.sample(sts, min(2, len(sts))):
            self.cluster_a("StatefulSet hostname", f"{s.name}-{rng.randrange(5)}.{s.fqdn}")
        for n in rng.sample(range(soak_cluster.OUTSIDE_HOSTS), 2):
            self.outside(n)
        outside = [s for s in self.externals if not s.external_name.endswith(soak_cluster.ZONE)]
        inside = [s for s in self.externals if s.external_name.endswith(soak_cluster.ZONE)]
        for group in (outside, inside):
            if group:
                self.external(rng.choice(group))
        self.miss(rng.choice(self.misses))
        self.ptr(rng.choice(self.stable_ips))
        self.cluster_a("stable", rng.choice(self.stable).fqdn, proto="tcp")
        pool = settled or self.stable
        self.cluster_a("changed 2-8 s ago" if settled else "stable", rng.choice(pool).fqdn, proto="tcp")

    def sweep(self, category: str) -> None:
        """Every cluster name, the outside names and the ExternalNames, once."""
        for name in self.expected.names():
            self.cluster_a(category, name)
        for n in range(soak_cluster.OUTSIDE_HOSTS):
            self.outside(n)
        for svc in self.externals:
            self.external(svc)


class Sampler(threading.Thread):
    """Every SAMPLE_EVERY s: RSS, CPU and a sample of checks."""

    def __init__(self, kdns: Kdns, checker: Checker, t0: float, seconds: float, stop: threading.Event):
        super().__init__(name="sampler", daemon=True)
        self.kdns, self.checker, self.t0, self.seconds, self.stop_event = kdns, checker, t0, seconds, stop
        self.samples: list[tuple[float, int, float]] = []  # (t, VmRSS kB, CPU s)
        self.error: str | None = None

    def run(self) -> None:
        try:
            k = 1
            while not self.stop_event.is_set():
                at = self.t0 + k * SAMPLE_EVERY
                if at - self.t0 > self.seconds:
                    return
                if self.stop_event.wait(max(0.0, at - time.monotonic())):
                    return
                if not self.kdns.alive():
                    return
                with contextlib.suppress(OSError, AttributeError):
                    self.samples.append((time.monotonic() - self.t0, self.kdns.status_kb("VmRSS"), self.kdns.cpu_seconds()))
                self.checker.sample()
                k += 1
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            self.error = f"{type(exc).__name__}: {exc}"


class Churner(threading.Thread):
    def __init__(self, churn: soak_cluster.Churn, rate: float, seconds: float, t0: float, stop: threading.Event):
        super().__init__(name="churn", daemon=True)
        self.churn, self.rate, self.seconds, self.t0, self.stop_event = churn, rate, seconds, t0, stop
        self.error: str | None = None

    def run(self) -> None:
        rng = random.Random(13)
        try:
            while not self.stop_event.is_set() and time.monotonic() - self.t0 < self.seconds - 3:
                self.churn.step()
                self.stop_event.wait(rng.expovariate(self.rate))
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            self.error = f"{type(exc).__name__}: {exc}"


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Results:
    args: argparse.Namespace
    seconds: float  # the load's wall time
    queries: list
    chunks: list[Chunk]
    faults: list[Fault]
    udp: list[abuse.UdpBurst]
    tcp: list[abuse.TcpAbuse]
    churn: dict[str, int]
    checks: list[Check]
    samples: list[tuple[float, int, float]]
    rss_synced_kb: int
    rss_end_kb: int
    hwm_kb: int
    metrics_start: dict[str, float]
    metrics_end: dict[str, float]
    log_lines: list[LogLine]
    died: str | None
    pid: int
    revision: str
    errors: list[str]
    stub_queries: int
    cluster: str
    skipped: Counter
    healthy_share: float  # of the load, the time kdns was watching the API
    foreign_cpu: float  # CPU seconds other processes used on the machine during the load
    irq_cpu: float  # interrupt and softirq time (loopback packets are processed there)
    steal_cpu: float  # time the hypervisor took
    loadavg_before: str


def run(args: argparse.Namespace) -> Results:
    problem = missing_prerequisite()
    if problem:
        raise SoakError(problem)
    os.sched_setaffinity(0, {CLIENT_CORE})  # before any thread starts: they all inherit it
    seconds = args.minutes * 60
    stop = threading.Event()
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kdns-soak-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        namespaces, svcs = soak_cluster.make_cluster(args.services)
        api = KubeAPI().start()
        stack.callback(api.stop)
        soak_cluster.load(api, namespaces, svcs)
        health = soak_cluster.Health()
        expected = soak_cluster.Expected(health)
        churn = soak_cluster.Churn(api, svcs, expected)
        churn.record_initial()

        externals = [s.external_name for s in svcs if s.kind == "external" and not s.external_name.endswith(soak_cluster.ZONE)]
        upstream = Upstream(soak_cluster.stub_records(externals))
        upstream_port = upstream.start()
        stack.callback(upstream.close)

        queries = soak_cluster.make_queries(svcs, QUERY_LINES)
        query_file = work / "queries.txt"
        query_file.write_text("".join(f"{q.qname} {q.qtype}\n" for q in queries))

        kdns = Kdns(api.url, upstream_port, Path(args.log).resolve() if args.log else None)
        stack.callback(kdns.stop)
        kdns.start()
        log(f"kdns pid {kdns.proc.pid} on 127.0.0.1:{kdns.port} (metrics :{kdns.metrics_port}), API {api.url}, upstream :{upstream_port}")
        checker = Checker(kdns, churn, expected, None, time.monotonic(), svcs)
        checker.sweep("initial sweep")
        bad = [c for c in checker.checks if c.verdict != "ok"]
        if bad:
            raise SoakError(f"{len(bad)} names answered wrongly before the load began, e.g. {bad[0]}")
        log(f"initial sweep: {len(checker.checks)} names right")
        time.sleep(1.0)
        rss_synced = kdns.status_kb("VmRSS")
        metrics_start = kdns.metrics()

        loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if float(loadavg.split()[0]) > 0.5:
            log(f"note: the machine is busy before the load starts (load average {loadavg}); latency figures will show it")
        t0 = time.monotonic()
        names = [q.qname for q in queries[:2000]]
        faults = Faults(api, upstream, kdns, health, names, t0, stop)
        checker.faults, checker.t0 = faults, t0
        load = Load(kdns.port, query_file, work, args.rate, seconds, args.chunk, t0, stop)
        sampler = Sampler(kdns, checker, t0, seconds, stop)
        churner = Churner(churn, args.churn_rate, seconds, t0, stop)
        stack.callback(load.kill)
        for thread in (load, sampler, faults.monitor) if args.baseline else (load, sampler, churner, faults.monitor):
            thread.start()
        stack.callback(stop.set)  # on the way out, the threads stop first (callbacks run last in, first out)
        log(f"load: {args.rate:,} q/s for {seconds:.0f} s in {args.chunk:g} s dnsperf runs; churn {args.churn_rate:g}/s; "
            f"faults every {CYCLE:.0f} s")

        plan = [] if args.baseline else schedule(seconds)
        ending: list[tuple[float, Fault]] = []
        postponed: dict[int, float] = {}  # plan entry -> when it was first due
        died = None
        busy0 = machine_busy()
        ours0 = own_cpu() + kdns.cpu_seconds()
        while True:
            now = time.monotonic() - t0
            if not kdns.alive():
                died = f"kdns exited with status {kdns.proc.returncode} at t={now:.1f}s:\n{kdns.tail()}"
                log(died)
                break
            if not load.is_alive():
                break
            if now > seconds + 60:
                errors.append("the load did not end within 60 s of its planned end")
                break
            for item in [e for e in ending if e[0] <= now]:
                ending.remove(item)
                faults.finish(item[1])
            for entry in [e for e in plan if e[0] <= now]:
                at, kind, duration = entry
                if kind in API_FAULTS and not health.healthy:
                    # kdns is not watching again since the last API fault: wait for it, until the next API fault is due
                    first = postponed.setdefault(id(entry), at)
                    later = [e[0] for e in plan if e[1] in API_FAULTS and e[0] > first]
                    if (later and now >= later[0]) or now + duration + 5 > seconds:
                        plan.remove(entry)
                        faults.skipped[kind] += 1
                        log(f"t={now:6.1f}s {kind} skipped: kdns is not watching the API again since the last API fault")
                    continue
                plan.remove(entry)
                fault = faults.begin(kind, duration)
                if id(entry) in postponed:
                    fault.detail = f"postponed {fault.start - postponed[id(entry)]:.1f} s: kdns was not watching again yet"
                if duration:
                    ending.append((now + duration, fault))
            time.sleep(0.1)
        for _, fault in ending:  # only when the run ended early
            faults.finish(fault)
        load_seconds = time.monotonic() - t0
        busy1 = machine_busy()
        foreign = (busy1[0] - busy0[0]) - (own_cpu() + kdns.cpu_seconds() - ours0) if kdns.alive() else math.nan
        irq, steal = busy1[1] - busy0[1], busy1[2] - busy0[2]
        for name, thread in (("dnsperf", load), ("sampler", sampler), ("churn", churner)):
            with contextlib.suppress(RuntimeError):  # never started (--baseline)
                thread.join(30)
            if thread.error:
                errors.append(f"{name}: {thread.error}")
        if load.error and died is None:
            raise SoakError(load.error)

        if died is None:
            if not faults.wait_recovered(60):
                errors.append("kdns did not open its watches again within 60 s of the last API fault")
            time.sleep(soak_cluster.GRACE + 1)
            checker.sweep("final sweep")
            rss_end, hwm = kdns.status_kb("VmRSS"), kdns.status_kb("VmHWM")
            metrics_end = kdns.metrics()
            alive_at_end = kdns.alive()
            if not alive_at_end:
                died = f"kdns exited with status {kdns.proc.returncode} during the final sweep:\n{kdns.tail()}"
        else:
            rss_end = hwm = 0
            metrics_end = {}
        stop.set()
        faults.join(30)
        return Results(args, load_seconds, queries, load.chunks, list(faults.log), faults.udp, faults.tcp, dict(churn.counts),
                       list(checker.checks), sampler.samples, rss_synced, rss_end, hwm, metrics_start, metrics_end,
                       list(kdns.lines), died, kdns.proc.pid, kdns_revision(), errors, upstream.queries, describe(svcs),
                       faults.skipped, 1 - unhealthy_seconds(health, t0, t0 + load_seconds) / load_seconds, foreign, irq, steal, loadavg)


def machine_busy() -> tuple[float, float, float]:
    """CPU seconds of all cores since boot (/proc/stat): (processes: user + nice + system,
    interrupts: irq + softirq, where the kernel's loopback work shows, stolen by the hypervisor)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (f[0] + f[1] + f[2]) / CLK_TCK, (f[5] + f[6]) / CLK_TCK, f[7] / CLK_TCK


def own_cpu() -> float:
    """This process's CPU (every thread) and that of its waited-for children (the dnsperf runs)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def unhealthy_seconds(health: soak_cluster.Health, start: float, end: float) -> float:
    with health.lock:
        intervals = [tuple(i) for i in health.intervals]
    return sum(max(0.0, min(end, e if e is not None else end) - max(start, s)) for s, e in intervals)


# --- the report ------------------------------------------------------------------------------


def describe(svcs: list[soak_cluster.Svc]) -> str:
    kinds = Counter(s.kind for s in svcs)
    outside = sum(1 for s in svcs if s.kind == "external" and not s.external_name.endswith(soak_cluster.ZONE))
    sts = sum(1 for s in svcs if s.statefulset)
    churnable = sum(1 for s in svcs if s.churnable)
    return (f"{len(svcs)} Services in {soak_cluster.NAMESPACES} namespaces: {kinds['clusterip']} ClusterIP with 2 endpoints, "
            f"{kinds['headless']} headless with 5 ({sts} of them with StatefulSet hostnames), {kinds['external']} ExternalName "
            f"({outside} to outside names); {churnable} of the ClusterIP and headless ones are churned, the rest never change")


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    cores = len(re.findall(r"^processor\s*:", cpuinfo, re.MULTILINE))
    try:
        out = subprocess.run(["dnsperf", "-h"], check=False, capture_output=True, text=True, timeout=10)
        dnsperf = re.search(r"Version (\S+)", out.stdout + out.stderr).group(1)
    except (OSError, subprocess.TimeoutExpired, AttributeError):
        dnsperf = "?"
    return (f"{cores} × {model.group(1) if model else platform.machine()} ({platform.machine()}), Linux {platform.release()}, "
            f"{platform.python_implementation()} {platform.python_version()}; dnsperf {dnsperf}")


def us(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:,.0f}"


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def window_end(f: Fault) -> float:
    end = f.recovered if f.kind in API_FAULTS else f.end
    return (end if end is not None else f.start) + 1.0


def latency_by_fault(res: Results) -> list[str]:
    """p99 of the one-second windows overlapping each kind of fault, against quiet windows."""
    windows = [w for c in res.chunks for w in c.windows]
    rows = []
    busy = [(f.start - 1.0, window_end(f)) for f in res.faults]
    quiet = [w for w in windows if not any(s < w[0] + 1 and w[0] < e for s, e in busy)]
    if quiet:
        rows.append(f"| no fault in progress | {len(quiet)} | {us(statistics.median(w[1] for w in quiet))} | "
                    f"{us(max(w[1] for w in quiet))} | {us(max(w[2] for w in quiet))} |")
    kinds = list(dict.fromkeys(f.kind for f in res.faults))
    for kind in kinds:
        spans = [(f.start, window_end(f)) for f in res.faults if f.kind == kind]
        ws = [w for w in windows if any(s < w[0] + 1 and w[0] < e for s, e in spans)]
        if ws:
            rows.append(f"| {kind} | {len(ws)} | {us(statistics.median(w[1] for w in ws))} | {us(max(w[1] for w in ws))} | "
                        f"{us(max(w[2] for w in ws))} |")
    return rows


def report(res: Results) -> str:
    args = res.args
    chunks = res.chunks
    sent = sum(c.sent for c in chunks)
    completed = sum(c.completed for c in chunks)
    lost = sum(c.lost for c in chunks)
    rcodes: Counter = Counter()
    for c in chunks:
        rcodes.update(c.rcodes)
    loaded = sum(c.seconds for c in chunks)
    p99s = [c.p99 for c in chunks]
    rss = [kb for _, kb, _ in res.samples]
    cpu = [(b[2] - a[2]) / (b[0] - a[0]) for a, b in zip(res.samples, res.samples[1:]) if b[0] > a[0]]
    per_minute = []
    if res.samples:
        per_minute.append(res.samples[0][1])
        for m in range(1, int(res.seconds // 60) + 1):
            per_minute.append(min(res.samples, key=lambda s: abs(s[0] - 60 * m))[1])
    faults = Counter(f.kind for f in res.faults if f.kind in API_FAULTS + UPSTREAM_FAULTS)
    rec_by_kind = {k: [f.recovered - f.end for f in res.faults if f.kind == k and f.recovered is not None and f.end is not None]
                   for k in API_FAULTS}
    udp_sent = sum(b.sent for b in res.udp)
    udp_kinds: Counter = Counter()
    udp_replies: Counter = Counter()
    for b in res.udp:
        udp_kinds.update(b.kinds)
        udp_replies.update(b.replies)
    tcp_opened: Counter = Counter()
    tcp_failed: Counter = Counter()
    tcp_open_end: Counter = Counter()
    tcp_closed: dict[str, list[float]] = {}
    for t in res.tcp:
        tcp_opened.update(t.opened)
        tcp_failed.update(t.failed)
        tcp_open_end.update(t.open_at_end)
        for k, v in t.closed.items():
            tcp_closed.setdefault(k, []).extend(v)
    checks = res.checks
    verdicts = Counter(c.verdict for c in checks)
    wrong = [c for c in checks if c.verdict == "wrong"]
    unanswered = [c for c in checks if c.verdict == "unanswered"]
    during_api = sum(1 for c in checks if any(k in API_FAULTS for k in c.during))
    during_up = sum(1 for c in checks if any(k in UPSTREAM_FAULTS for k in c.during))
    by_cat = Counter(c.category for c in checks)
    warn = [ln for ln in res.log_lines if ln.level in ("WARNING", "ERROR", "CRITICAL", "UNSTRUCTURED")]
    warn_kinds = Counter(ln.kind for ln in warn)
    tracebacks = [ln for ln in res.log_lines if ln.extra]
    m0, m1 = res.metrics_start, res.metrics_end

    def mdelta(name: str) -> str:
        return f"{m1.get(name, 0) - m0.get(name, 0):,.0f}" if m1 else "-"

    def joined(counter, sep: str = ", ") -> str:
        return sep.join(f"{k} {v:,}" for k, v in counter.items())

    def median_or(values, fmt) -> str:
        return fmt(statistics.median(values)) if values else "-"

    header = (f"{args.minutes:g} minute{'' if args.minutes == 1 else 's'} of load, Service churn, API and upstream faults, bad input"
              + (" (baseline: load and checks only)" if args.baseline else ""))
    schedule_text = "; ".join(f"{int(o)} s {k}" + (f" for {int(d)} s" if d else "") for o, k, d in SCHEDULE)
    skipped = f" (skipped, kdns not watching again yet: {joined(res.skipped)})" if res.skipped else ""
    failed = f"; could not connect: {joined(tcp_failed)}" if tcp_failed else ""
    rss_line = f"{mb(min(rss))} / {mb(statistics.median(rss))} / {mb(max(rss))} MB" if rss else "-"
    first = mb(rss[0]) if rss else "-"
    growth = mb(res.rss_end_kb - rss[0]) if rss else "-"
    rows = [
        ("duration", f"{res.seconds:.0f} s under load ({loaded:.0f} s of dnsperf runs)"),
        ("queries sent / answered", f"{sent:,} / {completed:,} (**{completed / max(1, sent):.4%}** answered)"),
        ("lost (no reply within 2 s)", f"{lost:,}"),
        ("response codes", ", ".join(f"{k} {v:,}" for k, v in rcodes.most_common())),
        ("p99 per dnsperf run: median / worst", f"{median_or(p99s, us)} / {us(max(p99s, default=math.nan))} µs"),
        ("p50 per run (median), slowest query", f"{median_or([c.p50 for c in chunks], us)} µs, {us(max((c.max for c in chunks), default=math.nan))} µs"),
        (f"kdns RSS min / median / max (every {SAMPLE_EVERY:g} s)", rss_line),
        ("kdns RSS after sync → first sample → end",
         f"{mb(res.rss_synced_kb)} → {first} → {mb(res.rss_end_kb)} MB (growth under load {growth} MB; peak VmHWM {mb(res.hwm_kb)} MB)"),
        (f"kdns core busy (median of {SAMPLE_EVERY:g} s samples)", median_or(cpu, lambda x: f"{x:.0%}")),
        ("API faults", ", ".join(f"{k} ×{faults[k]}" for k in API_FAULTS) + skipped
         + f"; kdns had its watches open {res.healthy_share:.0%} of the time"),
        ("kdns watching again after an API fault: median / max",
         "; ".join(f"{k}: {statistics.median(v):.1f} / {max(v):.1f} s" for k, v in rec_by_kind.items() if v) or "-"),
        ("upstream faults", ", ".join(f"{k} ×{faults[k]}" for k in UPSTREAM_FAULTS) + f" (the stub upstream was asked {res.stub_queries:,} queries)"),
        ("bad UDP packets", f"{udp_sent:,} in {len(res.udp)} bursts; kdns replied {joined(Counter(dict(udp_replies.most_common())))}"),
        ("TCP abusers", f"{len(res.tcp)} round{'' if len(res.tcp) == 1 else 's'}: {joined(tcp_opened)}{failed}"),
        ("answer checks", (f"{len(checks):,} ({during_api} during API faults, {during_up} during upstream faults, "
                          f"{sum(1 for c in checks if c.proto == 'tcp')} over TCP): {joined(Counter(dict(verdicts.most_common())))}")),
        ("**wrong answers**", f"**{len(wrong)}**"),
        ("check queries unanswered (3 tries) outside upstream faults", f"{len(unanswered)}"),
        ("kdns restarts", "died: see below" if res.died else f"0 (pid {res.pid} up from start to end)"),
        ("kdns log lines at WARNING and above", f"{len(warn):,}" + (f" ({len(tracebacks)} with a traceback)" if tracebacks else "")),
        ("kdns metrics over the load", (f"requests {mdelta('coredns_dns_requests_total')}, panics {mdelta('coredns_panics_total')}, "
                                       f"relists {mdelta('kdns_source_relists_total')}, watch restarts {mdelta('kdns_source_watch_restarts_total')}, "
                                       f"cache hits {mdelta('coredns_cache_hits_total')} / misses {mdelta('coredns_cache_misses_total')}")),
        ("the rest of the machine during the load", (f"other processes {res.foreign_cpu / res.seconds:.0%} of a core, interrupts and softirq "
                                                    f"(the loopback traffic) {res.irq_cpu / res.seconds:.0%}, stolen by the hypervisor "
                                                    f"{res.steal_cpu / res.seconds:.0%} (load average before: {res.loadavg_before})")),
    ]
    lines = [f"## Soak: {header} ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {machine()}; kdns at {res.revision}.",
             (f"Command: `python perf/soak.py --minutes {args.minutes:g} --rate {args.rate} --services {args.services} "
             f"--churn-rate {args.churn_rate:g} --chunk {args.chunk:g}{' --baseline' if args.baseline else ''}`"),
             "",
             (f"* Cluster in the test API server (tests/kubeapi.py): {res.cluster}; plus {soak_cluster.CHURN_NAMES} `churn-K` names "
             f"that come and go. kdns: `{KDNS_COMMAND}`, pinned to core {SERVER_CORE}; upstream: tests/stubdns.py in a thread, "
             f"holding the outside names."),
             (f"* Load: `taskset -c {CLIENT_CORE} dnsperf -Q {args.rate} {' '.join(DNSPERF_OPTIONS)} -l {args.chunk:g}` back to back "
             f"({len(chunks)} runs, {loaded:.0f} s of {res.seconds:.0f} s); {len(res.queries):,} query lines, "
             f"{len(set(res.queries)):,} distinct: {soak_cluster.mix(res.queries)}.")]
    if not args.baseline:
        lines += [(f"* Every {CYCLE:.0f} s: {schedule_text}. An API fault waits until kdns watches again after the previous one "
                  "(until the next one is due; then it is skipped)."),
                  f"* Churn through the API, {args.churn_rate:g}/s: {joined(res.churn)}."]
    lines += ["", "| measure | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows), ""]
    if per_minute:
        lines += [f"kdns RSS at the first sample and then every minute (MB): {', '.join(mb(kb) for kb in per_minute)}.", ""]
    rises = sorted(((b[1] - a[1], b[0]) for a, b in zip(res.samples, res.samples[1:])), reverse=True)[:5]
    rises = [(kb, t) for kb, t in rises if kb >= 256]
    if rises:
        lines += ["Largest rises of RSS between two samples: " + "; ".join(
            f"+{mb(kb)} MB by t={t:.0f} s ({', '.join(dict.fromkeys(k for f in res.faults for k in [f.kind] if f.start < t and window_end(f) > t - SAMPLE_EVERY)) or 'no fault'})"
            for kb, t in rises) + ".", ""]
    lines += ["Per dnsperf run:", "",
              "| start (s) | length (s) | sent | answered | lost | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | faults during the run |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in chunks:
        during = Counter(f.kind for f in res.faults if f.start < c.start + c.seconds and window_end(f) > c.start)
        lines.append(f"| {c.start:.0f} | {c.seconds:g} | {c.sent:,} | {c.completed:,} | {c.lost:,} | {us(c.p50)} | {us(c.p99)} | "
                     f"{us(c.p999)} | {us(c.max)} | {', '.join(f'{k} ×{v}' if v > 1 else k for k, v in during.items()) or '-'} |")
    lines += ["", ("Latency over time: each second's worth of queries (the n-th answer of a run is about n / rate seconds into it), "
              "grouped by the fault in progress (API faults until kdns watches again), ±1 s:"), "",
              "| while | seconds | p99, median of the seconds (µs) | p99, worst second (µs) | slowest query (µs) |",
              "| --- | --- | --- | --- | --- |", *latency_by_fault(res), ""]
    lines += ["Checks by kind: " + ", ".join(f"{k} {v}" for k, v in by_cat.most_common()) + ".", ""]
    if any(rec_by_kind.values()):
        lines += ["Seconds from each API fault's end to kdns watching every resource again, in order: " + "; ".join(
            f"{k}: {', '.join(f'{x:.1f}' for x in v)}" for k, v in rec_by_kind.items() if v) + ".", ""]
    if tcp_closed or tcp_open_end:
        lines += ["TCP abusers, seconds from connecting to kdns closing the connection (median / max): " + "; ".join(
            f"{k}: {statistics.median(v):.1f} / {max(v):.1f} ({len(v)} closed)" for k, v in tcp_closed.items())
            + (f"; still open when the round ended (after 25 s): {', '.join(f'{k} {v}' for k, v in tcp_open_end.items())}" if tcp_open_end else "")
            + ".", ""]
    if udp_kinds:
        lines += ["Bad UDP packets by kind: " + ", ".join(f"{k} {v:,}" for k, v in udp_kinds.most_common()) + ".", ""]
    if warn_kinds:
        lines += ["kdns's WARNING and ERROR lines by kind:", "", "| count | kind |", "| --- | --- |"]
        lines += [f"| {v} | `{k}` |" for k, v in warn_kinds.most_common(30)]
        lines.append("")
    if tracebacks:
        lines += ["Tracebacks logged by kdns (first 3):", "", "```"]
        for ln in tracebacks[:3]:
            lines += [f"{ln.level} {ln.logger}: {ln.message}", *ln.extra[-15:]]
        lines += ["```", ""]
    if wrong or unanswered:
        lines += ["Wrong or unanswered checks:", ""]
        for c in (wrong + unanswered)[:50]:
            lines.append(f"* t={c.t:.1f}s {c.verdict}: {c.name} {c.qtype} over {c.proto} ({c.category}): got {c.got}, "
                         f"expected {c.expected}; during {', '.join(c.during) or 'no fault'}. {c.detail}")
        lines.append("")
    if res.died:
        lines += ["kdns died:", "", "```", res.died, "```", ""]
    if res.errors:
        lines += ["Problems of the soak itself: " + "; ".join(res.errors), ""]
    return "\n".join(lines)


def readme_row(res: Results) -> str:
    """The README's summary table: load held, faults survived, bad inputs tried, wrong answers."""
    sent = sum(c.sent for c in res.chunks)
    completed = sum(c.completed for c in res.chunks)
    faults = Counter(f.kind for f in res.faults if f.kind in API_FAULTS + UPSTREAM_FAULTS)
    bad = sum(b.sent for b in res.udp)
    tcp = sum(sum(t.opened.values()) for t in res.tcp)
    checks = [c for c in res.checks if c.verdict in ("ok", "wrong", "unanswered")]
    wrong = sum(1 for c in res.checks if c.verdict == "wrong")
    p99s = [c.p99 for c in res.chunks]
    length = f"{res.seconds / 60:.0f} min" if res.seconds >= 60 else f"{res.seconds:.0f} s"
    survived = ", ".join(f"{k} ×{v}" for k, v in faults.items()) + f", {sum(res.churn.values()):,} Service changes; "
    survived += "kdns died" if res.died else "kdns up throughout, 0 restarts"
    return ("| load held | faults survived | bad inputs tried | wrong answers |\n| --- | --- | --- | --- |\n"
            f"| {length} at {res.args.rate:,} q/s: {completed / max(1, sent):.3%} of {sent:,} queries answered, "
            f"p99 {us(statistics.median(p99s)) if p99s else '-'} µs (median of {len(p99s)} runs; worst {us(max(p99s, default=math.nan))} µs) "
            f"| {survived} | {bad:,} malformed UDP packets, {tcp:,} abusive TCP connections | **{wrong}** of {len(checks):,} answers checked |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="how long the load runs (default 10; 1 for a quick check)")
    parser.add_argument("--rate", type=int, default=20_000, help="dnsperf's queries/s (default 20000)")
    parser.add_argument("--services", type=int, default=300, help="Services in the cluster (default 300)")
    parser.add_argument("--churn-rate", type=float, default=3, help="Service changes per second (default 3)")
    parser.add_argument("--chunk", type=float, default=30, help="seconds per dnsperf run (default 30)")
    parser.add_argument("--record", action="store_true", help="prepend the results to perf/RESULTS.md (below its intro)")
    parser.add_argument("--log", metavar="PATH", help="write kdns's whole log there")
    parser.add_argument("--baseline", action="store_true", help="the same load and checks without churn, faults or bad input")
    args = parser.parse_args()
    if not 0.5 <= args.minutes <= 240 or not 100 <= args.rate <= 200_000 or not 100 <= args.services <= 20_000 \
            or not 0 < args.churn_rate <= 50 or not 5 <= args.chunk <= 120:
        parser.error("--minutes 0.5-240, --rate 100-200000, --services 100-20000, --churn-rate 0-50, --chunk 5-120")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("soak: terminated"))  # unwind: stop everything started
    try:
        results = run(args)
    except SoakError as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        sys.exit(130)
    section = report(results)
    print(section)
    log("README table:\n" + readme_row(results))
    if args.record:
        record(section)
        log("prepended to perf/RESULTS.md")
    wrong = sum(1 for c in results.checks if c.verdict in ("wrong", "unanswered"))
    if wrong or results.died:
        log(f"FAILED: {wrong} wrong or unanswered checks" + ("; kdns died" if results.died else ""))
        sys.exit(1)


if __name__ == "__main__":
    main()
