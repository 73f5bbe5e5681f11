"""Names outside the zones (issue 16 items 1 and 2): records kdns holds for them, and the
closed world.

* The pure parts: the hosts-file parser (kdns.hosts) and the checks of `record()` input
  (kdns.static).
* `kdns serve --hosts FILE`: answers, PTR, TTL, precedence between files, reloads, ahead of
  forwarding; `--outside-names nxdomain`.
* The test double: `record()`, and `pod_resolver` telling "not found" (EAI_NONAME) as a pod
  does, and honouring the machine's /etc/hosts.
* glibc's getaddrinfo in a pod-like network namespace (as tests/test_glibc.py): EAI_NONAME
  for a name that does not exist, a hosts-file name resolving.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import sys

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import pytest
import trio

from kdns import codes, hosts, static
from kdns.config import DnsConfig, OutsideNames
from kdns.index import Index
from kdns.model import Kind, Rrset, Upsert
from kdns.testing import pod_resolver
from testkit.dnswire import rrs

# The network namespace of tests/test_glibc.py: a veth link, kdns on 169.254.53.1:53 and the
# resolv.conf of a pod in namespace default (pod_netns is a fixture).
from testkit.netns import KDNS_IP, getent, sh
from testkit.repo import DEMO, write
from testkit.stubdns import StubDNS

# -- the hosts-file format (pure) -----------------------------------------------------------


def test_parse_hosts_lines():
    text = (
        "# a comment line\n"
        "127.0.0.1   localhost\n"
        "10.0.0.5 Node-1 node-1.lan   # trailing comment\n"
        "fe80::1%eth0 link.lan\n"
        "2001:db8::5 node-1\n"
        "\n"
        "not-an-ip name\n"
        "10.0.0.6\n"
        "10.0.0.7 good bad_name! also.good.\n"
    )
    parsed = hosts.parse_hosts(text, "hosts.txt")
    assert [(e.address, e.names, e.line) for e in parsed.entries] == [
        ("127.0.0.1", ("localhost",), 2),
        ("10.0.0.5", ("node-1", "node-1.lan"), 3),
        ("fe80::1", ("link.lan",), 4),
        ("2001:db8::5", ("node-1",), 5),
        ("10.0.0.7", ("good", "also.good"), 9),
    ]
    assert parsed.problems == (
        "hosts.txt:7: not an IP address: 'not-an-ip'; line skipped",
        "hosts.txt:8: no name after 10.0.0.6; line skipped",
        "hosts.txt:9: not a host name: 'bad_name!'; skipped",
    )
    assert parsed.names == 6


def test_parse_hosts_bounds_the_names():
    text = "".join(f"10.0.{i // 250}.{i % 250} host{i}\n" for i in range(20))
    with pytest.raises(hosts.TooManyNames, match="more than 10 names"):
        hosts.parse_hosts(text, "big", max_names=10)


def test_hosts_records_as_coredns():
    """Each name: every address its lines give, by family, in file order; each address: a
    PTR to every name (unless reverse is off)."""
    parsed = hosts.parse_hosts("10.0.0.5 a b\n10.0.0.6 a\n2001:db8::5 a\n10.0.0.5 c\n", "f")
    records = static.hosts_records(parsed.pairs(), "f", ttl=60)
    assert records.key == (Kind.HOSTS, "", "f")
    assert set(records.rrsets) == {
        Rrset("a", codes.A, 60, ("10.0.0.5", "10.0.0.6")), Rrset("a", codes.AAAA, 60, ("2001:db8::5",)),
        Rrset("b", codes.A, 60, ("10.0.0.5",)), Rrset("c", codes.A, 60, ("10.0.0.5",)),
    }
    assert records.ptrs == (("10.0.0.5", "a"), ("10.0.0.5", "b"), ("10.0.0.5", "c"), ("10.0.0.6", "a"), ("2001:db8::5", "a"))
    assert static.hosts_records(parsed.pairs(), "f", ttl=60, reverse=False).ptrs == ()


# -- record() input (pure) ------------------------------------------------------------------


@pytest.mark.parametrize("rtype, value, expected", [
    ("A", ["10.0.0.1", "10.0.0.2", "10.0.0.1"], ("10.0.0.1", "10.0.0.2")),
    ("aaaa", "2001:DB8::1", ("2001:db8::1",)),
    ("CNAME", "Target.Example.com.", ("target.example.com",)),
    ("TXT", "v=spf1 -all", (("v=spf1 -all",),)),
    ("TXT", "x" * 300, (("x" * 255, "x" * 45),)),
    ("MX", "10 mail.example.com", ((10, "mail.example.com"),)),
    ("MX", (20, "mx2.example.com"), ((20, "mx2.example.com"),)),
    ("SRV", ["0 5 443 api.example.com", (1, 0, 8443, "b.example.com")], ((0, 5, 443, "api.example.com"), (1, 0, 8443, "b.example.com"))),
])
def test_record_values(rtype, value, expected):
    assert static.rrset("Api.Example.COM.", rtype, value, 30) == Rrset("api.example.com", static.rtype_of(rtype), 30, expected)


@pytest.mark.parametrize("name, rtype, value, message", [
    ("api.example.com", "A", "2001:db8::1", "A value '2001:db8::1': not an IPv4 address"),
    ("api.example.com", "AAAA", "10.0.0.1", "AAAA value '10.0.0.1': not an IPv6 address"),
    ("api.example.com", "A", "10.0.0.x", "not an IPv4 address"),
    ("api.example.com", "MX", "mail.example.com", "MX value 'mail.example.com': expected 'PREFERENCE EXCHANGE'"),
    ("api.example.com", "SRV", "0 5 99999 x.example.com", "99999 is not 0-65535"),
    ("api.example.com", "CNAME", ["a.example.com", "b.example.com"], "a name has one CNAME at most"),
    ("api.example.com", "CNAME", "*.example.com", "a wildcard cannot be a target"),
    ("api.example.com", "SPF", "x", "unknown record type 'SPF'; kdns holds A, AAAA, CNAME, TXT, SRV, MX, PTR, NS"),
    ("bad name.com", "A", "10.0.0.1", "not a domain name: 'bad name.com'"),
    ("a.*.example.com", "A", "10.0.0.1", "not a domain name"),
])
def test_record_values_refused(name, rtype, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        static.rrset(name, rtype, value, 5)


def test_closed_world_is_servfail_before_the_sync():
    """Never NXDOMAIN out of ignorance, outside the zones too."""
    from kdns.answer import answer

    config = DnsConfig(outside_names=OutsideNames.NXDOMAIN)
    index = Index(config, sources=["Service"])
    assert answer(index.snapshot, ("pgg",), codes.A).rcode == codes.SERVFAIL
    index.apply([Upsert(static.name_records("api.example.com", [static.rrset("api.example.com", "A", "10.0.0.9", 5)]))], 1)
    assert [r.data for r in answer(index.snapshot, ("api", "example", "com"), codes.A).answer] == ["10.0.0.9"]
    index = Index(config)
    result = answer(index.snapshot, ("pgg",), codes.A)
    assert (result.rcode, result.authoritative, result.soa_zone) == (codes.NXDOMAIN, False, None)


# -- kdns serve --hosts ---------------------------------------------------------------------

HOSTS = """\
# k3s's NodeHosts looks like this
192.168.1.10 node-1 node-1.lan
192.168.1.11 node-2
2001:db8::11 node-2
10.96.100.10 web.shop.svc.cluster.local
"""


async def test_hosts_file_answers(kdns, tmp_path, caplog):
    caplog.set_level(logging.WARNING, "kdns")
    path = write(tmp_path / "hosts", HOSTS)
    server = await kdns(DEMO, args=["--hosts", str(path)])
    for tcp in (False, True):
        assert rrs((await server.query("node-1", "A", tcp=tcp)).answer) == {"node-1. 3600 IN A 192.168.1.10"}
        assert rrs((await server.query("NODE-1.lan", "A", tcp=tcp)).answer) == {"node-1.lan. 3600 IN A 192.168.1.10"}
        assert rrs((await server.query("node-2", "AAAA", tcp=tcp)).answer) == {"node-2. 3600 IN AAAA 2001:db8::11"}
    reply = await server.query("node-1", "AAAA")
    assert (reply.rcode(), reply.answer, reply.authority) == (dns.rcode.NOERROR, [], []), "NODATA, no zone to give an SOA of"
    assert reply.flags & dns.flags.AA
    reply = await server.query("10.1.168.192.in-addr.arpa", "PTR")
    assert rrs(reply.answer) == {"10.1.168.192.in-addr.arpa. 3600 IN PTR node-1.", "10.1.168.192.in-addr.arpa. 3600 IN PTR node-1.lan."}
    assert (await server.query("nope", "A")).rcode() == dns.rcode.REFUSED, "kdns serve's default stays REFUSED"
    # A name in the cluster zone comes from Kubernetes: skipped, with a warning; the
    # ClusterIP's PTR stays the cluster's.
    assert any("web.shop.svc.cluster.local lies in cluster.local" in r.getMessage() for r in caplog.records)
    reply = await server.query("10.100.96.10.in-addr.arpa", "PTR")
    assert rrs(reply.answer) == {"10.100.96.10.in-addr.arpa. 5 IN PTR web.shop.svc.cluster.local."}


async def test_hosts_options(kdns, tmp_path):
    first = write(tmp_path / "first", "10.0.0.1 shared only-first\n")
    second = write(tmp_path / "second", "10.0.0.2 shared only-second\n")
    server = await kdns(DEMO, args=["--hosts", str(first), "--hosts", str(second), "--hosts-ttl", "60", "--no-hosts-reverse"])
    assert rrs((await server.query("shared", "A")).answer) == {"shared. 60 IN A 10.0.0.1"}, "the first file wins"
    assert rrs((await server.query("only-second", "A")).answer) == {"only-second. 60 IN A 10.0.0.2"}
    assert (await server.query("1.0.0.10.in-addr.arpa", "PTR")).rcode() == dns.rcode.NXDOMAIN


async def test_hosts_file_is_reloaded(kdns, tmp_path, caplog):
    path = write(tmp_path / "hosts", "10.0.0.1 moving\n")
    server = await kdns(DEMO, args=["--hosts", str(path)])
    assert rrs((await server.query("moving", "A")).answer) == {"moving. 3600 IN A 10.0.0.1"}
    path.write_text("10.0.0.2 moving\n10.0.0.3 arrived\n")
    await eventually(server, "moving", lambda r: rrs(r.answer) == {"moving. 3600 IN A 10.0.0.2"})
    assert rrs((await server.query("arrived", "A")).answer) == {"arrived. 3600 IN A 10.0.0.3"}
    # Too large to read: the previous records stay, the problem is logged once.
    caplog.set_level(logging.ERROR, "kdns")
    path.write_bytes(b"10.0.0.9 moving\n" + b"#" * (4 << 20))
    await eventually(server, "moving", lambda r: any("more than the limit" in m.getMessage() for m in caplog.records))
    assert rrs((await server.query("moving", "A")).answer) == {"moving. 3600 IN A 10.0.0.2"}
    path.write_text("10.0.0.4 moving\n")
    await eventually(server, "moving", lambda r: rrs(r.answer) == {"moving. 3600 IN A 10.0.0.4"})
    assert (await server.query("arrived", "A")).rcode() == dns.rcode.REFUSED


async def test_hosts_file_missing_at_start_is_an_error(tmp_path):
    from kdns.app import Server, StartupError
    from kdns.cli import _parser
    from kdns.settings import build_config

    config = build_config(_parser().parse_args(["serve", "--manifests", str(DEMO), "--listen", "127.0.0.1:0",
                                                 "--hosts", str(tmp_path / "nope")]))
    with pytest.raises(StartupError, match="nope: cannot read: No such file or directory"):
        Server(config)


async def test_hosts_names_come_before_forwarding(kdns, tmp_path, nursery):
    """A name the hosts file holds is never forwarded, for any type; other names are; an
    ExternalName pointing at a hosts name is answered through it."""
    stub = StubDNS("node-1. 300 IN A 192.0.2.1", "elsewhere.example. 300 IN A 192.0.2.2")
    port = await nursery.start(stub.serve)
    path = write(tmp_path / "hosts", HOSTS)
    extname = write(tmp_path / "ext.yaml", """
        apiVersion: v1
        kind: Service
        metadata: {name: node, namespace: shop}
        spec: {type: ExternalName, externalName: node-1.lan}
    """)
    server = await kdns(DEMO, extname, args=["--hosts", str(path), "--upstream", f"127.0.0.1:{port}"])
    assert rrs((await server.query("node-1", "A")).answer) == {"node-1. 3600 IN A 192.168.1.10"}
    assert (await server.query("node-1", "MX")).answer == []
    assert stub.count("node-1.") == 0
    assert rrs((await server.query("elsewhere.example", "A")).answer) == {"elsewhere.example. 30 IN A 192.0.2.2"}  # --cache-ttl
    reply = await server.query("node.shop.svc.cluster.local", "A")
    assert rrs(reply.answer) == {"node.shop.svc.cluster.local. 5 IN CNAME node-1.lan.", "node-1.lan. 3600 IN A 192.168.1.10"}
    assert stub.count("node-1.lan.") == 0


async def eventually(server, name, expect, qtype="A", timeout=5.0):
    reply = None
    with trio.move_on_after(timeout):
        while True:
            reply = await server.query(name, qtype)
            if expect(reply):
                return reply
            await trio.sleep(0.05)
    pytest.fail(f"{name}: still {reply}")


# -- --outside-names ------------------------------------------------------------------------


async def test_outside_names_nxdomain(kdns):
    server = await kdns(DEMO, args=["--outside-names", "nxdomain"])
    for tcp in (False, True):
        reply = await server.query("pgg", "A", tcp=tcp)
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert not reply.flags & dns.flags.AA and reply.authority == [] and reply.answer == []
    # The search-path expansions are the cluster's, as before.
    reply = await server.query("pgg.default.svc.cluster.local", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.flags & dns.flags.AA and reply.authority
    # An ExternalName pointing outside: the CNAME alone, the client follows it (and gets NXDOMAIN).
    reply = await server.query("payments.shop.svc.cluster.local", "A")
    assert rrs(reply.answer) == {"payments.shop.svc.cluster.local. 5 IN CNAME payments.example.com."}


# -- the test double: record() --------------------------------------------------------------


def ask(server, name: str, rdtype: str = "A") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype), server.host, port=server.port, timeout=3)


def fill_memo(server) -> None:
    """Have kdns keep more packed answers than a change names, so that a change forgets only
    the answers it names (when it names more, kdns simply forgets them all)."""
    for i in range(50):
        ask(server, f"filler{i}.example.net")


def test_record_answers_ahead_of_everything(kdns_server):
    kdns_server.record("api.stripe.com", "A", ["127.0.0.9", "127.0.0.10"])
    kdns_server.record("api.stripe.com", "TXT", "hello", ttl=60)
    kdns_server.record("mail.example.com", "MX", ["10 mx1.example.com", "20 mx2.example.com"])
    kdns_server.record("_sip._tcp.example.com", "SRV", "0 5 5060 sip.example.com")
    kdns_server.record("sip.example.com", "A", "127.0.0.20")
    kdns_server.record("*.apps.example.com", "A", "127.0.0.30")
    kdns_server.record("9.0.0.127.in-addr.arpa", "PTR", "api.stripe.com")
    reply = ask(kdns_server, "api.stripe.com")
    assert rrs(reply.answer) == {"api.stripe.com. 5 IN A 127.0.0.9", "api.stripe.com. 5 IN A 127.0.0.10"}
    assert reply.flags & dns.flags.AA
    assert rrs(ask(kdns_server, "api.stripe.com", "TXT").answer) == {'api.stripe.com. 60 IN TXT "hello"'}
    assert ask(kdns_server, "api.stripe.com", "AAAA").answer == []
    assert ask(kdns_server, "api.stripe.com", "AAAA").rcode() == dns.rcode.NOERROR
    assert rrs(ask(kdns_server, "mail.example.com", "MX").answer) == {
        "mail.example.com. 5 IN MX 10 mx1.example.com.", "mail.example.com. 5 IN MX 20 mx2.example.com."}
    reply = ask(kdns_server, "_sip._tcp.example.com", "SRV")
    assert rrs(reply.answer) == {"_sip._tcp.example.com. 5 IN SRV 0 5 5060 sip.example.com."}
    assert rrs(reply.additional) == {"sip.example.com. 5 IN A 127.0.0.20"}
    assert rrs(ask(kdns_server, "shop.apps.example.com").answer) == {"shop.apps.example.com. 5 IN A 127.0.0.30"}
    assert ask(kdns_server, "a.shop.apps.example.com").rcode() == dns.rcode.NXDOMAIN, "a wildcard is one label"
    assert rrs(ask(kdns_server, "9.0.0.127.in-addr.arpa", "PTR").answer) == {"9.0.0.127.in-addr.arpa. 5 IN PTR api.stripe.com."}
    # The names above a held name exist (NODATA); others do not.
    assert (ask(kdns_server, "stripe.com").rcode(), ask(kdns_server, "stripe.com").answer) == (dns.rcode.NOERROR, [])
    assert ask(kdns_server, "paypal.com").rcode() == dns.rcode.NXDOMAIN


def test_record_replaces_and_clears(kdns_server):
    """Every answer given before a change (and kept as packed bytes) follows the change:
    the name itself, the names above it, names under a new wildcard."""
    fill_memo(kdns_server)
    assert ask(kdns_server, "api.example.com").rcode() == dns.rcode.NXDOMAIN
    assert ask(kdns_server, "example.com").rcode() == dns.rcode.NXDOMAIN
    assert ask(kdns_server, "shop.apps.example.com").rcode() == dns.rcode.NXDOMAIN
    kdns_server.record("api.example.com", "A", "127.0.0.1")
    assert rrs(ask(kdns_server, "api.example.com").answer) == {"api.example.com. 5 IN A 127.0.0.1"}
    assert ask(kdns_server, "example.com").rcode() == dns.rcode.NOERROR
    kdns_server.record("*.apps.example.com", "A", "127.0.0.30")
    assert rrs(ask(kdns_server, "shop.apps.example.com").answer) == {"shop.apps.example.com. 5 IN A 127.0.0.30"}
    kdns_server.record("api.example.com", "AAAA", "::1")
    kdns_server.record("api.example.com", "A", "127.0.0.2")
    assert rrs(ask(kdns_server, "api.example.com").answer) == {"api.example.com. 5 IN A 127.0.0.2"}
    kdns_server.record("api.example.com", "A", None)
    assert ask(kdns_server, "api.example.com").answer == [] and ask(kdns_server, "api.example.com").rcode() == dns.rcode.NOERROR
    kdns_server.record("api.example.com", "AAAA", [])
    kdns_server.record("*.apps.example.com", "A", None)
    assert ask(kdns_server, "api.example.com").rcode() == dns.rcode.NXDOMAIN
    assert ask(kdns_server, "example.com").rcode() == dns.rcode.NXDOMAIN, "its parent is gone with it"
    assert ask(kdns_server, "shop.apps.example.com").rcode() == dns.rcode.NXDOMAIN


def test_record_cname_chains_through_the_cluster(kdns_server):
    """A CNAME kdns holds is followed into the cluster, and an ExternalName into a record;
    a change at the end of the chain reaches both answers."""
    web = kdns_server.service("web", "shop")
    kdns_server.record("www.example.com", "CNAME", "web.shop.svc.cluster.local")
    kdns_server.record("legacy.example.com", "A", "127.0.0.40")
    kdns_server.service("legacy", "shop", external_name="legacy.example.com")
    assert rrs(ask(kdns_server, "www.example.com").answer) == {
        "www.example.com. 5 IN CNAME web.shop.svc.cluster.local.", f"web.shop.svc.cluster.local. 5 IN A {web.cluster_ip}"}
    assert rrs(ask(kdns_server, "legacy.shop.svc.cluster.local").answer) == {
        "legacy.shop.svc.cluster.local. 5 IN CNAME legacy.example.com.", "legacy.example.com. 5 IN A 127.0.0.40"}
    fill_memo(kdns_server)
    web2 = kdns_server.service("web", "shop", cluster_ip="10.96.7.7")
    assert f"web.shop.svc.cluster.local. 5 IN A {web2.cluster_ip}" in rrs(ask(kdns_server, "www.example.com").answer)
    kdns_server.record("legacy.example.com", "A", "127.0.0.41")
    assert "legacy.example.com. 5 IN A 127.0.0.41" in rrs(ask(kdns_server, "legacy.shop.svc.cluster.local").answer)


@pytest.mark.parametrize("name, rtype, value, message", [
    ("web.shop.svc.cluster.local", "A", "10.0.0.1", "lies in cluster.local, where kdns answers the names of Services"),
    ("1.0.0.10.in-addr.arpa", "A", "10.0.0.1", "lies in in-addr.arpa, where kdns answers PTR records"),
    ("api.example.com", "A", "nope", "not an IPv4 address"),
    ("api.example.com", "WKS", "x", "unknown record type 'WKS'"),
    ("held.example.com", "CNAME", "other.example.com", "held.example.com: a CNAME cannot sit beside other records"),
])
def test_record_refuses_what_it_cannot_serve(kdns_server, name, rtype, value, message):
    kdns_server.record("held.example.com", "A", "127.0.0.1")
    with pytest.raises(ValueError, match=re.escape(message)):
        kdns_server.record(name, rtype, value)
    assert rrs(ask(kdns_server, "held.example.com").answer) == {"held.example.com. 5 IN A 127.0.0.1"}, "nothing changed"


# -- the test double: what a pod sees ---------------------------------------------------------


def test_unknown_name_is_not_found_as_in_a_pod(kdns_server):
    """getaddrinfo walks the search list, then asks for the bare name: NXDOMAIN, so the
    application gets EAI_NONAME ("not found"), not EAI_AGAIN (issue 16, item 1)."""
    kdns_server.record("api.stripe.com", "A", "127.0.0.9")
    with pod_resolver(kdns_server, namespace="shop"):
        with pytest.raises(socket.gaierror) as caught:
            socket.getaddrinfo("pgg", 5432)
        assert caught.value.errno == socket.EAI_NONAME
        assert socket.getaddrinfo("api.stripe.com", 443, type=socket.SOCK_STREAM)[0][4] == ("127.0.0.9", 443)
    asked = [(q.name, q.rcode) for q in kdns_server.queries if q.name.startswith("pgg")]
    assert ("pgg", "NXDOMAIN") in asked


def test_pod_resolver_honours_the_machines_hosts_file(kdns_server):
    """The names of /etc/hosts and the machine's own name resolve as the machine resolves
    them (a pod's resolver reads its /etc/hosts first), not through kdns."""
    with open("/etc/hosts", encoding="utf-8") as f:
        local = {name for entry in hosts.parse_hosts(f.read(), "/etc/hosts").entries for name in entry.names}
    local.add(socket.gethostname().lower())
    expected = {}
    for name in local:
        try:
            expected[name] = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
        except socket.gaierror:
            continue  # the machine itself cannot resolve it: nothing to compare
    assert expected, "this machine resolves none of its /etc/hosts names"
    before = len(kdns_server.queries)
    with pod_resolver(kdns_server):
        for name, addresses in expected.items():
            assert {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)} == addresses, name
    assert not [q for q in kdns_server.queries[before:] if q.name.split(".")[0] in expected]


