"""The index's absolute names: what the Services give the external zones, the records of
names outside every zone (hosts files, the test double's `record()`) and the hosts of
Ingresses and Gateway routes (kdns.webhosts), kept in kdns.tables. `kdns.index.Index` owns one `HostIndex` and calls it in the same `apply` as
the cluster names, with the same dirty Services: a Service's external names are recomputed
with its cluster names, once per change. Pure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import immutables

from kdns.config import DnsConfig
from kdns.external import RANK_APEX, address_rrsets, external_records
from kdns.model import WEB_KINDS, EndpointSlice, Kind, KubeObject, Namespace, ObjectKey, Rrset, Service, StaticRecords
from kdns.records import SvcKey
from kdns.tables import APEX_OWNER, HostEntry, NameTables, PtrEntry
from kdns.webhosts import WebHosts

log = logging.getLogger("kdns.index")

KUBE_DNS = ("kube-system", "kube-dns")
STATIC_RANK = 10  # hosts files and the test double's records rank after everything else


class Published(NamedTuple):
    names: frozenset[str]  # absolute names whose answers changed
    ips: frozenset[str]  # addresses whose PTR answers (from these tables) changed
    wildcard: bool
    external: bool  # something in an external zone changed
    hosts: immutables.Map[str, HostEntry]
    xptr: immutables.Map[str, PtrEntry]


class HostIndex:
    def __init__(self, config: DnsConfig):
        self.config = config
        self.tables = NameTables(config)
        self.static: dict[ObjectKey, StaticRecords] = {}
        self.web = WebHosts(config, self.tables)  # Ingresses, Gateways and routes (and Namespaces' labels)
        self._external: set[SvcKey] = set()  # Services with names in the external zones
        self._apex_done = False

    @property
    def chasers(self) -> set[str]:
        """Absolute names whose answers follow a CNAME into kdns's own data."""
        return self.tables.chasers

    def upsert(self, obj: KubeObject, dirty: set[ObjectKey]) -> None:
        """Keep a static origin's records (`dirty` notes it), an Ingress, IngressClass,
        Gateway or route, or a Namespace's labels (kdns.webhosts notes those)."""
        if isinstance(obj, StaticRecords):
            if self.static.get(obj.key) != obj:
                self.static[obj.key] = obj
                dirty.add(obj.key)
        else:
            self.web.upsert(obj)

    def delete(self, key: ObjectKey, dirty: set[ObjectKey]) -> None:
        if key[0] in WEB_KINDS or key[0] is Kind.NAMESPACE:
            self.web.delete(key)
        elif self.static.pop(key, None) is not None:
            dirty.add(key)

    def namespace(self, name: str) -> Namespace:
        """The Namespace as last seen (with its labels)."""
        return self.web.namespaces.get(name) or Namespace(name)

    def publish(
        self,
        dirty: set[SvcKey],
        dirty_static: set[ObjectKey],
        hosts: immutables.Map[str, HostEntry],
        xptr: immutables.Map[str, PtrEntry],
        service: Callable[[SvcKey], Service | None],
        slices: Callable[[SvcKey], list[EndpointSlice]],
        *,
        synced: bool = True,
    ) -> Published:
        """Recompute the external names of the Services in `dirty`, the records of the
        static origins in `dirty_static` and the Ingress and route hosts that depend on what
        changed; the maps as they are now and what changed. (`synced`: whether every source
        has delivered its first state: warnings about Ingresses and routes wait for it.)"""
        if self.config.external_zones:
            were = dirty & self._external
            for key in dirty:
                self._recompute_external(key, service(key), slices)
            if not self._apex_done or were or dirty & (self._external | {KUBE_DNS}):
                self._refresh_apex(service, slices)
                self._apex_done = True
        for static_key in dirty_static:
            self._recompute_static(static_key)
        self.web.publish(dirty, service, synced=synced)
        with hosts.mutate() as new_hosts, xptr.mutate() as new_xptr:
            changed = self.tables.publish(new_hosts, new_xptr)
            published = Published(changed.names, changed.ips, changed.wildcard, changed.external, new_hosts.finish(),
                                  new_xptr.finish())
        return published

    def _recompute_external(self, key: SvcKey, svc: Service | None, slices: Callable[[SvcKey], list[EndpointSlice]]) -> None:
        owner = (Kind.SERVICE, key[0], key[1])
        if svc is None:
            self.tables.set(owner, {}, {})
            self._external.discard(key)
            return
        out = external_records(svc, slices(key), self.config)
        for warning in out.warnings:
            log.warning("%s", warning)
        ttl = self.config.external_ttl
        self.tables.set(owner, {name: (rank, rrsets, ()) for name, (rank, rrsets) in out.names.items()},
                        {ip: (0, (target,), ttl) for ip, target in out.ptrs.items()})
        if out.names:
            self._external.add(key)
        else:
            self._external.discard(key)

    def _refresh_apex(self, service: Callable[[SvcKey], Service | None], slices: Callable[[SvcKey], list[EndpointSlice]]) -> None:
        """`ns1.<apex>.<zone>`, the external zones' name server, answers with the external
        addresses of the Service that fronts kdns: kube-system/kube-dns if it has any, else
        the first Service (by namespace/name) with external addresses that shares an endpoint
        address with kube-dns (it selects the same DNS pods); failing both, the addresses
        kdns listens on."""
        fronting = self._fronting(service, slices)
        svc = service(fronting) if fronting else None
        addresses = svc.external_ips if svc is not None else self.config.ns_addresses
        origins = ((Kind.SERVICE, *fronting),) if fronting else ()
        ttl, apex = self.config.external_ttl, self.config.external_apex
        self.tables.set(APEX_OWNER, {
            name: (RANK_APEX, address_rrsets(name, addresses, ttl), origins)
            for name in (f"ns1.{apex}.{zone}" for zone in self.config.external_zones)
        }, {})

    def _fronting(self, service: Callable[[SvcKey], Service | None], slices: Callable[[SvcKey], list[EndpointSlice]]) -> SvcKey | None:
        dns = service(KUBE_DNS)
        if dns is not None and dns.external_ips:
            return KUBE_DNS
        pods = _endpoint_ips(slices(KUBE_DNS))
        if pods:
            for key in sorted(self._external):
                svc = service(key)
                if svc is not None and svc.external_ips and pods & _endpoint_ips(slices(key)):
                    return key
        return None

    def _recompute_static(self, key: ObjectKey) -> None:
        obj = self.static.get(key)
        if obj is None:
            self.tables.set(key, {}, {})
            return
        rank = STATIC_RANK + obj.rank
        claimed: dict[str, list[Rrset]] = {}
        for rr in obj.rrsets:
            if self.config.zone_of(rr.name) is None:  # names in our zones come from Kubernetes alone
                claimed.setdefault(rr.name, []).append(rr)
        ptrs: dict[str, list[str]] = {}
        for ip, target in obj.ptrs:
            ptrs.setdefault(ip, []).append(target)
        self.tables.set(key, {name: (rank, tuple(rrs), ()) for name, rrs in claimed.items()},
                        {ip: (rank, tuple(targets), obj.ttl) for ip, targets in ptrs.items()})


def _endpoint_ips(slices: list[EndpointSlice]) -> set[str]:
    return {ip for sl in slices for ep in sl.endpoints for ip in ep.addresses}
