"""kdns against two peers under Debian's dnsperf: throughput, latency, CPU per query, RSS.

The run, all on loopback:

1. Generate a cluster (`--services`, default 1,000: ClusterIP Services with named ports,
   10% headless with 5 ready endpoints, 1% ExternalName; perf/bench/cluster.py) as
   Kubernetes manifests for kdns and as zone files with the same records for the peers:
   knotd (a compiled authoritative server, one UDP worker) and dnslib's stock threaded
   `DNSServer` (perf/bench/dnslib_server.py; the processes: servers.py).
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

Usage: python -m perf.bench [--services N] [--rounds N] [--duration S] [--latency-duration S]
                         [--rate QPS] [--record]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from perf.bench import dnsperf_version, kdns_revision, log, machine, missing_prerequisite, percentile, record
from perf.bench.check import check_answers
from perf.bench.cluster import Inputs, mix, write_inputs
from perf.bench.dnsperf import DNSPERF_OPTIONS, Run, dnsperf
from perf.bench.servers import CLIENT_CORE, SERVER_CORE, BenchError, Server, find_knotd, make_servers, wait_ready

DNSLIB_LATENCY_RATE = 1_500  # about half of what dnslib's threaded server answers flat out here
CHECK_SAMPLE = 1_000


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


def versions() -> str:
    import dnslib

    def last_word(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
            return (out.stdout + out.stderr).split()[-1]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "?"

    return f"knotd {last_word([find_knotd(), '-V'])}, dnsperf {dnsperf_version()}, dnslib {dnslib.version}"


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
Command: `python -m perf.bench --services {args.services} --rounds {args.rounds} --duration {args.duration:g} --latency-duration {args.latency_duration:g} --rate {args.rate}`

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

