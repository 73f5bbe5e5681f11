"""Kubernetes objects (as parsed JSON/YAML dicts) → the trimmed values of `kdns.model`.

Every source goes through `convert`, so the rules are the same for manifests, the API and
the test fixture: the object is checked the way the API server would check the fields DNS
uses, and a problem raises `ObjectError` naming the object and the field
(`Service default/web: spec.clusterIP: not an IP address: '10.0.0.x'`).

Kinds other than v1 Namespace, v1 Service, discovery.k8s.io/v1 EndpointSlice, v1 Pod,
networking.k8s.io/v1 Ingress and IngressClass and gateway.networking.k8s.io/v1 Gateway,
HTTPRoute, GRPCRoute and TLSRoute (kdns.sources.convert_web) give None (the caller logs and
skips them), as do EndpointSlices DNS never uses: FQDN slices and slices without the
`kubernetes.io/service-name` label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from kdns import names
from kdns.model import (
    ROUTE_KINDS,
    Endpoint,
    EndpointSlice,
    Kind,
    KubeObject,
    Namespace,
    Pod,
    Port,
    Service,
    ServiceType,
)
from kdns.sources import convert_web

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
# Names a Service asks for in the external zones (external-dns's, and k8s_gateway's / CoreDNS's).
HOSTNAME_ANNOTATIONS = ("external-dns.alpha.kubernetes.io/hostname", "coredns.io/hostname")
MAX_HOSTNAMES = 64  # names kept from those annotations per Service (the rest are dropped)
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
KINDS = {
    ("v1", "Namespace"): Kind.NAMESPACE,
    ("v1", "Service"): Kind.SERVICE,
    ("discovery.k8s.io/v1", "EndpointSlice"): Kind.ENDPOINT_SLICE,
    ("v1", "Pod"): Kind.POD,
    ("networking.k8s.io/v1", "Ingress"): Kind.INGRESS,
    ("networking.k8s.io/v1", "IngressClass"): Kind.INGRESS_CLASS,
    ("gateway.networking.k8s.io/v1", "Gateway"): Kind.GATEWAY,
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): Kind.HTTP_ROUTE,
    ("gateway.networking.k8s.io/v1", "GRPCRoute"): Kind.GRPC_ROUTE,
    ("gateway.networking.k8s.io/v1", "TLSRoute"): Kind.TLS_ROUTE,
}
CLUSTER_SCOPED = ("Namespace", "IngressClass")  # kinds whose objects have no namespace


class ObjectError(ValueError):
    """An object DNS cannot use. `str()` is the whole message; the parts are kept too."""

    def __init__(self, subject: str, field: str, problem: str):
        super().__init__(f"{subject}: {field}: {problem}" if field else f"{subject}: {problem}")
        self.subject = subject
        self.field = field
        self.problem = problem


class _Fields:
    """Typed access to an object's fields; every failure names the field path."""

    def __init__(self, subject: str):
        self.subject = subject

    def fail(self, field: str, problem: str) -> ObjectError:
        return ObjectError(self.subject, field, problem)

    def mapping(self, value: Any, field: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(field, f"expected a mapping, got {_show(value)}")
        return value

    def sequence(self, value: Any, field: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(field, f"expected a list, got {_show(value)}")
        return value

    def string(self, value: Any, field: str, default: str = "") -> str:
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(field, f"expected a string, got {_show(value)}")
        return value

    def boolean(self, value: Any, field: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(field, f"expected true or false, got {_show(value)}")
        return value

    def ip(self, value: Any, field: str) -> str:
        text = self.string(value, field)
        ip = names.canonical_ip(text)
        if ip is None:
            raise self.fail(field, f"not an IP address: {text!r}")
        return ip

    def port_number(self, value: Any, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise self.fail(field, f"not a port number (1-65535): {_show(value)}")
        return value

    def protocol(self, value: Any, field: str) -> str:
        text = self.string(value, field, "TCP")
        if text not in PROTOCOLS:
            raise self.fail(field, f"unknown protocol {text!r} (TCP, UDP or SCTP)")
        return PROTOCOLS[text]

    def port_name(self, value: Any, field: str) -> str:
        text = self.string(value, field)
        if text and not names.is_label(text):
            raise self.fail(field, f"not a valid port name: {text!r}")
        return text

    def label(self, value: Any, field: str) -> str:
        text = self.string(value, field)
        if not names.is_label(text):
            raise self.fail(field, f"not a DNS label (lowercase letters, digits and '-', at most 63): {text!r}")
        return text


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__


def kind_of(obj: Any) -> Kind | None:
    """The kind kdns uses this object as, or None."""
    if not isinstance(obj, dict):
        return None
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    return KINDS.get((api_version, kind))


def identify(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name) as well as they can be read, for messages."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    kind, namespace, name = obj.get("kind"), meta.get("namespace"), meta.get("name")
    kind = kind if isinstance(kind, str) else "object"
    namespace = namespace if isinstance(namespace, str) else ""
    name = name if isinstance(name, str) else ""
    if kind not in CLUSTER_SCOPED and not namespace:
        namespace = "default"
    return kind, ("" if kind in CLUSTER_SCOPED else namespace), name


Allocate = Callable[[str, str, tuple[int, ...]], tuple[str, ...]]


def convert(obj: dict[str, Any], allocate: Allocate | None = None, *, pod_names: bool = False) -> KubeObject | None:
    """The model value for one Kubernetes object, None for objects DNS does not use.

    `allocate(namespace, name, families)` gives addresses to a ClusterIP Service that has
    none (objects written by hand, not yet seen by an API server); without it such a
    Service keeps no address. `pod_names` (CoreDNS's endpoint_pod_names): an endpoint
    without a hostname takes its Pod's name (targetRef) as one, when that is a DNS label.
    """
    kind = kind_of(obj)
    if kind is None:
        return None
    kind_text, namespace, name = identify(obj)
    subject = f"{kind_text} {namespace}/{name}" if namespace else f"{kind_text} {name or '?'}"
    f = _Fields(subject)
    meta = f.mapping(obj.get("metadata"), "metadata")
    name = f.string(meta.get("name"), "metadata.name")
    if not name:
        raise f.fail("metadata.name", "required")
    if kind is Kind.NAMESPACE:
        return Namespace(f.label(name, "metadata.name"), convert_web.namespace_labels(f, name, meta))
    if kind is Kind.INGRESS_CLASS:
        return convert_web.ingress_class(f, name, meta)
    namespace = f.label(f.string(meta.get("namespace"), "metadata.namespace", "default"), "metadata.namespace")
    if kind is Kind.SERVICE:
        svc = _service(f, namespace, f.label(name, "metadata.name"), f.mapping(obj.get("spec"), "spec"), allocate)
        svc = _external(f, svc, meta, f.mapping(obj.get("spec"), "spec"), f.mapping(obj.get("status"), "status"))
        return convert_web.service_labels(svc, meta)
    if kind is Kind.ENDPOINT_SLICE:
        return _endpoint_slice(f, namespace, name, meta, obj, pod_names)
    if kind is Kind.INGRESS:
        return convert_web.ingress(f, namespace, name, meta, obj)
    if kind is Kind.GATEWAY:
        return convert_web.gateway(f, namespace, name, meta, obj)
    if kind in ROUTE_KINDS:
        return convert_web.route(f, kind_text, namespace, name, meta, obj)
    return _pod(f, namespace, name, obj)


def _service(f: _Fields, namespace: str, name: str, spec: dict[str, Any], allocate: Allocate | None) -> Service:
    type_text = f.string(spec.get("type"), "spec.type", "ClusterIP")
    if type_text not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        raise f.fail("spec.type", f"unknown Service type {type_text!r}")

    ports = []
    for i, port in enumerate(f.sequence(spec.get("ports"), "spec.ports")):
        field = f"spec.ports[{i}]"
        port = f.mapping(port, field)
        ports.append(
            Port(
                name=f.port_name(port.get("name"), f"{field}.name"),
                protocol=f.protocol(port.get("protocol"), f"{field}.protocol"),
                port=f.port_number(port.get("port"), f"{field}.port"),
            )
        )

    if type_text == "ExternalName":
        target = f.string(spec.get("externalName"), "spec.externalName").rstrip(".")
        if not target:
            raise f.fail("spec.externalName", "required for an ExternalName Service")
        if not names.is_subdomain(target):
            raise f.fail("spec.externalName", f"not a DNS name: {target!r}")
        return Service(namespace, name, ServiceType.EXTERNAL_NAME, ports=tuple(ports), external_name=target)

    cluster_ip = f.string(spec.get("clusterIP"), "spec.clusterIP")
    cluster_ips = [f.string(v, f"spec.clusterIPs[{i}]") for i, v in enumerate(f.sequence(spec.get("clusterIPs"), "spec.clusterIPs"))]
    if cluster_ips and cluster_ip and cluster_ips[0] != cluster_ip:
        raise f.fail("spec.clusterIPs[0]", f"must equal spec.clusterIP ({cluster_ip!r}), got {cluster_ips[0]!r}")
    if not cluster_ips and cluster_ip:
        cluster_ips = [cluster_ip]
    if cluster_ips and cluster_ips[0] == "None":
        if len(cluster_ips) > 1:
            raise f.fail("spec.clusterIPs", "a headless Service has the single value 'None'")
        return Service(namespace, name, ServiceType.HEADLESS, ports=tuple(ports))
    field = "spec.clusterIPs" if spec.get("clusterIPs") else "spec.clusterIP"
    ips = tuple(f.ip(v, f"{field}[{i}]" if field == "spec.clusterIPs" else field) for i, v in enumerate(cluster_ips))
    if len(ips) > 2 or (len(ips) == 2 and names.ip_family(ips[0]) == names.ip_family(ips[1])):
        raise f.fail("spec.clusterIPs", "at most one IPv4 and one IPv6 address")
    families = tuple(f.string(v, f"spec.ipFamilies[{i}]") for i, v in enumerate(f.sequence(spec.get("ipFamilies"), "spec.ipFamilies")))
    for i, family in enumerate(families):
        if family not in ("IPv4", "IPv6"):
            raise f.fail(f"spec.ipFamilies[{i}]", f"unknown IP family {family!r} (IPv4 or IPv6)")
    if not ips and allocate is not None:
        # No address yet: allocate one, as the API server would on create.
        policy = f.string(spec.get("ipFamilyPolicy"), "spec.ipFamilyPolicy", "SingleStack")
        if policy not in ("SingleStack", "PreferDualStack", "RequireDualStack"):
            raise f.fail("spec.ipFamilyPolicy", f"unknown policy {policy!r}")
        wanted = tuple(4 if family == "IPv4" else 6 for family in families) or (4,)
        if policy == "SingleStack":
            wanted = wanted[:1]
        elif len(wanted) == 1:
            wanted += (6 if wanted[0] == 4 else 4,)
        ips = allocate(namespace, name, wanted)
    return Service(namespace, name, ServiceType.CLUSTER_IP, cluster_ips=ips, ports=tuple(ports))


def _external(f: _Fields, svc: Service, meta: dict[str, Any], spec: dict[str, Any], status: dict[str, Any]) -> Service:
    """`svc` with what the external zones answer from: spec.externalIPs, then the load
    balancer's status (addresses, and hostnames for those that have no address), and the
    names of the hostname annotations (comma-separated, as external-dns reads them)."""
    ips = [f.ip(v, f"spec.externalIPs[{i}]") for i, v in enumerate(f.sequence(spec.get("externalIPs"), "spec.externalIPs"))]
    hosts = []
    lb = f.mapping(status.get("loadBalancer"), "status.loadBalancer")
    for i, entry in enumerate(f.sequence(lb.get("ingress"), "status.loadBalancer.ingress")):
        field = f"status.loadBalancer.ingress[{i}]"
        entry = f.mapping(entry, field)
        if entry.get("ip"):
            ips.append(f.ip(entry.get("ip"), f"{field}.ip"))
        if entry.get("hostname"):
            host = f.string(entry.get("hostname"), f"{field}.hostname").rstrip(".").lower()
            if not names.is_subdomain(host):
                raise f.fail(f"{field}.hostname", f"not a DNS name: {entry.get('hostname')!r}")
            hosts.append(host)
    annotations = meta.get("annotations")
    if not isinstance(annotations, dict):
        annotations = {}
    wanted: list[str] = []
    for key in HOSTNAME_ANNOTATIONS:
        value = annotations.get(key)
        if isinstance(value, str):
            wanted += [part.strip().lower() for part in value.split(",") if part.strip()]
    if not (ips or hosts or wanted):
        return svc
    return replace(svc, external_ips=tuple(dict.fromkeys(ips)), lb_hostnames=tuple(dict.fromkeys(hosts)),
                   hostnames=tuple(dict.fromkeys(wanted))[:MAX_HOSTNAMES])


def _endpoint_slice(f: _Fields, namespace: str, name: str, meta: dict[str, Any], obj: dict[str, Any],
                    pod_names: bool = False) -> EndpointSlice | None:
    labels = f.mapping(meta.get("labels"), "metadata.labels")
    service = f.string(labels.get(SERVICE_NAME_LABEL), f"metadata.labels[{SERVICE_NAME_LABEL}]")
    address_type = f.string(obj.get("addressType"), "addressType")
    if address_type not in ("IPv4", "IPv6", "FQDN"):
        raise f.fail("addressType", f"must be IPv4, IPv6 or FQDN, got {address_type!r}")
    if not service or address_type == "FQDN":
        return None
    if not names.is_label(service):
        raise f.fail(f"metadata.labels[{SERVICE_NAME_LABEL}]", f"not a Service name: {service!r}")
    family = 4 if address_type == "IPv4" else 6

    endpoints = []
    for i, ep in enumerate(f.sequence(obj.get("endpoints"), "endpoints")):
        field = f"endpoints[{i}]"
        ep = f.mapping(ep, field)
        addresses = f.sequence(ep.get("addresses"), f"{field}.addresses")
        if not addresses:
            raise f.fail(f"{field}.addresses", "at least one address is required")
        ips = []
        for j, address in enumerate(addresses):
            ip = f.ip(address, f"{field}.addresses[{j}]")
            if names.ip_family(ip) != family:
                raise f.fail(f"{field}.addresses[{j}]", f"{ip} is not an {address_type} address")
            ips.append(ip)
        hostname = f.string(ep.get("hostname"), f"{field}.hostname")
        if hostname and not names.is_label(hostname):
            raise f.fail(f"{field}.hostname", f"not a DNS label: {hostname!r}")
        if not hostname and pod_names:
            hostname = _pod_name(ep.get("targetRef"))
        conditions = f.mapping(ep.get("conditions"), f"{field}.conditions")
        if f.boolean(conditions.get("ready"), f"{field}.conditions.ready", True):  # absent = ready
            endpoints.append(Endpoint(tuple(ips), hostname))

    ports = []
    for i, port in enumerate(f.sequence(obj.get("ports"), "ports")):
        field = f"ports[{i}]"
        port = f.mapping(port, field)
        if port.get("port") is None:
            continue  # "all ports": nothing an SRV record could name
        ports.append(
            Port(
                name=f.port_name(port.get("name"), f"{field}.name"),
                protocol=f.protocol(port.get("protocol"), f"{field}.protocol"),
                port=f.port_number(port.get("port"), f"{field}.port"),
            )
        )
    annotations = meta.get("annotations")
    if not isinstance(annotations, dict):
        annotations = {}
    return EndpointSlice(namespace, name, service, family, tuple(endpoints), tuple(ports), _timestamp(annotations.get(TRIGGER_TIME)))


def _pod_name(ref: Any) -> str:
    """The name an endpoint's targetRef gives (a Pod's, as CoreDNS takes it whatever the kind),
    lowercased, when it is a DNS label (a Pod's name may hold dots); else ""."""
    if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
        return ""
    name = ref["name"].lower()
    return name if names.is_label(name) else ""


def _timestamp(value: Any) -> float | None:
    """An RFC 3339 timestamp as Unix seconds; None if absent or unreadable (it only feeds a metric)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()  # 3.11+ reads a "Z" suffix as UTC
    except ValueError:
        return None


def _pod(f: _Fields, namespace: str, name: str, obj: dict[str, Any]) -> Pod:
    spec = f.mapping(obj.get("spec"), "spec")
    status = f.mapping(obj.get("status"), "status")
    ips = []
    for i, entry in enumerate(f.sequence(status.get("podIPs"), "status.podIPs")):
        ips.append(f.ip(f.mapping(entry, f"status.podIPs[{i}]").get("ip"), f"status.podIPs[{i}].ip"))
    if not ips and status.get("podIP"):
        ips.append(f.ip(status.get("podIP"), "status.podIP"))
    return Pod(namespace, name, tuple(dict.fromkeys(ips)), f.boolean(spec.get("hostNetwork"), "spec.hostNetwork", False))
