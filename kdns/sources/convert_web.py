"""Ingress, IngressClass, Gateway and routes (as parsed JSON/YAML dicts) → the trimmed values
of `kdns.model`, for the hosts they route (`--ingress-hosts`, `--gateway-hosts`).

kdns.sources.convert calls these with its field reader, so a problem raises the same
`ObjectError` naming the object and the field (`Ingress shop/web: spec.rules[0].host: not a
host name: 'shop_example.com'`). Fields the API server checks (an Ingress rule's host, a
route's hostnames, a listener's hostname and port) are checked the same way here; names
that only annotations carry are kept as written and checked where they are used
(kdns.ingress), so that one bad annotation does not hide the object's good hosts.

Also here: what a Service or a Namespace carries for these hosts (their labels, trimmed).
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kdns import names
from kdns.model import Gateway, Ingress, IngressClass, Kind, Listener, ParentRef, Requirement, Route, Service, ServiceType

if TYPE_CHECKING:
    from kdns.sources.convert import _Fields

GATEWAY_GROUP = "gateway.networking.k8s.io"
# external-dns's annotations, which an Ingress or a Gateway may already carry.
HOSTNAME = "external-dns.alpha.kubernetes.io/hostname"
TARGET = "external-dns.alpha.kubernetes.io/target"
HOSTNAME_SOURCE = "external-dns.alpha.kubernetes.io/ingress-hostname-source"  # defined-hosts-only | annotation-only
LEGACY_CLASS = "kubernetes.io/ingress.class"
DEFAULT_CLASS = "ingressclass.kubernetes.io/is-default-class"
APP_INSTANCE, APP_NAME = "app.kubernetes.io/instance", "app.kubernetes.io/name"
# The labels Gateway implementations put on the Service they make for a Gateway: GEP-1762's
# (Istio, NGINX Gateway Fabric, kgateway), Envoy Gateway's (the Service lives in its own
# namespace) and Cilium's.
GATEWAY_NAME = "gateway.networking.k8s.io/gateway-name"
ENVOY_NAME, ENVOY_NAMESPACE = "gateway.envoyproxy.io/owning-gateway-name", "gateway.envoyproxy.io/owning-gateway-namespace"
CILIUM_NAME = "io.cilium.gateway/owning-gateway"
METADATA_NAME = "kubernetes.io/metadata.name"  # the label the API server gives every Namespace
MAX_HOSTS = 1000  # hosts of one Ingress or route; more is an error in the object
MAX_LISTENERS = 64  # the Gateway API's own limit
MAX_LABELS = 256  # labels kept of one Namespace (sorted; the rest are not seen by selectors)
ROUTE_KINDS = {"HTTPRoute": Kind.HTTP_ROUTE, "GRPCRoute": Kind.GRPC_ROUTE, "TLSRoute": Kind.TLS_ROUTE}


def host(f: _Fields, value: Any, field: str) -> str:
    """A host as the API server takes it in an Ingress rule, a route or a listener: a DNS
    name, optionally starting with a `*.` label; never an IP address. Lowercase, no dot at
    the end."""
    text = f.string(value, field).strip().rstrip(".").lower()
    if not is_host(text):
        raise f.fail(field, f"not a host name (a DNS name, optionally starting with '*.'): {value!r}")
    return text


def is_host(text: str) -> bool:
    bare = text.removeprefix("*.")
    return names.is_subdomain(bare) and names.canonical_ip(bare) is None


def is_local(value: str) -> bool:
    """A loopback address or `localhost`: where an ingress controller is from its own point
    of view, useless to a pod."""
    ip = names.canonical_ip(value)
    if ip is not None:
        return ipaddress.ip_address(ip).is_loopback
    return value == "localhost" or value.endswith(".localhost")


def _annotations(meta: dict[str, Any]) -> dict[str, Any]:
    value = meta.get("annotations")
    return value if isinstance(value, dict) else {}


def _listed(value: Any) -> list[str]:
    """An annotation's comma-separated names, lowercase, without a dot at the end."""
    if not isinstance(value, str):
        return []
    return [part.strip().rstrip(".").lower() for part in value.split(",") if part.strip().rstrip(".")]


