"""kdns at cluster scale: 10,000 Services and 100,000 endpoints through the test API server.

Measures, for one `kdns serve --apiserver URL` process:

* time from start to the first complete sync (the `synced with` log line) and to the first
  correct answer;
* RSS after the sync (VmRSS) and its peak (VmHWM), against CoreDNS's published sizing
  (pods + services) / 1000 + 54 MB;
* event-to-answer latency while Services churn: the time from the API server accepting a
  changed Service to kdns answering with the new address (polled over UDP);
* in-process, the index work of applying one changed Service, and one changed EndpointSlice,
  to an index holding the whole cluster (median and p99).

Usage: python -m perf.scale [--services N] [--endpoints N] [--changes N]
Everything runs on loopback; every wait is bounded.
"""

from __future__ import annotations

import argparse
import ipaddress
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from kdns.config import DnsConfig
from kdns.model import Synced, Upsert
from kdns.sources.convert import convert
from kdns.state import DnsState
from perf.bench import percentile, status_kb  # perf/bench/__init__.py
from testkit.kubeapi import KubeAPI
from testkit.process import KdnsProcess

ROOT = Path(__file__).resolve().parent.parent
NAMESPACES = 100
SLICE_SIZE = 100  # the EndpointSlice controller's default maximum


def cluster_ip(i: int) -> str:
    return str(ipaddress.ip_address("10.96.16.0") + i)


def pod_ip(i: int) -> str:
    return str(ipaddress.ip_address("10.128.0.1") + i)


def objects(services: int, endpoints: int):
    """(namespaces, services, slices) as manifests: 10% headless, endpoints spread evenly."""
    per_service = max(1, endpoints // services)
    namespaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{n}"}} for n in range(NAMESPACES)]
    svcs, slices = [], []
    ip = 0
    for i in range(services):
        ns, name = f"ns-{i % NAMESPACES}", f"svc-{i}"
        headless = i % 10 == 0
        svcs.append({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {
                "clusterIP": "None" if headless else cluster_ip(i),
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "grpc", "port": 9090, "protocol": "TCP"}],
            },
        })
        for s in range(0, per_service, SLICE_SIZE):
            eps = []
            for e in range(s, min(per_service, s + SLICE_SIZE)):
                ep = {"addresses": [pod_ip(ip)], "conditions": {"ready": True}}
                if headless:
                    ep["hostname"] = f"{name}-{e}"
                eps.append(ep)
                ip += 1
            slices.append({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{name}-{s // SLICE_SIZE}", "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4", "endpoints": eps,
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "grpc", "port": 9090, "protocol": "TCP"}],
            })
    return namespaces, svcs, slices


def ask(port: int, name: str) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=5)


