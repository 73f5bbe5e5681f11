"""Where the fast paths (issue 15: the replay table and the C loop that reads it, the memo's two
generations, the quick NXDOMAIN, fresh forwarding-cache hits answered in the loop) meet the
features built beside them: autopath, the external zones, Ingress hosts, hosts files, the test
double's records and faults, the query log, the DO and CD bits, statistics. Each socket test
asks kdns on loopback over UDP (with the C loop where it is built, and with the Python loop)
against TCP (which never replays) or against what the feature says; the pure ones hold the
responder after changes to one that remembers nothing. (About 600 lines: the objects, names
and helpers the feature tests share are kept beside them.)
"""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import replace

import dns.asyncquery
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.serve import udp
from testkit.repo import DEMO, write
from testkit.stubdns import StubDNS

CL = "cluster.local"


@pytest.fixture(params=["c", "python"])
def loop(request, monkeypatch) -> str:
    """Each test runs with the C loop (skipped where it is not built) and the Python one."""
    if request.param == "c":
        if udp._udpbatch is None:
            pytest.skip("kdns/_udpbatch.c is not built here")
        monkeypatch.setenv("KDNS_PURE_PYTHON", "0")
    else:
        monkeypatch.setenv("KDNS_PURE_PYTHON", "1")
    return request.param


@pytest.fixture
def stub(nursery):
    async def start(*zone_lines: str) -> StubDNS:
        server = StubDNS(*zone_lines)
        await nursery.start(server.serve)
        return server

    return start


def query(name: str, qtype: int = 1, qid: int = 0x1234, flags: int = 0x0100) -> bytes:
    labels = b"".join(bytes([len(x)]) + x.encode() for x in name.split("."))
    return struct.pack("!6H", qid, flags, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def _ask(port: int, packet: bytes, source: str) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(3.0)
        sock.sendto(packet, ("127.0.0.1", port))
        return sock.recv(65535)


async def ask(port: int, packet: bytes, source: str = "127.0.0.1") -> dns.message.Message:
    """`packet` over UDP from `source` (a loopback address), the reply parsed."""
    return dns.message.from_wire(await trio.to_thread.run_sync(_ask, port, packet, source))


def pods(*pods: str) -> str:
    """Pod manifests, `<namespace>/<name>/<ip>` each."""
    docs = []
    for pod in pods:
        namespace, name, ip = pod.split("/")
        docs.append(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
                    f"spec: {{containers: [{{name: c, image: busybox}}]}}\nstatus: {{podIP: {ip}, podIPs: [{{ip: {ip}}}]}}\n")
    return "---\n".join(docs)


# -- autopath: the answer depends on who asks ----------------------------------------------------


async def test_an_autopath_answer_from_the_forwarding_cache_is_not_replayed_to_other_clients(kdns, stub, tmp_path, loop):
    """A pod in `default` (127.0.0.1) asks `example.org.default.svc.cluster.local` twice: the
    second reply comes from the forwarding cache (CNAME + the upstream's A). The same bytes
    from a client that is no pod (127.0.0.2), and from a pod in `shop` (127.0.0.3), must get
    NXDOMAIN, as over TCP: autopath answers are the asking pod's alone."""
    up = await stub("example.org. 300 IN A 127.0.0.141")
    manifest = write(tmp_path / "pods.yaml", pods("default/client/127.0.0.1", "shop/other/127.0.0.3"))
    kd = await kdns(DEMO, manifest, args=["--upstream", up.address, "--autopath"])
    data = query(f"example.org.default.svc.{CL}")
    for _ in range(3):
        reply = await ask(kd.port, data)
        assert reply.rcode() == dns.rcode.NOERROR and len(reply.answer) == 2
    for source in ("127.0.0.2", "127.0.0.3", "127.0.0.2"):
        reply = await ask(kd.port, data, source)
        assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer, (source, reply)
    assert up.count("example.org") == 1


# -- every feature's answers: UDP (replayed or not) against TCP, in the client's case ---------

EXTERNAL = "tests/manifests/external.yaml"
X = "k8s.example.org"
INGRESS = {"apiVersion": "v1", "kind": "List", "items": [
    {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "shop"},
     "spec": {"rules": [{"host": "shop.example.com"}, {"host": "*.apps.example.com"}]},
     "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.50"}]}}},
]}
HOSTS = "10.0.0.5 db.corp.example\n2001:db8::5 db.corp.example\n10.0.0.6 alias.corp.example\n"
FEATURE_NAMES = [
    f"lb.shop.svc.{CL}", f"nope.shop.svc.{CL}", f"_http._tcp.lb.shop.svc.{CL}", f"peer-0.peers.shop.svc.{CL}", CL, f"shop.svc.{CL}",
    f"dns-version.{CL}", f"nope.nope.svc.{CL}", f"elb.shop.svc.{CL}", "2.200.96.10.in-addr.arpa", "5.0.0.10.in-addr.arpa",
    "10.113.0.203.in-addr.arpa", "50.113.0.203.in-addr.arpa", f"www.{X}", f"alt.{X}", "www.elsewhere.example",
    f"lb.shop.{X}", f"both.shop.{X}", f"dual.shop.{X}", f"elb.shop.{X}", f"_http._tcp.lb.shop.{X}", f"nope.shop.{X}", X,
    f"shop.{X}", f"ns1.dns.{X}", f"peers.shop.{X}", "shop.example.com", "x.apps.example.com", "db.corp.example",
    "alias.corp.example", "nope.corp.example", "example.com",
]
FEATURE_TYPES = ["A", "AAAA", "SRV", "PTR", "TXT", "MX", "CNAME", "SOA", "NS", "ANY"]


