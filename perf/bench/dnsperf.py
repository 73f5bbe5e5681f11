"""One bounded dnsperf run against a server, and what its output says.

`DNSPERF_OPTIONS` are the same for every server and every benchmark built on `make bench`
(perf/README.md says how they were chosen).
"""

from __future__ import annotations

import re
import resource
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from perf.bench.servers import CLIENT_CORE, BenchError, Server, die_with_parent

# Options for every throughput run, the same for each server (perf/README.md says how
# they were chosen): 2 client threads, 2 sockets, 100 queries in flight, 1 s timeout.
DNSPERF_OPTIONS = ["-T", "2", "-c", "2", "-q", "100", "-t", "1"]


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
