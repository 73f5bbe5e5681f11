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


class Kind(str, enum.Enum):
    NAMESPACE = "Namespace"
    SERVICE = "Service"
    ENDPOINT_SLICE = "EndpointSlice"
    POD = "Pod"

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


KubeObject = Namespace | Service | EndpointSlice | Pod
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
