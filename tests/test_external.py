"""The external zone (`--external-zone`, CoreDNS's `k8s_external`; issue 18), as a table.

kdns serves tests/manifests/external.yaml with `--external-zone k8s.example.org
--external-headless`; every case is asked over UDP and TCP with dnspython, and with dig.
The rest: a load balancer that has a name (with and without an upstream), headless off,
several zones, the namespaces filter, warnings, the serial, metrics, and a status change
through the fake API server (tests/kubeapi.py) reaching the answer.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest
import trio

from testkit.answers import Case, a, check
from testkit.dnswire import rrs
from testkit.repo import needs, write
from testkit.stubdns import StubDNS

EXTERNAL = Path(__file__).parent / "manifests" / "external.yaml"
Z = "k8s.example.org."
ZONE_ARGS = ["--external-zone", "k8s.example.org", "--external-headless"]


def nodata(name: str, qtype: str, note: str = "NODATA") -> Case:
    return Case(name, qtype, "NOERROR", (), (), soa=Z, note=note)


def nxdomain(name: str, qtype: str = "A", note: str = "NXDOMAIN") -> Case:
    return Case(name, qtype, "NXDOMAIN", (), (), soa=Z, note=note)


def srv(owner: str, *records: str) -> tuple[str, ...]:
    return tuple(f"{owner} 5 IN SRV {record}" for record in records)


LB, BOTH, DUAL, ELB, PEERS, FRONT = (f"{n}.shop.{Z}" for n in ("lb", "both", "dual", "elb", "peers", "front"))
NS1 = f"ns1.dns.{Z}"

CASES = [
    # Addresses: externalIPs, load-balancer status, both (de-duplicated), dual stack.
    Case(f"ext-only.shop.{Z}", "A", answer=a(f"ext-only.shop.{Z}", "198.51.100.1"), note="externalIPs"),
    nodata(f"ext-only.shop.{Z}", "AAAA"),
    Case(LB, "A", answer=a(LB, "203.0.113.10"), note="LB ip"),
    Case(BOTH, "A", answer=a(BOTH, "198.51.100.2", "203.0.113.11"), note="both, de-duplicated"),
    Case(DUAL, "A", answer=a(DUAL, "203.0.113.12")),
    Case(DUAL, "AAAA", answer=a(DUAL, "2001:db8::12"), note="dual stack"),
    Case(f"portless.shop.{Z}", "A", answer=a(f"portless.shop.{Z}", "198.51.100.7"), note="no ports"),
    nodata(f"portless.shop.{Z}", "SRV"),
    nodata(LB, "TXT"),
    nodata(LB, "MX"),
    Case("LB.Shop.K8S.example.org.", "A", answer=a(LB, "203.0.113.10"), note="case-insensitive"),
    # A load balancer with a name: a CNAME (no upstream here: the client follows it).
    Case(ELB, "A", answer=(f"{ELB} 5 IN CNAME lb-123.elb.example.com.",), note="hostname, no upstream"),
    Case(ELB, "CNAME", answer=(f"{ELB} 5 IN CNAME lb-123.elb.example.com.",)),
    # Nothing external, nothing here; nothing below a Service (CoreDNS answers any label there).
    nxdomain(f"internal.shop.{Z}", note="no external address"),
    nxdomain(f"nope.shop.{Z}"),
    nxdomain(f"lb.nosuchns.{Z}"),
    nxdomain(f"x.{LB}", note="deeper label (CoreDNS: the Service's addresses)"),
    nxdomain(f"a.b.{LB}", note="deeper labels"),
    nxdomain(f"x.{ELB}", note="below a CNAME"),
    nodata(f"shop.{Z}", "A", note="a namespace with served Services"),
    nxdomain(f"empty.{Z}", note="a namespace without"),
    # SRV: named ports, the bare name for every port; glue in the additional section.
    Case(f"_http._tcp.{LB}", "SRV", answer=srv(f"_http._tcp.{LB}", f"0 100 80 {LB}"), additional=a(LB, "203.0.113.10")),
    Case(LB, "SRV", answer=srv(LB, f"0 50 80 {LB}", f"0 50 443 {LB}"), additional=a(LB, "203.0.113.10"), note="bare name"),
    nxdomain(f"_https._tcp.{LB}", "SRV", note="unnamed port"),
    nxdomain(f"_http._udp.{LB}", "SRV", note="no such protocol"),
    nodata(f"_tcp.{LB}", "SRV", note="empty non-terminal"),
    nodata(f"_http._tcp.{LB}", "A", note="SRV-only name"),
    Case(f"_http._tcp.{BOTH}", "SRV", answer=srv(f"_http._tcp.{BOTH}", f"0 50 80 {BOTH}"),
         additional=a(BOTH, "198.51.100.2", "203.0.113.11"), note="two addresses: weight 50"),
    Case(f"_https._tcp.{DUAL}", "SRV", answer=srv(f"_https._tcp.{DUAL}", f"0 50 443 {DUAL}"),
         additional=a(DUAL, "203.0.113.12", "2001:db8::12")),
    Case(f"_http._tcp.{ELB}", "SRV", answer=srv(f"_http._tcp.{ELB}", "0 100 80 lb-123.elb.example.com."), additional=(),
         note="target: the load balancer's name"),
    # Headless (--external-headless): ready endpoints, endpoint names, SRV to them.
    Case(PEERS, "A", answer=a(PEERS, "10.244.9.1", "10.244.9.2"), note="headless"),
    Case(f"peer-0.{PEERS}", "A", answer=a(f"peer-0.{PEERS}", "10.244.9.1")),
    Case(f"10-244-9-2.{PEERS}", "A", answer=a(f"10-244-9-2.{PEERS}", "10.244.9.2"), note="dashed name"),
    nxdomain(f"peer-2.{PEERS}", note="not ready"),
    nxdomain(f"x.peer-0.{PEERS}"),
    Case(f"_peer._tcp.{PEERS}", "SRV", answer=srv(f"_peer._tcp.{PEERS}", f"0 50 7000 peer-0.{PEERS}", f"0 50 7000 10-244-9-2.{PEERS}"),
         additional=a(f"peer-0.{PEERS}", "10.244.9.1") + a(f"10-244-9-2.{PEERS}", "10.244.9.2")),
    # Names from annotations: a label under the zone, a name in it (with or without its dot).
    Case(FRONT, "A", answer=a(FRONT, "203.0.113.13")),
    Case(f"storefront.{Z}", "A", answer=a(f"storefront.{Z}", "203.0.113.13"), note="relative annotation"),
    Case(f"www.{Z}", "A", answer=a(f"www.{Z}", "203.0.113.13"), note="absolute annotation"),
    Case(f"alt.{Z}", "A", answer=a(f"alt.{Z}", "203.0.113.13"), note="coredns.io/hostname, trailing dot"),
    nodata(f"storefront.{Z}", "SRV", note="no SRV on annotation names"),
    Case("www.elsewhere.example.", "A", "REFUSED", note="annotation outside the zones: ignored"),
    # PTR: external addresses, a shared address, a ClusterIP wins.
    Case("1.100.51.198.in-addr.arpa.", "PTR", answer=(f"1.100.51.198.in-addr.arpa. 5 IN PTR ext-only.shop.{Z}",)),
    Case("10.113.0.203.in-addr.arpa.", "PTR", answer=(f"10.113.0.203.in-addr.arpa. 5 IN PTR {LB}",)),
    Case("2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", "PTR",
         answer=(f"2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 5 IN PTR {DUAL}",)),
    Case("53.113.0.203.in-addr.arpa.", "PTR", answer=(
        f"53.113.0.203.in-addr.arpa. 5 IN PTR shared-tcp.shop.{Z}", f"53.113.0.203.in-addr.arpa. 5 IN PTR shared-udp.shop.{Z}",
    ), note="two Services, one address"),
    Case("1.200.96.10.in-addr.arpa.", "PTR", answer=("1.200.96.10.in-addr.arpa. 5 IN PTR ext-only.shop.svc.cluster.local.",),
         note="the cluster's PTR wins"),
    Case(f"squatter.shop.{Z}", "A", answer=a(f"squatter.shop.{Z}", "10.96.200.1")),
    Case("nope.in-addr.arpa.", "PTR", "NXDOMAIN", soa="in-addr.arpa.", note="not an address"),
    # The apex: SOA, NS with glue from the Service in front of kube-dns's pods.
    Case(Z, "NS", answer=(f"{Z} 5 IN NS {NS1}",), additional=a(NS1, "192.0.2.53", "2001:db8::53")),
    Case(NS1, "A", answer=a(NS1, "192.0.2.53")),
    Case(NS1, "AAAA", answer=a(NS1, "2001:db8::53")),
    nodata(NS1, "MX"),
    nodata(f"dns.{Z}", "A", note="the name server's parent"),
    nxdomain(f"ns2.dns.{Z}"),
    nxdomain(f"x.ns1.dns.{Z}"),
    nodata(Z, "A"),
    nodata(Z, "SRV"),
    Case("53.2.0.192.in-addr.arpa.", "PTR", answer=(f"53.2.0.192.in-addr.arpa. 5 IN PTR dns-external.kube-system.{Z}",)),
    # The cluster zone is as it was.
    Case("lb.shop.svc.cluster.local.", "A", answer=a("lb.shop.svc.cluster.local.", "10.96.200.2")),
    Case("example.org.", "A", "REFUSED"),
]


@pytest.fixture
async def server(kdns):
    return await kdns(EXTERNAL, args=ZONE_ARGS)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("case", CASES, ids=str)
async def test_external_answer(server, case: Case, tcp: bool):
    check(case, await server.query(case.name, case.qtype, tcp=tcp))


async def test_repeated_answers_are_the_same(server):
    """The second answer of each case comes from the memo of packed answers."""
    for case in CASES:
        for _ in range(2):
            check(case, await server.query(case.name, case.qtype))


async def dig(server, name: str, qtype: str, *, tcp: bool) -> tuple[str, set[str], bool]:
    """(status, answer lines, AA) as dig prints them."""
    argv = ["dig", f"@{server.host}", "-p", str(server.port), "+tcp" if tcp else "+notcp", "+noall", "+comments", "+answer",
            "+tries=1", "+time=3", name, qtype]
    result = await trio.run_process(argv, capture_stdout=True, check=True)
    out = result.stdout.decode()
    status = out.split("status: ", 1)[1].split(",", 1)[0]
    flags = out.split("flags: ", 1)[1].split(";", 1)[0].split()
    lines = {" ".join(line.lower().split()) for line in out.splitlines() if line.strip() and not line.startswith(";")}
    return status, lines, "aa" in flags


@needs("dig")
@pytest.mark.parametrize("tcp", [False, True], ids=["notcp", "tcp"])
async def test_dig_sees_the_same(server, tcp: bool):
    for case in CASES:
        if case.qtype == "SRV" and case.answer:
            continue  # dig prints SRV records as the table does; the answers are checked above
        status, lines, aa = await dig(server, case.name, case.qtype, tcp=tcp)
        assert status == case.rcode, case
        assert lines == {line.lower() for line in case.answer}, case
        assert aa == (case.rcode != "REFUSED"), case


async def test_apex_soa_serial(server):
    before = int(time.time())
    [soa] = (await server.query(Z, "SOA")).answer
    rd = soa[0]
    assert soa.ttl == 5 and (rd.mname.to_text(), rd.rname.to_text()) == (NS1, f"hostmaster.dns.{Z}")
    assert (rd.refresh, rd.retry, rd.expire, rd.minimum) == (7200, 1800, 86400, 5)
    assert rd.serial <= int(time.time()), "never ahead of the clock: a restart cannot make it go back"
    assert rd.serial >= before - 60
    [neg] = (await server.query(f"nope.shop.{Z}", "A")).authority
    assert neg[0] == rd


async def test_hostname_follows_from_upstream(kdns, nursery):
    """With an upstream, the load balancer's name is resolved through the forwarding cache:
    CNAME plus the target's records, in one answer."""
    stub = StubDNS("lb-123.elb.example.com. 60 IN A 192.0.2.99")
    port = await nursery.start(stub.serve)
    server = await kdns(EXTERNAL, args=[*ZONE_ARGS, "--upstream", f"127.0.0.1:{port}"])
    for tcp in (False, True):
        reply = await server.query(ELB, "A", tcp=tcp)
        assert reply.rcode() == dns.rcode.NOERROR
        no_ttl = {" ".join(line.split()[:1] + line.split()[2:]) for line in rrs(reply.answer)}  # cached TTLs count down
        assert no_ttl == {f"{ELB} IN CNAME lb-123.elb.example.com.", "lb-123.elb.example.com. IN A 192.0.2.99"}
    assert stub.count("lb-123.elb.example.com.", "A") == 1, "the second answer came from the cache"
    reply = await server.query(ELB, "CNAME")
    assert rrs(reply.answer) == {f"{ELB} 5 IN CNAME lb-123.elb.example.com."}