# -- glibc in a pod-like network namespace ------------------------------------------------------


GETADDRINFO = "import socket, sys\ntry:\n    socket.getaddrinfo(sys.argv[1], 80)\nexcept socket.gaierror as e:\n    print(e.errno)\nelse:\n    print(0)\n"


async def glibc_error(netns: str, name: str) -> int:
    """What glibc's getaddrinfo says for `name` inside the namespace: 0, or its EAI_ code."""
    return int((await sh("ip", "netns", "exec", netns, sys.executable, "-c", GETADDRINFO, name)).strip())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and port 53 (CI runs as root)")
@pytest.mark.skipif(shutil.which("ip") is None or shutil.which("getent") is None, reason="needs iproute2 and getent")
@pytest.mark.parametrize("mode, code", [("nxdomain", socket.EAI_NONAME), ("refused", socket.EAI_AGAIN)])
async def test_glibc_not_found_in_a_closed_world(pod_netns, kdns, tmp_path, mode, code):
    """glibc walks the pod's search list, then asks for the bare name. With no upstream and
    --outside-names nxdomain, getaddrinfo says EAI_NONAME, as in a pod; REFUSED (kdns serve's
    default) gives EAI_AGAIN, a temporary failure. A name of a --hosts file resolves."""
    path = write(tmp_path / "hosts", "192.0.2.80 gateway.lan\n")
    server = await kdns(DEMO, listen=f"{KDNS_IP}:53", args=["--outside-names", mode, "--hosts", str(path)])
    before = server.server.queries_received
    assert await glibc_error(pod_netns, "pgg") == code
    assert server.server.queries_received - before >= 4, "the search list, then the bare name"
    assert await glibc_error(pod_netns, "web.shop") == 0
    assert await getent(pod_netns, "gateway.lan") == {"192.0.2.80"}


