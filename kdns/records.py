"""What one Service contributes to the index: its names with their records, and its claims
on reverse (PTR) names, which several Services may make on one address.

`service_records(svc, slices)` is the whole of the Kubernetes DNS schema for one Service
(spec 1.1.0 plus CoreDNS's choices): ClusterIP or headless A/AAAA, endpoint hostnames, SRV
per named port, PTR claims, ExternalName CNAMEs. `PtrClaims` merges the claims on an
address as CoreDNS does: ClusterIP owners win over endpoint owners. The index
(kdns/index.py) calls both for just the Services an event touches. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from kdns import names
from kdns.model import EndpointSlice, Service, ServiceType

SvcKey = tuple[str, str]  # (namespace, service name)


class Srv(NamedTuple):
    priority: int
    weight: int
    port: int
    target: str  # relative to the forward zone the question is in


class Node(NamedTuple):
    """The records at one name. A Node with no records is an empty non-terminal (NODATA).

    A named tuple rather than a dataclass: there is one per endpoint, so it must be small
    and quick to build and compare (the index compares old and new Nodes on every update).
    """

    a: tuple[str, ...] = ()
    aaaa: tuple[str, ...] = ()
    srv: tuple[Srv, ...] = ()
    cname: str = ""  # absolute target of an ExternalName Service
    txt: tuple[str, ...] = ()


EMPTY = Node()

# What the name table holds: a Node, or, for the commonest name of all (an endpoint with one
# address), just that address. One string instead of a Node and a tuple saves about 130 bytes
# per endpoint; `Snapshot.node` turns it back into a Node.
Value = Node | str


@dataclass(slots=True)
class Contribution:
    names: dict[str, Value] = field(default_factory=dict)
    # ip -> (priority, targets); priority 0 for a ClusterIP, 1 for an endpoint address
    ptrs: dict[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)


def address_node(addresses: Iterable[str]) -> Node:
    v4: list[str] = []
    v6: list[str] = []
    for ip in addresses:
        (v6 if ":" in ip else v4).append(ip)
    return Node(tuple(v4), tuple(v6))


Claim = tuple[int, tuple[str, ...]]  # (priority, targets): 0 for a ClusterIP, 1 for an endpoint


class PtrClaims:
    """Which Services claim each IP's PTR name, in as little memory as possible.

    Almost every address belongs to one Service: its entry is just that Service's key (a
    tuple already held elsewhere), and its PTR targets are that Service's claim. Only an
    address several Services share keeps each one's claim, in a dict. When an address
    becomes shared, the first owner's claim is recomputed (`claim_of`): rare, and cheaper
    than keeping every claim of a hundred thousand endpoints.
    """

    def __init__(self) -> None:
        self._by_ip: dict[str, SvcKey | dict[SvcKey, Claim | None]] = {}

    def set(self, ip: str, key: SvcKey, claim: Claim | None, current: tuple[str, ...],
            claim_of: Callable[[SvcKey, str], Claim | None]) -> tuple[str, ...]:
        """Record (or with None, drop) `key`'s claim on `ip`; return the PTR targets now.

        `current` is the targets before the change; `claim_of(owner, ip)` recomputes the
        claim of another owner.
        """
        entry = self._by_ip.get(ip)
        if entry is None or entry == key:
            if claim is None:
                self._by_ip.pop(ip, None)
                return ()
            self._by_ip[ip] = key
            return _targets([claim])
        if not isinstance(entry, dict):  # another Service holds this address alone
            if claim is None:
                return current
            entry = self._by_ip[ip] = {entry: claim_of(entry, ip), key: claim}
            return _targets(entry.values())
        if claim is None:
            entry.pop(key, None)
        else:
            entry[key] = claim
        claims = list(entry.values())
        if len(entry) == 1:
            self._by_ip[ip] = next(iter(entry))
        return _targets(claims)


def _targets(claims: Iterable[Claim | None]) -> tuple[str, ...]:
    """Merged PTR targets: ClusterIP owners win over endpoint owners (as in CoreDNS)."""
    held = [c for c in claims if c is not None]
    if not held:
        return ()
    if len(held) == 1 and len(held[0][1]) == 1:
        return held[0][1]  # the common case: one Service, one name
    best = min(priority for priority, _ in held)
    return tuple(sorted({t for priority, targets in held if priority == best for t in targets}))


T = TypeVar("T")


def _dedup(items: Iterable[T]) -> tuple[T, ...]:
    return tuple(dict.fromkeys(items))


def _weight(entries: int) -> int:
    """CoreDNS's SRV weight: 100 shared by the entries before de-duplication, at least 1."""
    return max(1, 100 // entries) if entries else 100


def service_records(svc: Service, slices: list[EndpointSlice], *, ignore_empty: bool = False) -> Contribution:
    """Every name and PTR claim one Service makes, given its EndpointSlices. `ignore_empty`
    (CoreDNS's `ignore empty_service`): a ClusterIP Service without a ready endpoint makes
    only the PTR claims on its ClusterIPs, so its names are NXDOMAIN."""
    out = Contribution()
    base = f"{svc.name}.{svc.namespace}.svc"
    if svc.type is ServiceType.EXTERNAL_NAME:
        if names.canonical_ip(svc.external_name) is None:  # IP literals are not served
            out.names[base] = Node(cname=svc.external_name)
        return out

    # Ready endpoint addresses, each under the name it answers to, slice by slice.
    endpoints = [
        (sl, [(f"{ep.hostname or names.dashed_ip(ip)}.{base}", ip) for ep in sl.endpoints for ip in ep.addresses])
        for sl in slices
    ]
    hosts: dict[str, list[str]] = {}  # endpoint name -> addresses
    for _, named in endpoints:
        for rel, ip in named:
            hosts.setdefault(rel, []).append(ip)
    for rel, listed in hosts.items():
        addrs = _dedup(listed)
        out.names[rel] = addrs[0] if len(addrs) == 1 else address_node(addrs)
        for ip in addrs:
            targets = out.ptrs.get(ip, (1, ()))[1]
            out.ptrs[ip] = (1, _dedup(targets + (rel,)))

    # SRV records: (port name, protocol) -> [(target, port)] before de-duplication.
    per_port: dict[tuple[str, str], list[tuple[str, int]]] = {}
    if svc.type is ServiceType.HEADLESS:
        if not hosts:
            return Contribution()  # no ready endpoints: every name is NXDOMAIN (spec 2.4.1)
        addresses = _dedup(ip for addrs in hosts.values() for ip in addrs)
        for sl, named in endpoints:
            for port in sl.ports:
                per_port.setdefault((port.name, port.protocol), []).extend((rel, port.port) for rel, _ in named)
    else:
        if ignore_empty and not hosts:
            for ip in svc.cluster_ips:
                out.ptrs[ip] = (0, (base,))
            return out
        addresses = svc.cluster_ips
        for port in svc.ports:
            per_port.setdefault((port.name, port.protocol), []).extend((base, port.port) for _ in svc.cluster_ips)
        for ip in svc.cluster_ips:
            out.ptrs[ip] = (0, (base,))

    every_port = [entry for entries in per_port.values() for entry in entries]
    out.names[base] = address_node(addresses)._replace(srv=srv_records(every_port))
    for (port_name, protocol), entries in per_port.items():
        if port_name and entries:
            out.names[f"_{port_name}._{protocol}.{base}"] = Node(srv=srv_records(entries))
            # `_tcp.<svc>` exists (empty) when `_http._tcp.<svc>` does: NODATA, not NXDOMAIN,
            # so that resolvers applying RFC 8020 do not prune the SRV names below it.
            out.names.setdefault(f"_{protocol}.{base}", EMPTY)
    return out


def srv_records(entries: list[tuple[str, int]]) -> tuple[Srv, ...]:
    weight = _weight(len(entries))
    return tuple(Srv(0, weight, port, target) for target, port in _dedup(entries))
