"""`make bench-workers`: does `kdns serve --workers N` scale, and where is the limit here?

The cluster, the queries and the dnsperf options are `make bench`'s (perf/bench/). Nothing
is pinned: the servers' processes and dnsperf share every core, as they would on a node. In
rounds (A B C A B C...), each for --duration seconds:

  kdns-1   kdns serve --workers 1
  kdns-N   kdns serve --workers N    (N = --workers, default: the number of cores)
  knot-N   knotd with N UDP threads: a compiled server with the same N, the ceiling that
           this machine and this load generator reach when the server costs little

For each: the median queries/s, the CPU the server's processes used per query, and how busy
the whole machine was (from /proc/stat): when it is near 100% with kdns-N, the cores are
shared between the servers and dnsperf, and dnsperf's share is the limit, not kdns.

    python -m perf.workers [--services 1000] [--rounds 3] [--duration 10] [--workers N] [--record]
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

from perf.bench import ROOT, cpu_seconds, kdns_revision, log, machine, record
from perf.bench.cluster import REVERSE_ZONE, ZONE, write_inputs
from perf.bench.dnsperf import DNSPERF_OPTIONS, parse_dnsperf
from perf.bench.servers import KNOT_CONF, BenchError, Server, die_with_parent, find_knotd, free_port, wait_ready


@dataclass
class Result:
    name: str
    qps: float
    cpu_us: float  # server CPU (all its processes) per completed query
    machine_busy: float  # share of all cores busy (user, system, irq, softirq, steal)
    lost: int


def machine_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores together."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    return total - idle, total


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children still running (kdns's workers)."""
    seconds = 0.0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            seconds += cpu_seconds(p)
    return seconds


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def start(name: str, argv: list[str], port: int, work: Path, probe: str) -> Server:
    server = Server(name, argv, port, work / f"{name}.log")
    with server.log.open("wb") as out:
        server.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                       preexec_fn=die_with_parent)  # noqa: PLW1509 (the benchmark runs no threads)
    wait_ready(server, probe)
    return server


def measure(server: Server, queries: Path, duration: float) -> Result:
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(server.port), "-d", str(queries), "-l", f"{duration:g}", *DNSPERF_OPTIONS]
    cpu0, (busy0, total0) = tree_cpu_seconds(server.proc.pid), machine_times()
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=duration + 30, preexec_fn=die_with_parent)
    cpu, (busy1, total1) = tree_cpu_seconds(server.proc.pid) - cpu0, machine_times()
    server.check_alive()
    if done.returncode != 0:
        raise BenchError(f"dnsperf against {server.name} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    run = parse_dnsperf(server.name, done.stdout, duration, cpu, 0.0)
    return Result(server.name, run.qps, cpu / max(1, run.completed) * 1e6, (busy1 - busy0) / max(1, total1 - total0), run.lost)


def run(args: argparse.Namespace) -> tuple[dict[str, list[Result]], int]:
    n = args.workers
    with tempfile.TemporaryDirectory(prefix="kdns-workers-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        inputs = write_inputs(work, args.services)
        kdns = str(Path(sys.executable).parent / "kdns")
        servers = []
        for workers in (1, n):
            port = free_port()
            argv = [kdns, "serve", "--manifests", str(inputs.manifests), "--listen", f"127.0.0.1:{port}",
                    "--log-level", "warning", "--lameduck", "0", "--workers", str(workers)]
            servers.append(start(f"kdns-{workers}", argv, port, work, inputs.probe))
            stack.callback(servers[-1].stop)
        knot_dir = work / "knot"
        knot_dir.mkdir()
        port = free_port()
        conf = knot_dir / "knot.conf"
        conf.write_text(KNOT_CONF.format(dir=knot_dir, port=port, zones=inputs.zones[ZONE].parent,
                                               zone=ZONE, reverse=REVERSE_ZONE)
                        .replace("udp-workers: 1", f"udp-workers: {n}"))
        servers.append(start(f"knot-{n}", [find_knotd(), "-c", str(conf)], port, work, inputs.probe))
        stack.callback(servers[-1].stop)
        time.sleep(1.0)  # the workers of kdns-N bind after the first process answers
        kdns_n = servers[1]
        if len(children(kdns_n.proc.pid)) != n - 1:
            raise BenchError(f"kdns --workers {n} runs {len(children(kdns_n.proc.pid))} workers:\n{kdns_n.log_tail()}")
        for server in servers:  # warm-up
            measure(server, inputs.query_file, 2)
        results: dict[str, list[Result]] = {s.name: [] for s in servers}
        for r in range(args.rounds):
            for server in servers:
                result = measure(server, inputs.query_file, args.duration)
                results[server.name].append(result)
                log(f"round {r + 1}/{args.rounds} {server.name}: {result.qps:,.0f} q/s, {result.cpu_us:.1f} µs CPU/query, "
                          f"machine {result.machine_busy:.0%} busy, lost {result.lost}")
        return results, len(inputs.queries)


def report(args: argparse.Namespace, results: dict[str, list[Result]]) -> str:
    def med(name: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results[name])

    n = args.workers
    rows = "\n".join(
        f"| {name} | {med(name, 'qps'):,.0f} | {med(name, 'cpu_us'):.1f} | {med(name, 'machine_busy'):.0%} | "
        f"{', '.join(f'{r.qps:,.0f}' for r in runs)} |"
        for name, runs in results.items()
    )
    one, many, knot = med("kdns-1", "qps"), med(f"kdns-{n}", "qps"), med(f"knot-{n}", "qps")
    return f"""## {time.strftime('%Y-%m-%d')}: `make bench-workers` (kdns {kdns_revision()})

* Machine: {machine()}
* {args.services} Services, perf/bench's query mix; `dnsperf {' '.join(DNSPERF_OPTIONS)} -l {args.duration:g}`,
  {args.rounds} rounds (kdns-1, kdns-{n}, knot-{n}); nothing pinned: servers and dnsperf share the cores.

| server | q/s (median) | server CPU µs/query | machine busy | q/s per round |
| --- | --- | --- | --- | --- |
{rows}

kdns-{n}/kdns-1: {many / one:.2f}×; kdns-{n}/knot-{n}: {many / knot:.2f}×. Where the machine is near 100% busy,
the load generator shares the cores the servers need: the figure is what this machine can
show, not kdns's ceiling.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1_000, help="Services in the generated cluster (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per run (default 10)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="N for kdns-N and knot-N (default: the cores)")
    parser.add_argument("--record", action="store_true", help="prepend the results to perf/RESULTS.md")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench-workers: terminated"))
    if args.services < 100 or not 1 <= args.rounds <= 20 or not 1 <= args.duration <= 120 or not 2 <= args.workers <= 64:
        parser.error("--services at least 100, --rounds 1-20, --duration 1-120 s, --workers 2-64")
    try:
        results, _ = run(args)
    except BenchError as exc:
        sys.exit(f"bench-workers: error: {exc}")
    section = report(args, results)
    print(section)
    if args.record:
        record(section)
        log("prepended to perf/RESULTS.md")


if __name__ == "__main__":
    main()