def mixed(name: str, seed: int) -> str:
    """`name` with letters upper-cased by the bits of `seed` (a 0x20 resolver's spelling)."""
    return "".join(c.upper() if c.isalpha() and seed >> (i % 31) & 1 else c for i, c in enumerate(name))


async def features(kdns, tmp_path, *args: str):
    ingress = write(tmp_path / "ingress.json", json.dumps(INGRESS))
    hosts = write(tmp_path / "hosts", HOSTS)
    return await kdns(EXTERNAL, ingress, args=["--ingress-hosts", "--external-zone", X, "--external-headless",
                                                      "--hosts", str(hosts), *args])


async def tcp(port: int, message: dns.message.Message) -> dns.message.Message:
    return await dns.asyncquery.tcp(message, "127.0.0.1", port=port, timeout=3.0)


async def test_every_feature_answers_the_same_over_udp_replayed_and_tcp_in_the_clients_case(kdns, tmp_path, loop):
    """For names of every table (cluster, reverse, external zone, Ingress hosts, a hosts file,
    the closed world), each type, lower case and two mixed spellings (one with EDNS and the
    DO bit): the first UDP reply,
    its replay and the TCP reply are the same message, and every record owned by the asked
    name carries the client's spelling."""
    kd = await features(kdns, tmp_path, "--outside-names", "nxdomain")
    for n, name in enumerate(FEATURE_NAMES):
        for qtype in FEATURE_TYPES:
            for seed, edns in ((0, {}), (0x2AAAAAAA + n, {}), (0x15555555 + n, {"use_edns": 0, "want_dnssec": True, "payload": 1232})):
                spelled = mixed(name, seed)
                message = dns.message.make_query(spelled + ".", qtype, **edns)
                data = message.to_wire()
                first, again = [await ask(kd.port, data) for _ in range(2)]
                over_tcp = await tcp(kd.port, message)
                assert first.to_text() == again.to_text() == over_tcp.to_text(), (spelled, qtype)
                for rrset in first.answer:
                    if rrset.name == message.question[0].name:
                        assert rrset.name.to_text() == spelled + ".", (spelled, qtype, first)


# -- no reply outlives the truth: the test double's records, faults, Ingresses, external zones --


def _udp(server, name: str, qtype: str = "A") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, qtype), server.host, port=server.port, timeout=3.0)


def _tcp(server, name: str, qtype: str = "A") -> dns.message.Message:
    return dns.query.tcp(dns.message.make_query(name, qtype), server.host, port=server.port, timeout=3.0)


def answers(server, name: str, qtype: str = "A") -> set[str]:
    """The answer over UDP (asked twice: the second is a replay when the first was kept), which
    must be the TCP one; as text lines, or the rcode's name when there are none."""
    replies = [_udp(server, name, qtype), _udp(server, name, qtype), _tcp(server, name, qtype)]
    texts = [{rr.to_text() for rr in reply.answer} or {dns.rcode.to_text(reply.rcode())} for reply in replies]
    assert texts[0] == texts[1] == texts[2], (name, qtype, texts)
    return texts[0]


