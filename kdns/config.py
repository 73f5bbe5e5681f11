"""Configuration values: parsed and checked once (kdns.settings), frozen afterwards.

Defaults are not restated here: the option table (kdns.options) has them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from kdns import names
from kdns.options import OutsideNames, PodsMode, default
from kdns.pool import DEFAULT as DEFAULT_POOL
from kdns.pool import PoolOptions

if TYPE_CHECKING:
    from kdns.rewrite import Rules

__all__ = ["ApiSource", "CachePolicy", "ConfigError", "DnsConfig", "HostsFile", "HttpAddresses", "ListenAddress", "OutsideNames", "PodsMode",
           "ServeConfig"]


class ConfigError(ValueError):
    """A configuration value is invalid. Where it is, as data: `flag` ("--ttl") when it came
    from the command line, else `key` ("upstream[1]"; None for the file as a whole) in
    `file`; `option` is the option's name (None for a key that is no option). `str()` is
    the one-line message: "FILE: KEY: REASON" or "--FLAG: REASON"."""

    def __init__(self, reason: str, *, option: str | None = None, flag: str | None = None, key: str | None = None,
                 file: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.option = option
        self.flag = flag
        self.key = key
        self.file = file

    def __str__(self) -> str:
        return ": ".join(part for part in (self.file, self.flag or self.key, self.reason) if part)

    def in_file(self, file: str) -> ConfigError:
        """The same error, said to be in `file` (unless it is about a flag)."""
        if self.flag is not None:
            return self
        return ConfigError(self.reason, option=self.option, key=self.key, file=file)


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str  # an IP address literal, or "" for every address of both families (`:PORT`)
    port: int

    @property
    def family(self) -> int:
        return names.ip_family(self.host)

    @property
    def everywhere(self) -> bool:
        """`:PORT`: 0.0.0.0 and [::] on the same port ([::] only where the host has IPv6)."""
        return not self.host

    def __str__(self) -> str:
        if not self.host:
            return f":{self.port}"
        return f"[{self.host}]:{self.port}" if self.family == 6 else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """What the answers depend on, apart from the Kubernetes data."""

    zones: tuple[str, ...] = default("zone")  # forward zones; the first is the primary
    ttl: int = default("ttl")
    pods: PodsMode = PodsMode(default("pods"))  # noqa: RUF009 - an enum member: immutable
    # Glue for `ns.dns.<zone>` when no kube-system/kube-dns Service exists.
    ns_addresses: tuple[str, ...] = ()
    forwarding: bool = False  # names outside the zones (and unknown PTRs) go upstream
    stub_domains: tuple[str, ...] = ()  # domains with upstreams of their own
    # --upstream-except zones (no upstreams: SERVFAIL), each with where it was set (the flag, or
    # the Corefile's except line), for kdns explain.
    except_zones: tuple[tuple[str, str], ...] = ()
    default_domains: tuple[str, ...] = ()  # --upstream-default: names there go to the default upstreams
    autopath: bool = default("autopath")  # answer a pod's whole search path server-side
    # The external zones (CoreDNS's k8s_external): Services' external addresses by name.
    external_zones: tuple[str, ...] = ()
    external_apex: str = default("external-apex")
    external_ttl: int = default("external-ttl")
    external_headless: bool = default("external-headless")
    # A name outside every zone that no upstream takes and no record of kdns's answers.
    outside_names: OutsideNames = OutsideNames(default("outside-names"))  # noqa: RUF009 - an enum member: immutable
    # The hosts of Ingresses and Gateway routes (kdns.webhosts), answered ahead of forwarding.
    ingress_hosts: bool = default("ingress-hosts")
    gateway_hosts: bool = default("gateway-hosts")
    # --ingress-controller: (class, namespace, Service); class "*" for every class.
    ingress_controllers: tuple[tuple[str, str, str], ...] = ()
    ingress_classes: tuple[str, ...] = ()  # --ingress-class: only these classes count; () every class
    # CoreDNS's `ignore empty_service`: a ClusterIP Service without ready endpoints has no names.
    ignore_empty_services: bool = default("ignore-empty-services")
    # A Corefile's `rewrite name` rules and `template`s, compiled once (kdns.rewrite); None: none.
    rules: Rules | None = None
    # CoreDNS's kubernetes and k8s_external `fallthrough ZONES`: a name under these zones
    # (absolute, "." for every name) that the cluster zone (external zone) does not hold
    # goes upstream instead of NXDOMAIN.
    cluster_fallthrough: tuple[str, ...] = ()
    external_fallthrough: tuple[str, ...] = ()
    udp_max: int = default("udp-max-size")  # the most kdns sends over UDP (CoreDNS's bufsize)

    @property
    def all_zones(self) -> tuple[str, ...]:
        """Forward zones, the external zones, then the reverse zones: the zones kdns is
        authoritative for (each has an SOA)."""
        return self.zones + self.external_zones + names.REVERSE_ZONES

    @property
    def claims_outside(self) -> bool:
        """Whether Kubernetes objects can claim names outside the zones (Ingress or Gateway
        hosts): until the first sync, such a name cannot be told apart from any other."""
        return self.ingress_hosts or self.gateway_hosts

    def falls_through(self, zone: str, name: str) -> bool:
        """Whether NXDOMAIN for `name` (absolute) in `zone` goes upstream instead (fallthrough)."""
        return _under(name, self.external_fallthrough if zone in self.external_zones else self.cluster_fallthrough)

    def zone_of(self, name: str) -> str | None:
        """The zone kdns is authoritative for that an absolute name lies in (the longest), or None."""
        best = None
        for zone in self.all_zones:
            if (name == zone or name.endswith("." + zone)) and (best is None or len(zone) > len(best)):
                best = zone
        return best


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Which forwarded answers the cache keeps, how long at least, and negative ones at most
    (CoreDNS's `cache TTL ZONES`, `disable success|denial ZONES`, `success N TTL MINTTL`,
    `denial N TTL MINTTL`).
    Zones are absolute, lowercase; "." is every name."""

    zones: tuple[str, ...] = (".",)  # cache only names under these
    no_success: tuple[str, ...] = ()  # never positive answers under these
    no_denial: tuple[str, ...] = ()  # never negative answers under these
    success_min_ttl: int = 0
    denial_min_ttl: int = 0
    denial_max_ttl: int = 0  # 0: the cache's own maximum

    def caches(self, name: str, success: bool) -> bool:
        """Whether an answer for `name` (absolute, lowercase) may be kept."""
        return _under(name, self.zones) and not _under(name, self.no_success if success else self.no_denial)


