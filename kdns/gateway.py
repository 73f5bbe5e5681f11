"""Which hosts a Gateway API route gets, through which Gateways (`--gateway-hosts`). Pure.

The Gateway API's attachment rules, as external-dns applies them (its source/gateway.go):
a route (HTTPRoute, GRPCRoute, TLSRoute) gets a host through a Gateway when

* its parentRef to that Gateway is Accepted in the route's status for its current generation
  (checked on arrival: kdns.sources.convert_web keeps only those parentRefs);
* a listener of the Gateway is the one the parentRef names (`sectionName`, `port`), or any
  listener when it names none;
* the listener's protocol fits the route: HTTP or HTTPS for HTTPRoute and GRPCRoute, TLS for
  TLSRoute;
* the listener's allowedRoutes admit it: the namespaces `from` Same (the default: the
  Gateway's own), All, or Selector (the route's Namespace labels match; a namespace kdns has
  no object for has only its kubernetes.io/metadata.name label), and the route's kind when
  `kinds` lists any;
* its hostnames and the listener's intersect: a listener without a hostname takes the
  route's; a route without hostnames takes the listener's (neither: no host); `*.example.com`
  matches any name below example.com, at any depth, and the more specific of two matching
  names is the host (`*.example.com` and `shop.example.com` give `shop.example.com`).

A host that is a wildcard answers for any name below it (`HostEntry.deep`). The target of a
host is its Gateways' (kdns.webhosts): external-dns's target annotation, else status.addresses
(IPAddress → A/AAAA, Hostname → CNAME; loopback and `localhost` left out), else the ClusterIP
of the Service its controller made for it.
"""

from __future__ import annotations

from collections.abc import Mapping

from kdns.model import Gateway, Kind, Listener, Requirement, Route
from kdns.sources.convert_web import GATEWAY_GROUP, METADATA_NAME

PROTOCOLS = {Kind.HTTP_ROUTE: ("HTTP", "HTTPS"), Kind.GRPC_ROUTE: ("HTTP", "HTTPS"), Kind.TLS_ROUTE: ("TLS",)}
GatewayKey = tuple[str, str]  # (namespace, name)


def intersect(listener: str, route: str) -> str | None:
    """The host both a listener hostname and a route hostname accept ("" accepts any), the
    more specific of the two; None when they have none in common or both are ""."""
    if not listener:
        return route or None
    if not route or listener == route:
        return listener
    wide, narrow = listener, route
    if len(narrow) < len(wide) or (len(narrow) == len(wide) and narrow.startswith("*.")):
        wide, narrow = narrow, wide
    if wide.startswith("*.") and narrow.endswith(wide[1:]):
        return narrow
    return None


def fits(route: Route, listener: Listener) -> bool:
    """The listener's protocol and allowed kinds take this kind of route."""
    if listener.protocol not in PROTOCOLS[route.kind]:
        return False
    return not listener.kinds or (GATEWAY_GROUP, route.kind.value) in listener.kinds


def admits(listener: Listener, gateway_namespace: str, route_namespace: str,
           namespace_labels: Mapping[str, tuple[tuple[str, str], ...]]) -> bool:
    """The listener's allowedRoutes.namespaces admit a route from `route_namespace`."""
    if listener.namespaces == "All":
        return True
    if listener.namespaces == "Same":
        return route_namespace == gateway_namespace
    if listener.namespaces == "Selector":
        labels = dict(namespace_labels.get(route_namespace, ((METADATA_NAME, route_namespace),)))
        return all(matches(requirement, labels) for requirement in listener.selector)
    return False  # a value this version of the API does not have: admit nothing


def matches(requirement: Requirement, labels: Mapping[str, str]) -> bool:
    key, operator, values = requirement
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    return key not in labels  # DoesNotExist


def route_hosts(route: Route, gateways: Mapping[GatewayKey, Gateway],
                namespace_labels: Mapping[str, tuple[tuple[str, str], ...]]) -> dict[str, list[GatewayKey]]:
    """Each host the route gets, with the Gateways (in order, once each) it gets it through."""
    out: dict[str, list[GatewayKey]] = {}
    for ref in route.parents:
        key = (ref.namespace, ref.name)
        gateway = gateways.get(key)
        if gateway is None:
            continue
        for listener in gateway.listeners:
            if (ref.section and listener.name != ref.section) or (ref.port and listener.port != ref.port):
                continue
            if not fits(route, listener) or not admits(listener, gateway.namespace, route.namespace, namespace_labels):
                continue
            for hostname in route.hostnames or ("",):
                host = intersect(listener.hostname, hostname)
                if host is not None:
                    through = out.setdefault(host, [])
                    if key not in through:
                        through.append(key)
    return out