def churn(server, round_: int) -> None:
    """Other names with records, asked once each: with a memo of 8 entries, what was asked
    before moves to the previous generation (or out)."""
    for i in range(5):
        _udp(server, f"10-244-{round_}-{i}.default.pod.cluster.local")


@pytest.fixture
def small_memo(monkeypatch):
    from kdns import responder

    monkeypatch.setattr(responder, "MEMO_ENTRIES", 8)


def test_the_test_doubles_records_and_faults_are_never_answered_from_a_stale_reply(small_memo):
    """record() replaces, then removes, the records of an outside name, and a fault set after
    the name was answered (and kept for replay) applies at once; the replies in between,
    replayed or not, and over TCP, are each time what the double now says."""
    from kdns.testing import KdnsServer

    with KdnsServer() as server:
        server.record("api.stripe.com", "A", "127.0.0.9")
        assert answers(server, "api.stripe.com") == {"api.stripe.com. 5 IN A 127.0.0.9"}
        for round_, ip in enumerate(["127.0.0.10", "127.0.0.11"]):
            churn(server, round_)
            server.record("api.stripe.com", "A", ip)
            assert answers(server, "api.stripe.com") == {f"api.stripe.com. 5 IN A {ip}"}
        churn(server, 9)
        server.record("api.stripe.com", "A", None)
        assert answers(server, "api.stripe.com") == {"NXDOMAIN"}
        server.record("api.stripe.com", "A", "127.0.0.12")
        assert answers(server, "api.stripe.com") == {"api.stripe.com. 5 IN A 127.0.0.12"}
        server.fail("api.stripe.com.")
        assert _udp(server, "api.stripe.com").rcode() == dns.rcode.SERVFAIL
        server.reset()
        assert answers(server, "api.stripe.com") == {"api.stripe.com. 5 IN A 127.0.0.12"}


def test_ingress_and_external_zone_answers_follow_the_service_they_come_from(small_memo):
    """An Ingress host sent to a Service, and a LoadBalancer's name in the external zone: once
    the Service's ClusterIP and load-balancer address change, the next answers (UDP, replayed,
    TCP) say so."""
    from kdns.testing import KdnsServer

    zone = "k8s.example.org"
    with KdnsServer(external_zone=zone) as server:
        server.service("web", cluster_ip="10.96.0.50", type="LoadBalancer", load_balancer_ip="203.0.113.1")
        server.ingress("shop.example.com", service="web")
        before = answers(server, "shop.example.com")
        assert any("10.96.0.50" in line for line in before), before
        assert answers(server, f"web.default.{zone}") == {f"web.default.{zone}. 5 IN A 203.0.113.1"}
        churn(server, 1)
        server.service("web", cluster_ip="10.96.0.51", type="LoadBalancer", load_balancer_ip="203.0.113.2")
        after = answers(server, "shop.example.com")
        assert any("10.96.0.51" in line for line in after) and not any("10.96.0.50" in line for line in after), after
        assert answers(server, f"web.default.{zone}") == {f"web.default.{zone}. 5 IN A 203.0.113.2"}


# -- the memo and the replay table across changes, against a responder that remembers nothing --

XZ = "k8s.example.org"


def _svc(name: str, ns: str = "shop", **spec) -> dict:
    meta: dict = {"name": name, "namespace": ns}
    status = spec.pop("status", None)
    annotations = spec.pop("annotations", None)
    if annotations:
        meta["annotations"] = annotations
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}
    if status:
        obj["status"] = status
    return obj


def _lb(*entries: str) -> dict:
    return {"loadBalancer": {"ingress": [{"hostname": e} if e[0].isalpha() else {"ip": e} for e in entries]}}


def _slice(name: str, *endpoints: tuple[str, str, bool]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": "shop", "labels": {"kubernetes.io/service-name": "peers"}},
            "endpoints": [{"addresses": [ip], "hostname": host, "conditions": {"ready": ready}} for ip, host, ready in endpoints],
            "ports": [{"name": "peer", "port": 7000, "protocol": "TCP"}]}


def _ingress(*entries: str) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"rules": [{"host": "shop.example.com"}, {"host": "*.apps.example.com"}]}, "status": _lb(*entries)}


