"""The values kdns keeps of Kubernetes objects, and the change events that carry them.

Sources (manifest files, the API watch, the test fixture) turn Kubernetes objects into these
small frozen values as soon as they arrive, keeping only what DNS answers need, and send
`Upsert` / `Delete` events to the index. Two values compare equal exactly when they would
produce the same DNS data, which is how the index recognises an update that changes nothing.

Everything here is already validated and normalised: names are lowercase, IP addresses are
in canonical text form, protocols are lowercase, not-ready endpoints are gone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Kind(str, enum.Enum):
    NAMESPACE = "Namespace"
    SERVICE = "Service"
    ENDPOINT_SLICE = "EndpointSlice"
    POD = "Pod"
    # Records for names outside the zones, from somewhere other than Kubernetes: a hosts file
    # (`kdns serve --hosts`), or the records of one name given to the test double.
    HOSTS = "Hosts"
    RECORD = "Record"

    def __str__(self) -> str:  # "Service", not "Kind.SERVICE", in messages
        return self.value


class ServiceType(str, enum.Enum):
    """How a Service is answered. NodePort and LoadBalancer Services answer as ClusterIP."""

    CLUSTER_IP = "ClusterIP"
    HEADLESS = "Headless"
    EXTERNAL_NAME = "ExternalName"


@dataclass(frozen=True, slots=True)
class Port:
    """A Service port or an EndpointSlice port. `name` is "" for an unnamed port."""

    name: str
    protocol: str  # "tcp", "udp" or "sctp"
    port: int


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    type: ServiceType
    cluster_ips: tuple[str, ...] = ()  # ClusterIP type only; IPv4 and/or IPv6
    ports: tuple[Port, ...] = ()
    external_name: str = ""  # ExternalName type only; lowercase, no trailing dot
    # For the external zones (any type): spec.externalIPs then status.loadBalancer.ingress[].ip,
    # de-duplicated; the load balancer's hostnames (AWS-style); and the names asked for in the
    # external-dns / coredns.io hostname annotations, lowercase, as written (checked by the index).
    external_ips: tuple[str, ...] = ()
    lb_hostnames: tuple[str, ...] = ()
    hostnames: tuple[str, ...] = ()

    kind = Kind.SERVICE

    @property
    def key(self) -> ObjectKey:
        return (Kind.SERVICE, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A ready endpoint of an EndpointSlice (not-ready ones are dropped on arrival)."""

    addresses: tuple[str, ...]
    hostname: str = ""  # "" when the endpoint has none


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    namespace: str
    name: str
    service: str  # the kubernetes.io/service-name label
    family: int  # 4 or 6 (FQDN slices are not kept)
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[Port, ...] = ()
    # When the change that produced this version happened (the EndpointSlice controller's
    # last-change-trigger-time annotation, Unix seconds): for the DNS programming latency
    # metric only, so it takes no part in comparisons.
    trigger_time: float | None = field(default=None, compare=False)

    kind = Kind.ENDPOINT_SLICE

    @property
    def key(self) -> ObjectKey:
        return (Kind.ENDPOINT_SLICE, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    ips: tuple[str, ...] = ()
    host_network: bool = False

    kind = Kind.POD

    @property
    def key(self) -> ObjectKey:
        return (Kind.POD, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str

    kind = Kind.NAMESPACE

    @property
    def namespace(self) -> str:
        return self.name

    @property
    def key(self) -> ObjectKey:
        return (Kind.NAMESPACE, "", self.name)


class Rrset(NamedTuple):
    """Records of one name and type, outside the Kubernetes schema (kdns.static checks them).

    `name` is absolute, lowercase, without the trailing dot; its first label may be `*`.
    `values` by type: A/AAAA canonical addresses; CNAME/PTR/NS absolute names; TXT tuples of
    strings (the character-strings of one record); SRV (priority, weight, port, target); MX
    (preference, exchange)."""

    name: str
    rtype: int
    ttl: int
    values: tuple[Any, ...]  # by type, as above (checked by kdns.static)


@dataclass(frozen=True, slots=True)
class StaticRecords:
    """Records for names outside the zones from one origin: a hosts file (`kind` HOSTS,
    `origin` its path) or the test double's records of one name (RECORD, the name). `ptrs`
    are (address, absolute name) claims on reverse names. When two origins give one name,
    the lower `rank` wins (then the origin that sorts first), whole: records are not mixed."""

    kind: Kind
    origin: str
    rrsets: tuple[Rrset, ...] = ()
    ptrs: tuple[tuple[str, str], ...] = ()
    ttl: int = 0  # the TTL of the PTR records
    rank: int = 0

    @property
    def namespace(self) -> str:
        return ""

    @property
    def name(self) -> str:
        return self.origin

    @property
    def key(self) -> ObjectKey:
        return (self.kind, "", self.origin)


KubeObject = Namespace | Service | EndpointSlice | Pod | StaticRecords
ObjectKey = tuple[Kind, str, str]  # (kind, namespace, name); namespace "" for a Namespace


@dataclass(frozen=True, slots=True)
class Upsert:
    """The object now exists with this content (created or modified)."""

    obj: KubeObject


@dataclass(frozen=True, slots=True)
class Delete:
    """The object with this key no longer exists."""

    key: ObjectKey


@dataclass(frozen=True, slots=True)
class Synced:
    """The source has delivered its complete initial state."""

    source: str


Event = Upsert | Delete | Synced


def describe(key: ObjectKey) -> str:
    """`Service default/web`, `Namespace prod`: how messages name an object."""
    kind, namespace, name = key
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