def _targets(f: _Fields, annotations: dict[str, Any]) -> tuple[str, ...]:
    out = []
    for text in _listed(annotations.get(TARGET)):
        ip = names.canonical_ip(text)
        if ip is None and not names.is_subdomain(text):
            raise f.fail(f"metadata.annotations[{TARGET}]", f"neither an IP address nor a DNS name: {text!r}")
        out.append(ip or text)
    return tuple(dict.fromkeys(out))


def _bounded(f: _Fields, hosts: list[str]) -> tuple[str, ...]:
    unique = tuple(dict.fromkeys(hosts))
    if len(unique) > MAX_HOSTS:
        raise f.fail("", f"{len(unique)} hosts, more than {MAX_HOSTS}")
    return unique


# -- Ingress and IngressClass ------------------------------------------------------------------


def ingress(f: _Fields, namespace: str, name: str, meta: dict[str, Any], obj: dict[str, Any]) -> Ingress:
    spec = f.mapping(obj.get("spec"), "spec")
    annotations = _annotations(meta)
    class_name = f.string(spec.get("ingressClassName"), "spec.ingressClassName")
    if not class_name and isinstance(annotations.get(LEGACY_CLASS), str):
        class_name = annotations[LEGACY_CLASS].strip()
    defined = []
    for i, rule in enumerate(f.sequence(spec.get("rules"), "spec.rules")):
        rule = f.mapping(rule, f"spec.rules[{i}]")
        if rule.get("host"):
            defined.append(host(f, rule.get("host"), f"spec.rules[{i}].host"))
    for i, tls in enumerate(f.sequence(spec.get("tls"), "spec.tls")):
        tls = f.mapping(tls, f"spec.tls[{i}]")
        for j, value in enumerate(f.sequence(tls.get("hosts"), f"spec.tls[{i}].hosts")):
            text = f.string(value, f"spec.tls[{i}].hosts[{j}]").strip().rstrip(".").lower()
            if text:
                defined.append(text)
    source = annotations.get(HOSTNAME_SOURCE)
    source = source.strip().lower() if isinstance(source, str) else ""
    wanted = [] if source == "defined-hosts-only" else _listed(annotations.get(HOSTNAME))
    hosts = wanted if source == "annotation-only" else defined + wanted
    ips, hostnames = _load_balancer(f, f.mapping(obj.get("status"), "status"))
    return Ingress(namespace, name, class_name, _bounded(f, hosts), _targets(f, annotations), ips, hostnames)


