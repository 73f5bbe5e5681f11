"""The benchmark's cluster, written for kdns and for its peers, and the queries its pods send.

One model (`make_cluster`) is rendered as Kubernetes manifests for kdns (`write_manifests`)
and as RFC 1035 zone files with the records the Kubernetes DNS specification gives those
objects (`write_zones`), which knotd serves and the dnslib peer loads. `make_queries`
turns a model of what pods look up into the lines of a dnsperf query file; `write_inputs`
writes all three for one run.
"""

from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

ZONE = "cluster.local"
REVERSE_ZONE = "in-addr.arpa"
TTL = 5  # kdns's default --ttl
SERVICES_PER_NAMESPACE = 50
HTTP, GRPC = ("http", 80, 8080), ("grpc", 9090, 9090)  # (name, service port, endpoint port)
EXTERNAL_HOSTS = 50  # distinct names outside the cluster that workloads look up


@dataclass
class Endpoint:
    ip: str
    hostname: str | None = None

    @property
    def label(self) -> str:
        """The endpoint's DNS label: its hostname, else its dashed address."""
        return self.hostname or self.ip.replace(".", "-")


@dataclass
class Service:
    name: str
    namespace: str
    kind: str  # "clusterip", "headless" or "external"
    cluster_ip: str | None = None
    external_name: str | None = None
    endpoints: list[Endpoint] = field(default_factory=list)

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{ZONE}"


