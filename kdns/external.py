"""What one Service contributes to the external zones (`--external-zone`, CoreDNS's
`k8s_external`): names with their records, and PTR claims on its external addresses.

For each external zone Z, a Service `svc` in namespace `ns` gets:

* `svc.ns.Z` A/AAAA: its external addresses (spec.externalIPs, then the load balancer's
  status.loadBalancer.ingress[].ip), whatever its type. With none but a load-balancer
  hostname (AWS-style), a CNAME to the first hostname. With neither, under
  `--external-headless`, a headless Service's ready endpoints, and each endpoint's own name
  `host.svc.ns.Z` (its hostname, else its dashed address, as in the cluster zone).
* SRV: `_port._proto.svc.ns.Z` for each named port and `svc.ns.Z` for every port, as in the
  cluster zone (weights shared the same way); targets `svc.ns.Z` (whose addresses go in the
  additional section), the load balancer's hostname, or the endpoints' names.
* The names of its hostname annotations (external-dns's and CoreDNS's), with the same
  addresses: a single label goes under every external zone; a longer name must lie in one of
  them (else it is ignored, with a warning naming the Service).
* A PTR claim on each external address: `svc.ns.<first external zone>`.

Nothing else exists below `svc.ns.Z`: unlike CoreDNS, `anything.svc.ns.Z` is NXDOMAIN. The
namespace label equal to `--external-apex` is taken by the zone's own name server
(`ns1.APEX.Z`): a Service in a namespace of that name is not served there. Every record has
the `--external-ttl`. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kdns import codes, names
from kdns.config import DnsConfig
from kdns.model import EndpointSlice, Rrset, Service, ServiceType
from kdns.records import srv_records

# An EndpointSlice with its ready endpoints' (name label, address) pairs.
Named = tuple[EndpointSlice, list[tuple[str, str]]]

RANK_APEX, RANK_SERVICE, RANK_ANNOTATION = -1, 0, 1  # when two claim one name, the lower rank wins


@dataclass(slots=True)
class ExternalContribution:
    names: dict[str, tuple[int, tuple[Rrset, ...]]] = field(default_factory=dict)  # absolute name -> (rank, records)
    ptrs: dict[str, str] = field(default_factory=dict)  # external address -> absolute PTR target
    warnings: list[str] = field(default_factory=list)


def address_rrsets(name: str, addresses: tuple[str, ...], ttl: int) -> tuple[Rrset, ...]:
    v4 = tuple(ip for ip in addresses if ":" not in ip)
    v6 = tuple(ip for ip in addresses if ":" in ip)
    return tuple(rr for rr in (Rrset(name, codes.A, ttl, v4), Rrset(name, codes.AAAA, ttl, v6)) if rr.values)


def external_records(svc: Service, slices: list[EndpointSlice], config: DnsConfig) -> ExternalContribution:
    out = ExternalContribution()
    zones, ttl, apex = config.external_zones, config.external_ttl, config.external_apex
    headless = (
        config.external_headless and not svc.external_ips and not svc.lb_hostnames and svc.type is ServiceType.HEADLESS
    )
    if not (svc.external_ips or svc.lb_hostnames or headless):
        return out
    endpoints = []
    if headless:
        endpoints = [(sl, [(ep.hostname or names.dashed_ip(ip), ip) for ep in sl.endpoints for ip in ep.addresses]) for sl in slices]
        if not any(named for _, named in endpoints):
            return out  # no ready endpoints: nothing to serve (the cluster zone says NXDOMAIN too)
    if svc.namespace == apex:
        out.warnings.append(f"Service {svc.namespace}/{svc.name}: namespace {apex!r} is the external zones' apex "
                            f"label (--external-apex), where their name server lives: not served there")
    wanted = _annotated(svc, zones, apex, out.warnings)
    for zone in zones:
        base = f"{svc.name}.{svc.namespace}.{zone}"
        if svc.namespace != apex:
            if headless:
                _headless(out, base, endpoints, ttl)
            else:
                _addressed(out, svc, base, ttl)
        addresses = _plain(svc, base, endpoints, ttl)
        for name in wanted.get(zone, ()):
            out.names.setdefault(name, (RANK_ANNOTATION, tuple(rr._replace(name=name) for rr in addresses)))
    for ip in svc.external_ips:
        out.ptrs[ip] = f"{svc.name}.{svc.namespace}.{zones[0]}"
    return out


def _plain(svc: Service, base: str, endpoints: list[Named], ttl: int) -> tuple[Rrset, ...]:
    """The address records (or the CNAME) of `base`, which annotation names get too."""
    if svc.external_ips:
        return address_rrsets(base, svc.external_ips, ttl)
    if svc.lb_hostnames:
        return (Rrset(base, codes.CNAME, ttl, svc.lb_hostnames[:1]),)
    return address_rrsets(base, tuple(dict.fromkeys(ip for _, named in endpoints for _, ip in named)), ttl)


def _addressed(out: ExternalContribution, svc: Service, base: str, ttl: int) -> None:
    """A Service with external addresses, or a load-balancer hostname."""
    records = _plain(svc, base, [], ttl)
    targets = [base] * len(svc.external_ips) if svc.external_ips else list(svc.lb_hostnames[:1])
    per_port: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for port in svc.ports:
        per_port.setdefault((port.name, port.protocol), []).extend((target, port.port) for target in targets)
    every = [entry for entries in per_port.values() for entry in entries]
    if every and svc.external_ips:  # a CNAME's owner holds nothing else
        records += (Rrset(base, codes.SRV, ttl, srv_records(every)),)
    out.names[base] = (RANK_SERVICE, records)
    _port_names(out, base, per_port, ttl)


def _headless(out: ExternalContribution, base: str, endpoints: list[Named], ttl: int) -> None:
    hosts: dict[str, list[str]] = {}
    for _, named in endpoints:
        for host, ip in named:
            hosts.setdefault(f"{host}.{base}", []).append(ip)
    for name, ips in hosts.items():
        out.names[name] = (RANK_SERVICE, address_rrsets(name, tuple(dict.fromkeys(ips)), ttl))
    per_port: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for sl, named in endpoints:
        for port in sl.ports:
            per_port.setdefault((port.name, port.protocol), []).extend((f"{host}.{base}", port.port) for host, _ in named)
    every = [entry for entries in per_port.values() for entry in entries]
    records = address_rrsets(base, tuple(dict.fromkeys(ip for ips in hosts.values() for ip in ips)), ttl)
    if every:
        records += (Rrset(base, codes.SRV, ttl, srv_records(every)),)
    out.names[base] = (RANK_SERVICE, records)
    _port_names(out, base, per_port, ttl)


def _port_names(out: ExternalContribution, base: str, per_port: dict[tuple[str, str], list[tuple[str, int]]], ttl: int) -> None:
    for (port_name, protocol), entries in per_port.items():
        if port_name and entries:
            name = f"_{port_name}._{protocol}.{base}"
            out.names[name] = (RANK_SERVICE, (Rrset(name, codes.SRV, ttl, srv_records(entries)),))


def _annotated(svc: Service, zones: tuple[str, ...], apex: str, warnings: list[str]) -> dict[str, list[str]]:
    """Zone -> the names the hostname annotations ask for in it; `warnings` gets a line for
    each name ignored. A single label goes under every zone; a longer name (with or without
    its trailing dot) must lie in one, below its apex and outside its name server's label."""
    out: dict[str, list[str]] = {}
    for text in svc.hostnames:
        name = text.rstrip(".")
        if "." not in text:
            if names.is_label(name) and name != apex:
                for zone in zones:
                    out.setdefault(zone, []).append(f"{name}.{zone}")
            else:
                warnings.append(f"Service {svc.namespace}/{svc.name}: hostname annotation {text!r}: not a usable "
                                f"label; ignored")
            continue
        found = next((z for z in zones if names.is_subdomain(name) and name.endswith("." + z)), None)
        if found is not None and not (name == f"{apex}.{found}" or name.endswith(f".{apex}.{found}")):
            out.setdefault(found, []).append(name)
        else:
            where = "is the name server's" if found else f"lies in no external zone ({', '.join(zones)})"
            warnings.append(f"Service {svc.namespace}/{svc.name}: hostname annotation {text!r} {where}; ignored")
    return out