def _under(name: str, zones: tuple[str, ...]) -> bool:
    return any(names.within(name, z) for z in zones)


@dataclass(frozen=True, slots=True)
class HostsFile:
    """Hosts data kdns answers from (kdns.sources.hosts): a file of `kdns serve --hosts`, or a
    Corefile's `hosts` directive (its file, its inline lines, or both). `rank` orders them:
    when two name one host, the lower rank wins (the one given first).

    The rest is what a Corefile's `hosts` says (a `--hosts` file keeps the defaults): `inline`
    (address, names) pairs served beside the file's (CoreDNS's inline lines, or a ConfigMap
    key read with the Corefile); `label` names them in messages and keys their records when
    there is no file; only names under `zones` (() for any) and outside `excluded` are kept;
    `reload` is how often the file is looked at (None: every --reload-interval; 0: read
    once); when `required` is False a missing file is a warning, read once it appears.
    A Corefile's always has a `label` (its directive's file:line), so that two directives
    naming one file stay apart."""

    path: str  # "" when there is no file, only `inline`
    ttl: int = default("hosts-ttl")
    reverse: bool = default("hosts-reverse")  # PTR records for its addresses
    rank: int = 0
    inline: tuple[tuple[str, tuple[str, ...]], ...] = ()
    label: str = ""
    zones: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    reload: float | None = None
    required: bool = True

    @property
    def key(self) -> str:
        """The origin of its records (kdns.model.StaticRecords): the label, else the file."""
        return self.label or self.path

    def wants(self, name: str) -> bool:
        """Whether a name of this data is kept (under `zones`, outside `excluded`)."""
        def under(zones: tuple[str, ...]) -> bool:
            return any(z == "." or name == z or name.endswith("." + z) for z in zones)
        return (not self.zones or under(self.zones)) and not under(self.excluded)


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
    """Where the HTTP endpoints listen; None: not served (`:PORT`: both families)."""

    health: ListenAddress | None = None
    ready: ListenAddress | None = None
    metrics: ListenAddress | None = None
    explain: ListenAddress | None = None


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Everything `kdns serve` runs with (kdns.settings builds it). Exactly one source:
    `manifests` (paths) or `api`."""

    manifests: tuple[str, ...]
    manifest_max_bytes: int  # the largest manifest file read
    api: ApiSource | None
    listen: tuple[ListenAddress, ...]
    dns: DnsConfig
    namespaces: frozenset[str] | None  # expose only these namespaces
    labels: str | None  # label selector for Services (and their EndpointSlices)
    tcp_idle_timeout: float
    reload_interval: float
    startup_timeout: float
    hosts: tuple[str, ...]  # hosts files answered ahead of forwarding (`hosts_files` has them whole)
    hosts_ttl: int
    hosts_reverse: bool  # PTR records for their addresses
    upstreams: tuple[tuple[str, int], ...]  # (IP, port) for names outside the zones
    stub_domains: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]  # (domain, upstreams)
    upstream_timeout: float  # seconds per try
    cache_ttl: int  # the longest a forwarded answer is cached
    cache_size: int  # forwarded answers kept
    cache_max_bytes: int  # ... and the bytes they may take
    serve_stale: float  # seconds an expired answer may still be served when upstreams fail
    lameduck: float  # seconds of answering after SIGTERM, readiness already 503
    allow_recursion: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]  # ipaddress networks whose clients may have names forwarded; () = all
    allow_transfer: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]  # ipaddress networks whose clients may transfer the zones; () = none
    rrl_rate: float  # UDP responses per second per client prefix; 0 = unlimited
    rrl_slip: int
    tcp_max_connections: int
    tcp_message_timeout: float
    tcp_max_queries: int
    tcp_max_per_client: int
    tcp_send_timeout: float
    workers: int  # processes answering on the same ports (kdns.workers)
    http: HttpAddresses
    log_level: str
    log_format: str
    log_queries: bool
    upstream_max_concurrent: int = 0  # questions asked upstream at once; 0: no limit
    upstream_options: PoolOptions = DEFAULT_POOL  # the default upstreams' policy, transport, health checks
    stub_options: tuple[tuple[str, PoolOptions], ...] = ()  # each stub domain's (with upstreams)
    default_domains: tuple[str, ...] = ()  # names there go to the default upstreams, even under a stub domain
    corefile_hosts: tuple[HostsFile, ...] = ()  # a Corefile's `hosts` directives (kdns.corefile.wiring)
    cache_policy: CachePolicy = CachePolicy()  # which forwarded answers are cached (--cache-zone, --cache-disable-*)
    endpoints: bool = default("endpoints")  # watch EndpointSlices (--no-endpoints: CoreDNS's noendpoints)
    endpoint_pod_names: bool = default("endpoint-pod-names")  # endpoints without a hostname named after their Pod

    @property
    def hosts_files(self) -> tuple[HostsFile, ...]:
        """The hosts data in order, each with the options that apply to it: the --hosts files,
        then a Corefile's."""
        files = tuple(HostsFile(path, self.hosts_ttl, self.hosts_reverse, rank) for rank, path in enumerate(self.hosts))
        return files + tuple(replace(f, rank=len(files) + i) for i, f in enumerate(self.corefile_hosts))


def ns_addresses(listen: tuple[ListenAddress, ...]) -> tuple[str, ...]:
    """The addresses `ns.dns.<zone>` resolves to: the specific addresses kdns listens on."""
    out: list[str] = []
    for address in listen:
        if address.host and not ipaddress.ip_address(address.host).is_unspecified and address.host not in out:
            out.append(address.host)
    return tuple(out)
