"""Which objects made a record: read from the snapshot that answered and the index's objects,
never worked out again from the rules. Pure.

* The tables of absolute names (the external zones, hosts files, the test double's records,
  and whatever else fills kdns.tables) keep the keys of the objects that made each name
  beside its records (`HostEntry.origins`, `PtrEntry.origins`): those are read as they are,
  whatever their kind, so a new kind of origin is explained without a change here.
* In the cluster zone a name says who owns it: everything at or below
  `<svc>.<ns>.svc.<zone>` belongs to Service ns/svc (the index gives no name to two
  Services). The EndpointSlices behind an address are the Service's slices that hold it
  (`Index.slices_of`); a PTR record comes from the owner of its target.
* What kdns makes itself (the SOA, `dns-version`, the name server's addresses when no
  kube-dns Service exists, pod names under `--pods insecure`) has a note instead of objects.
"""

from __future__ import annotations

from kdns import codes, names
from kdns.index import Index
from kdns.model import EndpointSlice, Kind, ObjectKey, Pod, ServiceType
from kdns.options import PodsMode
from kdns.result import Record
from kdns.snapshot import NS_NAME, Snapshot

KUBE_DNS_TARGET = "kube-dns.kube-system.svc"


def origins(snap: Snapshot, index: Index, record: Record) -> tuple[tuple[ObjectKey, ...], str]:
    """(the keys of the objects `record` comes from, a note for what kdns made itself)."""
    name = record.name
    zone = snap.config.zone_of(name)
    if zone is None or zone in snap.config.external_zones:
        return _table(snap, name, record)
    if zone in names.REVERSE_ZONES:
        return _reverse(snap, index, name, zone, record)
    rel = name[: -len(zone) - 1] if name != zone else ""
    return cluster(snap, index, rel, record)


def _table(snap: Snapshot, name: str, record: Record) -> tuple[tuple[ObjectKey, ...], str]:
    entry = snap.hosts.get(name)
    if entry is None and "." in name:
        entry = snap.hosts.get("*." + name.split(".", 1)[1])
    if entry is not None and entry.origins:
        return tuple(entry.origins), ""
    if record.rtype == codes.NS or (entry is not None and not entry.origins):
        return (), "kdns: the external zone's name server"
    return (), ""


def _reverse(snap: Snapshot, index: Index, name: str, zone: str, record: Record) -> tuple[tuple[ObjectKey, ...], str]:
    ip = names.ip_from_reverse(tuple(name[: -len(zone) - 1].split(".")), zone)
    if ip is None or record.rtype != codes.PTR:
        return (), ""
    if snap.ptr.get(ip):
        target = str(record.data)
        primary = snap.config.zones[0]
        rel = target[: -len(primary) - 1] if target.endswith("." + primary) else target
        return cluster(snap, index, rel, Record(target, codes.A if ":" not in ip else codes.AAAA, record.ttl, ip))
    entry = snap.xptr.get(ip)
    return (tuple(entry.origins), "") if entry is not None else ((), "")


def cluster(snap: Snapshot, index: Index, rel: str, record: Record) -> tuple[tuple[ObjectKey, ...], str]:
    """The origins of a record at relative name `rel` of a cluster zone."""
    if not rel:
        if record.rtype == codes.NS and snap.ns_target == KUBE_DNS_TARGET:
            return ((Kind.SERVICE, "kube-system", "kube-dns"),), "the Service that fronts the cluster DNS"
        return (), "kdns: the zone apex"
    if rel == NS_NAME:
        if snap.ns_target == KUBE_DNS_TARGET:
            return ((Kind.SERVICE, "kube-system", "kube-dns"),), "the name server's address: kube-dns's ClusterIP"
        return (), "kdns: the addresses it listens on (there is no kube-system/kube-dns Service)"
    if rel == "dns-version":
        return (), "kdns: the version of the Kubernetes DNS schema it serves"
    labels = rel.split(".")
    if labels[-1] == "pod" and len(labels) == 3:
        return _pod(snap, index, labels[1], str(record.data))
    if labels[-1] != "svc" or len(labels) < 3:
        return (), ""
    namespace, service = labels[-2], labels[-3]
    keys: list[ObjectKey] = [(Kind.SERVICE, namespace, service)]
    svc = index.service(namespace, service)
    below = len(labels) > 3
    if svc is None:
        return tuple(keys), ""
    if record.rtype in (codes.A, codes.AAAA) and (below or svc.type is ServiceType.HEADLESS):
        keys += [s.key for s in index.slices_of(namespace, service) if _holds(s, str(record.data))]
    elif record.rtype == codes.SRV and svc.type is ServiceType.HEADLESS:
        target = str(record.data[3])  # type: ignore[index]
        host = target.split(".", 1)[0]
        keys += [s.key for s in index.slices_of(namespace, service)
                 if any(_endpoint_name(ep.hostname, ip) == host for ep in s.endpoints for ip in ep.addresses)]
    return tuple(dict.fromkeys(keys)), ""


def _holds(sl: EndpointSlice, ip: str) -> bool:
    return any(ip in ep.addresses for ep in sl.endpoints)


def _endpoint_name(hostname: str, ip: str) -> str:
    return hostname or names.dashed_ip(ip)


def _pod(snap: Snapshot, index: Index, namespace: str, ip: str) -> tuple[tuple[ObjectKey, ...], str]:
    ns_key: ObjectKey = (Kind.NAMESPACE, "", namespace)
    declared = any(obj.key == ns_key for obj in index.objects() if obj.kind is Kind.NAMESPACE)
    keys: list[ObjectKey] = [ns_key] if declared else []
    if snap.config.pods is PodsMode.VERIFIED:
        keys += [obj.key for obj in index.objects() if isinstance(obj, Pod) and obj.namespace == namespace and ip in obj.ips]
        return tuple(keys), "--pods verified: a Pod with this address exists in the namespace"
    return tuple(keys), f"--pods insecure: the address written in the name, in an existing namespace ({namespace})"
