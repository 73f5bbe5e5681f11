"""Gateway API route hosts resolve inside the cluster (issue 19): `kdns serve --gateway-hosts`.

* The pure rules (kdns.gateway): hostname intersection as the Gateway API spec words it,
  protocols and kinds, allowedRoutes' namespaces.
* Tables of cases through real DNS queries to a real server reading manifests: listener and
  route hostname intersections, wildcards at any depth, routes not accepted (no status, not
  Accepted, an old generation, a parent the route does not ask for) or not allowed (namespace,
  selector, kind, protocol, section, port), the Gateway's addresses, the Service made for it,
  conflicts with an Ingress.
* The API watch: without the Gateway API's CRDs nothing breaks and nothing is logged as a
  warning or an error; CRDs installed later are picked up, and removed, their hosts go.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import dns.rcode
import pytest
import trio

from kdns import gateway as rules
from kdns.model import Kind, Listener, ParentRef, Route
from kdns.sources import kubernetes as kube_source
from testkit.dnswire import rrs
from testkit.kubeapi import KubeAPI
from testkit.repo import write

NX = dns.rcode.NXDOMAIN
NODATA: set[str] = set()
GROUP = "gateway.networking.k8s.io/v1"


def gateway(name="public", ns="infra", *, listeners=None, addresses=("10.96.80.1",), names=(), annotations=None):
    meta: dict = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    status = [{"type": "IPAddress", "value": ip} for ip in addresses] + [{"type": "Hostname", "value": n} for n in names]
    return {"apiVersion": GROUP, "kind": "Gateway", "metadata": meta,
            "spec": {"gatewayClassName": "example", "listeners": listeners or [listener()]},
            "status": {"addresses": status} if status else {}}


def listener(name="http", protocol="HTTP", port=80, hostname=None, origin="All", selector=None, kinds=None):
    entry: dict = {"name": name, "protocol": protocol, "port": port}
    if hostname:
        entry["hostname"] = hostname
    allowed: dict = {"namespaces": {"from": origin}} if origin else {}
    if selector is not None:
        allowed["namespaces"]["selector"] = selector
    if kinds is not None:
        allowed["kinds"] = [{"kind": k} for k in kinds]
    if allowed:
        entry["allowedRoutes"] = allowed
    return entry


def route(name="api", ns="shop", *, kind="HTTPRoute", hostnames=("api.example.com",), parents=(("infra", "public"),),
          accepted=None, generation=2, observed=2, section=None, port=None, status=True):
    """A route whose status says Accepted for each of `accepted` (default: its parents)."""
    refs = []
    for parent_ns, parent in parents:
        ref: dict = {"name": parent, "namespace": parent_ns}
        if section:
            ref["sectionName"] = section
        if port:
            ref["port"] = port
        refs.append(ref)
    obj: dict = {"apiVersion": GROUP, "kind": kind, "metadata": {"name": name, "namespace": ns, "generation": generation},
                 "spec": {"parentRefs": refs, **({"hostnames": list(hostnames)} if hostnames else {})}}
    if status:  # (a controller copies the parentRef into the status as the spec has it)
        extra = {**({"sectionName": section} if section else {}), **({"port": port} if port else {})}
        obj["status"] = {"parents": [
            {"parentRef": {"name": p, "namespace": p_ns, **extra}, "controllerName": "example.com/gateway",
             "conditions": [{"type": "Accepted", "status": "True" if status is True else status, "observedGeneration": observed}]}
            for p_ns, p in (accepted if accepted is not None else parents)]}
    return obj


def namespace(name, labels):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def service(name, ns, ip, labels):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]}}


def a(name, *ips):
    return {f"{name}. 5 IN A {ip}" for ip in ips}


def manifest(tmp_path: Path, objects: list[dict]) -> Path:
    return write(tmp_path / "objects.json", json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))


# -- the pure rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("listener_host, route_host, host", [
    # The Gateway API's own examples (HTTPRoute.spec.hostnames).
    ("test.example.com", "", "test.example.com"),
    ("test.example.com", "test.example.com", "test.example.com"),
    ("test.example.com", "*.example.com", "test.example.com"),
    ("*.example.com", "", "*.example.com"),
    ("*.example.com", "*.example.com", "*.example.com"),
    ("*.example.com", "test.example.com", "test.example.com"),
    ("*.example.com", "foo.test.example.com", "foo.test.example.com"),
    ("*.example.com", "*.test.example.com", "*.test.example.com"),
    ("", "test.example.com", "test.example.com"),
    ("", "*.example.com", "*.example.com"),
    ("", "", None),
    ("*.example.com", "example.com", None),
    ("*.example.com", "test.example.net", None),
    ("test.example.com", "other.example.com", None),
    ("test.example.com", "*.test.example.com", None),
    ("*.a.com", "*.b.com", None),
    ("x.b.com", "*.b.com", "x.b.com"),  # as long as the wildcard: still its label
])
def test_hostname_intersection(listener_host, route_host, host):
    assert rules.intersect(listener_host, route_host) == host
    assert rules.intersect(route_host, listener_host) == host, "the same whichever side it is on"


def test_protocols_and_kinds():
    http, https, tls = Listener("a", "HTTP", 80), Listener("b", "HTTPS", 443), Listener("c", "TLS", 443)
    kinds = {kind: Route(kind, "ns", "r") for kind in (Kind.HTTP_ROUTE, Kind.GRPC_ROUTE, Kind.TLS_ROUTE)}
    assert [rules.fits(kinds[Kind.HTTP_ROUTE], li) for li in (http, https, tls)] == [True, True, False]
    assert [rules.fits(kinds[Kind.GRPC_ROUTE], li) for li in (http, https, tls)] == [True, True, False]
    assert [rules.fits(kinds[Kind.TLS_ROUTE], li) for li in (http, https, tls)] == [False, False, True]
    only_grpc = Listener("d", "HTTPS", 443, kinds=(("gateway.networking.k8s.io", "GRPCRoute"),))
    assert not rules.fits(kinds[Kind.HTTP_ROUTE], only_grpc) and rules.fits(kinds[Kind.GRPC_ROUTE], only_grpc)


@pytest.mark.parametrize("origin, selector, route_ns, expected", [
    ("Same", (), "infra", True),
    ("Same", (), "shop", False),
    ("All", (), "shop", True),
    ("Selector", (("team", "In", ("web",)),), "shop", True),
    ("Selector", (("team", "In", ("db",)),), "shop", False),
    ("Selector", (("team", "NotIn", ("db",)),), "shop", True),
    ("Selector", (("team", "Exists", ()),), "shop", True),
    ("Selector", (("team", "DoesNotExist", ()),), "shop", False),
    ("Selector", (("kubernetes.io/metadata.name", "In", ("other",)),), "other", True),  # no Namespace object: its name label
    ("Selector", (("team", "Exists", ()),), "other", False),
    ("Selector", (), "other", True),  # an empty selector selects everything
    ("Nowhere", (), "infra", False),
])
def test_allowed_namespaces(origin, selector, route_ns, expected):
    labels = {"shop": (("kubernetes.io/metadata.name", "shop"), ("team", "web"))}
    assert rules.admits(Listener("l", "HTTP", 80, namespaces=origin, selector=selector), "infra", route_ns, labels) is expected


def test_route_hosts_through_sections_and_ports():
    from kdns.model import Gateway

    gw = Gateway("infra", "gw", (Listener("a", "HTTP", 80, "a.example.com", "All"), Listener("b", "HTTP", 8080, "b.example.com", "All")))
    gateways = {("infra", "gw"): gw}

    def hosts(**ref):
        return sorted(rules.route_hosts(Route(Kind.HTTP_ROUTE, "shop", "r", (), (ParentRef("infra", "gw", **ref),)), gateways, {}))

    assert hosts() == ["a.example.com", "b.example.com"]
    assert hosts(section="b") == ["b.example.com"]
    assert hosts(port=80) == ["a.example.com"]
    assert hosts(section="a", port=8080) == []
    assert hosts(section="missing") == []


# -- through DNS --------------------------------------------------------------------------------------

API = "api.example.com"
# (objects, [(name, type, expected answer lines or rcode)], a warning expected in the log)
CASES = {
    "a listener wildcard and a route's host": ([gateway(listeners=[listener(hostname="*.example.com")]), route()],
                                               [(API, "A", a(API, "10.96.80.1")), ("other.example.com", "A", NX)], None),
    "a listener without hostname takes the route's": ([gateway(), route()], [(API, "A", a(API, "10.96.80.1"))], None),
    "a route without hostnames takes the listener's": (
        [gateway(listeners=[listener(hostname="shop.example.com")]), route(hostnames=())],
        [("shop.example.com", "A", a("shop.example.com", "10.96.80.1"))], None),
    "a route wildcard narrows a listener wildcard": (
        [gateway(listeners=[listener(hostname="*.example.com")]), route(hostnames=("*.apps.example.com",))],
        [("x.apps.example.com", "A", a("x.apps.example.com", "10.96.80.1")), ("x.example.com", "A", NX)], None),
    "a listener's wildcard answers any depth below it": (
        [gateway(listeners=[listener(hostname="*.example.com")]), route(hostnames=())],
        [("a.example.com", "A", a("a.example.com", "10.96.80.1")), ("a.b.c.example.com", "A", a("a.b.c.example.com", "10.96.80.1")),
         ("example.com", "A", NODATA), ("example.net", "A", NX)], None),
    "a wildcard route host on an exact listener: the listener's host": (
        [gateway(listeners=[listener(hostname="shop.example.com")]), route(hostnames=("*.example.com",))],
        [("shop.example.com", "A", a("shop.example.com", "10.96.80.1")), ("other.example.com", "A", NX)], None),
    "hostnames that do not intersect": (
        [gateway(listeners=[listener(hostname="*.example.net")]), route()], [(API, "A", NX)], None),
    "neither has a hostname: no host": ([gateway(), route(hostnames=())], [("example.com", "A", NX)], None),
    # -- accepted for the current generation --
    "no status: not accepted": ([gateway(), route(status=False)], [(API, "A", NX)], None),
    "Accepted False": ([gateway(), route(status="False")], [(API, "A", NX)], None),
    "accepted for an older generation": ([gateway(), route(generation=3, observed=2)], [(API, "A", NX)], None),
    "accepted by a Gateway the route does not ask for": (
        [gateway(), gateway("other", addresses=("10.96.80.2",)), route(accepted=[("infra", "other")])], [(API, "A", NX)], None),
    # -- allowed by the listener --
    "from Same, by default: another namespace is not": (
        [gateway(listeners=[listener(origin=None)]), route()], [(API, "A", NX)], None),
    "from Same: the Gateway's namespace is": (
        [gateway(listeners=[listener(origin=None)]), route(ns="infra")], [(API, "A", a(API, "10.96.80.1"))], None),
    "from a Selector matching the route's Namespace": (
        [namespace("shop", {"team": "web"}), gateway(listeners=[listener(origin="Selector", selector={"matchLabels": {"team": "web"}})]),
         route()], [(API, "A", a(API, "10.96.80.1"))], None),
    "from a Selector not matching it": (
        [namespace("shop", {"team": "db"}), gateway(listeners=[listener(origin="Selector", selector={"matchExpressions": [
            {"key": "team", "operator": "In", "values": ["web"]}]})]), route()], [(API, "A", NX)], None),
    "kinds that leave the route's out": (
        [gateway(listeners=[listener(kinds=["GRPCRoute"])]), route()], [(API, "A", NX)], None),
    "a TLSRoute on an HTTP listener": ([gateway(), route(kind="TLSRoute")], [(API, "A", NX)], None),
    "a TLSRoute on a TLS listener": ([gateway(listeners=[listener(protocol="TLS", port=443)]), route(kind="TLSRoute")],
                                     [(API, "A", a(API, "10.96.80.1"))], None),
    "a GRPCRoute on an HTTPS listener": ([gateway(listeners=[listener(protocol="HTTPS", port=443)]), route(kind="GRPCRoute")],
                                         [(API, "A", a(API, "10.96.80.1"))], None),
    "the section a parentRef names": (
        [gateway(listeners=[listener("a", hostname="a.example.com"), listener("b", port=8080, hostname="b.example.com")]),
         route(hostnames=(), section="b")], [("a.example.com", "A", NX), ("b.example.com", "A", a("b.example.com", "10.96.80.1"))], None),
    # -- the target --
    "status addresses of both families": (
        [gateway(addresses=("10.96.80.1", "fd00::80")), route()],
        [(API, "A", a(API, "10.96.80.1")), (API, "AAAA", {f"{API}. 5 IN AAAA fd00::80"})], None),
    "a Hostname address: a CNAME": ([gateway(addresses=(), names=("gw.elb.example.net",)), route()],
                                     [(API, "A", {f"{API}. 5 IN CNAME gw.elb.example.net."})], None),
    "external-dns's target annotation beats the status": (
        [gateway(annotations={"external-dns.alpha.kubernetes.io/target": "192.0.2.44"}), route()], [(API, "A", a(API, "192.0.2.44"))],
        None),
    "a loopback status: the Service made for the Gateway (GEP-1762's label)": (
        [gateway(addresses=("127.0.0.1",)), route(), service("public-istio", "infra", "10.96.81.1",
                                                             {"gateway.networking.k8s.io/gateway-name": "public"})],
        [(API, "A", a(API, "10.96.81.1"))], None),
    "Envoy Gateway's Service, in its own namespace": (
        [gateway(addresses=()), route(), service("envoy-infra-public-1a2b", "envoy-gateway-system", "10.96.82.1",
                                                 {"gateway.envoyproxy.io/owning-gateway-name": "public",
                                                  "gateway.envoyproxy.io/owning-gateway-namespace": "infra"})],
        [(API, "A", a(API, "10.96.82.1"))], None),
    "no address at all: not answered, and said": (
        [gateway(addresses=()), route()], [(API, "A", NX)], "HTTPRoute shop/api: no address for api.example.com"),
    "a route through two Gateways: both addresses": (
        [gateway(), gateway("second", addresses=("10.96.80.2",)), route(parents=(("infra", "public"), ("infra", "second")))],
        [(API, "A", a(API, "10.96.80.1", "10.96.80.2"))], None),
    "an HTTPRoute and an Ingress claim one host: HTTPRoute first": (
        [gateway(), route(), {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {
            "name": "api", "namespace": "shop", "annotations": {"external-dns.alpha.kubernetes.io/target": "192.0.2.9"}},
            "spec": {"rules": [{"host": API}]}}],
        [(API, "A", a(API, "10.96.80.1"))], "api.example.com: claimed by Ingress shop/api and HTTPRoute shop/api; HTTPRoute shop/api wins"),
}


@pytest.mark.parametrize("objects, queries, warning", CASES.values(), ids=CASES.keys())
async def test_route_hosts(kdns, tmp_path, caplog, objects, queries, warning):
    caplog.set_level(logging.INFO, logger="kdns")
    server = await kdns(manifest(tmp_path, objects), args=["--gateway-hosts", "--ingress-hosts", "--outside-names", "nxdomain"])
    for name, qtype, expected in queries:
        reply = await server.query(name, qtype)
        if isinstance(expected, int):
            assert reply.rcode() == expected, (name, qtype, reply)
        else:
            assert (reply.rcode(), rrs(reply.answer)) == (dns.rcode.NOERROR, expected), (name, qtype, reply)
    if warning:
        assert warning in caplog.text
    else:
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_a_gateway_deleted_takes_its_route_hosts_along(kdns, tmp_path):
    path = manifest(tmp_path, [gateway(), route()])
    server = await kdns(path, args=["--gateway-hosts", "--outside-names", "nxdomain"])
    assert rrs((await server.query(API)).answer) == a(API, "10.96.80.1")
    manifest(tmp_path, [route()])
    await eventually(server, API, lambda r: r.rcode() == NX)
    manifest(tmp_path, [route(), gateway(addresses=("10.96.80.7",))])
    await eventually(server, API, lambda r: rrs(r.answer) == a(API, "10.96.80.7"))


async def eventually(server, name, expect, qtype="A", timeout=5.0):
    reply = None
    with trio.move_on_after(timeout):
        while True:
            reply = await server.query(name, qtype)
            if expect(reply):
                return reply
            await trio.sleep(0.02)
    pytest.fail(f"{name} {qtype}: still {reply}")


# -- the API watch, with and without the CRDs ---------------------------------------------------------


@pytest.fixture
def api():
    server = KubeAPI().start()
    yield server
    server.stop()


async def follow(kdns, api, tmp_path, *args):
    server = await kdns(args=["--kubeconfig", str(api.kubeconfig(tmp_path / "kubeconfig")), *args])
    with trio.fail_after(5):
        while not server.server.synced:
            await trio.sleep(0.02)
    return server


async def test_without_the_crds_nothing_breaks(kdns, api, tmp_path, caplog):
    """A cluster without the Gateway API: kdns syncs, serves Ingress hosts, logs no warning and
    no error, and lists nothing it is not served (discovery says so first)."""
    caplog.set_level(logging.INFO, logger="kdns")
    api.apply({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {
        "name": "web", "namespace": "shop", "annotations": {"external-dns.alpha.kubernetes.io/target": "192.0.2.10"}},
        "spec": {"rules": [{"host": "shop.example.com"}]}})
    server = await follow(kdns, api, tmp_path, "--ingress-hosts", "--gateway-hosts", "--outside-names", "nxdomain")
    assert rrs((await server.query("shop.example.com")).answer) == a("shop.example.com", "192.0.2.10")
    assert (await server.query(API)).rcode() == NX
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "httproutes: not served by the API server (gateway.networking.k8s.io/v1 is not installed)" in caplog.text
    paths = {path for _, path, _ in api.requests}
    assert "/apis/gateway.networking.k8s.io/v1" in paths
    assert not any(path.startswith("/apis/gateway.networking.k8s.io/v1/") for path in paths)


async def test_crds_installed_later_are_picked_up(kdns, api, tmp_path, monkeypatch, caplog):
    """Installed after kdns started, the CRDs and their objects are followed; uninstalled,
    the hosts of their objects go."""
    monkeypatch.setattr(kube_source, "PROBE_INTERVAL", 0.1)
    caplog.set_level(logging.INFO, logger="kdns")
    server = await follow(kdns, api, tmp_path, "--gateway-hosts", "--outside-names", "nxdomain")
    assert (await server.query(API)).rcode() == NX
    api.install_crds()
    api.apply(gateway())
    api.apply(route())
    await eventually(server, API, lambda r: rrs(r.answer) == a(API, "10.96.80.1"))
    assert "httproutes: served by the API server now; following it" in caplog.text
    api.apply(route(hostnames=("api2.example.com",), generation=3, observed=3))
    await eventually(server, "api2.example.com", lambda r: rrs(r.answer) == a("api2.example.com", "10.96.80.1"), timeout=1.0)
    assert (await server.query(API)).rcode() == NX
    api.uninstall_crds()
    await eventually(server, "api2.example.com", lambda r: r.rcode() == NX)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
