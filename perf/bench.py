"""kdns against two peers under Debian's dnsperf: throughput, latency, CPU per query, RSS.

The run, all on loopback:

1. Generate a cluster (`--services`, default 1,000: ClusterIP Services with named ports,
   10% headless with 5 ready endpoints, 1% ExternalName; perf/bench/cluster.py) as
   Kubernetes manifests for kdns and as zone files with the same records for the peers:
   knotd (a compiled authoritative server, one UDP worker) and dnslib's stock threaded
   `DNSServer` (perf/bench/dnslib_server.py).
2. Write a dnsperf query file from a model of what pods look up through glibc's search
   path (ndots:5), and check on a sample of it, with dnspython, that every server gives
   each query the class of answer its kind expects (NOERROR with data, NODATA, NXDOMAIN)
   and the same answer records.
3. Start the three servers pinned to core 1; dnsperf runs pinned to core 0. For
   `--rounds` rounds, one `--duration`-second run per server in turn (A B C A B C ...),
   as fast as each answers: queries/s and server CPU per query (utime + stime from
   /proc/PID/stat over the run / queries completed). Medians are reported. (knotd pins its
   UDP worker itself; every server thread is re-pinned before each run.)
4. Latency at a fixed rate (`--rate`, default 20,000 queries/s; dnslib at a rate it
   sustains), from dnsperf's per-query output (`-v`): p50, p99, p99.9.
5. RSS (VmRSS) of each server after the runs. Print a markdown section; `--record`
   prepends it to perf/RESULTS.md.

Exits non-zero with a message when a server does not start, dies, or answers differently
from the others. Every process started is killed and the temporary directory removed.
perf/README.md says how the query mix and dnsperf's options were chosen.

Usage: python perf/bench.py [--services N] [--rounds N] [--duration S] [--latency-duration S]
                            [--rate QPS] [--record]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench import cluster, kdns_revision, missing_prerequisite, record

SERVER_CORE, CLIENT_CORE = "1", "0"
# Options for every throughput run, the same for each server (perf/README.md says how
# they were chosen): 2 client threads, 2 sockets, 100 queries in flight, 1 s timeout.
DNSPERF_OPTIONS = ["-T", "2", "-c", "2", "-q", "100", "-t", "1"]
DNSLIB_LATENCY_RATE = 1_500  # about half of what dnslib's threaded server answers flat out here
QUERY_LINES = 100_000
CHECK_SAMPLE = 1_000
START_TIMEOUT = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A server failed to start, died, or answered wrongly: the run is not valid."""