async def test_headless_off(kdns):
    server = await kdns(EXTERNAL, args=["--external-zone", "k8s.example.org"])
    for name in (PEERS, f"peer-0.{PEERS}", f"_peer._tcp.{PEERS}"):
        check(nxdomain(name), await server.query(name, "A"))
    check(Case(LB, "A", answer=a(LB, "203.0.113.10")), await server.query(LB, "A"))


async def test_several_zones_and_ttl(kdns):
    """Every external zone serves every Service; PTR targets use the first; one TTL for all."""
    server = await kdns(EXTERNAL, args=["--external-zone", "k8s.example.org", "--external-zone", "lb.example.net",
                                        "--external-ttl", "60"])
    reply = await server.query("lb.shop.lb.example.net", "A")
    assert rrs(reply.answer) == {"lb.shop.lb.example.net. 60 IN A 203.0.113.10"}
    reply = await server.query("_http._tcp.lb.shop.lb.example.net", "SRV")
    assert rrs(reply.answer) == {"_http._tcp.lb.shop.lb.example.net. 60 IN SRV 0 100 80 lb.shop.lb.example.net."}
    reply = await server.query("elb.shop.lb.example.net", "A")
    assert rrs(reply.answer) == {"elb.shop.lb.example.net. 60 IN CNAME lb-123.elb.example.com."}, "CNAMEs too (CoreDNS: cluster TTL)"
    reply = await server.query("storefront.lb.example.net", "A")
    assert rrs(reply.answer) == {"storefront.lb.example.net. 60 IN A 203.0.113.13"}, "a label goes under every zone"
    check(Case("www.lb.example.net.", "A", "NXDOMAIN", soa="lb.example.net."), await server.query("www.lb.example.net", "A"))
    reply = await server.query("10.113.0.203.in-addr.arpa", "PTR")
    assert rrs(reply.answer) == {f"10.113.0.203.in-addr.arpa. 60 IN PTR {LB}"}
    [soa] = (await server.query("lb.example.net", "SOA")).answer
    assert soa.ttl == 60 and soa[0].minimum == 60 and soa[0].mname.to_text() == "ns1.dns.lb.example.net."
    [soa] = (await server.query("cluster.local", "SOA")).answer
    assert soa.ttl == 5, "the cluster zone keeps --ttl"