@pytest.mark.parametrize("flags, message", [
    (["--hosts-ttl", "0"], "--hosts-ttl: must be between 1 and 65535 seconds, got 0"),
    (["--hosts-ttl", "70000"], "--hosts-ttl: must be between 1 and 65535 seconds, got 70000"),
])
def test_hosts_options_are_checked(flags, message):
    from kdns.cli import _parser
    from kdns.config import ConfigError
    from kdns.settings import build_config

    with pytest.raises(ConfigError) as caught:
        build_config(_parser().parse_args(["serve", *flags]), {})
    assert str(caught.value) == message


def test_outside_names_choices_in_a_config_file(tmp_path):
    from kdns.settings import check_config_file

    path = write(tmp_path / "kdns.yaml", "outside-names: nowhere\n")
    assert [str(p) for p in check_config_file(str(path), {})] == [f"{path}: outside-names: must be one of refused, nxdomain, got 'nowhere'"]


async def test_records_survive_upstream_and_come_first(kdns_server, nursery):
    """`.upstream()` rebuilds the index for the new configuration: the records stay, and a
    name kdns holds is still answered by kdns, never forwarded."""
    import dns.asyncquery

    stub = StubDNS("api.stripe.com. 300 IN A 192.0.2.1", "other.example. 300 IN A 192.0.2.2")
    await nursery.start(stub.serve)
    kdns_server.record("api.stripe.com", "A", "127.0.0.9")
    kdns_server.upstream(stub.address)

    async def aask(name: str) -> dns.message.Message:
        query = dns.message.make_query(name, "A")
        return await dns.asyncquery.udp(query, kdns_server.host, port=kdns_server.port, timeout=3)

    assert rrs((await aask("api.stripe.com")).answer) == {"api.stripe.com. 5 IN A 127.0.0.9"}
    assert rrs((await aask("other.example")).answer) == {"other.example. 30 IN A 192.0.2.2"}
    assert stub.count("api.stripe.com.") == 0


def test_a_label_with_a_dot_is_not_the_name_it_spells(kdns_server):
    """`a\\.stripe.com` (one label `a.stripe`) is not `a.stripe.com`."""
    kdns_server.record("a.stripe.com", "A", "127.0.0.9")
    query = dns.message.make_query(dns.name.Name([b"a.stripe", b"com", b""]), "A")
    reply = dns.query.udp(query, kdns_server.host, port=kdns_server.port, timeout=3)
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.answer == []