# --- servers ---------------------------------------------------------------------------------


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
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1)) / 1024


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
        Server("dnslib", [sys.executable, str(HERE / "bench" / "dnslib_server.py"), str(dnslib_port), *map(str, zones.values())],
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


# --- the answer check ------------------------------------------------------------------------


def answer_class(reply: dns.message.Message) -> str:
    rcode = dns.rcode.to_text(reply.rcode())
    if rcode == "NOERROR":
        return "NOERROR" if reply.answer else "NODATA"
    return rcode


def answer_set(reply: dns.message.Message) -> frozenset:
    """The answer section without TTLs, order or case."""
    return frozenset((rrset.name.to_text().lower(), rrset.rdtype, rd.to_text().lower()) for rrset in reply.answer for rd in rrset)


def check_sample(queries: list[cluster.Query], size: int) -> list[cluster.Query]:
    """`size` queries drawn from the file as it is (so in its proportions), plus a few of
    every category, so that the rare ones are checked too; each distinct query once."""
    rng = random.Random(1)
    picked = set(rng.sample(queries, min(size, len(queries))))
    for category in cluster.CATEGORIES:
        of_category = sorted({q for q in queries if q.category == category})
        picked.update(rng.sample(of_category, min(20, len(of_category))))
    return sorted(picked)


def check_answers(servers: list[Server], queries: list[cluster.Query], size: int) -> tuple[int, dict[str, int]]:
    """Ask every server a sample of the queries. Each must get the answer class its
    category expects (NOERROR with data, NODATA, NXDOMAIN) from every server, and the
    same answer records. Raises BenchError listing the differences; returns (queries
    checked, count per answer class)."""
    mismatches, classes = [], {}
    sample = check_sample(queries, size)
    for query in sample:
        expected = cluster.CATEGORIES[query.category]
        classes[expected] = classes.get(expected, 0) + 1
        got, answers = {}, set()
        for server in servers:
            try:
                reply = ask(server.port, query.qname, query.qtype)
                got[server.name] = answer_class(reply)
                answers.add(answer_set(reply))
            except dns.exception.Timeout:
                got[server.name] = "TIMEOUT"
        if set(got.values()) != {expected} or len(answers) > 1:
            mismatches.append(f"  {query.qname} {query.qtype} ({query.category}, expected {expected}): "
                              + ", ".join(f"{k} {v}" for k, v in got.items())
                              + ("" if len(answers) <= 1 else "; the answer records differ"))
    if mismatches:
        raise BenchError(f"{len(mismatches)} of {len(sample)} sampled queries were answered wrongly or differently:\n"
                         + "\n".join(mismatches[:20]))
    return len(sample), classes


# --- dnsperf ---------------------------------------------------------------------------------


@dataclass
class Run:
    server: str
    qps: float  # dnsperf's "Queries per second"
    completed: int
    lost: int
    wall_s: float  # dnsperf's whole run, including its wait for the last answers (-t)
    server_cpu_s: float
    client_cpu_s: float
    rcodes: str
    latencies: list[float] = field(default_factory=list)  # seconds, with -v only

    @property
    def cpu_us_per_query(self) -> float:
        return self.server_cpu_s / max(1, self.completed) * 1e6


def dnsperf_argv(port: int | str, queries: str, duration: float, options: list[str]) -> list[str]:
    return ["taskset", "-c", CLIENT_CORE, "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", queries,
            "-l", f"{duration:g}", *options]


def dnsperf(server: Server, queries: Path, duration: float, options: list[str]) -> Run:
    """One bounded dnsperf run against `server`, with the CPU both sides used meanwhile.

    dnsperf writes to a file next to the query file rather than to a pipe, so that nothing
    has to read while it runs."""
    argv = dnsperf_argv(server.port, str(queries), duration, options)
    server.pin()
    cpu0, children0, t0 = server.cpu_seconds(), children_cpu_seconds(), time.monotonic()
    with queries.with_name("dnsperf.out").open("w+") as out:
        try:
            done = subprocess.run(argv, check=False, stdout=out, stderr=subprocess.STDOUT, timeout=duration + 30,
                                  preexec_fn=die_with_parent)  # (the benchmark runs no threads)
        except subprocess.TimeoutExpired:  # subprocess.run has killed it
            raise BenchError(f"dnsperf against {server.name} did not finish within {duration + 30:.0f} s") from None
        wall, cpu, client = time.monotonic() - t0, server.cpu_seconds() - cpu0, children_cpu_seconds() - children0
        out.seek(0)
        text = out.read()
    server.check_alive()
    if done.returncode != 0:
        raise BenchError(f"dnsperf against {server.name} failed ({done.returncode}):\n{text[-2000:]}")
    return parse_dnsperf(server.name, text, wall, cpu, client)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_dnsperf(name: str, out: str, wall: float, cpu: float, client: float) -> Run:
    def number(label: str) -> float:
        m = re.search(rf"^\s*{label}:\s+([\d.]+)", out, re.MULTILINE)
        if not m:
            raise BenchError(f"no '{label}' in dnsperf's output for {name}:\n{out[-2000:]}")
        return float(m.group(1))

    rcodes = re.search(r"^\s*Response codes:\s+(.*)$", out, re.MULTILINE)
    # -v: one line per answered query, "> RCODE qname qtype seconds"
    latencies = [float(m.group(1)) for m in re.finditer(r"^> \S+ \S+ \S+ ([\d.]+)$", out, re.MULTILINE)]
    return Run(name, number("Queries per second"), int(number("Queries completed")), int(number("Queries lost")),
               wall, cpu, client, rcodes.group(1) if rcodes else "", latencies)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# --- the run ---------------------------------------------------------------------------------


def throughput_rounds(servers: list[Server], queries: Path, rounds: int, duration: float) -> dict[str, list[Run]]:
    """A B C A B C ...: each server as fast as it answers, one run at a time."""
    runs: dict[str, list[Run]] = {s.name: [] for s in servers}
    for r in range(rounds):
        for server in servers:
            run = dnsperf(server, queries, duration, DNSPERF_OPTIONS)
            runs[server.name].append(run)
            log(f"round {r + 1}/{rounds} {server.name}: {run.qps:,.0f} q/s, {run.cpu_us_per_query:.1f} µs CPU/query, "
                f"server core {run.server_cpu_s / run.wall_s:.0%} busy, dnsperf core {run.client_cpu_s / run.wall_s:.0%}, lost {run.lost}")
    return runs


def latency_rate(server: str, rate: int) -> int:
    """dnslib gets a rate it sustains."""
    return min(rate, DNSLIB_LATENCY_RATE) if server == "dnslib" else rate


def latency_rounds(servers: list[Server], queries: Path, rounds: int, duration: float, rate: int) -> dict[str, list[Run]]:
    """A B C A B C ... at a fixed rate, with dnsperf's per-query output."""
    runs: dict[str, list[Run]] = {s.name: [] for s in servers}
    for r in range(rounds):
        for server in servers:
            q = latency_rate(server.name, rate)
            run = dnsperf(server, queries, duration, [*DNSPERF_OPTIONS, "-Q", str(q), "-v"])
            if not run.latencies:
                raise BenchError(f"no per-query lines in dnsperf -v output for {server.name}")
            runs[server.name].append(run)
            log(f"latency round {r + 1}/{rounds} {server.name} at {q:,} q/s: "
                f"p50 {percentile(run.latencies, 0.5) * 1e6:.0f} µs, p99 {percentile(run.latencies, 0.99) * 1e6:.0f} µs, lost {run.lost}")
    return runs


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


@dataclass
class Inputs:
    manifests: Path
    zones: dict[str, Path]
    query_file: Path
    queries: list[cluster.Query]
    probe: str  # a name every server must answer once it is ready


def write_inputs(work: Path, services: int) -> Inputs:
    model = cluster.make_cluster(services)
    manifests = work / "manifests"
    cluster.write_manifests(model, manifests)
    zones = cluster.write_zones(model, work / "zones")
    queries = cluster.make_queries(model, QUERY_LINES)
    query_file = work / "queries.txt"
    query_file.write_text("".join(f"{q.qname} {q.qtype}\n" for q in queries))
    probe = next(s.fqdn for s in model if s.kind == "clusterip")
    return Inputs(manifests, zones, query_file, queries, probe)


@dataclass
class Results:
    inputs: Inputs
    checked: int
    classes: dict[str, int]
    throughput: dict[str, list[Run]]
    latency: dict[str, list[Run]]
    rss_mb: dict[str, float]
    logged: dict[str, int]  # lines each server logged (kdns at --log-level warning)
    revision: str


def run(args: argparse.Namespace) -> Results:
    problem = missing_prerequisite()
    if problem:
        raise BenchError(problem)
    os.sched_setaffinity(0, {int(CLIENT_CORE)})  # this process too stays off the servers' core
    with tempfile.TemporaryDirectory(prefix="kdns-bench-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        inputs = write_inputs(work, args.services)
        servers = make_servers(work, inputs.manifests, inputs.zones)
        for server in servers:
            stack.callback(server.stop)
            server.start()
        for server in servers:
            wait_ready(server, inputs.probe)
            server.pin()
        log(f"servers ready: {', '.join(f'{s.name} on 127.0.0.1:{s.port}' for s in servers)}")
        checked, classes = check_answers(servers, inputs.queries, CHECK_SAMPLE)
        log(f"answer check: {checked} sampled queries answered alike by all three {classes}")
        for server in servers:  # warm-up, not measured: caches, the allocator, the CPU frequency
            dnsperf(server, inputs.query_file, 2, DNSPERF_OPTIONS)
        throughput = throughput_rounds(servers, inputs.query_file, args.rounds, args.duration)
        latency = latency_rounds(servers, inputs.query_file, args.rounds, args.latency_duration, args.rate)
        rss = {s.name: s.rss_mb() for s in servers}
        logged = {s.name: len(s.log.read_text(errors="replace").splitlines()) for s in servers}
        return Results(inputs, checked, classes, throughput, latency, rss, logged, kdns_revision())


# --- the report ------------------------------------------------------------------------------


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    cores = len(re.findall(r"^processor\s*:", cpuinfo, re.MULTILINE))
    return (f"{cores} × {model.group(1) if model else platform.machine()} ({platform.machine()}), Linux {platform.release()}, "
            f"{platform.python_implementation()} {platform.python_version()}")


def versions() -> str:
    import dnslib

    def last_word(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
            return (out.stdout + out.stderr).split()[-1]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "?"

    try:
        dnsperf_help = subprocess.run(["dnsperf", "-h"], check=False, capture_output=True, text=True, timeout=10)
        dnsperf_version = re.search(r"Version (\S+)", dnsperf_help.stdout + dnsperf_help.stderr).group(1)
    except (OSError, subprocess.TimeoutExpired, AttributeError):
        dnsperf_version = "?"
    return f"knotd {last_word([find_knotd(), '-V'])}, dnsperf {dnsperf_version}, dnslib {dnslib.version}"


def mix(queries: list[cluster.Query]) -> str:
    counts: dict[str, int] = {}
    for q in queries:
        counts[q.category] = counts.get(q.category, 0) + 1
    return ", ".join(f"{k} {v / len(queries):.1%}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def median(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def throughput_row(name: str, runs: list[Run], rss: float) -> str:
    busy = statistics.median(r.server_cpu_s / r.wall_s for r in runs)
    client = statistics.median(r.client_cpu_s / r.wall_s for r in runs)
    lost = sum(r.lost for r in runs) / max(1, sum(r.lost + r.completed for r in runs))
    qps = [r.qps for r in runs]  # in round order
    cpu = median(runs, "cpu_us_per_query")
    return (f"| {name} | **{median(runs, 'qps'):,.0f}** | {', '.join(f'{x / 1000:.0f}k' for x in qps)} | {busy:.0%} | {client:.0%} "
            f"| {cpu:.1f} | {1e6 / cpu:,.0f} | {lost:.3%} | {rss:.0f} |")


def latency_row(name: str, runs: list[Run], rate: int) -> str:
    """Each percentile is the median of the rounds' (one noisy round moves it least)."""
    p50, p99, p999 = (statistics.median(percentile(r.latencies, q) * 1e6 for r in runs) for q in (0.5, 0.99, 0.999))
    worst = max(max(r.latencies) for r in runs) * 1e6
    lost = sum(r.lost for r in runs) / max(1, sum(r.lost + r.completed for r in runs))
    busy = statistics.median(r.server_cpu_s / r.wall_s for r in runs)
    return (f"| {name} | {rate:,} | {median(runs, 'qps'):,.0f} | {p50:.0f} | {p99:,.0f} | {p999:,.0f} | {worst:,.0f} | {lost:.3%} "
            f"| {median(runs, 'cpu_us_per_query'):.1f} | {busy:.0%} |")


def p99(runs: list[Run]) -> float:
    return statistics.median(percentile(r.latencies, 0.99) for r in runs)


def per_round(a: list[Run], b: list[Run], digits: int = 2) -> str:
    """The throughput ratio of runs made one after the other (a slow spell of the machine
    tends to hit both)."""
    return ", ".join(f"{x.qps / y.qps:.{digits}f}" for x, y in zip(a, b))


def report(args: argparse.Namespace, res: Results) -> str:
    tp, lat = res.throughput, res.latency
    qps = {name: median(runs, "qps") for name, runs in tp.items()}
    cpu = {name: median(runs, "cpu_us_per_query") for name, runs in tp.items()}
    queries = res.inputs.queries
    opts = " ".join(DNSPERF_OPTIONS)
    classes = ", ".join(f"{k} {v}" for k, v in sorted(res.classes.items(), key=lambda kv: -kv[1]))
    rcodes = "; ".join(f"{name} {runs[0].rcodes}" for name, runs in tp.items())
    logged = ", ".join(f"{name} {n}" for name, n in res.logged.items())
    return f"""## Throughput and latency: kdns, knot, dnslib ({time.strftime('%Y-%m-%d')})

Machine: {machine()}; {versions()}; kdns at {res.revision}.
Command: `python perf/bench.py --services {args.services} --rounds {args.rounds} --duration {args.duration:g} --latency-duration {args.latency_duration:g} --rate {args.rate}`

* Cluster: {args.services:,} Services (10% headless with 5 endpoints, 1% ExternalName, the rest ClusterIP with 2 endpoints;
  ports http/80 and grpc/9090), as manifests for kdns and as zone files with the same records for knot and dnslib.
* Queries: {len(queries):,} lines, {len(set(queries)):,} distinct, looped by dnsperf: {mix(queries)}.
* Servers, each pinned to core {SERVER_CORE} (every thread), started once for the whole run:
  `kdns serve --manifests DIR --listen 127.0.0.1:PORT --log-level warning`;
  `knotd -c knot.conf` (udp-workers 1; knotd pins its UDP worker to a core of its choosing, so the bench re-pins it);
  `python perf/bench/dnslib_server.py PORT ZONES` (dnslib's threaded `DNSServer`, a thread per query).
* Throughput: `taskset -c {CLIENT_CORE} dnsperf -s 127.0.0.1 -p PORT -d queries.txt -l {args.duration:g} {opts}`,
  one run per server in turn (A B C A B C), {args.rounds} rounds after a 2 s warm-up each; medians.
* Latency: the same with `-l {args.latency_duration:g} -Q RATE -v` (one line per query), {args.rounds} rounds in turn;
  each percentile is the median of the rounds' percentiles, max is the worst query of all rounds.
* Checked before measuring: {res.checked} queries sampled from the file got the class their category expects
  and the same answer records from all three ({classes}).

| server | queries/s (median) | rounds | server core busy | dnsperf core busy | server CPU per query (µs) | 1 / CPU per query (q/s) | lost | RSS after (MB) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(throughput_row(s, tp[s], res.rss_mb[s]) for s in tp)}

| server | asked rate (q/s) | answered (q/s) | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | lost | server CPU per query (µs) | server core busy |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(latency_row(s, lat[s], latency_rate(s, args.rate)) for s in lat)}

Ratios: throughput kdns/knot **{qps['kdns'] / qps['knot']:.2f}×** (round by round: {per_round(tp['kdns'], tp['knot'])}),
kdns/dnslib **{qps['kdns'] / qps['dnslib']:.0f}×** ({per_round(tp['kdns'], tp['dnslib'], 0)});
one core's capacity (1 / CPU per query) kdns/knot {cpu['knot'] / cpu['kdns']:.2f}×; p99 at {args.rate:,} q/s kdns/knot {p99(lat['kdns']) / p99(lat['knot']):.2f}×.
Response codes (first round): {rcodes}. Lines logged by the servers during the run: {logged}.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1_000, help="Services in the generated cluster (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of A B C runs (default 3)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per throughput run (default 10)")
    parser.add_argument("--latency-duration", type=float, default=5, help="seconds per latency run (default 5)")
    parser.add_argument("--rate", type=int, default=20_000, help="queries/s of the latency runs (default 20000; dnslib: at most 1500)")
    parser.add_argument("--record", action="store_true", help="prepend the results to perf/RESULTS.md (below its intro)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench: terminated"))  # unwind: stop the servers, remove the files
    if args.services < 100 or not 1 <= args.rounds <= 20 or not 1 <= args.duration <= 120 or not 1 <= args.latency_duration <= 120:
        parser.error("--services at least 100, --rounds 1-20, --duration and --latency-duration 1-120 s")
    try:
        results = run(args)
    except BenchError as exc:
        sys.exit(f"bench: error: {exc}")
    section = report(args, results)
    print(section)
    if args.record:
        record(section)
        log("prepended to perf/RESULTS.md")


if __name__ == "__main__":
    main()
