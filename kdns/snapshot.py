"""What a query reads: one immutable snapshot of the index, and what one update changed.

`kdns.index.Index` builds them (and re-exports them); the answer core reads a `Snapshot` and
the responder forgets the packed answers a `Change` names. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import immutables

from kdns import names
from kdns.config import DnsConfig
from kdns.records import Node, Value

if TYPE_CHECKING:
    from kdns.tables import HostEntry, PtrEntry

DNS_VERSION_TTL = 28800  # the spec's example value; CoreDNS uses it too
NS_NAME = "ns.dns"  # SOA MNAME, and the NS target when there is no kube-dns Service
NOTHING: immutables.Map[str, Any] = immutables.Map()


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
    hosts: immutables.Map[str, HostEntry] = NOTHING  # absolute name -> tables.HostEntry (external zones, outside names)
    xptr: immutables.Map[str, PtrEntry] = NOTHING  # IP -> tables.PtrEntry, for addresses without a cluster PTR
    external_serial: int = 1  # the external zones' SOA serial

    @property
    def serials(self) -> tuple[int, int]:
        return (self.serial, self.external_serial)

    def soa(self, zone: str) -> tuple[int, int, str, str]:
        """(serial, TTL, MNAME, RNAME) of the SOA of one of our zones."""
        if zone in self.config.external_zones:
            server = names.join(self.config.external_apex, zone)
            return self.external_serial, self.config.external_ttl, names.join("ns1", server), names.join("hostmaster", server)
        return self.serial, self.config.ttl, names.join(NS_NAME, zone), names.join("hostmaster", zone)

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
    absolute: frozenset[str] = frozenset()  # absolute names (kdns.tables) whose answers changed

    @property
    def empty(self) -> bool:
        """Nothing any answer depends on changed (the snapshot may still be new)."""
        return not (self.names or self.ips or self.everything or self.absolute)
