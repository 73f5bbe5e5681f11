"""Why a name has no records: NXDOMAIN rather than NODATA, SERVFAIL before the first sync,
and the names that do exist when the one asked looks like a typo of them. Pure.

Everything here reads the snapshot that answered (and the index's objects of the same
moment): whether a name exists, what it holds, which Services, EndpointSlices and
namespaces are there. It says why in the terms of the objects a user wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from kdns import codes, names
from kdns.config import OutsideNames
from kdns.index import Index
from kdns.lint.checks import distance, typo_limit
from kdns.model import EndpointSlice, Kind, ObjectKey, Port, Service, ServiceType
from kdns.options import PodsMode
from kdns.records import Node
from kdns.result import find_zone
from kdns.snapshot import Snapshot
from kdns.sources.convert import SERVICE_NAME_LABEL

MAX_NEAREST = 5


def why_missing(snap: Snapshot, index: Index, name: str, qtype: int, rcode: int = codes.NXDOMAIN) -> str:
    """Why `name` (absolute, lowercase) has no `qtype` record (`rcode`: NXDOMAIN, NOERROR for
    NODATA, or SERVFAIL)."""
    labels = tuple(name.split(".")) if name else ()
    found = find_zone(labels, snap.config.all_zones)
    if found is None:
        return _outside(snap, name)
    zone, rel = found
    if any("." in label for label in rel):
        return "a label of the name holds a dot: no name kdns holds has one"
    if zone in snap.config.external_zones:
        return _external(snap, name, zone, qtype)
    if not rel:
        return f"{zone}. is the zone's apex: it holds only SOA and NS records"
    if zone in names.REVERSE_ZONES:
        return _reverse(snap, rel, zone)
    node = snap.node(".".join(rel))
    if node is not None:
        return _nodata(node, ".".join(rel), qtype)
    if rcode == codes.NOERROR and rel[-1] == "pod":
        return f"a pod name holds one address, of the family its name spells: no {codes.TYPES.get(qtype, str(qtype))} record (NODATA)"
    if not snap.synced:
        return f"kdns has not synced with its sources yet (waiting for {', '.join(sorted(index.pending_sources)) or 'them'}): " \
               "a name it does not know may still come, so it says SERVFAIL rather than NXDOMAIN"
    return _cluster(snap, index, rel, zone)


def _nodata(node: Node, rel: str, qtype: int) -> str:
    held = [t for t, present in (("A", node.a), ("AAAA", node.aaaa), ("SRV", node.srv), ("CNAME", node.cname), ("TXT", node.txt))
            if present]
    asked = codes.TYPES.get(qtype, str(qtype))
    if held:
        return f"the name exists with {', '.join(held)} records but none of type {asked}: NODATA (NOERROR, no records)"
    if rel.endswith(".svc") and rel.count(".") == 1:
        return f"namespace {rel.split('.')[0]} exists: the name exists without records (NODATA), it holds the Services' names"
    return "the name exists only because names below it do (an empty non-terminal): NODATA, not NXDOMAIN"


def _outside(snap: Snapshot, name: str) -> str:
    entry = snap.hosts.get(name)
    if entry is not None and not entry.rrsets:
        return "the name lies above a name kdns holds records for: it exists, without records (NODATA)"
    if snap.config.outside_names is OutsideNames.NXDOMAIN:
        return "outside every zone kdns serves, no upstream takes it and kdns holds no record for it; with --outside-names " \
               "nxdomain that is NXDOMAIN (a closed world)"
    return "outside every zone kdns serves"


def _external(snap: Snapshot, name: str, zone: str, qtype: int) -> str:
    entry = snap.hosts.get(name)
    if entry is None:
        return f"no Service has an external address (spec.externalIPs, status.loadBalancer.ingress) or a hostname " \
               f"annotation giving it this name in the external zone {zone}: NXDOMAIN"
    if not entry.rrsets:
        return "the name exists only because names below it do: NODATA"
    held = ", ".join(codes.TYPES.get(rr.rtype, str(rr.rtype)) for rr in entry.rrsets)
    return f"the name exists with {held} records but none of type {codes.TYPES.get(qtype, str(qtype))}: NODATA"


def _reverse(snap: Snapshot, rel: tuple[str, ...], zone: str) -> str:
    ip = names.ip_from_reverse(rel, zone)
    if ip is None:
        return "only complete addresses have reverse names (four decimal octets under in-addr.arpa, 32 nibbles under " \
               "ip6.arpa): NXDOMAIN"
    if snap.ptr.get(ip) or snap.xptr.get(ip):
        return "the address has a PTR record and nothing else: NODATA"
    return f"no Service has {ip} as a ClusterIP or an external address, and no ready endpoint has it: NXDOMAIN"


def _cluster(snap: Snapshot, index: Index, rel: tuple[str, ...], zone: str) -> str:
    kind = rel[-1]
    if kind == "pod":
        return _pod(snap, rel)
    if kind != "svc":
        return f"names in {zone} end in .svc.{zone} (Services) or .pod.{zone} (Pods), or are dns-version and ns.dns: NXDOMAIN"
    if len(rel) == 2:
        return f"no namespace {rel[0]}: no Namespace object and no object in it"
    namespace, service = rel[-2], rel[-3]
    if namespace not in snap.namespaces:
        return f"no namespace {namespace}: no Namespace object and no object in it"
    svc = index.service(namespace, service)
    if svc is None:
        return f"no Service {namespace}/{service}" + _orphans(index, namespace, service)
    base = f"Service {namespace}/{service}"
    below = rel[:-3]
    if svc.type is ServiceType.EXTERNAL_NAME:
        if below:
            return f"{base} is an ExternalName Service: no name below it exists"
        return f"{base} is an ExternalName Service to an IP address ({svc.external_name}), which is not served (as in CoreDNS)"
    slices = index.slices_of(namespace, service)
    if svc.type is ServiceType.HEADLESS and not any(ep for sl in slices for ep in sl.endpoints):
        if not slices:
            return f"{base} is headless and no EndpointSlice is labelled {SERVICE_NAME_LABEL}={service}: a headless " \
                   "Service without ready endpoints has no names (spec 2.4.1)" + _orphans(index, namespace, service)
        return f"{base} is headless and none of the endpoints of its EndpointSlices ({', '.join(s.name for s in slices)}) " \
               "is ready: a headless Service without ready endpoints has no names (spec 2.4.1)"
    if len(below) == 1 and below[0].startswith("_"):
        protocols = sorted({p.protocol for p in _ports(svc, slices) if p.name})
        return f"{base} has no named port with protocol {below[0][1:]} (its named ports' protocols: {', '.join(protocols) or 'none'})"
    if len(below) == 1:
        known = sorted({ep.hostname or names.dashed_ip(ip) for sl in slices for ep in sl.endpoints for ip in ep.addresses})
        return f"no ready endpoint of {base} is named {below[0]} (its endpoints: {', '.join(known) or 'none'}); an endpoint " \
               "is named by its hostname, else by its dashed address, and endpoints that are not ready have no names"
    if len(below) == 2 and below[0].startswith("_") and below[1].startswith("_"):
        ports = sorted({f"_{p.name}._{p.protocol}" for p in _ports(svc, slices) if p.name})
        return f"{base} has no port named {below[0][1:]} with protocol {below[1][1:]} (its named ports: " \
               f"{', '.join(ports) or 'none; unnamed ports get no SRV records'})"
    return f"too deep: below {service}.{namespace}.svc only endpoint names and _<port>._<protocol> names exist"


def _ports(svc: Service, slices: list[EndpointSlice]) -> list[Port]:
    return list(svc.ports) if svc.type is ServiceType.CLUSTER_IP else [p for sl in slices for p in sl.ports]


def _orphans(index: Index, namespace: str, service: str) -> str:
    """EndpointSlices in the namespace that name a Service that does not exist, when one of
    them names something close to `service` (a typo in the label)."""
    found = []
    for obj in index.objects():
        if (isinstance(obj, EndpointSlice) and obj.namespace == namespace and index.service(namespace, obj.service) is None
                and (obj.service == service or distance(obj.service, service) <= typo_limit(service))):
            found.append(f"{obj.name} (labelled for {obj.service!r})")
    if not found:
        return ""
    return f"; EndpointSlices in {namespace} whose {SERVICE_NAME_LABEL} label names no Service: {', '.join(found)}"


def _pod(snap: Snapshot, rel: tuple[str, ...]) -> str:
    if snap.config.pods is PodsMode.DISABLED:
        return "pod names are off (--pods disabled): NXDOMAIN"
    if len(rel) != 3:
        return "a pod name is <dashed-address>.<namespace>.pod.<zone>: NXDOMAIN"
    if rel[1] not in snap.namespaces:
        return f"no namespace {rel[1]}: pod names exist only in existing namespaces"
    ip = names.ip_from_dashed(rel[0])
    if ip is None:
        return f"{rel[0]} is not a dashed address (10-244-1-10, fd00-10-244-1--a): NXDOMAIN"
    return f"--pods verified: no Pod in {rel[1]} has the address {ip}"


def nearest(snap: Snapshot, index: Index, name: str) -> tuple[str, ...]:
    """Names that exist and differ from `name` in one label, by at most two edits there."""
    labels = tuple(name.split(".")) if name else ()
    found = find_zone(labels, snap.config.zones + snap.config.external_zones)
    if found is not None and found[0] in snap.config.zones:
        zone, rel = found
        close = _close(rel, snap.names, lambda k: snap.node(k) != Node())
        return tuple(f"{names.join(k, zone)}." for k in close)
    return tuple(f"{k}." for k in _close(labels, snap.hosts, lambda k: bool(snap.hosts[k].rrsets)))


def _close(labels: tuple[str, ...], candidates: Iterable[str], holds: Callable[[str], bool]) -> list[str]:
    """The candidates that differ from `labels` in one label, closest first, of those that
    `holds` records. (A candidate is first matched, in C, against the name with each of its
    labels left out: the scan over 60,000 names of 10,000 Services takes tens of ms, not the
    hundreds of splitting every name.)"""
    n = len(labels)
    shapes = [(".".join(labels[:i]) + "." if i else "", "." + ".".join(labels[i + 1 :]) if i < n - 1 else "") for i in range(n)]
    scored = []
    for candidate in candidates:
        for prefix, suffix in shapes:
            if candidate.startswith(prefix) and candidate.endswith(suffix):
                break
        else:
            continue
        other = candidate.split(".")
        if len(other) != n:
            continue
        differ = [i for i, (a, b) in enumerate(zip(labels, other, strict=True)) if a != b]
        if len(differ) != 1:
            continue
        asked = labels[differ[0]]
        d = distance(asked, other[differ[0]])
        if d <= typo_limit(asked) and holds(candidate):
            scored.append((d, candidate))
    return [c for _, c in sorted(scored)[:MAX_NEAREST]]


def describe_kinds(keys: Iterable[ObjectKey]) -> str:
    """What made an outside name's records, in words: "a hosts file", "the test double"..."""
    kinds = {key[0] for key in keys}
    if kinds == {Kind.HOSTS}:
        return "hosts file"
    if kinds == {Kind.RECORD}:
        return "test double record"
    return ", ".join(sorted(str(kind) for kind in kinds)) or "records kdns holds"
