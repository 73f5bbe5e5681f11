"""Configuration values: parsed and checked once, frozen afterwards.

Every check raises `ConfigError` with a message that names the option and the bad value,
so the command line can print it as one line.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from kdns import names


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the option and the value."""


class PodsMode(str, enum.Enum):
    """CoreDNS's `pods` option: how `a-b-c-d.<ns>.pod.<zone>` names are answered."""

    DISABLED = "disabled"
    INSECURE = "insecure"
    VERIFIED = "verified"  # only for addresses of Pods that exist in that namespace


DEFAULT_ZONE = "cluster.local"
DEFAULT_TTL = 5
MAX_TTL = 3600


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str  # an IP address literal
    port: int

    @property
    def family(self) -> int:
        return names.ip_family(self.host)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family == 6 else f"{self.host}:{self.port}"


DEFAULT_LISTEN = ListenAddress("127.0.0.1", 5353)


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """What the answers depend on, apart from the Kubernetes data."""

    zones: tuple[str, ...] = (DEFAULT_ZONE,)  # forward zones; the first is the primary
    ttl: int = DEFAULT_TTL
    pods: PodsMode = PodsMode.INSECURE
    # Glue for `ns.dns.<zone>` when no kube-system/kube-dns Service exists.
    ns_addresses: tuple[str, ...] = ()
    forwarding: bool = False  # names outside the zones (and unknown PTRs) go upstream
    stub_domains: tuple[str, ...] = ()  # domains with upstreams of their own
    autopath: bool = False  # answer a pod's whole search path server-side

    @property
    def all_zones(self) -> tuple[str, ...]:
        """Forward zones, then the reverse zones: the zones kdns is authoritative for."""
        return self.zones + names.REVERSE_ZONES


@dataclass(frozen=True, slots=True)
class ApiSource:
    """Where the cluster is: a kubeconfig file, an unauthenticated URL, or in-cluster."""

    kubeconfig: str | None = None
    apiserver: str | None = None
    in_cluster: bool = False

    def describe(self) -> str:
        if self.apiserver:
            return self.apiserver
        if self.in_cluster:
            return "the in-cluster API server"
        return f"the cluster of {self.kubeconfig}"


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Exactly one source: `manifests` (paths) or `api`."""

    manifests: tuple[str, ...] = ()
    api: ApiSource | None = None
    listen: tuple[ListenAddress, ...] = (DEFAULT_LISTEN,)
    dns: DnsConfig = field(default_factory=DnsConfig)
    namespaces: frozenset[str] | None = None  # expose only these namespaces
    labels: str | None = None  # label selector for Services (and their EndpointSlices)
    tcp_idle_timeout: float = 10.0
    reload_interval: float = 1.0
    startup_timeout: float = 5.0
    upstreams: tuple[tuple[str, int], ...] = ()  # (IP, port) for names outside the zones
    stub_domains: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()  # (domain, upstreams)
    upstream_timeout: float = 1.5  # seconds per try
    cache_ttl: int = 30  # the longest a forwarded answer is cached
    cache_size: int = 10_000  # forwarded answers kept
    serve_stale: float = 3600.0  # seconds an expired answer may still be served when upstreams fail


def parse_listen(text: str) -> ListenAddress:
    """`127.0.0.1:5353`, `[::1]:5353`, `0.0.0.0:0` (port 0 picks a free port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"--listen: expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"--listen: write an IPv6 address in brackets, as [{host}]:{port_text}")
    ip = names.canonical_ip(host)
    if ip is None:
        raise ConfigError(f"--listen: not an IP address: {host!r} in {text!r}")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"--listen: not a port number: {port_text!r} in {text!r}")
    return ListenAddress(ip, int(port_text))


def parse_zone(text: str) -> str:
    zone = text.strip().rstrip(".").lower()
    if not names.is_subdomain(zone):
        raise ConfigError(f"--zone: not a domain name: {text!r}")
    if zone in names.REVERSE_ZONES or zone.endswith(("." + names.IN_ADDR_ARPA, "." + names.IP6_ARPA)):
        raise ConfigError(f"--zone: {text!r}: the reverse zones are always served")
    return zone


def check_zones(zones: list[str]) -> tuple[str, ...]:
    if not zones:
        return (DEFAULT_ZONE,)
    seen: list[str] = []
    for zone in zones:
        if zone in seen:
            raise ConfigError(f"--zone: {zone!r} given twice")
        for other in seen:
            inner, outer = (zone, other) if len(zone) > len(other) else (other, zone)
            if inner.endswith("." + outer):
                raise ConfigError(f"--zone: {inner!r} lies inside {outer!r}: the zones must not overlap")
        seen.append(zone)
    return tuple(seen)


def check_ttl(ttl: int) -> int:
    if not 0 <= ttl <= MAX_TTL:
        raise ConfigError(f"--ttl: must be between 0 and {MAX_TTL} seconds, got {ttl}")
    return ttl


def ns_addresses(listen: tuple[ListenAddress, ...]) -> tuple[str, ...]:
    """The addresses `ns.dns.<zone>` resolves to: the specific addresses kdns listens on."""
    out: list[str] = []
    for address in listen:
        if not ipaddress.ip_address(address.host).is_unspecified and address.host not in out:
            out.append(address.host)
    return tuple(out)