async def test_namespaces_filter_applies(kdns):
    server = await kdns(EXTERNAL, args=[*ZONE_ARGS, "--namespaces", "shop,kube-system"])
    check(nxdomain(f"secret.hidden.{Z}"), await server.query(f"secret.hidden.{Z}", "A"))
    check(Case(LB, "A", answer=a(LB, "203.0.113.10")), await server.query(LB, "A"))
    reply = await server.query("13.100.51.198.in-addr.arpa", "PTR")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    unfiltered = await kdns(EXTERNAL, args=ZONE_ARGS)
    assert rrs((await unfiltered.query(f"secret.hidden.{Z}", "A")).answer) == set(a(f"secret.hidden.{Z}", "198.51.100.13"))


async def test_labels_filter_applies(kdns, tmp_path):
    manifest = write(tmp_path / "svc.yaml", """
        apiVersion: v1
        kind: Service
        metadata: {name: shown, namespace: a, labels: {dns: "on"}}
        spec: {clusterIP: 10.96.1.1, externalIPs: [198.51.100.21]}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: hidden, namespace: a, labels: {dns: "off"}}
        spec: {clusterIP: 10.96.1.2, externalIPs: [198.51.100.22]}
    """)
    server = await kdns(manifest, args=[*ZONE_ARGS, "--labels", "dns!=off"])
    assert rrs((await server.query(f"shown.a.{Z}", "A")).answer) == set(a(f"shown.a.{Z}", "198.51.100.21"))
    assert (await server.query(f"hidden.a.{Z}", "A")).rcode() == dns.rcode.NXDOMAIN