def _gateway(addresses: tuple[str, ...], hostname: str | None = None, names: tuple[str, ...] = ()) -> dict:
    listener: dict = {"name": "http", "protocol": "HTTP", "port": 80, "allowedRoutes": {"namespaces": {"from": "All"}}}
    if hostname:
        listener["hostname"] = hostname
    status = [{"type": "IPAddress", "value": ip} for ip in addresses] + [{"type": "Hostname", "value": n} for n in names]
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "public", "namespace": "infra"},
            "spec": {"gatewayClassName": "example", "listeners": [listener]}, "status": {"addresses": status}}


def _route(*hostnames: str) -> dict:
    parent = {"name": "public", "namespace": "infra"}
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "api", "namespace": "shop", "generation": 1},
            "spec": {"parentRefs": [parent], "hostnames": list(hostnames)},
            "status": {"parents": [{"parentRef": parent, "controllerName": "example.com/gateway",
                                    "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 1}]}]}}


# Each object's versions (None: deleted). A step puts one object in one of its versions.
PORTS = [{"name": "http", "port": 80}]
OBJECTS: dict[str, list] = {
    "web": [None, _svc("web", clusterIP="10.96.0.50", ports=PORTS),
            _svc("web", clusterIP="10.96.0.51", type="LoadBalancer", ports=PORTS, status=_lb("203.0.113.1")),
            _svc("web", clusterIP="10.96.0.50", type="LoadBalancer", ports=PORTS, status=_lb("203.0.113.2"),
                 annotations={"external-dns.alpha.kubernetes.io/hostname": f"www.{XZ}"}),
            _svc("web", clusterIP="10.96.0.52", ports=PORTS, externalIPs=["198.51.100.1", "198.51.100.2"])],
    "elb": [None, _svc("elb", clusterIP="10.96.0.60", type="LoadBalancer", ports=PORTS, status=_lb("lb-1.elb.example.com")),
            _svc("elb", clusterIP="10.96.0.60", type="LoadBalancer", ports=PORTS, status=_lb("lb-2.elb.example.com"))],
    "ext": [None, _svc("ext", type="ExternalName", externalName="api.stripe.com"),
            _svc("ext", type="ExternalName", externalName=f"web.shop.{XZ}"),
            _svc("ext", type="ExternalName", externalName="x.apps.example.com")],
    "kube-dns": [None, _svc("kube-dns", "kube-system", clusterIP="10.96.0.10", ports=PORTS, externalIPs=["198.51.100.53"]),
                 _svc("kube-dns", "kube-system", clusterIP="10.96.0.10", ports=PORTS, externalIPs=["198.51.100.54"])],
    "peers": [None, _svc("peers", clusterIP="None", ports=[{"name": "peer", "port": 7000}])],
    "peers-a": [None, _slice("peers-a", ("10.244.9.1", "peer-0", True)),
                _slice("peers-a", ("10.244.9.1", "peer-0", False), ("10.244.9.2", "peer-1", True))],
    "ingress": [None, _ingress("203.0.113.50"), _ingress("203.0.113.51"), _ingress("lb-1.elb.example.com")],
    "gateway": [None, _gateway(("10.96.80.1",)), _gateway(("10.96.80.2",), "*.example.com"), _gateway((), names=("gw.example.net",))],
    "route": [None, _route("api.example.com"), _route("api.example.com", "api.other.example"), _route("*.gw.example.com")],
    "controller": [None, _svc("ingress-nginx-controller", "ingress-nginx", clusterIP="10.96.50.1", type="LoadBalancer", ports=PORTS,
                              status=_lb("203.0.113.60")),
                   _svc("ingress-nginx-controller", "ingress-nginx", clusterIP="10.96.50.2", ports=PORTS)],
    "nginx": [None, {**_ingress(), "metadata": {"name": "nginx", "namespace": "shop"},
                     "spec": {"ingressClassName": "nginx", "rules": [{"host": "n.example.com"}]}}],
    "hosts-a": [None, [("10.0.0.5", ["db.corp.example"]), ("10.0.0.6", ["alias.corp.example", "api.stripe.com"])],
                [("10.0.0.5", ["db.corp.example", "alias.corp.example"]), ("10.0.0.7", ["lb-1.elb.example.com"])]],
    "hosts-b": [None, [("10.0.0.5", ["other.corp.example"]), ("10.0.0.8", ["db.corp.example"])]],
    "api.stripe.com": [None, "127.0.0.9", "127.0.0.10"],
    "lb-1.elb.example.com": [None, "127.0.0.21", "127.0.0.22"],
}
CHANGE_NAMES = [f"web.shop.svc.{CL}", f"web.shop.{XZ}", f"www.{XZ}", f"elb.shop.{XZ}", f"ext.shop.svc.{CL}", XZ, f"ns1.dns.{XZ}",
                f"peers.shop.svc.{CL}", f"peer-0.peers.shop.svc.{CL}", f"peers.shop.{XZ}", f"peer-1.peers.shop.{XZ}", f"shop.{XZ}",
                "shop.example.com", "x.apps.example.com", "api.stripe.com", "lb-1.elb.example.com", "lb-2.elb.example.com",
                "1.113.0.203.in-addr.arpa", "9.0.0.127.in-addr.arpa", "1.9.244.10.in-addr.arpa", "50.0.96.10.in-addr.arpa",
                "53.100.51.198.in-addr.arpa", f"_http._tcp.web.shop.{XZ}", f"_peer._tcp.peers.shop.svc.{CL}", f"_http._tcp.web.shop.svc.{CL}",
                f"kube-dns.kube-system.svc.{CL}", CL, "10.0.96.10.in-addr.arpa", "2.100.51.198.in-addr.arpa", "api.example.com",
                "api.other.example", "x.gw.example.com", "n.example.com", "gw.example.net", "1.80.96.10.in-addr.arpa",
                "db.corp.example", "alias.corp.example", "other.corp.example", "corp.example", "5.0.0.10.in-addr.arpa",
                "6.0.0.10.in-addr.arpa", "8.0.0.10.in-addr.arpa"]
CHANGE_TYPES = [1, 28, 33, 5, 2, 6, 12, 255]


def _event(key: str, version: int):
    from kdns import static
    from kdns.model import Delete, Kind, Upsert
    from kdns.sources.convert import convert, identify, kind_of

    value = OBJECTS[key][version]
    if key.startswith("hosts-"):  # a hosts file (the first ranks first)
        if value is None:
            return Delete((Kind.HOSTS, "", key))
        return Upsert(static.hosts_records(value, key, ttl=60, rank=int(key == "hosts-b")))
    if "." in key:  # a record() of the test double
        if value is None:
            return Delete((Kind.RECORD, "", key))
        return Upsert(static.name_records(key, [static.rrset(key, "A", value, 30)]))
    if value is None:
        template = next(v for v in OBJECTS[key] if v is not None)
        _, ns, name = identify(template)
        return Delete((kind_of(template), ns, name))
    return Upsert(convert(value))


@settings(max_examples=25, derandomize=True, database=None, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(sorted(OBJECTS)), st.integers(0, 4)), min_size=1, max_size=12),
       seed=st.integers(0, 0x7FFFFFFF))
def test_after_every_change_the_answers_are_a_fresh_responders(steps, seed):
    """Services, EndpointSlices, Ingresses (one through an ingress controller's Service), a
    Gateway and its route, two hosts files and the test double's records change one by one
    (their names in the cluster zone, the external zone, outside it, and their reverse names);
    after each change every question, asked twice over UDP (the second from the replay table
    when kept) in a 0x20 spelling, gets what a responder made for the new snapshot alone says
    (which its general path, the query parsed in full, says too): nothing kept from before
    (in either generation of the memo) outlives the change."""
    from kdns import responder as responder_module
    from kdns.config import DnsConfig
    from kdns.responder import Responder
    from kdns.state import DnsState

    original = responder_module.MEMO_ENTRIES, responder_module.MAX_REPLIES
    responder_module.MEMO_ENTRIES, responder_module.MAX_REPLIES = 40, 60  # (both generations turn over)
    try:
        config = DnsConfig(external_zones=(XZ,), external_headless=True, ingress_hosts=True, gateway_hosts=True,
                           ingress_controllers=(("nginx", "ingress-nginx", "ingress-nginx-controller"),))
        state = DnsState(config, now=1000)
        state.apply([_event(key, 1) for key in OBJECTS if key != "peers-a"], now=1000)
        for step, (key, version) in enumerate(steps):
            state.apply([_event(key, version % len(OBJECTS[key]))], now=1000 + step // 2)
            fresh = Responder(state.snapshot)
            for n, name in enumerate(CHANGE_NAMES):
                for qtype in CHANGE_TYPES:
                    data = query(mixed(name, seed + n), qtype, qid=n)
                    want = fresh.handle(data)
                    assert fresh._full(data, None, None)[0] == want, (steps[: step + 1], name, qtype, "parsed in full")
                    assert state.responder.handle(data) == want, (steps[: step + 1], name, qtype)
                    assert state.responder.handle(data) == want, (steps[: step + 1], name, qtype, "replayed")
    finally:
        responder_module.MEMO_ENTRIES, responder_module.MAX_REPLIES = original


# -- statistics: the same counts whichever path answered -------------------------------------

COUNTED = ["requests_total", "responses_total"]


def counters(server) -> dict[tuple, float]:
    """The /metrics body's DNS request and response counters and cache counters, by their
    labels but the server's and the protocol."""
    from prometheus_client.parser import text_string_to_metric_families

    from kdns import observe

    out: dict[tuple, float] = {}
    for family in text_string_to_metric_families(observe.metrics_text(server).decode()):
        for sample in family.samples:
            if sample.name in ("coredns_dns_requests_total", "coredns_dns_responses_total", "coredns_cache_hits_total",
                               "coredns_cache_misses_total", "coredns_cache_requests_total"):
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in ("server", "proto")))
                out[(sample.name, labels)] = out.get((sample.name, labels), 0) + sample.value
    return {key: value for key, value in out.items() if value}


