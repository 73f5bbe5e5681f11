"""What kdns answers: the Kubernetes DNS spec 1.1.0 and CoreDNS's choices, as a table.

Every case is asked of the serving core directly (`test_answer_from_the_core`: DnsState's
responder, query bytes in and reply bytes out, no sockets; fast, and where to look first when
an answer is wrong), and over UDP and over TCP with dnspython against a real server on loopback,
serving the bundled demo cluster (config/demo-cluster.yaml) plus tests/manifests/e2e.yaml
(the objects of the Kubernetes e2e DNS tests and the edge cases). A case lists the rcode, the
whole answer section, and the whole additional section where it matters; negative answers
must carry exactly the zone's SOA in the authority section.
"""

from __future__ import annotations

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from kdns.settings import build_config, parse_flags
from kdns.sources.manifests import ManifestSet
from kdns.state import DnsState
from testkit.answers import CASES, E2E, WEB, Case, a, check, nodata, nxdomain
from testkit.dnswire import rrs
from testkit.repo import DEMO


@pytest.fixture
async def server(kdns):
    return await kdns(DEMO, E2E)


@pytest.fixture(scope="module")
def core() -> DnsState:
    """The serving core of `kdns serve --manifests DEMO --manifests E2E`, without its shell: the
    DnsConfig those flags give, and the objects as the manifest source reads them."""
    paths = [str(DEMO), str(E2E)]
    config = build_config(parse_flags(["--listen", "127.0.0.1:0", *(arg for p in paths for arg in ("--manifests", p))]), environ={})
    state = DnsState(config.dns, now=1.0)
    state.apply(ManifestSet(paths).load(), now=1.0)
    return state


@pytest.mark.parametrize("case", CASES, ids=str)
def test_answer_from_the_core(core: DnsState, case: Case):
    """The table against `Responder.handle`: the reply to the query bytes a UDP client sends
    (no size limit but EDNS's) and to a TCP client's (65,535 bytes), each asked twice (the
    second time from the memo of packed answers)."""
    query = dns.message.make_query(case.name, case.qtype)
    query.id = 0x2A2A
    for limit in (None, None, 65535, 65535):
        reply = core.responder.handle(query.to_wire(), limit)
        assert isinstance(reply, bytes), reply
        assert reply[:2] == b"\x2a\x2a"
        check(case, dns.message.from_wire(reply))


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("case", CASES, ids=str)
async def test_answer(server, case: Case, tcp: bool):
    check(case, await server.query(case.name, case.qtype, tcp=tcp))


async def test_repeated_answers_are_the_same(server):
    """The second answer comes from the memo of packed answers: it must not differ."""
    for case in CASES:
        for _ in range(2):
            check(case, await server.query(case.name, case.qtype))


async def test_apex_soa(server):
    reply = await server.query("cluster.local", "SOA")
    [soa] = reply.answer
    assert soa.ttl == 5 and soa.name.to_text() == "cluster.local."
    rd = soa[0]
    assert (rd.mname.to_text(), rd.rname.to_text()) == ("ns.dns.cluster.local.", "hostmaster.cluster.local.")
    assert (rd.refresh, rd.retry, rd.expire, rd.minimum) == (7200, 1800, 86400, 5)
    assert rd.serial > 1_600_000_000, "the serial is the Unix time of the last change"
    # Every zone has its SOA, with the same serial.
    for zone in ("in-addr.arpa", "ip6.arpa"):
        [other] = (await server.query(zone, "SOA")).answer
        assert other[0].serial == rd.serial and other[0].mname.to_text() == f"ns.dns.{zone}."
    # Negative answers carry it, with the same values.
    [neg] = (await server.query("nope.shop.svc.cluster.local", "A")).authority
    assert neg[0] == rd and neg.ttl == 5