async def test_annotation_outside_the_zones_is_warned_about(kdns, caplog):
    caplog.set_level(logging.WARNING, "kdns")
    await kdns(EXTERNAL, args=ZONE_ARGS)
    warned = [r.getMessage() for r in caplog.records if "www.elsewhere.example" in r.getMessage()]
    assert warned == [("Service shop/front: hostname annotation 'www.elsewhere.example' lies in no external zone "
                       "(k8s.example.org); ignored")]
    assert any("Service dns/ns1" in r.getMessage() and "apex" in r.getMessage() for r in caplog.records)


async def test_apex_namespace_belongs_to_the_name_server(server):
    """`ns1.dns.<zone>` is the name server even though Service dns/ns1 has external addresses."""
    reply = await server.query(NS1, "A")
    assert rrs(reply.answer) == set(a(NS1, "192.0.2.53"))


async def test_glue_without_a_fronting_service(kdns, tmp_path):
    """No Service in front of kube-dns: the name server is where kdns listens (ns.dns as in the cluster zone)."""
    manifest = write(tmp_path / "one.yaml", """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: shop}
        spec: {clusterIP: 10.96.1.1, externalIPs: [198.51.100.31]}
    """)
    server = await kdns(manifest, args=ZONE_ARGS)
    reply = await server.query(Z, "NS")
    assert rrs(reply.answer) == {f"{Z} 5 IN NS {NS1}"} and rrs(reply.additional) == set(a(NS1, "127.0.0.1"))