@pytest.mark.parametrize("outside", ["upstream", "nxdomain", "refused"])
async def test_statistics_count_the_same_over_the_fast_paths_and_tcp(kdns, stub, tmp_path, loop, outside):
    """The same questions (every table's names, forwarded names answered upstream then from
    the forwarding cache, each asked three times) to two kdns alike, one over UDP (the quick
    NXDOMAIN, the replay table, fresh cache hits in the loop and their replays) and one over
    TCP (none of those): coredns_dns_requests_total by zone and type, responses_total by
    zone and rcode, and the cache's hits, misses and requests are the same. Names outside
    the zones go to an upstream, or get NXDOMAIN (a closed world) or REFUSED."""
    up = await stub("example.org. 300 IN A 127.0.0.141", "www.example.org. 300 IN AAAA ::1")
    args = {"upstream": ["--upstream", up.address], "nxdomain": ["--outside-names", "nxdomain"], "refused": []}[outside]
    servers = [await features(kdns, tmp_path / str(i), *args) for i in range(2)]
    names = [*FEATURE_NAMES, "example.org", "www.example.org", "nx.example.org", f"NoPe.{mixed('shop.svc.' + CL, 5)}"]
    for name in names:
        for qtype in ("A", "AAAA", "SRV", "TXT"):
            message = dns.message.make_query(name + ".", qtype)
            for _ in range(3):
                await ask(servers[0].port, message.to_wire())
                await tcp(servers[1].port, message)
    over_udp, over_tcp = (counters(s.server) for s in servers)
    assert over_udp == over_tcp
    if outside == "upstream":
        assert over_udp[("coredns_cache_hits_total", (("type", "success"), ("view", ""), ("zones", ".")))] >= 4
    else:
        rcode = "NXDOMAIN" if outside == "nxdomain" else "REFUSED"
        assert over_udp[("coredns_dns_responses_total", (("plugin", "kubernetes"), ("rcode", rcode), ("view", ""), ("zone", ".")))] >= 9


