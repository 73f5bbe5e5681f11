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
    # The names routed by an ingress controller or a Gateway (`--ingress-hosts`, `--gateway-hosts`).
    INGRESS = "Ingress"
    INGRESS_CLASS = "IngressClass"
    GATEWAY = "Gateway"
    HTTP_ROUTE = "HTTPRoute"
    GRPC_ROUTE = "GRPCRoute"
    TLS_ROUTE = "TLSRoute"

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
    # For the hosts of Ingresses and Gateways (kdns.webhosts): the app.kubernetes.io/instance
    # and app.kubernetes.io/name labels ("" when absent) of a Service with a ClusterIP that
    # serves port 80, which may be an ingress controller's; and the Gateway (namespace, name)
    # its controller made it for, from the labels Gateway implementations put on it.
    app: tuple[str, str] = ("", "")
    gateway: tuple[str, str] | None = None

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
    # Its labels, sorted (with the kubernetes.io/metadata.name label the API server adds):
    # a Gateway listener's allowedRoutes may select namespaces by them.
    labels: tuple[tuple[str, str], ...] = ()

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


@dataclass(frozen=True, slots=True)
class Ingress:
    """An Ingress as its hosts need it (kdns.ingress has the rules that use these fields).

    `hosts`: spec.rules[].host, spec.tls[].hosts and the external-dns hostname annotation's
    names, lowercase, without a trailing dot, in that order (the rules' hosts are checked on
    arrival, the others when the index uses them); `*.example.com` is a wildcard.
    `class_name`: spec.ingressClassName, else the legacy kubernetes.io/ingress.class
    annotation; "" when neither is given. `targets`: the external-dns target annotation
    (canonical addresses or lowercase names). `lb_ips` / `lb_hostnames`: its
    status.loadBalancer.ingress[] addresses and names, loopback addresses and `localhost`
    left out (kind's ingress-nginx publishes `localhost`, which a pod cannot use)."""

    namespace: str
    name: str
    class_name: str = ""
    hosts: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    lb_ips: tuple[str, ...] = ()
    lb_hostnames: tuple[str, ...] = ()

    kind = Kind.INGRESS

    @property
    def key(self) -> ObjectKey:
        return (Kind.INGRESS, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class IngressClass:
    """An IngressClass (cluster-scoped): whether it is the default class, and the label that
    finds its controller's Service (kdns.ingress): ("app.kubernetes.io/instance", value), else
    ("app.kubernetes.io/name", value), else ()."""

    name: str
    default: bool = False
    app: tuple[str, str] | tuple[()] = ()

    kind = Kind.INGRESS_CLASS

    @property
    def namespace(self) -> str:
        return ""

    @property
    def key(self) -> ObjectKey:
        return (Kind.INGRESS_CLASS, "", self.name)


# A label selector's requirement: (key, operator, values); operator In, NotIn, Exists or
# DoesNotExist (matchLabels become In with one value).
Requirement = tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Listener:
    """A Gateway listener as route attachment needs it (kdns.gateway)."""

    name: str
    protocol: str  # HTTP, HTTPS, TLS, TCP, UDP or an implementation's own
    port: int
    hostname: str = ""  # "" matches every host; `*.example.com` any name below example.com
    namespaces: str = "Same"  # allowedRoutes.namespaces.from: Same, All or Selector
    selector: tuple[Requirement, ...] = ()  # for Selector
    kinds: tuple[tuple[str, str], ...] = ()  # allowedRoutes.kinds as (group, kind); () = by protocol


@dataclass(frozen=True, slots=True)
class Gateway:
    """A Gateway: its listeners and where it can be reached. `targets`: the external-dns
    target annotation; `addresses` / `address_names`: status.addresses of type IPAddress
    (canonical) and Hostname (lowercase), loopback and `localhost` left out."""

    namespace: str
    name: str
    listeners: tuple[Listener, ...] = ()
    targets: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    address_names: tuple[str, ...] = ()

    kind = Kind.GATEWAY

    @property
    def key(self) -> ObjectKey:
        return (Kind.GATEWAY, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class ParentRef:
    """A route's parentRef to a Gateway (absolute namespace; "" section and 0 port: any)."""

    namespace: str
    name: str
    section: str = ""
    port: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    """An HTTPRoute, GRPCRoute or TLSRoute (gateway.networking.k8s.io/v1) as its hosts need
    it: spec.hostnames (lowercase; `*.` wildcards kept), and the parentRefs to Gateways that
    its status says are Accepted for its current generation (the others are dropped on
    arrival: a route its Gateway has not accepted routes nothing)."""

    kind: Kind
    namespace: str
    name: str
    hostnames: tuple[str, ...] = ()
    parents: tuple[ParentRef, ...] = ()

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.namespace, self.name)


ROUTE_KINDS = (Kind.HTTP_ROUTE, Kind.GRPC_ROUTE, Kind.TLS_ROUTE)
WEB_KINDS = (Kind.INGRESS, Kind.INGRESS_CLASS, Kind.GATEWAY, *ROUTE_KINDS)  # kdns.webhosts keeps these

KubeObject = Namespace | Service | EndpointSlice | Pod | StaticRecords | Ingress | IngressClass | Gateway | Route
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