async def test_manifest_status_change_reaches_the_answer(kdns, tmp_path):
    """Rewriting a manifest's `status:` block changes the answers, those that carry the
    address as glue too (SRV additional, the apex NS), and the serial moves on."""
    path = tmp_path / "lb.yaml"
    body = ("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n"
            "spec: {{type: LoadBalancer, clusterIP: {ip}, ports: [{{name: http, port: 80}}]}}\n{status}")
    status = "status: {{loadBalancer: {{ingress: [{{ip: {}}}]}}}}\n"

    def manifest(web: str, dns_ip: str) -> str:
        return (body.format(name="web", ns="shop", ip="10.96.1.1", status=status.format(web) if web else "") + "---\n"
                + body.format(name="kube-dns", ns="kube-system", ip="10.96.0.10", status=status.format(dns_ip)))

    path.write_text(manifest("", "192.0.2.53"))
    server = await kdns(path, args=ZONE_ARGS)
    name, srv_name = f"web.shop.{Z}", f"_http._tcp.web.shop.{Z}"
    assert (await server.query(name, "A")).rcode() == dns.rcode.NXDOMAIN
    assert rrs((await server.query(Z, "NS")).additional) == set(a(NS1, "192.0.2.53"))
    [soa] = (await server.query(Z, "SOA")).answer
    path.write_text(manifest("203.0.113.77", "192.0.2.53"))
    reply = await eventually(server, name, lambda r: r.rcode() == dns.rcode.NOERROR and r.answer)
    assert rrs(reply.answer) == set(a(name, "203.0.113.77"))
    assert rrs((await server.query(srv_name, "SRV")).additional) == set(a(name, "203.0.113.77"))
    for i in range(50):  # more packed answers than the change names: only those named are forgotten
        await server.query(f"other{i}.shop.{Z}", "A")
    path.write_text(manifest("203.0.113.78", "192.0.2.54"))
    await eventually(server, name, lambda r: rrs(r.answer) == set(a(name, "203.0.113.78")))
    reply = await server.query(srv_name, "SRV")
    assert rrs(reply.answer) == {f"{srv_name} 5 IN SRV 0 100 80 {name}"} and rrs(reply.additional) == set(a(name, "203.0.113.78"))
    assert rrs((await server.query(Z, "NS")).additional) == set(a(NS1, "192.0.2.54")), "the glue follows the Service"
    [later] = (await server.query(Z, "SOA")).answer
    assert soa[0].serial <= later[0].serial <= int(time.time())


async def eventually(server, name, expect, qtype="A", timeout=5.0):
    reply = None
    with trio.move_on_after(timeout):
        while True:
            reply = await server.query(name, qtype)
            if expect(reply):
                return reply
            await trio.sleep(0.02)
    pytest.fail(f"{name}: still {reply}")


async def test_metrics_count_the_external_zone(kdns):
    """Queries in the external zone are counted under its zone label, as the cluster zone's."""
    server = await kdns(EXTERNAL, args=[*ZONE_ARGS, "--metrics", "127.0.0.1:0"])
    for _ in range(3):
        await server.query(LB, "A")
    port = server.server.http_bound["/metrics"].port

    def scrape() -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()

    text = await trio.to_thread.run_sync(scrape)
    lines = [line for line in text.splitlines() if line.startswith("coredns_dns_requests_total") and f'zone="{Z}"' in line]
    assert lines and sum(float(line.rsplit(" ", 1)[1]) for line in lines) == 3, lines