async def test_forwarded_replies_from_the_cache_are_each_logged(kdns, stub, tmp_path, loop, caplog):
    """With --log-queries (which takes the C loop off), every query answered from the
    forwarding cache, the first in the loop and the others replayed, is a line of the query
    log, and the DO and CD bits keep questions apart: each is asked upstream once and its
    replies echo its own CD bit."""
    import logging

    up = await stub("example.org. 300 IN A 127.0.0.141")
    kd = await features(kdns, tmp_path, "--upstream", up.address, "--log-queries")
    caplog.set_level(logging.INFO, logger="kdns.query")
    plain = dns.message.make_query("example.org.", "A")
    checking = dns.message.make_query("example.org.", "A", use_edns=0, want_dnssec=True)
    checking.flags |= dns.flags.CD
    for message in (plain, checking):
        for _ in range(4):
            reply = await ask(kd.port, message.to_wire())
            assert reply.rcode() == dns.rcode.NOERROR and reply.answer
            assert bool(reply.flags & dns.flags.CD) == bool(message.flags & dns.flags.CD)
    lines = [r.getMessage() for r in caplog.records if r.name == "kdns.query" and " example.org. A NOERROR " in r.getMessage()]
    assert len(lines) == 8, lines
    assert up.count("example.org") == 2


