"""Ingress hosts resolve inside the cluster (issue 19): `kdns serve --ingress-hosts`.

* Tables of cases through real DNS queries to a real server reading manifests: each target
  rule and the order they are tried in, kind's `localhost` status, classes (name, legacy
  annotation, default class, none, `--ingress-class`), the controller Service (the option,
  discovery, ambiguity), TLS hosts and the hostname annotation, wildcards and precedence,
  conflicts between objects, hosts in kdns's own zones.
* A claimed host is never forwarded; deleting its Ingress forwards it again.
* The API watch (tests/kubeapi.py): an Ingress created resolves within a second, deleted it is
  an ordinary outside name again; a controller Service's new ClusterIP is followed; before the
  first sync an outside name is SERVFAIL, not forwarded.
* The test double's `ingress()`, a wildcard into the cluster that follows the Service.
* glibc in a pod-like network namespace resolves an Ingress host and a Gateway route host.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import dns.flags
import dns.rcode
import dns.resolver
import pytest
import trio

from kdns import ingress as ingress_rules
from kdns.config import DnsConfig
from kdns.index import Index
from kdns.model import Kind, Service, ServiceType, Synced, Upsert
from kdns.sources.convert import convert
from testkit.dnswire import rrs
from testkit.kubeapi import KubeAPI

# The pod network namespace of tests/test_glibc.py (pod_netns is a fixture).
from testkit.netns import KDNS_IP, getent
from testkit.repo import write
from testkit.stubdns import StubDNS

TARGET = "external-dns.alpha.kubernetes.io/target"
HOSTNAME = "external-dns.alpha.kubernetes.io/hostname"
INSTANCE = "app.kubernetes.io/instance"
NX = dns.rcode.NXDOMAIN
NODATA: set[str] = set()  # NOERROR, no records


def ingress(name="web", ns="shop", *, hosts=("shop.example.com",), cls=None, legacy=None, tls=(), annotations=None, lb=()):
    meta: dict = {"name": name, "namespace": ns}
    notes = dict(annotations or {})
    if legacy:
        notes["kubernetes.io/ingress.class"] = legacy
    if notes:
        meta["annotations"] = notes
    spec: dict = {"rules": [{"host": host} for host in hosts]}
    if cls:
        spec["ingressClassName"] = cls
    if tls:
        spec["tls"] = [{"hosts": list(tls), "secretName": "tls"}]
    obj = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}
    if lb:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": x} if x[0].isdigit() or ":" in x else {"hostname": x} for x in lb]}}
    return obj


def service(name, ns, ip, *, ports=(80, 443), labels=None):
    meta: dict = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"clusterIP": ip, "ports": [{"name": f"p{p}", "port": p} for p in ports]}}


def ingress_class(name, *, labels=None, default=False):
    meta: dict = {"name": name}
    if labels:
        meta["labels"] = labels
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": meta,
            "spec": {"controller": f"example.com/{name}"}}


# ingress-nginx as kind's manifest installs it: the class and the controller's Service share
# the app.kubernetes.io/instance label; so does the admission webhook's Service (443 only).
NGINX_LABELS = {INSTANCE: "ingress-nginx", "app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}
NGINX = [
    ingress_class("nginx", labels=NGINX_LABELS),
    service("ingress-nginx-controller", "ingress-nginx", "10.96.50.1", labels=NGINX_LABELS),
    service("ingress-nginx-controller-admission", "ingress-nginx", "10.96.50.2", ports=(443,), labels=NGINX_LABELS),
]
TRAEFIK = [
    ingress_class("traefik", labels={"app.kubernetes.io/name": "traefik"}),
    service("traefik", "traefik", "10.96.60.1", labels={"app.kubernetes.io/name": "traefik"}),
]


def a(name, *ips):
    return {f"{name}. 5 IN A {ip}" for ip in ips}


def manifest(tmp_path: Path, objects: list[dict], name: str = "objects.json") -> Path:
    return write(tmp_path / name, json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))


async def check(server, queries):
    for name, qtype, expected in queries:
        reply = await server.query(name, qtype)
        if isinstance(expected, int):
            assert reply.rcode() == expected, (name, qtype, reply)
        else:
            assert (reply.rcode(), rrs(reply.answer)) == (dns.rcode.NOERROR, expected), (name, qtype, reply)


SHOP = "shop.example.com"

# (objects, extra flags, [(name, type, expected answer lines or rcode)], a warning expected in the log)
CASES = {
    # -- the target, in order: annotation, load-balancer status, controller Service --
    "annotation address beats status and controller": (
        [ingress(cls="nginx", annotations={TARGET: "192.0.2.10"}, lb=["198.51.100.1"]), *NGINX], [],
        [(SHOP, "A", a(SHOP, "192.0.2.10"))], None),
    "annotation IPv6 address: AAAA, A is NODATA": (
        [ingress(annotations={TARGET: "2001:db8::10"})], [],
        [(SHOP, "AAAA", {f"{SHOP}. 5 IN AAAA 2001:db8::10"}), (SHOP, "A", NODATA)], None),
    "annotation name: a CNAME (alone without an upstream)": (
        [ingress(annotations={TARGET: "lb.example.net."})], [],
        [(SHOP, "A", {f"{SHOP}. 5 IN CNAME lb.example.net."}), (SHOP, "CNAME", {f"{SHOP}. 5 IN CNAME lb.example.net."})], None),
    "annotation addresses and a name: the addresses": (
        [ingress(annotations={TARGET: "lb.example.net, 192.0.2.11,192.0.2.12"})], [],
        [(SHOP, "A", a(SHOP, "192.0.2.11", "192.0.2.12"))], None),
    "status address beats the controller": (
        [ingress(cls="nginx", lb=["198.51.100.1"]), *NGINX], [], [(SHOP, "A", a(SHOP, "198.51.100.1"))], None),
    "status hostname: a CNAME": (
        [ingress(lb=["abc.elb.example.net"])], [], [(SHOP, "A", {f"{SHOP}. 5 IN CNAME abc.elb.example.net."})], None),
    "kind's localhost status: the controller's ClusterIP": (
        [ingress(cls="nginx", lb=["localhost"]), *NGINX], [], [(SHOP, "A", a(SHOP, "10.96.50.1"))], None),
    "a loopback status address: the controller's ClusterIP": (
        [ingress(cls="nginx", lb=["127.0.0.1", "::1"]), *NGINX], [], [(SHOP, "A", a(SHOP, "10.96.50.1"))], None),
    "localhost beside a real address: the real one": (
        [ingress(cls="nginx", lb=["localhost", "203.0.113.5"]), *NGINX], [], [(SHOP, "A", a(SHOP, "203.0.113.5"))], None),
    "no target at all: not answered, and said": (
        [ingress(cls="nginx")], [], [(SHOP, "A", NX)], "Ingress shop/web: no target for shop.example.com"),
    # -- the controller Service --
    "--ingress-controller beats discovery": (
        [ingress(cls="nginx"), *NGINX, service("proxy", "edge", "10.96.70.1")], ["--ingress-controller", "nginx=edge/proxy"],
        [(SHOP, "A", a(SHOP, "10.96.70.1"))], None),
    "--ingress-controller '*' for an Ingress without a class": (
        [ingress(), service("proxy", "edge", "10.96.70.1")], ["--ingress-controller", "*=edge/proxy"],
        [(SHOP, "A", a(SHOP, "10.96.70.1"))], None),
    "a class's own controller beats '*'": (
        [ingress(cls="traefik"), *TRAEFIK, service("proxy", "edge", "10.96.70.1")],
        ["--ingress-controller", "*=edge/proxy", "--ingress-controller", "traefik=traefik/traefik"],
        [(SHOP, "A", a(SHOP, "10.96.60.1"))], None),
    "discovered by app.kubernetes.io/name when the class has no instance label": (
        [ingress(cls="traefik"), *TRAEFIK], [], [(SHOP, "A", a(SHOP, "10.96.60.1"))], None),
    "two candidates: none is chosen, and both are named": (
        [ingress(cls="nginx"), *NGINX, service("second", "ingress-nginx", "10.96.50.3", labels=NGINX_LABELS)], [],
        [(SHOP, "A", NX)], "ingress-nginx/ingress-nginx-controller, ingress-nginx/second"),
    "a controller Service that does not exist": (
        [ingress(cls="nginx"), *NGINX], ["--ingress-controller", "nginx=edge/missing"], [(SHOP, "A", NX)], "no target"),
    # -- classes --
    "the legacy class annotation": (
        [ingress(legacy="nginx"), *NGINX], ["--ingress-class", "nginx"], [(SHOP, "A", a(SHOP, "10.96.50.1"))], None),
    "the default IngressClass": (
        [ingress(), ingress_class("nginx", labels=NGINX_LABELS, default=True), *NGINX[1:]], ["--ingress-class", "nginx"],
        [(SHOP, "A", a(SHOP, "10.96.50.1"))], None),
    "two default classes: no default": (
        [ingress(annotations={TARGET: "192.0.2.10"}), ingress_class("nginx", default=True), ingress_class("other", default=True)],
        ["--ingress-class", "nginx"], [(SHOP, "A", NX)], None),
    "--ingress-class leaves out the other classes": (
        [ingress("a", cls="traefik", hosts=("a.example.com",), annotations={TARGET: "192.0.2.10"}),
         ingress("b", cls="nginx", hosts=("b.example.com",), annotations={TARGET: "192.0.2.11"})], ["--ingress-class", "nginx"],
        [("a.example.com", "A", NX), ("b.example.com", "A", a("b.example.com", "192.0.2.11"))], None),
    "--ingress-class leaves out Ingresses without a class": (
        [ingress(annotations={TARGET: "192.0.2.10"})], ["--ingress-class", "nginx"], [(SHOP, "A", NX)], None),
    "without --ingress-class an Ingress without a class counts": (
        [ingress(annotations={TARGET: "192.0.2.10"})], [], [(SHOP, "A", a(SHOP, "192.0.2.10"))], None),
    "an IngressClass without labels: nothing to discover": (
        [ingress(cls="plain"), ingress_class("plain"), *NGINX[1:]], [], [(SHOP, "A", NX)], "no controller Service for class plain"),
    # -- hosts --
    "TLS hosts and the hostname annotation": (
        [ingress(tls=["secure.example.com"], annotations={TARGET: "192.0.2.10", HOSTNAME: "extra.example.com., other.example.com"})],
        [], [(h, "A", a(h, "192.0.2.10")) for h in (SHOP, "secure.example.com", "extra.example.com", "other.example.com")], None),
    "defined-hosts-only": (
        [ingress(annotations={TARGET: "192.0.2.10", HOSTNAME: "extra.example.com",
                              "external-dns.alpha.kubernetes.io/ingress-hostname-source": "defined-hosts-only"})],
        [], [(SHOP, "A", a(SHOP, "192.0.2.10")), ("extra.example.com", "A", NX)], None),
    "annotation-only": (
        [ingress(annotations={TARGET: "192.0.2.10", HOSTNAME: "extra.example.com",
                              "external-dns.alpha.kubernetes.io/ingress-hostname-source": "annotation-only"})],
        [], [(SHOP, "A", NX), ("extra.example.com", "A", a("extra.example.com", "192.0.2.10"))], None),
    "a host in the cluster zone is skipped": (
        [ingress(hosts=("web.shop.svc.cluster.local", SHOP), annotations={TARGET: "192.0.2.10"})], [],
        [(SHOP, "A", a(SHOP, "192.0.2.10")), ("web.shop.svc.cluster.local", "A", NX)],
        "host web.shop.svc.cluster.local lies in cluster.local"),
    "a bad annotation name is skipped, the rest resolve": (
        [ingress(annotations={TARGET: "192.0.2.10", HOSTNAME: "bad_name.example.com"})], [],
        [(SHOP, "A", a(SHOP, "192.0.2.10"))], "host 'bad_name.example.com' is not a host name"),
    "other types of a claimed host: NODATA": (
        [ingress(annotations={TARGET: "192.0.2.10"})], [], [(SHOP, "MX", NODATA), (SHOP, "TXT", NODATA)], None),
    # -- wildcards and precedence --
    "an Ingress wildcard is one label": (
        [ingress(hosts=("*.apps.example.com",), annotations={TARGET: "192.0.2.10"})], [],
        [("x.apps.example.com", "A", a("x.apps.example.com", "192.0.2.10")), ("a.x.apps.example.com", "A", NX),
         ("apps.example.com", "A", NODATA)], None),
    "an exact host beats a wildcard": (
        [ingress("wild", hosts=("*.example.com",), annotations={TARGET: "192.0.2.1"}),
         ingress("exact", hosts=(SHOP,), annotations={TARGET: "192.0.2.2"})], [],
        [(SHOP, "A", a(SHOP, "192.0.2.2")), ("other.example.com", "A", a("other.example.com", "192.0.2.1"))], None),
    "the closer wildcard wins": (
        [ingress("outer", hosts=("*.example.com",), annotations={TARGET: "192.0.2.1"}),
         ingress("inner", hosts=("*.apps.example.com",), annotations={TARGET: "192.0.2.2"})], [],
        [("x.apps.example.com", "A", a("x.apps.example.com", "192.0.2.2")), ("apps.example.com", "A", a("apps.example.com", "192.0.2.1"))],
        None),
    # -- conflicts: the first by kind, namespace, name wins, whole, and a warning names both --
    "two Ingresses, one host": (
        [ingress("b", annotations={TARGET: "192.0.2.2"}), ingress("a", annotations={TARGET: "192.0.2.1"})], [],
        [(SHOP, "A", a(SHOP, "192.0.2.1"))], "shop.example.com: claimed by"),
    "two namespaces, one host": (
        [ingress("a", "beta", annotations={TARGET: "192.0.2.2"}), ingress("z", "alpha", annotations={TARGET: "2001:db8::1"})], [],
        [(SHOP, "AAAA", {f"{SHOP}. 5 IN AAAA 2001:db8::1"}), (SHOP, "A", NODATA)], "Ingress alpha/z wins"),
}


@pytest.mark.parametrize("objects, flags, queries, warning", CASES.values(), ids=CASES.keys())
async def test_ingress_hosts(kdns, tmp_path, caplog, objects, flags, queries, warning):
    caplog.set_level(logging.INFO, logger="kdns")
    server = await kdns(manifest(tmp_path, objects), args=["--ingress-hosts", "--outside-names", "nxdomain", *flags])
    await check(server, queries)
    reply = await server.query(SHOP, "A")
    if reply.answer:
        assert reply.flags & dns.flags.AA, "a claimed host is answered with authority"
    if warning:
        assert warning in caplog.text
    else:
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_the_discovered_controller_is_logged(kdns, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="kdns")
    server = await kdns(manifest(tmp_path, [ingress(cls="nginx"), *NGINX]), args=["--ingress-hosts"])
    assert rrs((await server.query(SHOP)).answer) == a(SHOP, "10.96.50.1")
    assert ("Ingress class nginx: controller Service ingress-nginx/ingress-nginx-controller (discovered: the Service "
            "serving port 80 labelled app.kubernetes.io/instance=ingress-nginx like IngressClass nginx)") in caplog.text


async def test_without_the_option_ingresses_are_not_read(kdns, tmp_path):
    """Without --ingress-hosts kdns is the drop-in it was: Ingresses in manifests are skipped
    (a broken one is no error), their hosts are not answered."""
    objects = [ingress(annotations={TARGET: "192.0.2.10"}), ingress("broken", hosts=("shop_example.com",))]
    server = await kdns(manifest(tmp_path, objects), args=["--outside-names", "nxdomain"])
    assert (await server.query(SHOP)).rcode() == NX


async def test_a_claimed_host_is_never_forwarded(kdns, tmp_path, nursery):
    """The upstream knows the public address; pods get the Ingress's target, for every type,
    and a CNAME target's records come from the upstream. The Ingress gone, the host is an
    ordinary outside name again: forwarded."""
    stub = StubDNS(f"{SHOP}. 300 IN A 203.0.113.80", "lb.example.net. 300 IN A 198.51.100.9")
    port = await nursery.start(stub.serve)
    path = manifest(tmp_path, [ingress(annotations={TARGET: "192.0.2.10"}),
                               ingress("api", hosts=("api.example.com",), annotations={TARGET: "lb.example.net"})])
    server = await kdns(path, args=["--ingress-hosts", "--upstream", f"127.0.0.1:{port}"])
    assert rrs((await server.query(SHOP, "A")).answer) == a(SHOP, "192.0.2.10")
    for qtype in ("AAAA", "MX", "TXT", "HTTPS"):
        reply = await server.query(SHOP, qtype)
        assert (reply.rcode(), reply.answer) == (dns.rcode.NOERROR, [])
    reply = await server.query("api.example.com", "A")
    assert rrs(reply.answer) == {"api.example.com. 5 IN CNAME lb.example.net.", "lb.example.net. 30 IN A 198.51.100.9"}
    assert stub.count(f"{SHOP}.") == 0 and stub.count("api.example.com.") == 0
    manifest(tmp_path, [])
    await eventually(server, SHOP, lambda r: rrs(r.answer) == {f"{SHOP}. 30 IN A 203.0.113.80"})
    assert stub.count(f"{SHOP}.") == 1


async def eventually(server, name, expect, qtype="A", timeout=5.0):
    reply = None
    with trio.move_on_after(timeout):
        while True:
            reply = await server.query(name, qtype)
            if expect(reply):
                return reply
            await trio.sleep(0.02)
    pytest.fail(f"{name} {qtype}: still {reply}")


# -- pure: the rules and the bookkeeping ---------------------------------------------------------


def test_the_warning_about_an_ingress_is_logged_once(caplog):
    """An Ingress without a target is said once, not again at every unrelated change, and
    again when it changes."""
    caplog.set_level(logging.WARNING, logger="kdns")
    index = Index(DnsConfig(ingress_hosts=True))
    index.apply([Upsert(convert(ingress()))], 1)
    index.apply([Upsert(convert(service("other", "default", "10.96.1.1")))], 2)
    index.apply([Upsert(convert(ingress(cls="nginx")))], 3)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "an Ingress without a class" in lines[0] and "class nginx" in lines[1]


def test_warnings_wait_for_the_first_sync(caplog):
    """Listed before the Services, an Ingress has no controller yet: that is no news. What is
    still true once every source has synced is said then."""
    caplog.set_level(logging.WARNING, logger="kdns")
    index = Index(DnsConfig(ingress_hosts=True), sources=["Ingress", "Service"])
    index.apply([Upsert(convert(ingress(cls="nginx"))), Upsert(convert(ingress("lost", hosts=("lost.example.com",))))], 1)
    index.apply([Synced("Ingress")], 2)
    assert not caplog.records
    change = index.apply([*(Upsert(convert(obj)) for obj in NGINX), Synced("Service")], 3)
    assert change.snapshot.synced and change.snapshot.hosts[SHOP].rrsets[0].values == ("10.96.50.1",)
    assert [r.getMessage() for r in caplog.records] == [
        ("Ingress shop/lost: no target for lost.example.com (no external-dns target annotation, no load-balancer address but "
         "loopback or localhost, no controller Service for an Ingress without a class): not answered")]


def test_a_new_index_from_the_objects_held_keeps_the_hosts():
    """A reload that changes the answers builds a new index from `objects()`: Ingresses,
    IngressClasses and Namespaces' labels come along."""
    old = Index(DnsConfig(ingress_hosts=True))
    old.apply([Upsert(convert(obj)) for obj in [ingress(cls="nginx"), *NGINX]], 1)
    new = Index(DnsConfig(ingress_hosts=True, ttl=30))
    change = new.apply([Upsert(obj) for obj in old.objects()], 2)
    entry = change.snapshot.hosts[SHOP]
    assert entry.rrsets[0].values == ("10.96.50.1",) and entry.rrsets[0].ttl == 30
    assert entry.origins == ((Kind.INGRESS, "shop", "web"), (Kind.SERVICE, "ingress-nginx", "ingress-nginx-controller"))


