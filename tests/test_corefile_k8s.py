"""The Corefile settings kdns once refused, seen through DNS answers over real sockets: the
kubernetes `fallthrough` for cluster zones, `noendpoints`, `endpoint_pod_names`, k8s_external's
`fallthrough`, `bufsize` below 1232, and the cache rules of the `.` block (`cache TTL ZONES`,
`disable success|denial ZONES`, `success`/`denial` minimum TTLs).

Loopback only: the fake API server (testkit.kubeapi) and stub upstreams (testkit.stubdns).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import pytest
import trio

from testkit.corefile import serve_corefile, synced
from testkit.dnswire import rrs
from testkit.kubeapi import KubeAPI
from testkit.stubdns import StubDNS

WEB = "web.shop.svc.cluster.local."
LEGACY = "legacy.shop.svc.cluster.local."  # not in the cluster; the old DNS server knows it


@pytest.fixture
async def upstream(nursery):
    stub = StubDNS("example.com. 300 IN A 192.0.2.10", "www.example.net. 300 IN A 192.0.2.11",
                   f"{LEGACY} 300 IN A 192.0.2.50", "old.k8s.example.org. 300 IN A 192.0.2.60",
                   "short.example.com. 1 IN A 192.0.2.12")
    await nursery.start(stub.serve)
    return stub


def corefile(tmp_path: Path, api: KubeAPI, kubernetes: str = "", body: str = "") -> Path:
    """A `.` block on 127.0.0.1 (a free port): kubeadm's kubernetes directive plus the lines
    `kubernetes`, then `body`."""
    inner = textwrap.indent(textwrap.dedent(kubernetes), " " * 8)
    text = (".:0 {\n    bind 127.0.0.1\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n"
            f"        endpoint {api.url}\n        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n{inner}    }}\n"
            + textwrap.indent(textwrap.dedent(body), "    ") + "}\n")
    path = tmp_path / "Corefile"
    path.write_text(text)
    return path


def ips(reply: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in reply.answer for rd in rrset if rrset.rdtype in (1, 28)}


def rcode(reply: dns.message.Message) -> str:
    return dns.rcode.to_text(reply.rcode())


# -- kubernetes fallthrough ------------------------------------------------------------------------


async def test_fallthrough_sends_names_the_cluster_lacks_upstream(api, upstream, nursery, tmp_path):
    """`fallthrough cluster.local`: NXDOMAIN of the cluster zone goes on to forward (the old
    server's answer reaches the client, cached as forwarded answers are); what the cluster holds
    is answered from it, never asked upstream; NODATA does not fall through; a Service created
    later under a forwarded name wins at once."""
    path = corefile(tmp_path, api, "fallthrough cluster.local in-addr.arpa\n", f"forward . {upstream.address}\ncache 30\n")
    server = await synced(await serve_corefile(nursery, path))
    for _ in range(3):
        reply = await server.query(LEGACY, "A")
        assert ips(reply) == {"192.0.2.50"} and rcode(reply) == "NOERROR"
    assert upstream.count(LEGACY) == 1  # the forwarding cache kept it
    assert ips(await server.query(WEB, "A")) == {"10.96.100.10"}
    nodata = await server.query(WEB, "TXT")  # the name exists: NODATA stays, nothing asked
    assert rcode(nodata) == "NOERROR" and not nodata.answer
    nowhere = await server.query("nowhere.shop.svc.cluster.local", "A")  # the upstream's NXDOMAIN
    assert rcode(nowhere) == "NXDOMAIN"
    assert upstream.count(WEB) == 0 and upstream.count("nowhere.shop.svc.cluster.local.") == 1

    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "legacy", "namespace": "shop"},
               "spec": {"clusterIP": "10.96.210.1", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
    api.apply(service)
    try:
        with trio.fail_after(10):
            while ips(await server.query(LEGACY, "A")) != {"10.96.210.1"}:
                await trio.sleep(0.05)
    finally:
        api.delete("Service", "shop", "legacy")
    with trio.fail_after(10):  # gone again: forwarded again (from the cache)
        while ips(await server.query(LEGACY, "A")) != {"192.0.2.50"}:
            await trio.sleep(0.05)


async def test_fallthrough_covers_only_its_zones(api, upstream, nursery, tmp_path):
    """`fallthrough legacy.shop.svc.cluster.local`: only that name falls through; another
    unknown name of the cluster zone is kdns's NXDOMAIN, with the zone's SOA, never asked."""
    path = corefile(tmp_path, api, f"fallthrough {LEGACY}\n", f"forward . {upstream.address}\n")
    server = await synced(await serve_corefile(nursery, path))
    assert ips(await server.query(LEGACY, "A")) == {"192.0.2.50"}
    other = await server.query("nowhere.shop.svc.cluster.local", "A")
    assert rcode(other) == "NXDOMAIN" and [r.rdtype for r in other.authority] == [6]
    assert upstream.count("nowhere.shop.svc.cluster.local.") == 0


async def test_without_fallthrough_the_cluster_zone_is_never_forwarded(api, upstream, nursery, tmp_path):
    path = corefile(tmp_path, api, body=f"forward . {upstream.address}\n")
    server = await synced(await serve_corefile(nursery, path))
    assert rcode(await server.query(LEGACY, "A")) == "NXDOMAIN"
    assert upstream.count(LEGACY) == 0


async def test_fallthrough_without_forward_keeps_the_nxdomain(api, nursery, tmp_path):
    server = await synced(await serve_corefile(nursery, corefile(tmp_path, api, "fallthrough\n")))
    reply = await server.query(LEGACY, "A")
    assert rcode(reply) == "NXDOMAIN" and reply.flags & dns.flags.AA


# -- noendpoints, endpoint_pod_names ------------------------------------------------------------------


async def test_noendpoints_serves_no_endpoint_data(api, nursery, tmp_path):
    """`noendpoints`: headless Services and endpoint names are NXDOMAIN, and the endpoint's
    address has no PTR record; ClusterIP Services answer as ever."""
    server = await synced(await serve_corefile(nursery, corefile(tmp_path, api, "noendpoints\n")))
    for name in ("dns-test-service.e2e.svc.cluster.local", "dns-querier-1.dns-test-service.e2e.svc.cluster.local"):
        assert rcode(await server.query(name, "A")) == "NXDOMAIN", name
    assert rcode(await server.query("7.5.244.10.in-addr.arpa", "PTR")) == "NXDOMAIN"
    assert ips(await server.query("test-service-2.e2e.svc.cluster.local", "A")) == {"10.96.55.2"}
    srv = await server.query("_http._tcp.test-service-2.e2e.svc.cluster.local", "SRV")
    target = "test-service-2.e2e.svc.cluster.local."
    assert rrs(srv.answer) == {f"_http._tcp.{target} 5 IN SRV 0 100 80 {target}"}


async def test_endpoints_are_served_without_noendpoints(api, nursery, tmp_path):
    server = await synced(await serve_corefile(nursery, corefile(tmp_path, api)))
    assert ips(await server.query("dns-querier-1.dns-test-service.e2e.svc.cluster.local", "A")) == {"10.244.5.7"}


PODNAMED = [
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "podnamed", "namespace": "e2e"},
     "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
     "metadata": {"name": "podnamed-1", "namespace": "e2e", "labels": {"kubernetes.io/service-name": "podnamed"}},
     "addressType": "IPv4",
     "endpoints": [{"addresses": ["10.244.9.1"], "targetRef": {"kind": "Pod", "namespace": "e2e", "name": "web-7d4b9-x2x"}},
                   {"addresses": ["10.244.9.2"], "hostname": "named", "targetRef": {"kind": "Pod", "name": "web-7d4b9-y3y"}},
                   {"addresses": ["10.244.9.3"], "targetRef": {"kind": "Pod", "name": "dotted.pod.name"}}],
     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
]


@pytest.fixture
def podnamed(api):
    for obj in PODNAMED:
        api.apply(obj)
    yield
    api.delete("EndpointSlice", "e2e", "podnamed-1")
    api.delete("Service", "e2e", "podnamed")


async def test_endpoint_pod_names(api, podnamed, nursery, tmp_path):
    """`endpoint_pod_names`: an endpoint without a hostname is named after its Pod (in A, SRV
    and PTR answers); a hostname still wins; a Pod name that is no DNS label keeps the dashed
    address."""
    server = await synced(await serve_corefile(nursery, corefile(tmp_path, api, "endpoint_pod_names\n")))
    svc = "podnamed.e2e.svc.cluster.local"
    assert ips(await server.query(f"web-7d4b9-x2x.{svc}", "A")) == {"10.244.9.1"}
    assert rcode(await server.query(f"10-244-9-1.{svc}", "A")) == "NXDOMAIN"
    assert ips(await server.query(f"named.{svc}", "A")) == {"10.244.9.2"}
    assert ips(await server.query(f"10-244-9-3.{svc}", "A")) == {"10.244.9.3"}
    ptr = await server.query("1.9.244.10.in-addr.arpa", "PTR")
    assert rrs(ptr.answer) == {f"1.9.244.10.in-addr.arpa. 5 IN PTR web-7d4b9-x2x.{svc}."}
    srv = await server.query(f"_http._tcp.{svc}", "SRV")
    assert {rd.target.to_text() for rrset in srv.answer for rd in rrset} == {f"web-7d4b9-x2x.{svc}.", f"named.{svc}.",
                                                                            f"10-244-9-3.{svc}."}


async def test_without_endpoint_pod_names_the_dashed_address(api, podnamed, nursery, tmp_path):
    server = await synced(await serve_corefile(nursery, corefile(tmp_path, api)))
    svc = "podnamed.e2e.svc.cluster.local"
    assert ips(await server.query(f"10-244-9-1.{svc}", "A")) == {"10.244.9.1"}
    assert rcode(await server.query(f"web-7d4b9-x2x.{svc}", "A")) == "NXDOMAIN"


# -- k8s_external fallthrough -----------------------------------------------------------------------


async def test_k8s_external_fallthrough(api, upstream, nursery, tmp_path):
    """k8s_external's `fallthrough`: a name of the external zone kdns does not hold goes to
    forward; the Services' external names are kdns's own, never asked."""
    lb = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "edge", "namespace": "shop"},
          "spec": {"type": "LoadBalancer", "clusterIP": "10.96.201.1", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
          "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}
    api.apply(lb)
    try:
        path = corefile(tmp_path, api, body=f"k8s_external k8s.example.org {{\n    fallthrough\n}}\nforward . {upstream.address}\n")
        server = await synced(await serve_corefile(nursery, path))
        with trio.fail_after(10):
            while ips(await server.query("edge.shop.k8s.example.org", "A")) != {"203.0.113.7"}:
                await trio.sleep(0.05)
        assert ips(await server.query("old.k8s.example.org", "A")) == {"192.0.2.60"}
        assert rcode(await server.query("nope.shop.k8s.example.org", "A")) == "NXDOMAIN"  # the upstream's
        assert upstream.count("edge.shop.k8s.example.org.") == 0
        assert upstream.count("old.k8s.example.org.") == upstream.count("nope.shop.k8s.example.org.") == 1
    finally:
        api.delete("Service", "shop", "edge")


# -- bufsize ------------------------------------------------------------------------------------------


BIG = "".join(f"10.7.0.{i} big.example.test\n" for i in range(1, 41))  # 40 A records: about 700 bytes


@pytest.mark.parametrize(("bufsize", "truncated"), [("bufsize 512\n", True), ("", False), ("bufsize 1232\n", False)])
async def test_bufsize_caps_udp_replies(api, nursery, tmp_path, bufsize, truncated):
    """`bufsize 512`: a client offering 4096 bytes gets at most 512 over UDP (TC, then TCP
    answers in full), the same again when the reply is replayed, for kdns's own records and
    for forwarded ones (asked, then from the cache); kdns's own limit is 1232."""
    # (30: forwarded records go out with their names written in full, about 31 bytes each)
    big = StubDNS(*(f"big.example.com. 300 IN A 10.8.0.{i}" for i in range(1, 31)))
    await nursery.start(big.serve)
    path = corefile(tmp_path, api, body=f"{bufsize}hosts {{\n{textwrap.indent(BIG, '    ')}    fallthrough\n}}\n"
                                        f"forward . {big.address}\ncache 30\n")
    server = await synced(await serve_corefile(nursery, path))
    for name, count in (("big.example.test", 40), ("big.example.com", 30)):
        for _ in range(2):  # (the second is a replay, or a cache hit)
            reply = await server.query(name, "A", use_edns=0, payload=4096)
            assert bool(reply.flags & dns.flags.TC) == truncated, name
            assert len(ips(reply)) == (0 if truncated else count), name
        assert len(ips(await server.query(name, "A", tcp=True))) == count


# -- cache zones, disable, minimum TTLs -----------------------------------------------------------------


async def test_cache_only_under_its_zones(api, upstream, nursery, tmp_path):
    """`cache 30 example.com`: example.com's answers are cached (asked once); example.net's are
    forwarded every time."""
    server = await synced(await serve_corefile(nursery, corefile(tmp_path, api, body=f"forward . {upstream.address}\ncache 30 example.com\n")))
    for _ in range(3):
        assert ips(await server.query("example.com", "A")) == {"192.0.2.10"}
        assert ips(await server.query("www.example.net", "A")) == {"192.0.2.11"}
    assert upstream.count("example.com.") == 1 and upstream.count("www.example.net.") == 3


async def test_cache_disable_success_and_denial(api, upstream, nursery, tmp_path):
    body = f"forward . {upstream.address}\ncache 30 {{\n    disable success example.net\n    disable denial example.com\n}}\n"
    server = await synced(await serve_corefile(nursery, corefile(tmp_path, api, body=body)))
    for _ in range(3):
        assert ips(await server.query("www.example.net", "A")) == {"192.0.2.11"}  # success: never cached
        assert rcode(await server.query("nope.example.net", "A")) == "NXDOMAIN"  # denial: cached
        assert rcode(await server.query("nope.example.com", "A")) == "NXDOMAIN"  # denial: never cached
        assert ips(await server.query("example.com", "A")) == {"192.0.2.10"}  # success: cached
    counts = {name: upstream.count(name) for name in ("www.example.net.", "nope.example.net.", "nope.example.com.", "example.com.")}
    assert counts == {"www.example.net.": 3, "nope.example.net.": 1, "nope.example.com.": 3, "example.com.": 1}


async def test_cache_success_minimum_ttl(api, upstream, nursery, tmp_path):
    """`success 1000 30 10`: an answer with TTL 1 is kept 10 s and says TTL 10 (counting down),
    as CoreDNS serves every record of a cached answer with the entry's TTL."""
    body = f"forward . {upstream.address}\ncache 30 {{\n    success 1000 30 10\n}}\n"
    server = await synced(await serve_corefile(nursery, corefile(tmp_path, api, body=body)))
    first = await server.query("short.example.com", "A")
    assert rrs(first.answer) == {"short.example.com. 10 IN A 192.0.2.12"}
    again = await server.query("short.example.com", "A")
    assert 0 < again.answer[0].ttl <= 10 and upstream.count("short.example.com.") == 1


@pytest.mark.parametrize(("denial", "soa_ttl"), [("{\n    denial 1000 5\n}\n", 5), ("\n", 30)])
async def test_cache_denial_maximum_ttl(api, upstream, nursery, tmp_path, denial, soa_ttl):
    """`denial 1000 5` below `cache 30`: a negative answer (the stub's SOA says 60) is kept, and
    said, 5 s at most; without it, 30 (the cache's TTL)."""
    body = f"forward . {upstream.address}\ncache 30 {denial}"
    server = await synced(await serve_corefile(nursery, corefile(tmp_path, api, body=body)))
    reply = await server.query("nope.example.com", "A")
    assert rcode(reply) == "NXDOMAIN" and [rr.ttl for rr in reply.authority] == [soa_ttl]


@pytest.mark.parametrize(("cache", "ttl"), [("cache 30\n", 5), ("cache 30 {\n    success 1000 30 0\n}\n", 1),
                                          ("cache 3\n", 3)])
async def test_coredns_default_minimum_ttl_is_5_seconds(api, upstream, nursery, tmp_path, cache, ttl):
    """CoreDNS's cache keeps an answer at least 5 s unless MINTTL says otherwise (plugin/cache's
    minTTL), at most its cap: the stub's TTL 1 answer is said, and kept, 5 s; with MINTTL 0 its
    own 1; under `cache 3`, 3."""
    server = await synced(await serve_corefile(nursery, corefile(tmp_path, api, body=f"forward . {upstream.address}\n{cache}")))
    assert rrs((await server.query("short.example.com", "A")).answer) == {f"short.example.com. {ttl} IN A 192.0.2.12"}


# -- hosts entries under the cluster zone --------------------------------------------------------


async def test_hosts_entries_under_the_cluster_zone_are_skipped(api, upstream, nursery, tmp_path):
    """A difference from CoreDNS, documented in docs/deploying.md: CoreDNS's hosts answers a
    cluster name it holds before kubernetes does; kdns answers cluster names from Kubernetes
    alone (the Service's ClusterIP, NXDOMAIN for a name it does not hold), and the rest of the
    hosts data is served."""
    body = (f"hosts {{\n    192.0.2.9 {WEB} gw.example.net\n    192.0.2.8 other.cluster.local\n    fallthrough\n}}\n"
            f"forward . {upstream.address}\n")
    server = await synced(await serve_corefile(nursery, corefile(tmp_path, api, body=body)))
    assert ips(await server.query(WEB, "A")) == {"10.96.100.10"}
    assert rcode(await server.query("other.cluster.local", "A")) == "NXDOMAIN"
    assert ips(await server.query("gw.example.net", "A")) == {"192.0.2.9"}