def make_cluster(services: int) -> list[Service]:
    """`services` Services: 10% headless (5 ready endpoints, half of them with hostnames as a
    StatefulSet's), 1% ExternalName (half inside the cluster, half outside), the rest
    ClusterIP with 2 ready endpoints each. Deterministic."""
    namespaces = max(1, services // SERVICES_PER_NAMESPACE)
    cluster_ips = ipaddress.ip_address("10.96.1.0")
    pod_ips = ipaddress.ip_address("10.244.0.10")
    result = []
    for i in range(services):
        svc = Service(f"svc-{i}", f"ns-{min(i // SERVICES_PER_NAMESPACE, namespaces - 1)}", "clusterip")
        if i % 100 == 55:
            svc.kind = "external"
            target = f"svc-{i + 1}.ns-{min((i + 1) // SERVICES_PER_NAMESPACE, namespaces - 1)}.svc.{ZONE}"
            svc.external_name = target if i % 200 == 55 else f"db-{i}.example.com"
            result.append(svc)
            continue
        headless = i % 10 == 0
        svc.kind = "headless" if headless else "clusterip"
        svc.cluster_ip = None if headless else str(cluster_ips + i)
        for e in range(5 if headless else 2):
            hostname = f"{svc.name}-{e}" if headless and i % 20 == 0 else None
            svc.endpoints.append(Endpoint(str(pod_ips), hostname))
            pod_ips += 1
        result.append(svc)
    return result


# --- manifests (for kdns) -------------------------------------------------------------------


def manifests(svc: Service) -> list[dict]:
    meta = {"name": svc.name, "namespace": svc.namespace}
    ports = [{"name": name, "port": port, "protocol": "TCP"} for name, port, _ in (HTTP, GRPC)]
    if svc.kind == "external":
        return [{"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"type": "ExternalName", "externalName": svc.external_name}}]
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": meta,
        "spec": {"clusterIP": svc.cluster_ip or "None", "ports": ports},
    }
    eps = []
    for ep in svc.endpoints:
        entry = {"addresses": [ep.ip], "conditions": {"ready": True}}
        if ep.hostname:
            entry["hostname"] = ep.hostname
        eps.append(entry)
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{svc.name}-abcde", "namespace": svc.namespace, "labels": {"kubernetes.io/service-name": svc.name}},
        "addressType": "IPv4", "endpoints": eps,
        "ports": [{"name": name, "port": target, "protocol": "TCP"} for name, _, target in (HTTP, GRPC)],
    }
    return [service, endpoint_slice]


def write_manifests(cluster: list[Service], directory: Path) -> None:
    """One JSON `kind: List` per namespace, as `kubectl get -o json` would write them."""
    directory.mkdir(parents=True, exist_ok=True)
    by_ns: dict[str, list[dict]] = {}
    for svc in cluster:
        by_ns.setdefault(svc.namespace, []).extend(manifests(svc))
    for ns, items in by_ns.items():
        items.insert(0, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        (directory / f"{ns}.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


# --- zone files (for knotd and dnslib) ------------------------------------------------------


def srv_records(owner: str, targets: list[tuple[str, int]]) -> list[tuple[str, str, str]]:
    """SRV records as CoreDNS and kdns weigh them: weight floor(100 / entries), at least 1."""
    weight = max(1, 100 // len(targets))
    return [(owner, "SRV", f"0 {weight} {port} {target}.") for target, port in targets]


def service_records(svc: Service) -> tuple[list, list]:
    """(forward records, reverse records) of one Service, as (owner, type, rdata)."""
    fwd: list[tuple[str, str, str]] = []
    rev: list[tuple[str, str, str]] = []
    if svc.kind == "external":
        return [(svc.fqdn, "CNAME", svc.external_name + ".")], rev
    for ep in svc.endpoints:
        name = f"{ep.label}.{svc.fqdn}"
        fwd.append((name, "A", ep.ip))
        rev.append((reverse_name(ep.ip), "PTR", name + "."))
    ports = (HTTP, GRPC)
    if svc.kind == "clusterip":
        fwd.append((svc.fqdn, "A", svc.cluster_ip))
        rev.append((reverse_name(svc.cluster_ip), "PTR", svc.fqdn + "."))
        for name, port, _ in ports:
            fwd += srv_records(f"_{name}._tcp.{svc.fqdn}", [(svc.fqdn, port)])
        fwd += srv_records(svc.fqdn, [(svc.fqdn, port) for _, port, _ in ports])
    else:
        fwd += [(svc.fqdn, "A", ep.ip) for ep in svc.endpoints]
        for name, _, target in ports:
            fwd += srv_records(f"_{name}._tcp.{svc.fqdn}", [(f"{ep.label}.{svc.fqdn}", target) for ep in svc.endpoints])
        fwd += srv_records(svc.fqdn, [(f"{ep.label}.{svc.fqdn}", target) for _, _, target in ports for ep in svc.endpoints])
    return fwd, rev


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


def apex_records(zone: str) -> list[tuple[str, str, str]]:
    """SOA and NS as kdns writes them (its NS glue is the address it listens on)."""
    records = [
        (zone, "SOA", f"ns.dns.{zone}. hostmaster.{zone}. 1 7200 1800 86400 {TTL}"),
        (zone, "NS", f"ns.dns.{ZONE}."),
    ]
    if zone == ZONE:
        records += [(f"ns.dns.{zone}", "A", "127.0.0.1"), (f"dns-version.{zone}", "TXT", '"1.1.0"')]
    return records


def zone_text(records: list[tuple[str, str, str]]) -> str:
    return "".join(f"{owner}. {TTL} IN {rtype} {rdata}\n" for owner, rtype, rdata in records)


def all_records(cluster: list[Service]) -> tuple[list, list]:
    """(cluster.local records, in-addr.arpa records) as (owner, type, rdata)."""
    fwd, rev = apex_records(ZONE), apex_records(REVERSE_ZONE)
    for svc in cluster:
        f, r = service_records(svc)
        fwd += f
        rev += r
    return fwd, rev


def write_zones(cluster: list[Service], directory: Path) -> dict[str, Path]:
    """Zone files for cluster.local and in-addr.arpa: {zone: path}."""
    fwd, rev = all_records(cluster)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {ZONE: directory / f"{ZONE}.zone", REVERSE_ZONE: directory / f"{REVERSE_ZONE}.zone"}
    paths[ZONE].write_text(zone_text(fwd))
    paths[REVERSE_ZONE].write_text(zone_text(rev))
    return paths


# --- the queries pods send ------------------------------------------------------------------

# What an application in a pod asks its resolver for, per 100 lookups, and why:
LOOKUPS = {
    "short": 35,         # `svc`: a dependency in the pod's own namespace, the common case
    "cross_ns": 20,      # `svc.ns`: a dependency in another namespace
    "fqdn": 10,          # `svc.ns.svc.cluster.local` without the final dot (Helm charts write these)
    "headless": 5,       # `svc` of a headless Service: client-side load balancing, gRPC
    "statefulset": 3,    # `svc-N-0.svc`: a StatefulSet peer (databases, queues)
    "external": 15,      # `api.example.com`: a name outside the cluster
    "srv": 5,            # `_http._tcp.svc.ns.svc.cluster.local.`: SRV-based discovery
    "ptr": 5,            # reverse lookup of a ClusterIP (access logs, meshes, metrics)
    "externalname": 2,   # `svc.ns` of an ExternalName Service
}


def search_expansions(name: str, namespace: str, ndots: int = 5) -> list[str]:
    """The names glibc asks, in order, for `name` in a pod of `namespace` (ndots:5 and the
    kubelet's search list), up to and including the first one that is in the cluster
    zone and exists. A name with a final dot is asked as is."""
    if name.endswith("."):
        return [name[:-1]]
    search = [f"{namespace}.svc.{ZONE}", f"svc.{ZONE}", ZONE]
    tried = [f"{name}.{domain}" for domain in search]
    if name.count(".") >= ndots:
        tried.insert(0, name)
    else:
        tried.append(name)
    return tried


@dataclass
class Workload:
    """A client: the pods of one Service, and the names they look up."""
    namespace: str
    deps: dict[str, list[str]]  # lookup kind -> names, as the application writes them


def make_workloads(cluster: list[Service], rng: random.Random) -> list[Workload]:
    by_kind: dict[str, list[Service]] = {}
    for svc in cluster:
        by_kind.setdefault(svc.kind, []).append(svc)
    clusterip, headless, external = by_kind["clusterip"], by_kind["headless"], by_kind.get("external", [])
    sts = [s for s in headless if s.endpoints[0].hostname]
    workloads = []
    for svc in cluster:
        ns = svc.namespace
        same = [s for s in clusterip if s.namespace == ns] or clusterip
        same_headless = [s for s in headless if s.namespace == ns] or headless
        same_sts = [s for s in sts if s.namespace == ns] or sts
        deps = {
            "short": [s.name for s in rng.sample(same, min(3, len(same)))],
            "cross_ns": [f"{s.name}.{s.namespace}" for s in rng.sample(clusterip, 2)],
            "fqdn": [s.fqdn for s in rng.sample(clusterip, 2)],
            "headless": [s.name for s in rng.sample(same_headless, 1)],
            "statefulset": [f"{s.endpoints[0].hostname}.{s.name}" for s in rng.sample(same_sts, 1)],
            "external": [f"api-{rng.randrange(EXTERNAL_HOSTS)}.example.com"],
            "srv": [f"_{port}._tcp.{s.fqdn}." for port, s in zip(("http", "grpc"), rng.sample(clusterip + headless, 2))],
            "ptr": [reverse_name(s.cluster_ip) + "." for s in rng.sample(clusterip, 2)],
            "externalname": [f"{s.name}.{s.namespace}" for s in rng.sample(external, min(1, len(external)))],
        }
        workloads.append(Workload(ns, {k: v for k, v in deps.items() if v}))
    return workloads


class Query(NamedTuple):
    qname: str
    qtype: str
    category: str  # one of CATEGORIES


# What each kind of query is, and the answer every server must give it.
CATEGORIES = {
    "search-path miss": "NXDOMAIN",
    "A, ClusterIP": "NOERROR",
    "AAAA, IPv4-only name": "NODATA",
    "A, headless": "NOERROR",
    "A, StatefulSet pod": "NOERROR",
    "A/AAAA, ExternalName": "NOERROR",  # the CNAME (and its target's A when inside the cluster)
    "SRV": "NOERROR",
    "PTR, ClusterIP": "NOERROR",
}
FOUND = {"short": "A, ClusterIP", "cross_ns": "A, ClusterIP", "fqdn": "A, ClusterIP", "headless": "A, headless",
         "statefulset": "A, StatefulSet pod", "externalname": "A/AAAA, ExternalName"}


def lookup_queries(workload: Workload, kind: str, name: str, exists: set[str]) -> list[Query]:
    """The queries one lookup sends to the cluster DNS: down the search list until a name
    exists (`exists`: every owner name of the cluster zone)."""
    if kind == "srv":
        return [Query(name.rstrip("."), "SRV", "SRV")]
    if kind == "ptr":
        return [Query(name.rstrip("."), "PTR", "PTR, ClusterIP")]
    queries = []
    for qname in search_expansions(name, workload.namespace):
        if not qname.endswith("." + ZONE):  # goes to the upstream resolvers: not ours
            break
        found = qname in exists
        for qtype in ("A", "AAAA"):  # getaddrinfo(AF_UNSPEC) asks both for every name it tries
            if not found:
                category = "search-path miss"
            elif qtype == "AAAA" and kind != "externalname":
                category = "AAAA, IPv4-only name"
            else:
                category = FOUND[kind]
            queries.append(Query(qname, qtype, category))
        if found:
            break
    return queries


def make_queries(cluster: list[Service], count: int, seed: int = 5) -> list[Query]:
    """About `count` queries: lookups drawn by `LOOKUPS` weights from random workloads."""
    rng = random.Random(seed)
    workloads = make_workloads(cluster, rng)
    exists = {owner for owner, _, _ in all_records(cluster)[0]}
    kinds = list(LOOKUPS)
    weights = [LOOKUPS[k] for k in kinds]
    queries: list[Query] = []
    for _ in range(count):  # each lookup sends at least one query
        if len(queries) >= count:
            break
        kind = rng.choices(kinds, weights)[0]
        workload = rng.choice(workloads)
        names = workload.deps.get(kind)
        if not names:
            continue
        queries += lookup_queries(workload, kind, rng.choice(names), exists)
    return queries[:count]


def mix(queries: list[Query]) -> str:
    """The share of each category in `queries`, commonest first."""
    counts: dict[str, int] = {}
    for q in queries:
        counts[q.category] = counts.get(q.category, 0) + 1
    return ", ".join(f"{k} {v / len(queries):.1%}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


# --- the files of a run ---------------------------------------------------------------------

QUERY_LINES = 100_000


@dataclass
class Inputs:
    manifests: Path
    zones: dict[str, Path]
    query_file: Path
    queries: list[Query]
    probe: str  # a name every server must answer once it is ready


def write_inputs(work: Path, services: int) -> Inputs:
    """Under `work`: the manifests, the zone files and dnsperf's query file of a cluster of
    `services` Services."""
    model = make_cluster(services)
    manifests_dir = work / "manifests"
    write_manifests(model, manifests_dir)
    zones = write_zones(model, work / "zones")
    queries = make_queries(model, QUERY_LINES)
    query_file = work / "queries.txt"
    query_file.write_text("".join(f"{q.qname} {q.qtype}\n" for q in queries))
    probe = next(s.fqdn for s in model if s.kind == "clusterip")
    return Inputs(manifests_dir, zones, query_file, queries, probe)


# --- outside names and first-time names (the forwarding and first-time paths) ----------------

UPSTREAM_ZONE = "example.com"
UPSTREAM_TTL = 300
OUTSIDE_NAMES = 1_000  # api-N.example.com that the forwarding path asks, A and AAAA


def write_upstream_zone(cluster: list[Service], directory: Path) -> Path:
    """The zone of the local upstream both forwarders ask: every outside name the queries use
    (`api-N.example.com`, A and AAAA) and the targets of ExternalNames outside the cluster."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{UPSTREAM_ZONE}. {UPSTREAM_TTL} IN SOA ns.{UPSTREAM_ZONE}. hostmaster.{UPSTREAM_ZONE}. 1 7200 1800 86400 {UPSTREAM_TTL}\n",
        f"{UPSTREAM_ZONE}. {UPSTREAM_TTL} IN NS ns.{UPSTREAM_ZONE}.\n",
        f"ns.{UPSTREAM_ZONE}. {UPSTREAM_TTL} IN A 127.0.0.1\n",
    ]
    for n in range(max(OUTSIDE_NAMES, EXTERNAL_HOSTS)):
        lines.append(f"api-{n}.{UPSTREAM_ZONE}. {UPSTREAM_TTL} IN A 192.0.2.{n % 250 + 1}\n")
        lines.append(f"api-{n}.{UPSTREAM_ZONE}. {UPSTREAM_TTL} IN AAAA 2001:db8::{n:x}\n")
    for svc in cluster:
        if svc.kind == "external" and svc.external_name.endswith("." + UPSTREAM_ZONE):
            lines.append(f"{svc.external_name}. {UPSTREAM_TTL} IN A 198.51.100.{len(lines) % 250 + 1}\n")
    path = directory / f"{UPSTREAM_ZONE}.zone"
    path.write_text("".join(lines))
    return path


def outside_queries(names: int = OUTSIDE_NAMES) -> list[Query]:
    """What pods ask the cluster DNS last for a name outside the cluster (after the
    search-path misses): the name itself, A and AAAA. Every one goes to the upstream once,
    and then comes from the forwarding cache."""
    return [Query(f"api-{n}.{UPSTREAM_ZONE}", qtype, "outside, forwarded") for n in range(names) for qtype in ("A", "AAAA")]


def first_time_lines(count: int, namespaces: int, tag: str) -> str:
    """`count` dnsperf lines, each a name asked for the first time (unique by `tag` and
    number): search-path expansions of outside names (`api-<tag>-N.example.com.<ns>.svc.
    cluster.local`) and Services that do not exist (`<tag>-N.<ns>.svc.cluster.local`), A
    and AAAA in turn. All NXDOMAIN."""
    out = []
    for n in range(count):
        ns = f"ns-{n % namespaces}"
        name = f"api-{tag}-{n}.{UPSTREAM_ZONE}.{ns}.svc.{ZONE}" if n % 2 == 0 else f"{tag}-{n}.{ns}.svc.{ZONE}"
        out.append(f"{name} {'A' if n % 4 < 2 else 'AAAA'}\n")
    return "".join(out)