async def test_a_changed_hosts_file_is_not_answered_from_the_replay_table(kdns, tmp_path, loop):
    """A --hosts name asked over UDP (kept for replay, replayed by the C loop): once the file
    is rewritten and TCP gives the new address, the same UDP bytes give it too."""
    kd = await features(kdns, tmp_path, "--outside-names", "nxdomain")
    data = query("db.corp.example")
    for _ in range(3):
        assert {rd.to_text() for rrset in (await ask(kd.port, data)).answer for rd in rrset} == {"10.0.0.5"}
    write(tmp_path / "hosts", HOSTS.replace("10.0.0.5", "10.0.0.7"))
    with trio.fail_after(10):
        while {rd.to_text() for rrset in (await tcp(kd.port, dns.message.from_wire(data))).answer for rd in rrset} != {"10.0.0.7"}:
            await trio.sleep(0.05)
    for _ in range(3):
        assert {rd.to_text() for rrset in (await ask(kd.port, data)).answer for rd in rrset} == {"10.0.0.7"}


# -- the quick NXDOMAIN beside the external zones, Ingress hosts and other options ------------

QUICK_LABELS = ["lb", "both", "elb", "peers", "peer-0", "peer-2", "internal", "portless", "ext-only", "kube-dns", "nope", "_http",
                "_tcp", "_peer", "shop", "kube-system", "dns", "hidden", "svc", "10-244-9-1", "Lb", "x" * 63]


@st.composite
def quick_names(draw) -> bytes:
    """A plain query for a name under `<ns>.svc.cluster.local` (most of them), or near it."""
    head = draw(st.lists(st.sampled_from(QUICK_LABELS), min_size=0, max_size=3))
    ns = draw(st.sampled_from(["shop", "kube-system", "dns", "hidden", "nope", "SHOP"]))
    tail = draw(st.sampled_from([["svc", "cluster", "local"], ["svc", "cluster", "local"], ["SVC", "Cluster", "LOCAL"],
                                 ["pod", "cluster", "local"], ["k8s", "example", "org"], ["svc", "k8s", "example", "org"]]))
    labels = [*head, ns, *tail]
    wire_name = b"".join(bytes([len(x)]) + x.encode() for x in labels) + b"\0"
    qtype = draw(st.sampled_from([1, 28, 33, 16, 5, 255, 12, 6, 2, 252, 251]))
    qclass = draw(st.sampled_from([1, 1, 1, 3, 255]))
    return struct.pack("!6H", draw(st.integers(0, 0xFFFF)), 0x0100, 1, 0, 0, 0) + wire_name + struct.pack("!HH", qtype, qclass)


@pytest.fixture(scope="module")
def feature_snapshots(tmp_path_factory):
    """The external zone's Services and an Ingress under several configurations."""
    from kdns.config import DnsConfig
    from kdns.index import Index
    from kdns.options import PodsMode
    from kdns.sources.manifests import ManifestSet

    ingress = write(tmp_path_factory.mktemp("quick") / "ingress.json", json.dumps(INGRESS))
    events = ManifestSet([EXTERNAL, str(ingress)]).load()
    out = []
    for config in (DnsConfig(external_zones=(X,), external_headless=True, ingress_hosts=True),
                   DnsConfig(ignore_empty_services=True, forwarding=True), DnsConfig(pods=PodsMode.VERIFIED),
                   DnsConfig(external_zones=("shop.svc.cluster.local",)), DnsConfig(zones=("cluster.local", "k8s.example.org"))):
        index = Index(config, now=1)
        index.apply(events, now=1)
        out.append(index.snapshot)
    return Snapshots(out)


