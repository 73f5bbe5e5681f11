"""The record index: Kubernetes objects in, immutable snapshots of DNS data out.

`Index.apply(events, now)` is the only writer. It keeps the objects it was given, works out
which Services an event touches, recomputes the records of just those Services, and
publishes a new `Snapshot` that shares everything else with the previous one (the name
tables are persistent maps). Readers take the current snapshot once per query and never see
a half-applied batch.

Rules kept here (see README "What kdns answers" for the user-facing list):

* Forward names are stored relative to the zone ("web.default.svc"), once for all zones.
* A name owned by a Service is recomputed from that Service and all of its EndpointSlices;
  no name is owned by two Services. Reverse (PTR) names can be claimed by several Services,
  so they are merged per IP: ClusterIP owners win over endpoint owners, as in CoreDNS.
* An update whose records equal the old ones changes nothing: same snapshot, same serial.
* Names outside the cluster zones (the external zones, hosts files, the test double's
  records) are absolute and live in kdns.tables, which the same batches update: a Service's
  external names are recomputed with its cluster names. The external zones have a serial of
  their own: the Unix time of their last change, never ahead of the clock, so that it never
  goes back, not even across a restart (two changes in one second share it, as in CoreDNS).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

import immutables

from kdns import names
from kdns.config import DnsConfig, PodsMode
from kdns.hostindex import KUBE_DNS, HostIndex, Published
from kdns.model import (
    WEB_KINDS,
    Delete,
    EndpointSlice,
    Event,
    Gateway,
    Ingress,
    IngressClass,
    Kind,
    KubeObject,
    Namespace,
    ObjectKey,
    Pod,
    Route,
    Service,
    ServiceType,
    StaticRecords,
    Synced,
    Upsert,
)
from kdns.records import EMPTY, Claim, Contribution, Node, PtrClaims, SvcKey, Value, address_node, service_records
from kdns.snapshot import DNS_VERSION_TTL, NS_NAME, Change, Snapshot

DNS_SCHEMA_VERSION = "1.1.0"

__all__ = ["DNS_VERSION_TTL", "NS_NAME", "Change", "Index", "Snapshot"]

Names = immutables.MapMutation[str, Value]  # the names map while the writer changes it


class Index:
    """Applies change events and publishes snapshots. Pure: no I/O, no clock of its own."""

    def __init__(self, config: DnsConfig, *, sources: Iterable[str] = (), now: float = 0.0):
        self.config = config
        self._pending_sources = set(sources)
        self._services: dict[SvcKey, Service] = {}
        self._slices: dict[tuple[str, str], EndpointSlice] = {}
        self._slices_of: dict[SvcKey, set[tuple[str, str]]] = {}
        self._pods: dict[tuple[str, str], Pod] = {}
        self._pods_at: dict[str, set[tuple[str, str]]] = {}  # Pod IP -> Pods (autopath only)
        self._explicit_namespaces: set[str] = set()
        self._namespace_refs: Counter[str] = Counter()
        # Per Service, the names and IPs it contributes (the records live in the snapshot).
        self._owned: dict[SvcKey, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._claims = PtrClaims()
        self._cname_owners: dict[SvcKey, str] = {}  # ExternalNames pointing into our zones
        self._outside_cnames: dict[SvcKey, tuple[str, str]] = {}  # the others: (owner, target), both names
        self.hosts = HostIndex(config)  # the external zones and the names outside the zones

        static = {
            "": EMPTY,
            "svc": EMPTY,
            "pod": EMPTY,
            "dns": EMPTY,
            "dns-version": Node(txt=(DNS_SCHEMA_VERSION,)),
            NS_NAME: address_node(config.ns_addresses),
        }
        self.snapshot = Snapshot(
            config=config,
            names=immutables.Map(static),
            ptr=immutables.Map(),
            namespaces=frozenset(),
            pod_ips=immutables.Map(),
            client_ns=immutables.Map(),
            ns_target=NS_NAME,
            serial=max(1, int(now)),
            synced=not self._pending_sources,
            external_serial=max(1, int(now)),
        )
        if config.external_zones:  # the name servers' names exist from the start
            published = self._publish(set(), set(), self.snapshot)
            self.snapshot = replace(self.snapshot, hosts=published.hosts, xptr=published.xptr)

    # -- queries about the objects held (for logs, metrics and reconfiguration) ----------

    def objects(self) -> list[KubeObject]:
        """Every object held, for building an index with another configuration."""
        namespaces = [self.hosts.namespace(name) for name in sorted(self._explicit_namespaces)]
        return [*namespaces, *self._services.values(), *self._slices.values(), *self._pods.values(), *self.hosts.static.values(),
                *self.hosts.web.objects()]

    @property
    def pending_sources(self) -> frozenset[str]:
        return frozenset(self._pending_sources)

    def service(self, namespace: str, name: str) -> Service | None:
        return self._services.get((namespace, name))

    def slices_of(self, namespace: str, service: str) -> list[EndpointSlice]:
        """The EndpointSlices labelled as Service namespace/service's, by name (for explain)."""
        return self._slices_for((namespace, service))

    def counts(self) -> dict[str, int]:
        return {
            "namespaces": len(self.snapshot.namespaces),
            "services": len(self._services),
            "endpointslices": len(self._slices),
            "pods": len(self._pods),
        }

    # -- the writer ---------------------------------------------------------------------------

    def apply(self, events: Iterable[Event], now: float) -> Change:
        """Apply a batch of events; return the new snapshot and what changed."""
        dirty: set[SvcKey] = set()
        dirty_static: set[ObjectKey] = set()
        pods_changed: dict[tuple[str, str], int] = {}  # (namespace, IP) -> change in pod count
        namespaces_before = self.snapshot.namespaces
        synced_before = self.snapshot.synced
        for event in events:
            if isinstance(event, Upsert):
                self._upsert(event.obj, dirty, pods_changed, dirty_static)
            elif isinstance(event, Delete):
                self._delete(event.key[0], event.key[1], event.key[2], dirty, pods_changed, dirty_static)
            elif isinstance(event, Synced):
                self._pending_sources.discard(event.source)
            else:  # pragma: no cover - a source sent something that is not an event
                raise TypeError(f"not an index event: {event!r}")

        namespaces = frozenset(self._explicit_namespaces | set(+self._namespace_refs))
        synced = not self._pending_sources
        touched: set[str] = set()
        touched_ips: set[str] = set()
        old = self.snapshot
        with old.names.mutate() as names, old.ptr.mutate() as ptr:
            for key in dirty:
                self._recompute(key, names, ptr, touched, touched_ips)
            ns_target = old.ns_target
            if KUBE_DNS in dirty:
                ns_target = self._refresh_ns(names, touched)
            if namespaces != namespaces_before:
                self._refresh_namespaces(namespaces_before, namespaces, names)
            pod_ips = self._refresh_pods(pods_changed, touched)
            new_names = names.finish()
            new_ptr = ptr.finish()
        published = self._publish(dirty, dirty_static, old, synced)
        absolute = set(published.names)
        if touched or absolute:
            # Answers that follow a CNAME into our own data embed the target's records: they
            # change whenever anything does.
            touched.update(self._cname_owners.values())
            absolute.update(self.hosts.chasers)
        if absolute:
            touched.update(owner for owner, target in self._outside_cnames.values() if target in absolute)

        # Pod names and `<ns>.svc` depend on which namespaces exist; the SERVFAIL answers
        # given before the first sync are never memoised, but flush anyway to be plain.
        # So does a wildcard's answer that follows a CNAME into our data (the names it
        # answered cannot be listed).
        wild_chase = bool(touched or absolute) and bool(self.hosts.tables.wild_chasers)
        everything = namespaces != namespaces_before or synced != synced_before or published.wildcard or wild_chase
        data_changed = bool(touched or touched_ips or published.ips) or namespaces != namespaces_before
        client_ns = self._refresh_client_ns(pods_changed)
        # Pod bookkeeping can change without any answer changing (a second Pod on an address):
        # a new snapshot then, with nothing to invalidate and the same serial.
        bookkeeping = pod_ips is not old.pod_ips or client_ns is not old.client_ns
        if not (data_changed or everything or bookkeeping or absolute):
            return Change(old)
        self.snapshot = Snapshot(
            config=self.config,
            names=new_names,
            ptr=new_ptr,
            namespaces=namespaces,
            pod_ips=pod_ips,
            client_ns=client_ns,
            ns_target=ns_target,
            serial=max(old.serial + 1, int(now)) if data_changed else old.serial,
            synced=synced,
            hosts=published.hosts,
            xptr=published.xptr,
            external_serial=max(old.external_serial, int(now)) if published.external else old.external_serial,
        )
        return Change(self.snapshot, frozenset(touched), frozenset(touched_ips | published.ips), everything, frozenset(absolute))

    def _publish(self, dirty: set[SvcKey], dirty_static: set[ObjectKey], old: Snapshot, synced: bool = True) -> Published:
        return self.hosts.publish(dirty, dirty_static, old.hosts, old.xptr, self._services.get, self._slices_for, synced=synced)

    def _slices_for(self, key: SvcKey) -> list[EndpointSlice]:
        return [self._slices[k] for k in sorted(self._slices_of.get(key, ()))]

    def _upsert(self, obj: KubeObject, dirty: set[SvcKey], pods_changed: dict[tuple[str, str], int],
                dirty_static: set[ObjectKey]) -> None:
        if isinstance(obj, (StaticRecords, Ingress, IngressClass, Gateway, Route)):
            self.hosts.upsert(obj, dirty_static)
        elif isinstance(obj, Service):
            key = (obj.namespace, obj.name)
            old = self._services.get(key)
            if old == obj:
                return
            if old is None:
                self._namespace_refs[obj.namespace] += 1
            self._services[key] = obj
            dirty.add(key)
        elif isinstance(obj, EndpointSlice):
            key = (obj.namespace, obj.name)
            old_slice = self._slices.get(key)
            if old_slice == obj:
                return
            if old_slice is None:
                self._namespace_refs[obj.namespace] += 1
            else:
                self._unlink_slice(old_slice, dirty)
            self._slices[key] = obj
            self._slices_of.setdefault((obj.namespace, obj.service), set()).add(key)
            dirty.add((obj.namespace, obj.service))
        elif isinstance(obj, Pod):
            key = (obj.namespace, obj.name)
            old_pod = self._pods.get(key)
            if old_pod is None:
                self._namespace_refs[obj.namespace] += 1
            self._pods[key] = obj
            _count_pod_ips(old_pod, -1, pods_changed)
            _count_pod_ips(obj, +1, pods_changed)
            self._place_pod(key, old_pod, obj)
        elif isinstance(obj, Namespace):
            self._explicit_namespaces.add(obj.name)
            self.hosts.upsert(obj, dirty_static)  # its labels, for Gateway listeners' selectors
        else:  # pragma: no cover
            raise TypeError(f"not a Kubernetes object value: {obj!r}")

    def _delete(self, kind: Kind, namespace: str, name: str, dirty: set[SvcKey], pods_changed: dict[tuple[str, str], int],
                dirty_static: set[ObjectKey]) -> None:
        key = (namespace, name)
        if kind in (Kind.HOSTS, Kind.RECORD) or kind in WEB_KINDS:
            self.hosts.delete((kind, namespace, name), dirty_static)
        elif kind is Kind.SERVICE:
            if self._services.pop(key, None) is not None:
                self._deref(namespace)
                dirty.add(key)
        elif kind is Kind.ENDPOINT_SLICE:
            old = self._slices.pop(key, None)
            if old is not None:
                self._deref(namespace)
                self._unlink_slice(old, dirty)
        elif kind is Kind.POD:
            old_pod = self._pods.pop(key, None)
            if old_pod is not None:
                self._deref(namespace)
                _count_pod_ips(old_pod, -1, pods_changed)
                self._place_pod(key, old_pod, None)
        elif kind is Kind.NAMESPACE:
            self._explicit_namespaces.discard(name)
            self.hosts.delete((kind, namespace, name), dirty_static)

    def _unlink_slice(self, old: EndpointSlice, dirty: set[SvcKey]) -> None:
        owner = (old.namespace, old.service)
        members = self._slices_of.get(owner)
        if members is not None:
            members.discard((old.namespace, old.name))
            if not members:
                del self._slices_of[owner]
        dirty.add(owner)

    def _place_pod(self, key: tuple[str, str], old: Pod | None, new: Pod | None) -> None:
        if not self.config.autopath:
            return
        for ip in old.ips if old else ():
            at = self._pods_at.get(ip)
            if at is not None:
                at.discard(key)
                if not at:
                    del self._pods_at[ip]
        for ip in new.ips if new else ():
            self._pods_at.setdefault(ip, set()).add(key)

    def _deref(self, namespace: str) -> None:
        self._namespace_refs[namespace] -= 1
        if self._namespace_refs[namespace] <= 0:
            del self._namespace_refs[namespace]

    def _recompute(self, key: SvcKey, names: Names, ptr: immutables.MapMutation[str, tuple[str, ...]], touched: set[str],
                   touched_ips: set[str]) -> None:
        svc = self._services.get(key)
        slices = [self._slices[k] for k in sorted(self._slices_of.get(key, ()))]
        new = service_records(svc, slices, ignore_empty=self.config.ignore_empty_services) if svc is not None else Contribution()
        old_names, old_ips = self._owned.get(key, ((), ()))
        if new.names or new.ptrs:
            self._owned[key] = (tuple(new.names), tuple(new.ptrs))
        else:
            self._owned.pop(key, None)

        changed = False
        for rel in set(old_names).union(new.names):
            node = new.names.get(rel)
            if node == names.get(rel):
                continue
            changed = True
            if node is None:
                names.pop(rel, None)
            else:
                names[rel] = node
        if changed:
            # An answer can embed records of other names of the same Service (SRV glue),
            # so a change to one of its names makes all of its answers stale.
            touched.update(old_names)
            touched.update(new.names)

        for ip in set(old_ips).union(new.ptrs):
            current = ptr.get(ip, ())
            targets = self._claims.set(ip, key, new.ptrs.get(ip), current, self._claim_of)
            if current != targets:
                touched_ips.add(ip)
                if targets:
                    ptr[ip] = targets
                else:
                    ptr.pop(ip, None)

        target = svc.external_name if svc is not None and svc.type is ServiceType.EXTERNAL_NAME else ""
        zone = self.config.zone_of(target) if target else None  # a target in a reverse zone counts as outside
        self._cname_owners.pop(key, None)
        self._outside_cnames.pop(key, None)
        if zone in self.config.zones or zone in self.config.external_zones:
            self._cname_owners[key] = f"{key[1]}.{key[0]}.svc"
        elif target:
            self._outside_cnames[key] = (f"{key[1]}.{key[0]}.svc", target)

    def _claim_of(self, key: SvcKey, ip: str) -> Claim | None:
        """The PTR claim Service `key` makes on `ip`, worked out afresh (rarely needed)."""
        svc = self._services.get(key)
        if svc is None:
            return None
        slices = [self._slices[k] for k in sorted(self._slices_of.get(key, ()))]
        return service_records(svc, slices, ignore_empty=self.config.ignore_empty_services).ptrs.get(ip)

    def _refresh_ns(self, names: Names, touched: set[str]) -> str:
        """kube-system/kube-dns changed: the apex NS target and ns.dns glue follow it."""
        svc = self._services.get(KUBE_DNS)
        if svc is not None and svc.type is ServiceType.CLUSTER_IP and svc.cluster_ips:
            node, target = address_node(svc.cluster_ips), "kube-dns.kube-system.svc"
        else:
            node, target = address_node(self.config.ns_addresses), NS_NAME
        if names.get(NS_NAME) != node:
            names[NS_NAME] = node
            touched.add(NS_NAME)
        touched.add("")  # the apex NS answer names the target and carries its glue
        return target

    def _refresh_pods(self, changed: dict[tuple[str, str], int], touched: set[str]) -> immutables.Map[tuple[str, str], int]:
        """Count Pods per (namespace, IP); with `pods verified` their names come and go."""
        pod_ips = self.snapshot.pod_ips
        changed = {k: d for k, d in changed.items() if d}
        if not changed:
            return pod_ips
        with pod_ips.mutate() as m:
            for key, delta in changed.items():
                count = m.get(key, 0) + delta
                if count > 0:
                    m[key] = count
                else:
                    m.pop(key, None)
                if (count > 0) != (count - delta > 0) and self.config.pods is PodsMode.VERIFIED:
                    namespace, ip = key
                    touched.update(f"{label}.{namespace}.pod" for label in names.pod_labels(ip))
            done = m.finish()
        return done

    def _refresh_client_ns(self, changed: dict[tuple[str, str], int]) -> immutables.Map[str, str]:
        """For autopath: which namespace each Pod IP speaks for. An IP shared by several
        Pods, or used by a hostNetwork Pod (the node's address), speaks for none."""
        client_ns = self.snapshot.client_ns
        if not self.config.autopath or not changed:
            return client_ns
        with client_ns.mutate() as m:
            for ip in {ip for _, ip in changed}:
                pods = [p for p in (self._pods.get(k) for k in self._pods_at.get(ip, ())) if p is not None]
                if not pods:
                    m.pop(ip, None)
                elif len(pods) == 1 and not pods[0].host_network:
                    m[ip] = pods[0].namespace
                else:
                    m[ip] = ""
            done = m.finish()
        return done

    def _refresh_namespaces(self, before: frozenset[str], after: frozenset[str], names: Names) -> None:
        pods = self.config.pods is not PodsMode.DISABLED
        for ns in before - after:
            names.pop(f"{ns}.svc", None)
            if pods:
                names.pop(f"{ns}.pod", None)
        for ns in after - before:
            names[f"{ns}.svc"] = EMPTY
            if pods:
                names[f"{ns}.pod"] = EMPTY


def _count_pod_ips(pod: Pod | None, delta: int, changed: dict[tuple[str, str], int]) -> None:
    if pod is not None:
        for ip in pod.ips:
            key = (pod.namespace, ip)
            changed[key] = changed.get(key, 0) + delta