async def test_aa_on_every_external_answer(server):
    for name, qtype in ((LB, "A"), (f"nope.shop.{Z}", "A"), (Z, "SOA"), ("10.113.0.203.in-addr.arpa", "PTR")):
        assert (await server.query(name, qtype)).flags & dns.flags.AA, name


# -- through the API watch ----------------------------------------------------------------------


@pytest.fixture
def api():
    from testkit.kubeapi import KubeAPI

    server = KubeAPI().start()
    yield server
    server.stop()


def lb_service(name: str, ns: str, ip: str, *ingress: dict, external_ips: tuple[str, ...] = ()) -> dict:
    spec = {"type": "LoadBalancer", "clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    if external_ips:
        spec["externalIPs"] = list(external_ips)
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec}
    if ingress:
        obj["status"] = {"loadBalancer": {"ingress": list(ingress)}}
    return obj


async def test_status_change_through_the_api_reaches_the_answer(api, kdns):
    """The load-balancer controller writes the status; the Service watch (which kdns already
    has) carries it, and the external name answers within a second of the event. A changed
    address replaces the old one, and the PTR follows."""
    api.apply(lb_service("web", "shop", "10.96.5.1"))
    server = await kdns(args=["--apiserver", api.url, *ZONE_ARGS])
    with trio.fail_after(5):
        while not server.server.synced:
            await trio.sleep(0.02)
    name = f"web.shop.{Z}"
    check(nxdomain(name), await server.query(name, "A"))
    [before] = (await server.query(Z, "SOA")).answer

    api.apply(lb_service("web", "shop", "10.96.5.1", {"ip": "203.0.113.90"}))
    reply = await eventually(server, name, lambda r: r.rcode() == dns.rcode.NOERROR, timeout=1.0)
    assert rrs(reply.answer) == set(a(name, "203.0.113.90"))
    assert rrs((await server.query("web.shop.svc.cluster.local", "A")).answer) == set(a("web.shop.svc.cluster.local.", "10.96.5.1"))

    api.apply(lb_service("web", "shop", "10.96.5.1", {"ip": "203.0.113.91"}, {"hostname": "ignored.example.com"},
                         external_ips=("198.51.100.90",)))
    await eventually(server, name, lambda r: rrs(r.answer) == set(a(name, "198.51.100.90", "203.0.113.91")), timeout=1.0)
    ptr = await eventually(server, "91.113.0.203.in-addr.arpa", lambda r: r.rcode() == dns.rcode.NOERROR, "PTR", timeout=1.0)
    assert rrs(ptr.answer) == {f"91.113.0.203.in-addr.arpa. 5 IN PTR {name}"}
    assert (await server.query("90.113.0.203.in-addr.arpa", "PTR")).rcode() == dns.rcode.NXDOMAIN
    [after] = (await server.query(Z, "SOA")).answer
    assert before[0].serial <= after[0].serial <= int(time.time())

    api.delete("Service", "shop", "web")
    await eventually(server, name, lambda r: r.rcode() == dns.rcode.NXDOMAIN, timeout=1.0)


async def test_serial_never_goes_back_across_a_reload_and_a_restart(kdns):
    from kdns.cli import _parser
    from kdns.settings import build_config

    server = await kdns(EXTERNAL, args=ZONE_ARGS)
    [first] = (await server.query(Z, "SOA")).answer
    argv = ["serve", "--manifests", str(EXTERNAL), "--listen", "127.0.0.1:0", *ZONE_ARGS, "--external-ttl", "7"]
    server.server.reconfigure(build_config(_parser().parse_args(argv)))  # a reload that rebuilds the index
    [second] = (await server.query(Z, "SOA")).answer
    assert second.ttl == 7 and first[0].serial <= second[0].serial <= int(time.time())
    restarted = await kdns(EXTERNAL, args=ZONE_ARGS)
    [third] = (await restarted.query(Z, "SOA")).answer
    assert second[0].serial <= third[0].serial


# -- the pure parts -------------------------------------------------------------------------------


