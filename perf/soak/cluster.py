"""The soak's cluster: Services in the test API server, the changes made to them while the
soak runs, and what kdns must answer for each name at any moment.

* `make_cluster` builds 300 Services (by default) in 6 namespaces: every tenth headless with
  5 ready endpoints (every twentieth with StatefulSet hostnames), a few ExternalName (half of
  them `svc-N.ns-M.svc.cluster.local`, the others outside names the stub upstream holds), the
  rest ClusterIP with 2 ready endpoints. A third of the ClusterIP and headless Services are
  *churnable*: they get new ClusterIPs and endpoints, are deleted and created again. The
  others are never touched (the "stable" names), nor are the targets of the ExternalNames
  inside (whose answer, the CNAME, is then always NOERROR). `churn-K` Services come and go.
* `Churn.step()` makes one random change through the API; before each change it records the
  answer every affected name will have in `Expected` (expected.py, which judges answers).
* `make_queries` writes dnsperf's query file: the search-path mix of perf/bench (what pods
  send with ndots:5), plus the outside names themselves (forwarded, then cached) and the
  churned names.
"""

from __future__ import annotations

import ipaddress
import math
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

from perf.bench import cluster as bench_cluster
from perf.soak.expected import Answer, Expected

ZONE = "cluster.local"
NAMESPACES = 6
OUTSIDE_HOSTS = bench_cluster.EXTERNAL_HOSTS  # api-N.example.com, N < 50, as perf/bench's workloads ask
CHURN_NAMES = 60  # churn-0 .. churn-59, created and deleted while the soak runs
PORTS = [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "grpc", "port": 9090, "protocol": "TCP"}]
SLICE_PORTS = [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "grpc", "port": 9090, "protocol": "TCP"}]


def outside_name(n: int) -> str:
    return f"api-{n}.example.com"


def outside_ip(n: int) -> str:
    return str(ipaddress.ip_address("198.51.100.1") + n)


def external_target(i: int) -> str:
    return f"ext-{i}.example.net"


def external_target_ip(i: int) -> str:
    return str(ipaddress.ip_address("203.0.113.0") + i % 250)


def stub_records(external_targets: list[str]) -> list[str]:
    """Zone-file lines for the stub upstream: every outside name the mix and the checks ask."""
    lines = [f"{outside_name(n)}. 300 IN A {outside_ip(n)}" for n in range(OUTSIDE_HOSTS)]
    for target in external_targets:
        i = int(target.split("-")[1].split(".")[0])
        lines.append(f"{target}. 300 IN A {external_target_ip(i)}")
    return lines


@dataclass
class Endpoint:
    ip: str
    hostname: str | None = None
    ready: bool = True


@dataclass
class Svc:
    name: str
    namespace: str
    kind: str  # "clusterip", "headless", "external"
    cluster_ip: str | None = None
    external_name: str | None = None
    endpoints: list[Endpoint] = field(default_factory=list)
    churnable: bool = False
    present: bool = True
    statefulset: bool = False  # headless with hostnames
    changed: float = -math.inf  # time.monotonic() of the last change

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{ZONE}"

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    def service(self) -> dict:
        meta = {"name": self.name, "namespace": self.namespace}
        if self.kind == "external":
            return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"type": "ExternalName", "externalName": self.external_name}}
        return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"clusterIP": self.cluster_ip or "None", "ports": PORTS}}

    def slice(self) -> dict:
        eps = []
        for ep in self.endpoints:
            entry: dict = {"addresses": [ep.ip], "conditions": {"ready": ep.ready}}
            if ep.hostname:
                entry["hostname"] = ep.hostname
            eps.append(entry)
        return {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{self.name}-abcde", "namespace": self.namespace, "labels": {"kubernetes.io/service-name": self.name}},
            "addressType": "IPv4", "endpoints": eps, "ports": SLICE_PORTS,
        }

    def answers(self) -> dict[str, Answer]:
        """The A answer of each name this Service gives (None: NXDOMAIN)."""
        if self.kind == "external":
            return {}
        result: dict[str, Answer] = {}
        ready = [ep for ep in self.endpoints if ep.ready]
        if not self.present:
            result[self.fqdn] = None
        elif self.kind == "clusterip":
            result[self.fqdn] = frozenset([self.cluster_ip])
        else:
            result[self.fqdn] = frozenset(ep.ip for ep in ready) or None
        if self.kind == "headless" and self.statefulset:
            for e in range(5):
                host = f"{self.name}-{e}"
                ips = frozenset(ep.ip for ep in ready if ep.hostname == host) if self.present else frozenset()
                result[f"{host}.{self.fqdn}"] = ips or None
        return result


class Addresses:
    """Unique addresses for new ClusterIPs and pods (never reused, so every change is visible)."""

    def __init__(self) -> None:
        self._cluster = ipaddress.ip_address("10.100.0.1")
        self._pod = ipaddress.ip_address("10.245.0.1")

    def cluster_ip(self) -> str:
        self._cluster += 1
        return str(self._cluster)

    def pod_ip(self) -> str:
        self._pod += 1
        return str(self._pod)