def test_class_of():
    classes = {"nginx": convert(ingress_class("nginx", default=True)), "other": convert(ingress_class("other"))}
    assert ingress_rules.class_of(convert(ingress(cls="traefik")), classes) == "traefik"
    assert ingress_rules.class_of(convert(ingress(legacy="traefik")), classes) == "traefik"
    assert ingress_rules.class_of(convert(ingress(cls="a", legacy="b")), classes) == "a"
    assert ingress_rules.class_of(convert(ingress()), classes) == "nginx"
    assert ingress_rules.class_of(convert(ingress()), {"other": classes["other"]}) == ""


def test_services_keep_only_what_finds_a_controller():
    """A Service keeps its app labels only when it could be a controller's: a ClusterIP
    serving port 80."""
    svc = convert(service("c", "n", "10.96.0.9", labels=NGINX_LABELS))
    assert isinstance(svc, Service) and svc.app == ("ingress-nginx", "ingress-nginx")
    assert convert(service("c", "n", "10.96.0.9", ports=(443,), labels=NGINX_LABELS)).app == ("", "")
    assert convert(service("c", "n", "10.96.0.9")) == Service("n", "c", ServiceType.CLUSTER_IP, ("10.96.0.9",),
                                                              convert(service("c", "n", "10.96.0.9")).ports)