def test_what_a_service_contributes():
    from kdns.config import DnsConfig
    from kdns.external import external_records
    from kdns.model import Port, Service, ServiceType

    config = DnsConfig(external_zones=("k8s.example.org", "lb.example.net"))
    svc = Service("shop", "web", ServiceType.CLUSTER_IP, ("10.96.0.1",), (Port("http", "tcp", 80),),
                  external_ips=("198.51.100.1",), hostnames=("front", "www.k8s.example.org.", "x.dns.k8s.example.org", "a_b"))
    out = external_records(svc, [], config)
    assert sorted(out.names) == [
        "_http._tcp.web.shop.k8s.example.org", "_http._tcp.web.shop.lb.example.net", "front.k8s.example.org",
        "front.lb.example.net", "web.shop.k8s.example.org", "web.shop.lb.example.net", "www.k8s.example.org",
    ]
    assert out.ptrs == {"198.51.100.1": "web.shop.k8s.example.org"}
    assert out.warnings == [
        "Service shop/web: hostname annotation 'x.dns.k8s.example.org' is the name server's; ignored",
        "Service shop/web: hostname annotation 'a_b': not a usable label; ignored",
    ]
    nothing = Service("shop", "internal", ServiceType.CLUSTER_IP, ("10.96.0.2",), hostnames=("front",))
    assert external_records(nothing, [], config).names == {}


def test_tables_claims_and_empty_non_terminals(caplog):
    import immutables

    from kdns.config import DnsConfig
    from kdns.model import Kind, Rrset
    from kdns.tables import NameTables

    tables = NameTables(DnsConfig(external_zones=("k8s.example.org",)))
    a1 = (Kind.SERVICE, "shop", "a")
    b1 = (Kind.SERVICE, "shop", "b")
    rr = Rrset("x.shop.k8s.example.org", 1, 5, ("192.0.2.1",))
    tables.set(b1, {"x.shop.k8s.example.org": (1, (rr,), ())}, {"192.0.2.1": (0, ("b",), 5)})
    tables.set(a1, {"x.shop.k8s.example.org": (1, (rr._replace(values=("192.0.2.2",)),), ())}, {"192.0.2.1": (0, ("a",), 5)})
    hosts, xptr = immutables.Map().mutate(), immutables.Map().mutate()
    changed = tables.publish(hosts, xptr)
    assert changed.names == {"x.shop.k8s.example.org", "shop.k8s.example.org"} and changed.external
    assert hosts["x.shop.k8s.example.org"].rrsets[0].values == ("192.0.2.2",), "equal ranks: the first owner wins"
    assert hosts["x.shop.k8s.example.org"].origins == (a1,)
    assert hosts["shop.k8s.example.org"].rrsets == () and "k8s.example.org" not in hosts
    assert xptr["192.0.2.1"].targets == ("a", "b")
    assert any("claimed by" in r.getMessage() for r in caplog.records)
    tables.set(a1, {}, {})
    tables.set(b1, {}, {})
    changed = tables.publish(hosts, xptr)
    assert changed.names == {"x.shop.k8s.example.org", "shop.k8s.example.org"} and not hosts and not xptr


@pytest.mark.parametrize("flags, message", [
    (["--external-zone", "cluster.local"], "--external-zone: 'cluster.local' is served already: the zones must not overlap"),
    (["--external-zone", "svc.cluster.local"], "--external-zone: 'svc.cluster.local' lies inside 'cluster.local'"),
    (["--external-zone", "a.example.org", "--external-zone", "example.org"], "--external-zone: 'a.example.org' lies inside 'example.org'"),
    (["--external-zone", "in-addr.arpa"], "--external-zone: 'in-addr.arpa': the reverse zones are always served"),
    (["--external-zone", "bad zone"], "--external-zone: not a domain name: 'bad zone'"),
    (["--external-apex", "a.b"], "--external-apex: not a DNS label"),
    (["--external-ttl", "3601"], "--external-ttl: must be between 0 and 3600 seconds, got 3601"),
    (["--external-zone", "example.org", "--stub-domain", "x.example.org=127.0.0.1"], "lies inside a zone kdns serves itself"),
])
def test_external_options_are_checked(flags, message):
    from kdns.cli import _parser
    from kdns.config import ConfigError
    from kdns.settings import build_config

    with pytest.raises(ConfigError) as caught:
        build_config(_parser().parse_args(["serve", *flags]), {})
    assert message in str(caught.value)