def _load_balancer(f: _Fields, status: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    ips, hostnames = [], []
    lb = f.mapping(status.get("loadBalancer"), "status.loadBalancer")
    for i, entry in enumerate(f.sequence(lb.get("ingress"), "status.loadBalancer.ingress")):
        field = f"status.loadBalancer.ingress[{i}]"
        entry = f.mapping(entry, field)
        if entry.get("ip"):
            ip = f.ip(entry.get("ip"), f"{field}.ip")
            if not is_local(ip):
                ips.append(ip)
        if entry.get("hostname"):
            text = f.string(entry.get("hostname"), f"{field}.hostname").strip().rstrip(".").lower()
            if not names.is_subdomain(text):
                raise f.fail(f"{field}.hostname", f"not a DNS name: {entry.get('hostname')!r}")
            if not is_local(text):
                hostnames.append(text)
    return tuple(dict.fromkeys(ips)), tuple(dict.fromkeys(hostnames))


def ingress_class(f: _Fields, name: str, meta: dict[str, Any]) -> IngressClass:
    annotations = _annotations(meta)
    default = annotations.get(DEFAULT_CLASS)
    labels = f.mapping(meta.get("labels"), "metadata.labels")
    app: tuple[str, str] | tuple[()] = ()
    for key in (APP_INSTANCE, APP_NAME):
        value = labels.get(key)
        if isinstance(value, str) and value:
            app = (key, value)
            break
    return IngressClass(name, isinstance(default, str) and default.strip().lower() == "true", app)


def service_labels(svc: Service, meta: dict[str, Any]) -> Service:
    """`svc` with what Ingress and Gateway hosts read of its labels (kdns.model.Service)."""
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        return svc

    def label(key: str) -> str:
        value = labels.get(key)
        return value if isinstance(value, str) else ""

    app = ("", "")
    if svc.type is ServiceType.CLUSTER_IP and svc.cluster_ips and any(port.port == 80 for port in svc.ports):
        app = (label(APP_INSTANCE), label(APP_NAME))
    gateway = None
    if label(GATEWAY_NAME):
        gateway = (svc.namespace, label(GATEWAY_NAME))
    elif label(ENVOY_NAME):
        gateway = (label(ENVOY_NAMESPACE) or svc.namespace, label(ENVOY_NAME))
    elif label(CILIUM_NAME):
        gateway = (svc.namespace, label(CILIUM_NAME))
    if app == ("", "") and gateway is None:
        return svc
    return replace(svc, app=app, gateway=gateway)


def namespace_labels(f: _Fields, name: str, meta: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    labels = {k: v for k, v in f.mapping(meta.get("labels"), "metadata.labels").items() if isinstance(k, str) and isinstance(v, str)}
    labels[METADATA_NAME] = name
    return tuple(sorted(labels.items()))[:MAX_LABELS]


# -- Gateway API -------------------------------------------------------------------------------


def gateway(f: _Fields, namespace: str, name: str, meta: dict[str, Any], obj: dict[str, Any]) -> Gateway:
    spec = f.mapping(obj.get("spec"), "spec")
    listeners = []
    entries = f.sequence(spec.get("listeners"), "spec.listeners")
    if len(entries) > MAX_LISTENERS:
        raise f.fail("spec.listeners", f"{len(entries)} listeners, more than {MAX_LISTENERS}")
    for i, entry in enumerate(entries):
        listeners.append(_listener(f, f.mapping(entry, f"spec.listeners[{i}]"), f"spec.listeners[{i}]"))
    ips, hostnames = [], []
    status = f.mapping(obj.get("status"), "status")
    for i, address in enumerate(f.sequence(status.get("addresses"), "status.addresses")):
        field = f"status.addresses[{i}]"
        address = f.mapping(address, field)
        kind = f.string(address.get("type"), f"{field}.type", "IPAddress")
        if kind == "IPAddress":
            ip = f.ip(address.get("value"), f"{field}.value")
            if not is_local(ip):
                ips.append(ip)
        elif kind == "Hostname":
            text = f.string(address.get("value"), f"{field}.value").strip().rstrip(".").lower()
            if not names.is_subdomain(text):
                raise f.fail(f"{field}.value", f"not a DNS name: {address.get('value')!r}")
            if not is_local(text):
                hostnames.append(text)
    return Gateway(namespace, name, tuple(listeners), _targets(f, _annotations(meta)), tuple(dict.fromkeys(ips)),
                   tuple(dict.fromkeys(hostnames)))


def _listener(f: _Fields, entry: dict[str, Any], field: str) -> Listener:
    name = f.string(entry.get("name"), f"{field}.name")
    if not name:
        raise f.fail(f"{field}.name", "required")
    protocol = f.string(entry.get("protocol"), f"{field}.protocol")
    if not protocol:
        raise f.fail(f"{field}.protocol", "required")
    port = f.port_number(entry.get("port"), f"{field}.port")
    hostname = host(f, entry.get("hostname"), f"{field}.hostname") if entry.get("hostname") else ""
    allowed = f.mapping(entry.get("allowedRoutes"), f"{field}.allowedRoutes")
    spaces = f.mapping(allowed.get("namespaces"), f"{field}.allowedRoutes.namespaces")
    origin = f.string(spaces.get("from"), f"{field}.allowedRoutes.namespaces.from", "Same")
    selector: tuple[Requirement, ...] = ()
    if origin == "Selector":
        selector = _selector(f, f.mapping(spaces.get("selector"), f"{field}.allowedRoutes.namespaces.selector"),
                             f"{field}.allowedRoutes.namespaces.selector")
    kinds = []
    for i, kind in enumerate(f.sequence(allowed.get("kinds"), f"{field}.allowedRoutes.kinds")):
        kind = f.mapping(kind, f"{field}.allowedRoutes.kinds[{i}]")
        kinds.append((f.string(kind.get("group"), f"{field}.allowedRoutes.kinds[{i}].group", GATEWAY_GROUP) or GATEWAY_GROUP,
                      f.string(kind.get("kind"), f"{field}.allowedRoutes.kinds[{i}].kind")))
    return Listener(name, protocol, port, hostname, origin, selector, tuple(kinds))


def _selector(f: _Fields, selector: dict[str, Any], field: str) -> tuple[Requirement, ...]:
    out: list[Requirement] = []
    for key, value in sorted(f.mapping(selector.get("matchLabels"), f"{field}.matchLabels").items()):
        out.append((str(key), "In", (f.string(value, f"{field}.matchLabels[{key}]"),)))
    for i, expr in enumerate(f.sequence(selector.get("matchExpressions"), f"{field}.matchExpressions")):
        where = f"{field}.matchExpressions[{i}]"
        expr = f.mapping(expr, where)
        operator = f.string(expr.get("operator"), f"{where}.operator")
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise f.fail(f"{where}.operator", f"unknown operator {operator!r} (In, NotIn, Exists or DoesNotExist)")
        values = tuple(f.string(v, f"{where}.values[{j}]") for j, v in enumerate(f.sequence(expr.get("values"), f"{where}.values")))
        out.append((f.string(expr.get("key"), f"{where}.key"), operator, values))
    return tuple(out)


def route(f: _Fields, kind_text: str, namespace: str, name: str, meta: dict[str, Any], obj: dict[str, Any]) -> Route:
    spec = f.mapping(obj.get("spec"), "spec")
    hostnames = [host(f, value, f"spec.hostnames[{i}]") for i, value in enumerate(f.sequence(spec.get("hostnames"), "spec.hostnames"))]
    wanted = set()
    for i, ref in enumerate(f.sequence(spec.get("parentRefs"), "spec.parentRefs")):
        parent = _parent(f, f.mapping(ref, f"spec.parentRefs[{i}]"), f"spec.parentRefs[{i}]", namespace)
        if parent is not None:
            wanted.add((parent.namespace, parent.name))
    generation = meta.get("generation")
    accepted = []
    status = f.mapping(obj.get("status"), "status")
    for i, entry in enumerate(f.sequence(status.get("parents"), "status.parents")):
        field = f"status.parents[{i}]"
        entry = f.mapping(entry, field)
        parent = _parent(f, f.mapping(entry.get("parentRef"), f"{field}.parentRef"), f"{field}.parentRef", namespace)
        if parent is None or (parent.namespace, parent.name) not in wanted:
            continue  # not a Gateway, or not (any longer) one the route asks for
        for j, condition in enumerate(f.sequence(entry.get("conditions"), f"{field}.conditions")):
            condition = f.mapping(condition, f"{field}.conditions[{j}]")
            if condition.get("type") != "Accepted":
                continue
            observed = condition.get("observedGeneration")
            current = not isinstance(observed, int) or not isinstance(generation, int) or observed == generation
            if condition.get("status") == "True" and current:
                accepted.append(parent)
    return Route(ROUTE_KINDS[kind_text], namespace, name, _bounded(f, hostnames), tuple(dict.fromkeys(accepted)))


def _parent(f: _Fields, ref: dict[str, Any], field: str, namespace: str) -> ParentRef | None:
    """A parentRef to a Gateway; None for other kinds of parent."""
    group = f.string(ref.get("group"), f"{field}.group", GATEWAY_GROUP) or GATEWAY_GROUP
    kind = f.string(ref.get("kind"), f"{field}.kind", "Gateway") or "Gateway"
    if (group, kind) != (GATEWAY_GROUP, "Gateway"):
        return None
    name = f.string(ref.get("name"), f"{field}.name")
    if not name:
        raise f.fail(f"{field}.name", "required")
    port = f.port_number(ref.get("port"), f"{field}.port") if ref.get("port") is not None else 0
    return ParentRef(f.string(ref.get("namespace"), f"{field}.namespace") or namespace, name,
                     f.string(ref.get("sectionName"), f"{field}.sectionName"), port)
