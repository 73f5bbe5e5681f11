"""kdns against compiled peers under Debian's dnsperf, path by path: queries/s, CPU per
query, latency, RSS.

Three paths, each measured against the peers in the same run (perf/README.md says why):

* **repeated questions** (`replay`): the query file of a model of what pods look up through
  glibc's search path (ndots:5), about 15,000 distinct questions looped: kdns answers them
  from its replay table. Peers: knotd (authoritative, one UDP worker) and unbound (the same
  records as `local-data`, one thread).
* **outside names from the forwarding cache** (`forward`): `api-N.example.com` A and AAAA
  (2,000 questions) looped, after one pass has filled the caches. kdns (`--upstream`) and
  unbound (`forward-zone`) forward to the same local upstream (a knotd of its own, on
  dnsperf's core) and both cache (30 s at most, with prefetch).
* **first-time names** (`first`): names never asked before (search-path expansions of
  outside names, and Services that do not exist: NXDOMAIN), a new file of them for every
  run (`dnsperf -n 1`). Peers: knotd and unbound.

The run, all on loopback:

1. Generate a cluster (`--services`, default 1,000: ClusterIP Services with named ports,
   10% headless with 5 ready endpoints, 1% ExternalName; perf/bench/cluster.py) as
   Kubernetes manifests for kdns and as zone files with the same records for the peers, and
   the upstream's zone of outside names.
2. Check on samples of every path, with dnspython, that every server gives each query the
   class of answer its kind expects (NOERROR with data, NODATA, NXDOMAIN) and the same
   answer records (those in the cluster's zones: an authoritative peer leaves an ExternalName's
   outside target to the client).
3. Every server is pinned to core 1; dnsperf (and the upstream) to core 0. For `--rounds`
   rounds, for each path, one `--duration`-second run per server in turn (kdns, knot,
   unbound, kdns, ...), as fast as each answers: queries/s and server CPU per query (utime +
   stime from /proc/PID/stat over the run / queries completed). Medians and the spread of
   the rounds are reported, with the machine's load average and the CPU other processes took.
4. Latency at a fixed rate (`--rate`, default 20,000 queries/s) on the repeated questions,
   from dnsperf's per-query output (`-v`): p50, p99, p99.9.
5. RSS (VmRSS) of each server; then `--flood` (2,000,000) names asked once each of kdns as
   fast as it answers, and its RSS before and after.

Prints a markdown section; `--record` prepends it to perf/RESULTS.md. Exits non-zero with a
message when a server does not start, dies, or answers differently from the others. Every
process started is killed and the temporary directory removed.

Usage: python -m perf.bench [--services N] [--rounds N] [--duration S] [--latency-duration S]
                         [--rate QPS] [--flood N] [--paths replay,forward,first] [--dnslib] [--record]
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
from dataclasses import dataclass, field
from pathlib import Path

from perf.bench import dnsperf_version, kdns_revision, log, machine, missing_prerequisite, percentile, record, status_kb
from perf.bench.check import check_answers, check_first_time, check_forwarded
from perf.bench.cluster import (
    Inputs,
    first_time_lines,
    make_cluster,
    mix,
    outside_queries,
    write_inputs,
    write_upstream_zone,
)
from perf.bench.dnsperf import DNSPERF_OPTIONS, Run, dnsperf
from perf.bench.servers import (
    CACHE_TTL,
    CLIENT_CORE,
    SERVER_CORE,
    BenchError,
    Server,
    find_knotd,
    find_tool,
    make_servers,
    make_upstream,
    wait_ready,
)

DNSLIB_LATENCY_RATE = 1_500  # about half of what dnslib's threaded server answers flat out here
CHECK_SAMPLE = 1_000
FIRST_TIME_RATE = 120_000  # lines of first-time names per second of a run: more than any server here answers
PATHS = {
    "replay": "repeated questions (replay)",
    "forward": "outside names from the forwarding cache",
    "first": "first-time names",
}
PEERS = {"replay": ("knot", "unbound", "dnslib"), "forward": ("unbound",), "first": ("knot", "unbound")}


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Path_:
    key: str
    servers: list[Server]
    query_file: Path | None  # None: a new file of first-time names for every run
    namespaces: int = 1


@dataclass
class Machine:
    """What else the machine did during a run: the load average before it, and the CPU
    seconds that neither the server nor dnsperf took (all cores, from /proc/stat)."""
    load: float
    other_cpu_s: float


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine_busy() -> float:
    """CPU seconds spent busy on every core so far (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def one_run(server: Server, path: Path_, work: Path, duration: float, tag: str, options: list[str]) -> tuple[Run, Machine]:
    queries = path.query_file
    if queries is None:  # a new file of first-time names (written before the CPU is counted)
        queries = work / "first-time.txt"
        queries.write_text(first_time_lines(int(duration * FIRST_TIME_RATE), path.namespaces, tag))
        options = [*options, "-n", "1"]
    load, busy0 = loadavg(), machine_busy()
    run = dnsperf(server, queries, duration, options)
    other = machine_busy() - busy0 - run.server_cpu_s - run.client_cpu_s
    if path.query_file is None:
        queries.unlink()
    return run, Machine(load, max(0.0, other))


def throughput_rounds(paths: list[Path_], work: Path, rounds: int, duration: float) -> dict[str, dict[str, list[tuple[Run, Machine]]]]:
    """For each round, each path, each server in turn (kdns first), as fast as it answers."""
    runs: dict[str, dict[str, list[tuple[Run, Machine]]]] = {p.key: {s.name: [] for s in p.servers} for p in paths}
    for r in range(rounds):
        for path in paths:
            for server in path.servers:
                run, other = one_run(server, path, work, duration, f"r{r}{server.name}", DNSPERF_OPTIONS)
                runs[path.key][server.name].append((run, other))
                log(f"round {r + 1}/{rounds} {path.key} {server.name}: {run.qps:,.0f} q/s, {run.cpu_us_per_query:.1f} µs CPU/query, "
                    f"server core {run.server_cpu_s / run.wall_s:.0%} busy, dnsperf core {run.client_cpu_s / run.wall_s:.0%}, "
                    f"lost {run.lost}, others {other.other_cpu_s / run.wall_s:.0%} of a core, load {other.load:.2f}")
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
class Flood:
    names: int
    run: Run | None = None
    rss_start_mb: float = 0.0  # after the first sync, before any load
    rss_before_mb: float = 0.0  # after the other runs
    rss_after_mb: float = 0.0
    hwm_mb: float = 0.0


def flood(kdns: Server, work: Path, names: int, namespaces: int, result: Flood) -> None:
    """`names` first-time names asked once each, as fast as kdns answers: RSS before and after."""
    queries = work / "flood.txt"
    queries.write_text(first_time_lines(names, namespaces, "flood"))
    result.rss_before_mb = kdns.rss_mb()
    result.run = dnsperf(kdns, queries, 600, [*DNSPERF_OPTIONS, "-n", "1"])
    result.rss_after_mb = kdns.rss_mb()
    result.hwm_mb = status_kb(kdns.proc.pid, "VmHWM") / 1024
    queries.unlink()
    log(f"flood: {result.run.completed:,} names at {result.run.qps:,.0f} q/s; kdns RSS {result.rss_start_mb:.1f} MB at the start, "
        f"{result.rss_before_mb:.1f} before, {result.rss_after_mb:.1f} after (peak {result.hwm_mb:.1f})")


@dataclass
class Results:
    inputs: Inputs
    checked: dict[str, tuple[int, dict[str, int]]]
    throughput: dict[str, dict[str, list[tuple[Run, Machine]]]]
    latency: dict[str, list[Run]]
    rss_mb: dict[str, float]
    logged: dict[str, int]  # lines each server logged (kdns at --log-level warning)
    revision: str
    flood: Flood
    load: tuple[str, str] = ("", "")  # /proc/loadavg before and after
    upstream_queries: int = 0
    servers: list[str] = field(default_factory=list)


def run(args: argparse.Namespace) -> Results:
    problem = missing_prerequisite()
    if problem:
        raise BenchError(problem)
    find_knotd(), find_tool("unbound")
    os.sched_setaffinity(0, {int(CLIENT_CORE)})  # this process too stays off the servers' core
    load_before = Path("/proc/loadavg").read_text().strip()
    with tempfile.TemporaryDirectory(prefix="kdns-bench-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        inputs = write_inputs(work, args.services)
        model = make_cluster(args.services)
        namespaces = len({s.namespace for s in model})
        upstream = make_upstream(work, write_upstream_zone(model, work / "upstream-zone"))
        stack.callback(upstream.stop)
        upstream.start()
        wait_ready(upstream, "api-0.example.com")
        servers = make_servers(work, inputs.manifests, inputs.zones, upstream, dnslib=args.dnslib)
        for server in servers:
            stack.callback(server.stop)
            server.start()
        for server in servers:
            wait_ready(server, inputs.probe)
            server.pin()
        by_name = {s.name: s for s in servers}
        kdns = by_name["kdns"]
        result_flood = Flood(args.flood, rss_start_mb=kdns.rss_mb())
        log(f"servers ready: {', '.join(f'{s.name} on 127.0.0.1:{s.port}' for s in servers)}; upstream on 127.0.0.1:{upstream.port}")
        checked = {"replay": check_answers(servers, inputs.queries, CHECK_SAMPLE)}
        outside = work / "outside.txt"
        outside.write_text("".join(f"{q.qname} {q.qtype}\n" for q in outside_queries()))
        forwarders = [by_name["kdns"], by_name["unbound"]]
        checked["forward"] = check_forwarded(forwarders, outside_queries(), 100)
        first_servers = [by_name[n] for n in ("kdns", "knot", "unbound")]
        checked["first"] = check_first_time(first_servers, first_time_lines(100, namespaces, "check"))
        log(f"answer check: {', '.join(f'{k}: {n} queries {c}' for k, (n, c) in checked.items())}")
        paths = [
            Path_("replay", [by_name[n] for n in ("kdns", *PEERS["replay"]) if n in by_name], inputs.query_file),
            Path_("forward", forwarders, outside),
            Path_("first", first_servers, None, namespaces),
        ]
        paths = [p for p in paths if p.key in args.paths]
        for path in paths:  # warm-up, not measured: caches (the forwarding ones fill here), the allocator, the CPU frequency
            for server in path.servers:
                one_run(server, path, work, 2, f"warm{server.name}", DNSPERF_OPTIONS)
        throughput = throughput_rounds(paths, work, args.rounds, args.duration)
        replay_servers = [s for s in servers if s.name != "dnslib" or args.dnslib]
        latency = latency_rounds(replay_servers, inputs.query_file, args.rounds, args.latency_duration, args.rate) if "replay" in args.paths else {}
        rss = {s.name: s.rss_mb() for s in servers}
        if args.flood:
            flood(kdns, work, args.flood, namespaces, result_flood)
        logged = {s.name: len(s.log.read_text(errors="replace").splitlines()) for s in servers}
        return Results(inputs, checked, throughput, latency, rss, logged, kdns_revision(), result_flood,
                       (load_before, Path("/proc/loadavg").read_text().strip()), servers=[s.name for s in servers])


# --- the report ------------------------------------------------------------------------------


def versions() -> str:
    import dnslib

    def last_word(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
            return (out.stdout + out.stderr).split()[-1]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "?"

    def unbound_version() -> str:
        try:
            out = subprocess.run([find_tool("unbound"), "-V"], check=False, capture_output=True, text=True, timeout=10)
            return out.stdout.split()[1]
        except (OSError, subprocess.TimeoutExpired, IndexError, BenchError):
            return "?"

    return f"knotd {last_word([find_knotd(), '-V'])}, unbound {unbound_version()}, dnsperf {dnsperf_version()}, dnslib {dnslib.version}"


def median(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    return f"{fmt.format(min(values))}–{fmt.format(max(values))}"


def path_rows(key: str, runs: dict[str, list[tuple[Run, Machine]]], rss: dict[str, float]) -> list[str]:
    rows = []
    for name, pairs in runs.items():
        rs = [r for r, _ in pairs]
        busy = statistics.median(r.server_cpu_s / r.wall_s for r in rs)
        client = statistics.median(r.client_cpu_s / r.wall_s for r in rs)
        others = statistics.median(m.other_cpu_s / r.wall_s for r, m in pairs)
        lost = sum(r.lost for r in rs) / max(1, sum(r.lost + r.completed for r in rs))
        cpu = [r.cpu_us_per_query for r in rs]
        rows.append(f"| {PATHS[key]} | {name} | **{median(rs, 'qps'):,.0f}** | {', '.join(f'{r.qps / 1000:.0f}k' for r in rs)} "
                    f"| **{statistics.median(cpu):.1f}** | {spread(cpu, '{:.1f}')} | {busy:.0%} | {client:.0%} | {others:.0%} | {lost:.3%} |")
    return rows


def summary_rows(tp: dict[str, dict[str, list[tuple[Run, Machine]]]]) -> list[str]:
    """The issue's table: kdns against each peer, path by path, with the ratio of every round's pair."""
    rows = []
    for key, runs in tp.items():
        kd = [r for r, _ in runs["kdns"]]
        for peer in PEERS[key]:
            if peer not in runs:
                continue
            pr = [r for r, _ in runs[peer]]
            ratios = [a.qps / b.qps for a, b in zip(kd, pr)]
            cpu_ratios = [a.cpu_us_per_query / b.cpu_us_per_query for a, b in zip(kd, pr)]
            rows.append(f"| {PATHS[key]} | {median(kd, 'qps'):,.0f} | {peer} {median(pr, 'qps'):,.0f} | "
                        f"**{statistics.median(ratios):.2f}** ({spread(ratios, '{:.2f}')}) | "
                        f"{median(kd, 'cpu_us_per_query'):.1f} µs vs {median(pr, 'cpu_us_per_query'):.1f} µs "
                        f"(kdns/{peer} {statistics.median(cpu_ratios):.2f}, {spread(cpu_ratios, '{:.2f}')}) |")
    return rows


def latency_row(name: str, runs: list[Run], rate: int) -> str:
    """Each percentile is the median of the rounds' (one noisy round moves it least)."""
    p50, p99, p999 = (statistics.median(percentile(r.latencies, q) * 1e6 for r in runs) for q in (0.5, 0.99, 0.999))
    worst = max(max(r.latencies) for r in runs) * 1e6
    lost = sum(r.lost for r in runs) / max(1, sum(r.lost + r.completed for r in runs))
    busy = statistics.median(r.server_cpu_s / r.wall_s for r in runs)
    p99s = ", ".join(f"{percentile(r.latencies, 0.99) * 1e6:,.0f}" for r in runs)
    return (f"| {name} | {rate:,} | {median(runs, 'qps'):,.0f} | {p50:.0f} | {p99:,.0f} ({p99s}) | {p999:,.0f} | {worst:,.0f} | {lost:.3%} "
            f"| {median(runs, 'cpu_us_per_query'):.1f} | {busy:.0%} |")


def p99(runs: list[Run]) -> float:
    return statistics.median(percentile(r.latencies, 0.99) for r in runs)


def report(args: argparse.Namespace, res: Results) -> str:
    tp, lat = res.throughput, res.latency
    queries = res.inputs.queries
    opts = " ".join(DNSPERF_OPTIONS)
    checked = "; ".join(f"{PATHS[k]}: {n} queries ({', '.join(f'{c} {v}' for c, v in sorted(cl.items()))})" for k, (n, cl) in res.checked.items())
    logged = ", ".join(f"{name} {n}" for name, n in res.logged.items())
    rows = [row for key, runs in tp.items() for row in path_rows(key, runs, res.rss_mb)]
    latency = "\n".join(latency_row(s, lat[s], latency_rate(s, args.rate)) for s in lat)
    p99_ratios = ", ".join(f"kdns/{peer} {p99(lat['kdns']) / p99(lat[peer]):.2f}×" for peer in lat if peer != "kdns")
    f = res.flood
    flood = ""
    if f.run is not None:
        flood = (f"\nFlood of first-time names (`dnsperf -n 1` over {f.names:,} names, each asked once, as fast as kdns answers): "
                 f"{f.run.completed:,} answered at {f.run.qps:,.0f} q/s ({f.run.cpu_us_per_query:.1f} µs CPU/query), lost {f.run.lost:,}. "
                 f"kdns RSS: **{f.rss_start_mb:.1f} MB** after the first sync, {f.rss_before_mb:.1f} MB after the runs above, "
                 f"**{f.rss_after_mb:.1f} MB** after the flood (**+{f.rss_after_mb - f.rss_start_mb:.1f} MB** from the start; "
                 f"peak {f.hwm_mb:.1f} MB).\n")
    rss = ", ".join(f"{name} {mb:.0f} MB" for name, mb in res.rss_mb.items())
    return f"""## Throughput per path and latency: kdns, knot, unbound ({time.strftime('%Y-%m-%d')})

Machine: {machine()}; {versions()}; kdns at {res.revision}.
Load average before / after the run: {res.load[0]} / {res.load[1]} (the machine is shared: see "others" below).
Command: `python -m perf.bench --services {args.services} --rounds {args.rounds} --duration {args.duration:g} --latency-duration {args.latency_duration:g} --rate {args.rate} --flood {args.flood} --paths {','.join(args.paths)}{' --dnslib' if args.dnslib else ''}`

* Cluster: {args.services:,} Services (10% headless with 5 endpoints, 1% ExternalName, the rest ClusterIP with 2 endpoints;
  ports http/80 and grpc/9090), as manifests for kdns and as zone files with the same records for knot and unbound (`local-data`).
* Repeated questions: {len(queries):,} lines, {len(set(queries)):,} distinct, looped by dnsperf: {mix(queries)}.
* Outside names: `api-N.example.com` A and AAAA, 2,000 questions, looped; kdns (`--upstream`, `--cache-ttl {CACHE_TTL}`) and unbound
  (`forward-zone`, `cache-max-ttl: {CACHE_TTL}`, `prefetch: yes`) forward to the same knotd (TTL 300) on core {CLIENT_CORE}; the caches are filled by the warm-up.
* First-time names: a new file for every run of names never asked before, half `api-<run>-N.example.com.<ns>.svc.cluster.local`
  (a pod's search-path expansion of an outside name), half `<run>-N.<ns>.svc.cluster.local` (no such Service), A and AAAA: NXDOMAIN; `dnsperf -n 1`.
* Servers, each pinned to core {SERVER_CORE} (every thread), started once for the whole run:
  `kdns serve --manifests DIR --listen 127.0.0.1:PORT --upstream 127.0.0.1:UP --cache-ttl {CACHE_TTL} --log-level warning`;
  `knotd -c knot.conf` (udp-workers 1; re-pinned before each run); `unbound -d -c unbound.conf` (num-threads 1, module-config iterator).
* Throughput: `taskset -c {CLIENT_CORE} dnsperf -s 127.0.0.1 -p PORT -d FILE -l {args.duration:g} {opts}`,
  each path's servers in turn (kdns first), {args.rounds} rounds after a 2 s warm-up each; medians, and every round's figure.
  CPU per query: the server's utime + stime over the run / queries answered. "others": CPU the rest of the machine took
  during the run (all cores, /proc/stat, less the server and dnsperf), in cores.
* Latency: the repeated questions with `-l {args.latency_duration:g} -Q RATE -v` (one line per query), {args.rounds} rounds in turn;
  each percentile is the median of the rounds' percentiles, max is the worst query of all rounds.
* Checked before measuring: {checked}.

| path | kdns q/s | peer q/s | kdns/peer q/s (rounds' range) | CPU per query |
| --- | --- | --- | --- | --- |
{chr(10).join(summary_rows(tp))}

| path | server | queries/s (median) | rounds | CPU µs per query (median) | CPU rounds | server core busy | dnsperf core busy | others | lost |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

| server | asked rate (q/s) | answered (q/s) | p50 (µs) | p99 (µs) (rounds) | p99.9 (µs) | max (µs) | lost | server CPU per query (µs) | server core busy |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{latency}

p99 at {args.rate:,} q/s: {p99_ratios}. RSS after the runs: {rss}. Lines logged by the servers during the run: {logged}.
{flood}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1_000, help="Services in the generated cluster (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of runs (default 3)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per throughput run (default 10)")
    parser.add_argument("--latency-duration", type=float, default=5, help="seconds per latency run (default 5)")
    parser.add_argument("--rate", type=int, default=20_000, help="queries/s of the latency runs (default 20000; dnslib: at most 1500)")
    parser.add_argument("--flood", type=int, default=2_000_000, help="first-time names asked of kdns at the end, RSS before and after (0: none)")
    parser.add_argument("--paths", default="replay,forward,first", help="which paths to measure (default: all three)")
    parser.add_argument("--dnslib", action="store_true", help="also run dnslib's threaded server on the repeated questions")
    parser.add_argument("--record", action="store_true", help="prepend the results to perf/RESULTS.md (below its intro)")
    args = parser.parse_args()
    args.paths = [p for p in args.paths.split(",") if p]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench: terminated"))  # unwind: stop the servers, remove the files
    if args.services < 100 or not 1 <= args.rounds <= 20 or not 1 <= args.duration <= 120 or not 1 <= args.latency_duration <= 120:
        parser.error("--services at least 100, --rounds 1-20, --duration and --latency-duration 1-120 s")
    if not args.paths or set(args.paths) - set(PATHS) or not 0 <= args.flood <= 10_000_000:
        parser.error(f"--paths: some of {','.join(PATHS)}; --flood 0-10000000")
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