def make_cluster(services: int) -> tuple[list[dict], list[Svc]]:
    """(Namespace objects, Services). Deterministic."""
    namespaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{n}"}} for n in range(NAMESPACES)]
    per_ns = max(1, math.ceil(services / NAMESPACES))
    cluster_ips = ipaddress.ip_address("10.96.1.0")
    pod_ips = ipaddress.ip_address("10.244.0.10")
    svcs: list[Svc] = []
    targets: set[int] = set()  # Services an ExternalName inside points to: never churned, so the CNAME's verdict stays known
    for i in range(services):
        ns = f"ns-{min(i // per_ns, NAMESPACES - 1)}"
        svc = Svc(f"svc-{i}", ns, "clusterip")
        if i % 100 == 55 and i + 1 < services:  # an ExternalName inside the cluster
            svc.kind = "external"
            svc.external_name = f"svc-{i + 1}.ns-{min((i + 1) // per_ns, NAMESPACES - 1)}.svc.{ZONE}"
            targets.add(i + 1)
        elif i % 50 == 27:  # an ExternalName outside: the stub upstream holds its target
            svc.kind = "external"
            svc.external_name = external_target(i)
        else:
            headless = i % 10 == 0
            svc.kind = "headless" if headless else "clusterip"
            svc.statefulset = headless and i % 20 == 0
            svc.cluster_ip = None if headless else str(cluster_ips + i)
            for e in range(5 if headless else 2):
                svc.endpoints.append(Endpoint(str(pod_ips), f"{svc.name}-{e}" if svc.statefulset else None))
                pod_ips += 1
            svc.churnable = i % 3 == 1 and i not in targets
        svcs.append(svc)
    return namespaces, svcs


def churn_name(k: int) -> tuple[str, str]:
    return f"ns-{k % NAMESPACES}", f"churn-{k}"


# --- the changes ----------------------------------------------------------------------------


class Churn:
    """Random Service changes through the API, recorded in `Expected` before they are made."""

    OPS: ClassVar[dict[str, int]] = {"modify clusterIP": 30, "modify endpoints": 25, "delete": 10, "recreate": 10, "create churn-K": 15, "delete churn-K": 10}

    def __init__(self, api, svcs: list[Svc], expected: Expected, seed: int = 7) -> None:
        self.api = api
        self.svcs = svcs
        self.expected = expected
        self.rng = random.Random(seed)
        self.addresses = Addresses()
        self.counts: dict[str, int] = {op: 0 for op in self.OPS}
        self.churn: dict[int, Svc] = {}
        for k in range(CHURN_NAMES):  # never created yet: NXDOMAIN
            ns, name = churn_name(k)
            svc = Svc(name, ns, "clusterip", present=False)
            self.churn[k] = svc
        self.lock = threading.Lock()  # one change at a time; Expected has its own lock

    def all_svcs(self) -> list[Svc]:
        return self.svcs + list(self.churn.values())

    def record_initial(self) -> None:
        for svc in self.all_svcs():
            self.expected.record(svc.answers(), -math.inf)

    def _change(self, svc: Svc, mutate, apply) -> None:
        """Mutate the model, record the names' new answers, then make the change in the API."""
        before = svc.answers()
        mutate()
        now = time.monotonic()
        after = svc.answers()
        for name in before:
            after.setdefault(name, None)
        self.expected.record(after, now)
        svc.changed = now
        apply()

    def _new_endpoints(self, svc: Svc) -> list[Endpoint]:
        if svc.kind == "headless":
            count = self.rng.choice([0, 1, 2, 3, 4, 5, 5]) if self.rng.random() < 0.3 else 5
        else:
            count = self.rng.choice([1, 2, 3])
        eps = [Endpoint(self.addresses.pod_ip(), f"{svc.name}-{e}" if svc.statefulset else None) for e in range(count)]
        if eps and self.rng.random() < 0.2:
            self.rng.choice(eps).ready = False
        return eps

    def step(self) -> str:
        with self.lock:
            ops = list(self.OPS)
            op = self.rng.choices(ops, [self.OPS[o] for o in ops])[0]
            if self._do(op):
                self.counts[op] += 1
                return op
            return ""

    def _do(self, op: str) -> bool:
        rng, api = self.rng, self.api
        churnable = [s for s in self.svcs if s.churnable]
        present = [s for s in churnable if s.present]
        if op == "modify clusterIP":
            choices = [s for s in present if s.kind == "clusterip"]
            if not choices:
                return False
            svc = rng.choice(choices)

            def mutate():
                svc.cluster_ip = self.addresses.cluster_ip()
            self._change(svc, mutate, lambda: api.apply(svc.service()))
        elif op == "modify endpoints":
            if not present:
                return False
            svc = rng.choice(present)

            def mutate():
                svc.endpoints = self._new_endpoints(svc)
            self._change(svc, mutate, lambda: api.apply(svc.slice()))
        elif op == "delete":
            if len(present) < len(churnable) * 0.7:  # keep most of them around
                return False
            svc = rng.choice(present)
            self._change(svc, lambda: setattr(svc, "present", False), lambda: self._delete(svc))
        elif op == "recreate":
            gone = [s for s in churnable if not s.present]
            if not gone:
                return False
            svc = rng.choice(gone)

            def mutate():
                svc.present = True
                svc.cluster_ip = self.addresses.cluster_ip() if svc.kind == "clusterip" else None
                svc.endpoints = self._new_endpoints(svc)
            self._change(svc, mutate, lambda: self._create(svc))
        elif op == "create churn-K":
            absent = [s for s in self.churn.values() if not s.present]
            if not absent:
                return False
            svc = rng.choice(absent)

            def mutate():
                svc.present = True
                svc.kind = "headless" if rng.random() < 0.3 else "clusterip"
                svc.cluster_ip = self.addresses.cluster_ip() if svc.kind == "clusterip" else None
                svc.endpoints = [Endpoint(self.addresses.pod_ip()) for _ in range(2)]
            self._change(svc, mutate, lambda: self._create(svc))
        elif op == "delete churn-K":
            there = [s for s in self.churn.values() if s.present]
            if not there:
                return False
            svc = rng.choice(there)
            self._change(svc, lambda: setattr(svc, "present", False), lambda: self._delete(svc))
        return True

    def _create(self, svc: Svc) -> None:
        self.api.apply(svc.slice())  # the slice first: a Service is never seen with stale endpoints
        self.api.apply(svc.service())

    def _delete(self, svc: Svc) -> None:
        self.api.delete("Service", svc.namespace, svc.name)  # the Service first, as the controllers do
        self.api.delete("EndpointSlice", svc.namespace, f"{svc.name}-abcde")


