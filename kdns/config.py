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
class HttpAddresses:
    """Where the HTTP endpoints listen; None: not served."""

    health: ListenAddress | None = None
    ready: ListenAddress | None = None
    metrics: ListenAddress | None = None


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Exactly one source: `manifests` (paths) or `api`."""

    manifests: tuple[str, ...] = ()
    manifest_max_bytes: int = 16 << 20  # the largest manifest file read
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
    lameduck: float = 5.0  # seconds of answering after SIGTERM, readiness already 503
    allow_recursion: tuple = ()  # ipaddress networks whose clients may have names forwarded; () = all
    rrl_rate: float = 0.0  # UDP responses per second per client prefix; 0 = unlimited
    rrl_slip: int = 2
    tcp_max_connections: int = 1000
    tcp_message_timeout: float = 5.0
    tcp_max_queries: int = 10_000
    workers: int = 1  # processes answering on the same ports (kdns.workers)
    http: HttpAddresses = field(default_factory=HttpAddresses)
    log_level: str = "info"
    log_format: str = "text"
    log_queries: bool = False


def check_zones(zones: list[str], where: str = "--zone") -> tuple[str, ...]:
    if not zones:
        return (DEFAULT_ZONE,)
    seen: list[str] = []
    for zone in zones:
        if zone in seen:
            raise ConfigError(f"{where}: {zone!r} given twice")
        for other in seen:
            inner, outer = (zone, other) if len(zone) > len(other) else (other, zone)
            if inner.endswith("." + outer):
                raise ConfigError(f"{where}: {inner!r} lies inside {outer!r}: the zones must not overlap")
        seen.append(zone)
    return tuple(seen)


def ns_addresses(listen: tuple[ListenAddress, ...]) -> tuple[str, ...]:
    """The addresses `ns.dns.<zone>` resolves to: the specific addresses kdns listens on."""
    out: list[str] = []
    for address in listen:
        if not ipaddress.ip_address(address.host).is_unspecified and address.host not in out:
            out.append(address.host)
    return tuple(out)