class Snapshots(list):
    def __repr__(self) -> str:  # (hypothesis shows the arguments of a failing example: not 60 kB of snapshots)
        return f"<{len(self)} snapshots: {', '.join(str(s.config.all_zones) for s in self)}>"


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(data=quick_names())
def test_the_quick_nxdomain_beside_the_other_features_is_what_answer_says(feature_snapshots, data):
    """Over UDP a name under `<ns>.svc.<zone>` that is not in the index is NXDOMAIN without
    `answer`; over TCP every query goes through `answer`: the same bytes, with an external
    zone (one of them inside the cluster zone), Ingress hosts, ignored empty Services, verified
    pods, two cluster zones, for zone-transfer types and other classes too."""
    from kdns.responder import Responder, UpstreamQuery

    for snap in feature_snapshots:
        udp_reply = Responder(snap).handle(data)
        tcp_reply = Responder(snap).handle(data, limit=65535)
        general = Responder(snap)._full(data, 65535, None)[0]  # (the query parsed in full: no memo, no fast parsing)
        if isinstance(general, UpstreamQuery) and isinstance(tcp_reply, UpstreamQuery):
            general, tcp_reply = replace(general, limit=0), replace(tcp_reply, limit=0)
        if data[-4:-2] not in (b"\x00\xfc", b"\x00\xfb"):
            assert general == tcp_reply, (snap.config, data, "parsed in full")
        if data[-4:-2] in (b"\x00\xfc", b"\x00\xfb"):
            assert udp_reply[3] & 0x0F == 5  # a zone transfer: REFUSED over UDP (TCP: a transfer or REFUSED)
            continue
        if isinstance(udp_reply, UpstreamQuery) and isinstance(tcp_reply, UpstreamQuery):  # (forwarded: UDP's size limit aside)
            udp_reply, tcp_reply = replace(udp_reply, limit=0), replace(tcp_reply, limit=0)
        assert udp_reply == tcp_reply, (snap.config, data)


async def test_forwarded_replies_from_the_cache_are_rate_limited(kdns, stub, tmp_path, loop):
    """With --rrl-rate 5 (which takes the C loop off), a burst of 40 queries for a name in the
    forwarding cache (answered in the loop, then replayed) gets about 5 answers and slips for
    the rest, as an index answer does; the upstream is asked once."""
    up = await stub("example.org. 300 IN A 127.0.0.141")
    kd = await features(kdns, tmp_path, "--upstream", up.address, "--rrl-rate", "5", "--rrl-slip", "2")
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.1.3", 0))  # (another /24: its own rate)
        await sock.sendto(query("example.org", qid=0xFFFF), ("127.0.0.1", kd.port))
        assert dns.message.from_wire(await sock.recv(65535)).answer  # (asked upstream: now in the cache)
    replies = []
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        for i in range(40):
            await sock.sendto(query("example.org", qid=i), ("127.0.0.1", kd.port))
        with trio.move_on_after(1.0):
            while len(replies) < 40:
                replies.append(dns.message.from_wire(await sock.recv(65535)))
    full = [r for r in replies if not r.flags & dns.flags.TC]
    slipped = [r for r in replies if r.flags & dns.flags.TC]
    assert 4 <= len(full) <= 7 and all(r.answer for r in full), len(full)
    assert 15 <= len(slipped) <= 19 and all(not r.answer for r in slipped), len(slipped)
    assert up.count("example.org") == 1


async def test_a_reload_that_stops_forwarding_a_name_ends_its_replays(kdns, stub, tmp_path, loop):
    """`example.org` is answered from the forwarding cache and kept for replay; a reload then
    sends only `corp.example` to a stub domain and closes the world (--outside-names
    nxdomain): the same UDP bytes get NXDOMAIN at once, not the replayed answer, while a name
    of the stub domain is forwarded there."""
    from kdns.options import OutsideNames

    up = await stub("example.org. 300 IN A 127.0.0.141", "api.corp.example. 300 IN A 127.0.0.142")
    kd = await features(kdns, tmp_path, "--upstream", up.address)
    data = query("example.org")
    for _ in range(3):
        assert {rd.to_text() for rrset in (await ask(kd.port, data)).answer for rd in rrset} == {"127.0.0.141"}
    config = kd.server.config
    target = (up.host, up.port)
    kd.server.reconfigure(replace(config, upstreams=(), stub_domains=(("corp.example", (target,)),),
                                  dns=replace(config.dns, forwarding=False, stub_domains=("corp.example",),
                                              outside_names=OutsideNames.NXDOMAIN)))
    for _ in range(3):
        reply = await ask(kd.port, data)
        assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer
    assert {rd.to_text() for rrset in (await ask(kd.port, query("api.corp.example"))).answer for rd in rrset} == {"127.0.0.142"}
    assert up.count("example.org") == 1