def load(api, namespaces: list[dict], svcs: list[Svc]) -> None:
    for ns in namespaces:
        api.apply(ns)
    for svc in svcs:
        if svc.kind != "external":
            api.apply(svc.slice())
        api.apply(svc.service())


# --- dnsperf's queries ----------------------------------------------------------------------


def as_bench(svcs: list[Svc]) -> list:
    """The cluster in perf/bench's model, for its lookup generator."""
    out = []
    for s in svcs:
        eps = [bench_cluster.Endpoint(ep.ip, ep.hostname) for ep in s.endpoints]
        out.append(bench_cluster.Service(s.name, s.namespace, s.kind, s.cluster_ip, s.external_name, eps))
    return out


def make_queries(svcs: list[Svc], count: int, seed: int = 5) -> list[bench_cluster.Query]:
    """perf/bench's lookups (pods' search paths, ndots:5) with the outside query itself kept
    (it is forwarded to the stub upstream and cached), plus 3% A queries for churn-K names."""
    rng = random.Random(seed)
    model = as_bench(svcs)
    workloads = bench_cluster.make_workloads(model, rng)
    exists = {owner for owner, _, _ in bench_cluster.all_records(model)[0]}
    kinds = list(bench_cluster.LOOKUPS)
    weights = [bench_cluster.LOOKUPS[k] for k in kinds]
    queries: list[bench_cluster.Query] = []
    while len(queries) < count:
        if rng.random() < 0.03:
            ns, name = churn_name(rng.randrange(CHURN_NAMES))
            queries.append(bench_cluster.Query(f"{name}.{ns}.svc.{ZONE}", "A", "churn-K (comes and goes)"))
            continue
        kind = rng.choices(kinds, weights)[0]
        workload = rng.choice(workloads)
        names = workload.deps.get(kind)
        if not names:
            continue
        name = rng.choice(names)
        queries += bench_cluster.lookup_queries(workload, kind, name, exists)
        if kind == "external":
            queries += [bench_cluster.Query(name, "A", "outside, forwarded"), bench_cluster.Query(name, "AAAA", "outside, forwarded")]
    return queries[:count]


def describe(svcs: list[Svc]) -> str:
    """The cluster in a sentence, for the report."""
    kinds = Counter(s.kind for s in svcs)
    outside = sum(1 for s in svcs if s.kind == "external" and not s.external_name.endswith(ZONE))
    sts = sum(1 for s in svcs if s.statefulset)
    churnable = sum(1 for s in svcs if s.churnable)
    return (f"{len(svcs)} Services in {NAMESPACES} namespaces: {kinds['clusterip']} ClusterIP with 2 endpoints, "
            f"{kinds['headless']} headless with 5 ({sts} of them with StatefulSet hostnames), {kinds['external']} ExternalName "
            f"({outside} to outside names); {churnable} of the ClusterIP and headless ones are churned, the rest never change")