def measure_process(api: KubeAPI, svcs: list[dict], changes: int) -> dict:
    cmd = [sys.executable, "-m", "kdns", "serve", "--apiserver", api.url, "--listen", "127.0.0.1:0", "--print-address"]
    started = time.monotonic()
    k = KdnsProcess(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT))
    proc = k.proc
    try:
        port = k.wait_address(120)[1]  # it answers (SERVFAIL) before it has synced
        try:
            k.wait_for("synced with", 120)
        except AssertionError:
            raise SystemExit("kdns did not sync within 120 s:\n" + "\n".join(k.lines[-20:])) from None
        sync_s = time.monotonic() - started
        probe = "svc-1.ns-1.svc.cluster.local"
        deadline = time.monotonic() + 30
        while ask(port, probe).rcode() != dns.rcode.NOERROR and time.monotonic() < deadline:
            time.sleep(0.01)
        answer_s = time.monotonic() - started
        time.sleep(1.0)  # let the allocator settle before reading memory
        rss, hwm = status_kb(proc.pid, "VmRSS"), status_kb(proc.pid, "VmHWM")

        latencies = []
        for n in range(changes):
            i = 1 + (n * 37) % len(svcs)
            if i % 10 == 0:
                i += 1
            svc = svcs[i]
            new_ip = str(ipaddress.ip_address("10.100.0.1") + n)
            svc["spec"]["clusterIP"] = new_ip
            name = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local"
            t0 = time.monotonic()
            api.apply(svc)
            deadline = t0 + 10
            while time.monotonic() < deadline:
                reply = ask(port, name)
                if reply.answer and reply.answer[0][0].address == new_ip:
                    break
            latencies.append(time.monotonic() - t0)
        return {
            "sync_s": sync_s, "answer_s": answer_s, "rss_mb": rss / 1024, "hwm_mb": hwm / 1024,
            "event_to_answer_ms": [x * 1000 for x in latencies],
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        k.close()


def measure_index(namespaces, svcs, slices, changes: int) -> dict:
    index = DnsState(DnsConfig(), now=0)  # the index and the responder it publishes to, as in kdns serve
    events = [Upsert(convert(o)) for o in namespaces + svcs + slices]
    t0 = time.perf_counter()
    index.apply([*events, Synced("x")], now=1)
    build_s = time.perf_counter() - t0
    svc_costs, slice_costs = [], []
    for n in range(changes):
        svc = dict(svcs[(1 + n * 37) % len(svcs)])
        if svc["spec"]["clusterIP"] == "None":
            continue
        svc["spec"] = dict(svc["spec"], clusterIP=str(ipaddress.ip_address("10.101.0.1") + n))
        obj = convert(svc)
        t0 = time.perf_counter()
        change = index.apply([Upsert(obj)], now=2 + n)
        svc_costs.append(time.perf_counter() - t0)
        assert not change.empty
        sl = slices[(n * 53) % len(slices)]
        sl = dict(sl, endpoints=sl["endpoints"][1:] + [{"addresses": [str(ipaddress.ip_address("10.200.0.1") + n)]}])
        obj = convert(sl)
        t0 = time.perf_counter()
        index.apply([Upsert(obj)], now=2 + n)
        slice_costs.append(time.perf_counter() - t0)
    return {
        "build_s": build_s,
        "service_ms": [x * 1000 for x in svc_costs],
        "slice_ms": [x * 1000 for x in slice_costs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=50)
    args = parser.parse_args()

    namespaces, svcs, slices = objects(args.services, args.endpoints)
    api = KubeAPI().start()
    try:
        t0 = time.monotonic()
        for obj in namespaces + svcs + slices:
            api.apply(obj)
        print(f"# test API server loaded {len(namespaces) + len(svcs) + len(slices)} objects in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        proc = measure_process(api, svcs, args.changes)
    finally:
        api.stop()
    idx = measure_index(namespaces, svcs, slices, max(args.changes, 200))

    budget = (args.endpoints + args.services) / 1000 + 54
    e2a = proc["event_to_answer_ms"]
    print(f"""### Scale: {args.services:,} Services, {args.endpoints:,} endpoints ({time.strftime('%Y-%m-%d')})

Machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, Linux {platform.release()}.
Command: `python -m perf.scale --services {args.services} --endpoints {args.endpoints} --changes {args.changes}`
(the test API server of testkit/kubeapi/, kdns as `kdns serve --apiserver URL`).

| measure | value |
| --- | --- |
| start to first complete sync | {proc['sync_s']:.2f} s |
| start to first answer | {proc['answer_s']:.2f} s |
| RSS after sync | {proc['rss_mb']:.0f} MB (peak {proc['hwm_mb']:.0f} MB) |
| CoreDNS's sizing for this cluster | {budget:.0f} MB |
| event-to-answer, median / p99 / max ({len(e2a)} changes) | {statistics.median(e2a):.1f} / {percentile(e2a, 0.99):.1f} / {max(e2a):.1f} ms |
| index: build from scratch (in-process) | {idx['build_s']:.2f} s |
| index: one changed Service, median / p99 | {statistics.median(idx['service_ms']):.3f} / {percentile(idx['service_ms'], 0.99):.3f} ms |
| index: one changed EndpointSlice (100 endpoints), median / p99 | {statistics.median(idx['slice_ms']):.3f} / {percentile(idx['slice_ms'], 0.99):.3f} ms |
""")


if __name__ == "__main__":
    main()
