"""One soak from start to end: the cluster, the stub upstream and kdns set up, the initial
sweep, then the load, the churn, the samples and the fault schedule until the time is up,
the final sweep, and everything measured on the way returned as `Results`."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from perf.bench import CLK_TCK, kdns_revision, log, missing_prerequisite
from perf.soak import CLIENT_CORE, SoakError, abuse, hostile
from perf.soak import cluster as soak_cluster
from perf.soak.checks import Check, Checker
from perf.soak.expected import GRACE, Expected, Health
from perf.soak.faults import API_FAULTS, CYCLE, Fault, Faults, schedule
from perf.soak.load import Chunk, Load
from perf.soak.server import Kdns, LogLine
from perf.soak.upstream import Upstream
from testkit.kubeapi import KubeAPI

SAMPLE_EVERY = 5.0
QUERY_LINES = 100_000


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
    hostile: list[hostile.HostileRound]
    padding: list[hostile.PaddingFlood]
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
        health = Health()
        expected = Expected(health)
        churn = soak_cluster.Churn(api, svcs, expected)
        churn.record_initial()

        externals = [s.external_name for s in svcs if s.kind == "external" and not s.external_name.endswith(soak_cluster.ZONE)]
        upstream = Upstream(soak_cluster.stub_records(externals))
        upstream_port = upstream.start()
        stack.callback(upstream.close)
        bad_upstream = hostile.HostileUpstream()
        hostile_port = bad_upstream.start()
        stack.callback(bad_upstream.close)

        queries = soak_cluster.make_queries(svcs, QUERY_LINES)
        query_file = work / "queries.txt"
        query_file.write_text("".join(f"{q.qname} {q.qtype}\n" for q in queries))

        kdns = Kdns(api.url, upstream_port, Path(args.log).resolve() if args.log else None, hostile_port)
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
            time.sleep(GRACE + 1)
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
        return Results(args, load_seconds, queries, load.chunks, list(faults.log), faults.udp, faults.tcp, faults.hostile, faults.padding,
                       dict(churn.counts),
                       list(checker.checks), sampler.samples, rss_synced, rss_end, hwm, metrics_start, metrics_end,
                       list(kdns.lines), died, kdns.proc.pid, kdns_revision(), errors, upstream.queries, soak_cluster.describe(svcs),
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


def unhealthy_seconds(health: Health, start: float, end: float) -> float:
    with health.lock:
        intervals = [tuple(i) for i in health.intervals]
    return sum(max(0.0, min(end, e if e is not None else end) - max(start, s)) for s, e in intervals)