@pytest.mark.parametrize("obj, message", [
    (ingress(hosts=("shop_example.com",)), "Ingress shop/web: spec.rules[0].host: not a host name"),
    (ingress(hosts=("192.0.2.1",)), "spec.rules[0].host: not a host name"),
    (ingress(hosts=("a.*.example.com",)), "spec.rules[0].host: not a host name"),
    (ingress(annotations={TARGET: "not an address!"}), "metadata.annotations[external-dns.alpha.kubernetes.io/target]"),
    (ingress(hosts=tuple(f"h{i}.example.com" for i in range(1001))), "1001 hosts, more than 1000"),
])
def test_broken_ingresses_name_the_field(obj, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        convert(obj)


async def test_a_broken_ingress_in_a_manifest_names_the_file(kdns, tmp_path):
    from kdns.app import StartupError

    path = manifest(tmp_path, [ingress(hosts=("shop_example.com",))])
    with pytest.raises(StartupError, match=r"objects\.json: Ingress shop/web: spec\.rules\[0\]\.host: not a host name"):
        await kdns(path, args=["--ingress-hosts"])


@pytest.mark.parametrize("flags, message", [
    (["--ingress-controller", "nginx"], "--ingress-controller: expected CLASS=NAMESPACE/SERVICE"),
    (["--ingress-controller", "nginx=svc"], "--ingress-controller: expected CLASS=NAMESPACE/SERVICE"),
    (["--ingress-controller", "nginx=a/B_C"], "not a namespace and a Service name"),
    (["--ingress-controller", "nginx=a/b", "--ingress-controller", "nginx=c/d"], "class 'nginx' given twice"),
    (["--ingress-class", "Not A Class"], "--ingress-class: not an IngressClass name"),
])
def test_ingress_options_are_checked(flags, message):
    from kdns.cli import _parser
    from kdns.config import ConfigError
    from kdns.settings import build_config

    with pytest.raises(ConfigError, match=message):
        build_config(_parser().parse_args(["serve", *flags]), environ={})


# -- the API watch ---------------------------------------------------------------------------------


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


async def test_an_ingress_from_the_api_resolves_and_goes(kdns, api, tmp_path, nursery):
    """Created, its host resolves within a second of the watch event; its controller's new
    ClusterIP is followed; deleted, the host is forwarded again."""
    stub = StubDNS(f"{SHOP}. 300 IN A 203.0.113.80")
    port = await nursery.start(stub.serve)
    for obj in NGINX:
        api.apply(obj)
    server = await follow(kdns, api, tmp_path, "--ingress-hosts", "--upstream", f"127.0.0.1:{port}")
    assert rrs((await server.query(SHOP)).answer) == {f"{SHOP}. 30 IN A 203.0.113.80"}
    api.apply(ingress(cls="nginx", lb=["localhost"]))
    await eventually(server, SHOP, lambda r: rrs(r.answer) == a(SHOP, "10.96.50.1"), timeout=1.0)
    api.apply(service("ingress-nginx-controller", "ingress-nginx", "10.96.50.9", labels=NGINX_LABELS))
    await eventually(server, SHOP, lambda r: rrs(r.answer) == a(SHOP, "10.96.50.9"), timeout=1.0)
    api.delete("Ingress", "shop", "web")
    await eventually(server, SHOP, lambda r: rrs(r.answer) == {f"{SHOP}. 30 IN A 203.0.113.80"}, timeout=1.0)


async def test_without_upstreams_a_deleted_ingress_host_is_as_outside_names_says(kdns, api, tmp_path):
    api.apply(ingress(annotations={TARGET: "192.0.2.10"}))
    server = await follow(kdns, api, tmp_path, "--ingress-hosts", "--outside-names", "nxdomain")
    assert rrs((await server.query(SHOP)).answer) == a(SHOP, "192.0.2.10")
    api.delete("Ingress", "shop", "web")
    await eventually(server, SHOP, lambda r: r.rcode() == NX, timeout=1.0)


async def test_before_the_first_sync_outside_names_are_servfail(kdns, api, tmp_path, nursery):
    """Until the Ingresses are listed any outside name may be a claimed host: SERVFAIL (a
    client tries again), neither forwarded nor NXDOMAIN. Then the host resolves."""
    stub = StubDNS(f"{SHOP}. 300 IN A 203.0.113.80", "example.org. 300 IN A 198.51.100.1")
    port = await nursery.start(stub.serve)
    api.apply(ingress(annotations={TARGET: "192.0.2.10"}))
    api.hold("Ingress")
    server = await kdns(args=["--kubeconfig", str(api.kubeconfig(tmp_path / "kubeconfig")), "--ingress-hosts",
                              "--upstream", f"127.0.0.1:{port}"])
    await trio.to_thread.run_sync(api.wait_for_held)
    assert not server.server.synced
    for name in (SHOP, "example.org"):
        assert (await server.query(name)).rcode() == dns.rcode.SERVFAIL
    assert stub.count(f"{SHOP}.") == 0 and stub.count("example.org.") == 0
    api.release()
    await eventually(server, SHOP, lambda r: rrs(r.answer) == a(SHOP, "192.0.2.10"))
    assert rrs((await server.query("example.org")).answer) == {"example.org. 30 IN A 198.51.100.1"}


# -- the test double ---------------------------------------------------------------------------------


def resolver(server) -> dns.resolver.Resolver:
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [server.host]
    res.port = server.port
    return res


def test_the_test_double_ingress(kdns_server):
    web = kdns_server.service("web", "shop")
    name = kdns_server.ingress(SHOP, service="web", namespace="shop")
    assert name == "shop-example-com"
    reply = resolver(kdns_server).resolve(SHOP, "A").response
    assert rrs(reply.answer) == {f"{SHOP}. 5 IN CNAME web.shop.svc.cluster.local.", f"web.shop.svc.cluster.local. 5 IN A {web.cluster_ip}"}
    kdns_server.ingress(["*.apps.example.com", "apps.example.com"], address=["127.0.0.9", "::9"], name="apps")
    assert rrs(resolver(kdns_server).resolve("x.apps.example.com", "A").response.answer) == {"x.apps.example.com. 5 IN A 127.0.0.9"}
    assert rrs(resolver(kdns_server).resolve("apps.example.com", "AAAA").response.answer) == {"apps.example.com. 5 IN AAAA ::9"}
    kdns_server.delete("Ingress", "shop", name)
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver(kdns_server).resolve(SHOP, "A")
    with pytest.raises(ValueError, match="service=... .* or address="):
        kdns_server.ingress("x.example.com")
    with pytest.raises(ValueError, match="spec.rules\\[0\\].host: not a host name"):
        kdns_server.ingress("bad_host.example.com", address="127.0.0.1")


def test_a_wildcard_into_the_cluster_follows_the_service(kdns_server):
    """An answer through a wildcard (kept as packed bytes) follows the Service it points at."""
    kdns_server.service("web", "shop", cluster_ip="10.96.0.20")
    kdns_server.ingress("*.apps.example.com", service="web", namespace="shop")
    res = resolver(kdns_server)
    assert [r.address for r in res.resolve("x.apps.example.com", "A")] == ["10.96.0.20"]
    for i in range(50):  # more packed answers than a change names: it forgets only what it names
        with pytest.raises(dns.resolver.NXDOMAIN):
            res.resolve(f"filler{i}.example.net", "A")
    kdns_server.service("web", "shop", cluster_ip="10.96.0.21")
    assert [r.address for r in res.resolve("x.apps.example.com", "A")] == ["10.96.0.21"]


# -- glibc in a pod -----------------------------------------------------------------------------


GATEWAY_OBJECTS = [
    {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "public", "namespace": "infra"},
     "spec": {"gatewayClassName": "example", "listeners": [
         {"name": "http", "protocol": "HTTP", "port": 80, "hostname": "*.gw.example.com", "allowedRoutes": {"namespaces": {"from": "All"}}}]},
     "status": {"addresses": [{"type": "IPAddress", "value": "10.96.80.1"}]}},
    {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "api", "namespace": "shop", "generation": 3},
     "spec": {"parentRefs": [{"name": "public", "namespace": "infra"}], "hostnames": ["api.gw.example.com"]},
     "status": {"parents": [{"parentRef": {"name": "public", "namespace": "infra"}, "controllerName": "example.com/gw",
                             "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 3}]}]}},
]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and port 53 (CI runs as root)")
@pytest.mark.skipif(shutil.which("ip") is None or shutil.which("getent") is None, reason="needs iproute2 and getent")
async def test_glibc_in_a_pod_resolves_ingress_and_route_hosts(pod_netns, kdns, tmp_path):
    """glibc walks the pod's search list (three NXDOMAINs from the cluster zone), then asks
    for the bare name, which kdns answers from the Ingress and from the HTTPRoute."""
    path = manifest(tmp_path, [ingress(cls="nginx", lb=["localhost"]), *NGINX, *GATEWAY_OBJECTS])
    await kdns(path, listen=f"{KDNS_IP}:53", args=["--ingress-hosts", "--gateway-hosts", "--outside-names", "nxdomain"])
    assert await getent(pod_netns, SHOP) == {"10.96.50.1"}
    assert await getent(pod_netns, "api.gw.example.com") == {"10.96.80.1"}
    assert await getent(pod_netns, "other.example.com") == set()


def test_explain_names_the_ingress_behind_a_host():
    """`explain` reads the provenance the hosts table keeps: an Ingress host's CNAME comes from
    the Ingress, the target's address from its Service (issue 20 over issue 19's table)."""
    from kdns.testing import KdnsServer

    with KdnsServer() as server:
        server.service("web", "shop")
        server.ingress("shop.example.com", service="web", namespace="shop")
        found = server.explain("shop.example.com", "A").to_json()
    assert found["rcode"] == "NOERROR" and found["answered_by"] == "Ingress"
    origins = [(r["record"].split()[3], [(o["kind"], o["namespace"], o["name"]) for o in r["from"]]) for r in found["records"]]
    assert origins == [("CNAME", [("Ingress", "shop", "shop-example-com")]), ("A", [("Service", "shop", "web")])]