async def test_case_is_kept(server):
    reply = await server.query("WEB.Shop.SVC.cluster.LOCAL", "A")
    assert [rrset.name.to_text() for rrset in reply.answer] == ["WEB.Shop.SVC.cluster.LOCAL."]
    assert rrs(reply.answer) == set(a(WEB, "10.96.100.10"))
    reply = await server.query("_HTTP._tcp.web.SHOP.svc.cluster.local", "SRV")
    assert [rrset.name.to_text() for rrset in reply.answer] == ["_HTTP._tcp.web.SHOP.svc.cluster.local."]
    reply = await server.query("NOPE.shop.svc.cluster.local", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN


async def test_any_is_minimal(server):
    """RFC 8482: ANY gets one RRset, not everything the name has."""
    reply = await server.query(WEB, "ANY")
    assert reply.rcode() == dns.rcode.NOERROR
    assert len(reply.answer) == 1 and rrs(reply.answer) == set(a(WEB, "10.96.100.10"))


async def test_zone_transfer_refused_over_udp_and_below_the_apex(server):
    """Zone transfers are over TCP, of a zone's apex (tests/test_transfer.py has the rest)."""
    reply = await server.query("cluster.local", "AXFR")
    assert reply.rcode() == dns.rcode.REFUSED and not reply.answer
    reply = await server.query(WEB, "AXFR", tcp=True)
    assert reply.rcode() == dns.rcode.REFUSED and not reply.answer


async def test_other_classes_refused(server):
    reply = await server.query(WEB, "A", rdclass="CH")
    assert reply.rcode() == dns.rcode.REFUSED and not reply.answer


async def test_ttl_option(kdns):
    server = await kdns(DEMO, args=["--ttl", "30"])
    assert rrs((await server.query(WEB, "A")).answer) == set(a(WEB, "10.96.100.10", ttl=30))
    [soa] = (await server.query("nope.shop.svc.cluster.local", "A")).authority
    assert soa.ttl == 30 and soa[0].minimum == 30
    server = await kdns(DEMO, args=["--ttl", "600"])
    [soa] = (await server.query("cluster.local", "SOA")).answer
    assert soa.ttl == 300 and soa[0].minimum == 600, "the SOA's own TTL is capped at 300 (CoreDNS)"
    txt = (await server.query("dns-version.cluster.local", "TXT")).answer
    assert txt[0].ttl == 28800


async def test_pods_disabled(kdns):
    server = await kdns(DEMO, args=["--pods", "disabled"])
    for case in (
        nxdomain("10-244-1-10.shop.pod.cluster.local."),
        nxdomain("shop.pod.cluster.local."),
        nodata("pod.cluster.local.", "A"),
    ):
        check(case, await server.query(case.name, case.qtype))


async def test_several_zones(kdns):
    """Every zone answers the same services; PTR targets use the first zone."""
    server = await kdns(DEMO, args=["--zone", "cluster.local", "--zone", "corp.internal"])
    reply = await server.query("web.shop.svc.corp.internal", "A")
    assert rrs(reply.answer) == set(a("web.shop.svc.corp.internal.", "10.96.100.10"))
    reply = await server.query("_http._tcp.web.shop.svc.corp.internal", "SRV")
    assert rrs(reply.answer) == {"_http._tcp.web.shop.svc.corp.internal. 5 IN SRV 0 50 80 web.shop.svc.corp.internal."}
    reply = await server.query("storefront.shop.svc.corp.internal", "A")
    assert "storefront.shop.svc.corp.internal. 5 IN CNAME web.shop.svc.cluster.local." in rrs(reply.answer)
    reply = await server.query("10.100.96.10.in-addr.arpa", "PTR")
    assert rrs(reply.answer) == {f"10.100.96.10.in-addr.arpa. 5 IN PTR {WEB}"}
    [soa] = (await server.query("nope.corp.internal", "A")).authority
    assert soa.name.to_text() == "corp.internal."


async def test_ns_without_kube_dns(kdns, tmp_path):
    """Without a kube-dns Service the NS target is ns.dns.<zone> with our listen address."""
    manifest = tmp_path / "one.yaml"
    manifest.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: one, namespace: a}\nspec: {clusterIP: 10.96.9.9}\n")
    server = await kdns(manifest)
    reply = await server.query("cluster.local", "NS")
    assert rrs(reply.answer) == {"cluster.local. 5 IN NS ns.dns.cluster.local."}
    assert rrs(reply.additional) == set(a("ns.dns.cluster.local.", "127.0.0.1"))
    reply = await server.query("in-addr.arpa", "NS")
    assert rrs(reply.answer) == {"in-addr.arpa. 5 IN NS ns.dns.cluster.local."}
