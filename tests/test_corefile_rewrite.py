"""A Corefile's `rewrite name` and `template` served (issue 17), asked over real UDP and TCP
sockets with dnspython: the k3s, AKS and Gardener fixtures as the distributions ship them
(no --corefile-ignore-unknown), and a rewrite whose name goes to an upstream (testkit.stubdns).
Each kdns runs in the test's trio loop from its Corefile, against the fake API server."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import pytest
import trio

from kdns import cli
from testkit.answers import CASES
from testkit.corefile import api_objects, copy_localized, serve_corefile, synced
from testkit.kubeapi import KubeAPI
from testkit.stubdns import StubDNS

INGRESS = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ingress-nginx"}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
     "spec": {"clusterIP": "10.96.7.7", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}},
]
UPSTREAM = ("www.example.net. 300 IN A 192.0.2.11", "alias.example.net. 300 IN CNAME www.example.net.",
            "vm1.internal.cloudapp.net. 300 IN A 192.0.2.40", "_sip._udp.example.net. 300 IN SRV 0 5 5060 sip.example.net.")


@pytest.fixture
def api():
    server = KubeAPI().start()
    for obj in api_objects() + INGRESS:
        server.apply(obj)
    yield server
    server.stop()


@pytest.fixture
async def upstream(nursery):
    stub = StubDNS(*UPSTREAM)
    await nursery.start(stub.serve)
    return stub


async def serve(nursery, name: str, tmp_path: Path, api: KubeAPI, upstream: StubDNS, *flags: str):
    path = copy_localized(name, tmp_path, api=api.url, upstream=upstream.address, replace={"10.10.0.53": upstream.address})
    return await synced(await serve_corefile(nursery, path, "--allow-recursion", "0.0.0.0/0", *flags))


def lines(section) -> list[str]:
    return [line for rrset in section for line in rrset.to_text().splitlines()]


async def both(running, name: str, rdtype: str = "A") -> dns.message.Message:
    """The reply over UDP, checked equal to the one over TCP."""
    udp = await running.query(name, rdtype)
    tcp = await running.query(name, rdtype, tcp=True)
    assert (udp.rcode(), lines(udp.answer), lines(udp.additional)) == (tcp.rcode(), lines(tcp.answer), lines(tcp.additional))
    return udp


async def test_k3s_custom_rewrite_answers_with_the_ingress_service(nursery, tmp_path, api, upstream):
    running = await serve(nursery, "k3s.yaml", tmp_path, api, upstream)
    # The client's spelling comes back in the owner name (a pointer to its question).
    reply = await both(running, "Api.Example.COM")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert lines(reply.answer) == ["Api.Example.COM. 5 IN A 10.96.7.7"]
    assert upstream.count("api.example.com.") == 0
    for _ in range(3):  # asked again: the memo and the replay table give the same bytes
        assert lines((await running.query("api.example.com")).answer) == ["api.example.com. 5 IN A 10.96.7.7"]
    # The Service changes: the rewritten name follows at once (its memo entry is dropped, with
    # the memo holding more names than the change touches, so that only those go).
    for case in CASES:
        await running.query(case.name, case.qtype)
    api.delete("Service", "ingress-nginx", "ingress-nginx-controller")
    with trio.fail_after(10):
        while (await running.query("api.example.com")).rcode() != dns.rcode.NXDOMAIN:
            await trio.sleep(0.02)
    reply = await running.query("api.example.com")
    assert lines(reply.authority)[0].startswith("cluster.local. 5 IN SOA ns.dns.cluster.local.")
    api.apply({**INGRESS[1], "spec": {**INGRESS[1]["spec"], "clusterIP": "10.96.7.8"}})
    with trio.fail_after(10):
        while lines((await running.query("api.example.com")).answer) != ["api.example.com. 5 IN A 10.96.7.8"]:
            await trio.sleep(0.02)
    # Other names are answered as before.
    assert lines((await running.query("web.shop.svc.cluster.local")).answer) == ["web.shop.svc.cluster.local. 5 IN A 10.96.100.10"]
    assert lines((await running.query("www.example.net")).answer) == ["www.example.net. 30 IN A 192.0.2.11"]  # (cache 30)


async def test_aks_templates_answer_nxdomain_and_fall_through(nursery, tmp_path, api, upstream):
    running = await serve(nursery, "aks/Corefile", tmp_path, api, upstream)
    # A pod's search path walking into Azure's internal domain: NXDOMAIN at once, never upstream.
    for name in ("web.shop.svc.cluster.local.internal.cloudapp.net", "a.b.c.d.internal.cloudapp.net",
                 "x.reddog.microsoft.com", "reddog.microsoft.com"):
        for rdtype in ("A", "AAAA", "TXT"):
            reply = await both(running, name, rdtype)
            assert (reply.rcode(), reply.answer, reply.authority) == (dns.rcode.NXDOMAIN, [], []), (name, rdtype)
            assert reply.flags & dns.flags.AA
    assert [q for q in upstream.queries if "kdns-loop-check" not in q.name] == []  # (the `loop` directive's probe aside)
    # No match, fallthrough: the upstream answers as for any other name.
    reply = await both(running, "vm1.internal.cloudapp.net")
    assert lines(reply.answer) == ["vm1.internal.cloudapp.net. 30 IN A 192.0.2.40"]  # (cache 30)
    assert upstream.count("vm1.internal.cloudapp.net.") >= 1
    # The cluster zone is untouched.
    assert lines((await running.query("web.shop.svc.cluster.local")).answer) == ["web.shop.svc.cluster.local. 30 IN A 10.96.100.10"]
    assert (await running.query("nope.shop.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN


async def test_gardener_search_path_rewrite_maps_names_and_targets_back(nursery, tmp_path, api, upstream):
    running = await serve(nursery, "gardener/Corefile", tmp_path, api, upstream)
    long = "web.shop.svc.cluster.local.svc.cluster.local."
    reply = await both(running, long)
    assert lines(reply.answer) == [f"{long} 30 IN A 10.96.100.10"]
    # SRV: owners and targets mapped back alike (answer name, answer value); the same records
    # as the short name's otherwise.
    reply = await both(running, "_http._tcp." + long, "SRV")
    short = await both(running, "_http._tcp.web.shop.svc.cluster.local", "SRV")
    assert lines(reply.answer) and lines(reply.additional)
    assert lines(reply.answer) == [line.replace("web.shop.svc.cluster.local.", long) for line in lines(short.answer)]
    assert lines(reply.additional) == [line.replace("web.shop.svc.cluster.local.", long) for line in lines(short.additional)]
    # A name the rewrite leads to that does not exist: NXDOMAIN, no quick answer that skips the rule.
    assert (await running.query("nope.shop.svc.cluster.local.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN
    assert (await running.query("nope.shop.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN
    assert lines((await running.query("web.shop.svc.cluster.local")).answer) == ["web.shop.svc.cluster.local. 30 IN A 10.96.100.10"]


FORWARDED = """\
.:53 {
    kubernetes cluster.local {
        endpoint API
    }
    rewrite name suffix .corp.internal. .example.net. answer auto
    rewrite name exact mirror.example.org. web.shop.svc.cluster.local.
    template IN TXT whoami.example.org {
        answer "{{ .Name }} 0 IN TXT {{ .Remote }} {{ .Type }}"
    }
    template IN ANY nx.example.org {
        rcode NXDOMAIN
        authority "nx.example.org. 60 IN SOA ns.nx.example.org. hostmaster.nx.example.org. (7 3600 600 86400 60)"
    }
    template IN A blocked.example.org {
        match ^ads\\.
        answer "{{ .Name }} 60 IN A 0.0.0.0"
        fallthrough
    }
    forward . UPSTREAM
}
"""


async def test_a_rewritten_name_goes_upstream_and_comes_back_as_asked(nursery, tmp_path, api, upstream):
    path = tmp_path / "Corefile"
    path.write_text(FORWARDED.replace("API", api.url).replace("UPSTREAM", upstream.address))
    running = await synced(await serve_corefile(nursery, path, "--listen", "127.0.0.1:0", "--allow-recursion", "0.0.0.0/0"))
    reply = await both(running, "WWW.corp.internal")
    assert lines(reply.answer) == ["WWW.corp.internal. 300 IN A 192.0.2.11"]
    # The upstream was asked the rewritten name (over UDP and again over TCP: no `cache` here).
    assert {q.name.lower() for q in upstream.queries if "kdns-loop-check" not in q.name} == {"www.example.net."}
    reply = await both(running, "alias.corp.internal", "CNAME")
    assert lines(reply.answer) == ["alias.corp.internal. 300 IN CNAME www.corp.internal."]
    reply = await both(running, "_sip._udp.corp.internal", "SRV")
    assert lines(reply.answer) == ["_sip._udp.corp.internal. 300 IN SRV 0 5 5060 sip.corp.internal."]
    assert (await running.query("nothing.corp.internal")).rcode() == dns.rcode.NXDOMAIN
    # Into the cluster zone, and templates beside the rules.
    assert lines((await both(running, "mirror.example.org")).answer) == ["mirror.example.org. 5 IN A 10.96.100.10"]
    assert lines((await both(running, "whoami.example.org", "TXT")).answer) == ['whoami.example.org. 0 IN TXT "127.0.0.1" "TXT"']
    assert lines((await both(running, "ads.blocked.example.org")).answer) == ["ads.blocked.example.org. 60 IN A 0.0.0.0"]
    reply = await both(running, "Any.NX.example.org", "AAAA")
    assert (reply.rcode(), reply.answer) == (dns.rcode.NXDOMAIN, [])
    # (names compressed against the question, so in its spelling, as kdns writes its own SOA)
    assert lines(reply.authority) == ["NX.example.org. 60 IN SOA ns.NX.example.org. hostmaster.NX.example.org. 7 3600 600 86400 60"]
    assert (await running.query("www.blocked.example.org")).rcode() == dns.rcode.NXDOMAIN  # fallthrough: upstream's NXDOMAIN
    assert upstream.count("www.blocked.example.org.") >= 1


async def test_explain_says_which_rule_or_template_answered(nursery, tmp_path, api, upstream):
    """`kdns explain --server` against kdns serving a Corefile: the rewrite's file:line and the
    names, or the template's file:line; the records as a query gets them."""
    path = tmp_path / "Corefile"
    path.write_text(FORWARDED.replace("API", api.url).replace("UPSTREAM", upstream.address))
    running = await synced(await serve_corefile(nursery, path, "--listen", "127.0.0.1:0", "--explain", "127.0.0.1:0"))
    url = f"http://127.0.0.1:{running.server.http_bound['/explain'].port}"

    def explain(*args: str) -> dict:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main(["explain", "--server", url, *args, "--json"]) == 0
        return json.loads(out.getvalue())

    got = await trio.to_thread.run_sync(explain, "mirror.example.org", "A")
    assert got["rcode"] == "NOERROR" and got["answered_by"] == "cluster zone"
    assert got["reasons"][0] == f"rewritten by {path}:6 from mirror.example.org. to web.shop.svc.cluster.local."
    assert [line["record"] for line in got["records"]] == ["mirror.example.org. 5 IN A 10.96.100.10"]
    got = await trio.to_thread.run_sync(explain, "ads.blocked.example.org", "A")
    assert (got["answered_by"], got["reasons"]) == ("template", [f"answered by the template at {path}:14"])
    got = await trio.to_thread.run_sync(explain, "nope.example.org", "A")
    assert all("rewritten" not in reason for reason in got["reasons"])
