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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import immutables

from kdns import names
from kdns.config import DnsConfig, PodsMode
from kdns.model import Delete, EndpointSlice, Event, Kind, KubeObject, Namespace, Pod, Service, ServiceType, Synced, Upsert
from kdns.records import EMPTY, Claim, Contribution, Node, PtrClaims, SvcKey, Value, address_node, service_records

DNS_SCHEMA_VERSION = "1.1.0"
DNS_VERSION_TTL = 28800  # the spec's example value; CoreDNS uses it too
NS_NAME = "ns.dns"  # SOA MNAME, and the NS target when there is no kube-dns Service
KUBE_DNS = ("kube-system", "kube-dns")
Names = immutables.MapMutation[str, Value]  # the names map while the writer changes it


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything an answer needs, frozen. Cheap to make: the maps share structure."""

    config: DnsConfig
    names: immutables.Map[str, Value]  # relative forward name -> Value
    ptr: immutables.Map[str, tuple[str, ...]]  # canonical IP -> relative targets (in the primary zone)
    namespaces: frozenset[str]
    pod_ips: immutables.Map[tuple[str, str], int]  # (namespace, IP) of existing Pods -> count; kept for `pods verified`
    client_ns: immutables.Map[str, str]  # Pod IP -> its namespace ("" if shared or hostNetwork); for autopath
    ns_target: str  # relative name of the apex NS target
    serial: int
    synced: bool

    def node(self, rel: str) -> Node | None:
        """The records at a relative forward name, or None if the name does not exist."""
        value = self.names.get(rel)
        if type(value) is str:  # an endpoint name with a single address (see `Value`)
            return Node(aaaa=(value,)) if ":" in value else Node(a=(value,))
        return value  # type: ignore[return-value]  # not a str: `type() is` (faster) does not narrow


@dataclass(frozen=True, slots=True)
class Change:
    """What one `apply` changed: the memo of packed answers invalidates exactly this."""

    snapshot: Snapshot
    names: frozenset[str] = frozenset()  # relative forward names whose answers changed
    ips: frozenset[str] = frozenset()  # IPs whose PTR answers changed
    everything: bool = False  # e.g. the namespace set changed: pod names depend on it

    @property
    def empty(self) -> bool:
        """Nothing any answer depends on changed (the snapshot may still be new)."""
        return not (self.names or self.ips or self.everything)


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
        )

    # -- queries about the objects held (for logs, metrics and reconfiguration) ----------

    def objects(self) -> list[KubeObject]:
        """Every object held, for building an index with another configuration."""
        namespaces = [Namespace(name) for name in sorted(self._explicit_namespaces)]
        return [*namespaces, *self._services.values(), *self._slices.values(), *self._pods.values()]

    @property
    def pending_sources(self) -> frozenset[str]:
        return frozenset(self._pending_sources)

    def service(self, namespace: str, name: str) -> Service | None:
        return self._services.get((namespace, name))

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
        pods_changed: dict[tuple[str, str], int] = {}  # (namespace, IP) -> change in pod count
        namespaces_before = self.snapshot.namespaces
        synced_before = self.snapshot.synced
        for event in events:
            if isinstance(event, Upsert):
                self._upsert(event.obj, dirty, pods_changed)
            elif isinstance(event, Delete):
                self._delete(event.key[0], event.key[1], event.key[2], dirty, pods_changed)
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
            if touched and self._cname_owners:
                # Answers for ExternalNames that point into our zones embed the target's
                # records: they change whenever anything does.
                touched.update(self._cname_owners.values())
            new_names = names.finish()
            new_ptr = ptr.finish()

        # Pod names and `<ns>.svc` depend on which namespaces exist; the SERVFAIL answers
        # given before the first sync are never memoised, but flush anyway to be plain.
        everything = namespaces != namespaces_before or synced != synced_before
        data_changed = bool(touched or touched_ips) or namespaces != namespaces_before
        client_ns = self._refresh_client_ns(pods_changed)
        # Pod bookkeeping can change without any answer changing (a second Pod on an address):
        # a new snapshot then, with nothing to invalidate and the same serial.
        bookkeeping = pod_ips is not old.pod_ips or client_ns is not old.client_ns
        if not (data_changed or everything or bookkeeping):
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
        )
        return Change(self.snapshot, frozenset(touched), frozenset(touched_ips), everything)

    def _upsert(self, obj: KubeObject, dirty: set[SvcKey], pods_changed: dict[tuple[str, str], int]) -> None:
        if isinstance(obj, Service):
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
        else:  # pragma: no cover
            raise TypeError(f"not a Kubernetes object value: {obj!r}")

    def _delete(self, kind: Kind, namespace: str, name: str, dirty: set[SvcKey], pods_changed: dict[tuple[str, str], int]) -> None:
        key = (namespace, name)
        if kind is Kind.SERVICE:
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
        new = service_records(svc, slices) if svc is not None else Contribution()
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
        if target and any(target == z or target.endswith("." + z) for z in self.config.zones):
            self._cname_owners[key] = f"{key[1]}.{key[0]}.svc"
        else:
            self._cname_owners.pop(key, None)

    def _claim_of(self, key: SvcKey, ip: str) -> Claim | None:
        """The PTR claim Service `key` makes on `ip`, worked out afresh (rarely needed)."""
        svc = self._services.get(key)
        if svc is None:
            return None
        slices = [self._slices[k] for k in sorted(self._slices_of.get(key, ()))]
        return service_records(svc, slices).ptrs.get(ip)

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
