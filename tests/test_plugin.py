"""kdns as a test double for other projects (issue 6): the `kdns_server` pytest fixture,
`kdns.testing.KdnsServer`, `pod_resolver` and `kdns serve --print-address`.

Everything here uses kdns the way a user's test suite would: the fixture comes from the
`pytest11` entry point (no conftest of ours provides it), answers are read over real sockets
on 127.0.0.1 with dnspython, and the `pytester` tests run plain test files in a temporary
directory, in a fresh pytest process, that import only what docs/testing.md shows
(tests/test_docs.py runs the examples of docs/testing.md themselves).
"""

from __future__ import annotations

import functools
import http.server
import ipaddress
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import requests
import trio

from kdns.testing import KdnsServer, pod_resolver
from testkit.stubdns import StubDNS

pytest_plugins = ["pytester"]

ZONE = "cluster.local"
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")


# -- helpers ---------------------------------------------------------------------------------


def ask(where, name: str, rdtype: str = "A", *, tcp: bool = False, timeout: float = 2.0) -> dns.message.Message:
    """One query to a KdnsServer (or a (host, port) pair) over UDP or TCP."""
    host, port = where if isinstance(where, tuple) else where.address
    query = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(query, host, port=port, timeout=timeout)
    return dns.query.udp(query, host, port=port, timeout=timeout)


def values(reply: dns.message.Message, rdtype: str | None = None) -> set[str]:
    """The answer section's rdata as text (of one type, or all)."""
    return {
        rd.to_text().lower()
        for rrset in reply.answer
        if rdtype is None or rrset.rdtype == dns.rdatatype.from_text(rdtype)
        for rd in rrset
    }


def svc(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.{ZONE}"


# -- the plugin as a user's test suite meets it (pytester, a fresh pytest process) --------------

INNER_INI = """
[pytest]
filterwarnings =
    error
"""

SYNC_TESTS = '''
import socket

import dns.message
import dns.query
import dns.rcode

from kdns.testing import pod_resolver

STOPPED = []


def ask(server, name, rdtype="A"):
    query = dns.message.make_query(name, rdtype)
    return dns.query.udp(query, server.host, port=server.port, timeout=2)


def test_a_declared_service_answers(kdns_server):
    web = kdns_server.service("web", "shop", ports=[("http", 8080)])
    reply = ask(kdns_server, "web.shop.svc.cluster.local")
    assert [rd.address for rrset in reply.answer for rd in rrset] == [web.cluster_ip]
    with pod_resolver(kdns_server, namespace="shop"):
        assert socket.getaddrinfo("web", 8080)[0][4] == (web.cluster_ip, 8080)
    kdns_server.fail("web.shop.svc.cluster.local", "SERVFAIL")
    assert ask(kdns_server, "web.shop.svc.cluster.local").rcode() == dns.rcode.SERVFAIL
    assert [(q.name, q.rcode) for q in kdns_server.queries][-1] == ("web.shop.svc.cluster.local", "SERVFAIL")
    STOPPED.append(kdns_server.port)


def test_the_next_test_gets_a_fresh_empty_server(kdns_server):
    assert ask(kdns_server, "web.shop.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert kdns_server.queries[0].name == "web.shop.svc.cluster.local"
    assert len(kdns_server.queries) == 1
    if kdns_server.port != STOPPED[0]:  # the kernel may, rarely, hand the same port out again
        try:
            socket.create_connection(("127.0.0.1", STOPPED[0]), timeout=1).close()
        except ConnectionRefusedError:
            pass
        else:
            raise AssertionError("the previous test's kdns still listens")
'''

TRIO_TESTS = '''
import socket

import dns.asyncbackend
import dns.asyncquery
import dns.message
import dns.rcode
import trio

from kdns.testing import pod_resolver


async def ask(server, name, rdtype="A", timeout=2):
    query = dns.message.make_query(name, rdtype)
    backend = dns.asyncbackend.get_backend("trio")
    return await dns.asyncquery.udp(query, server.host, port=server.port, timeout=timeout, backend=backend)


async def test_in_a_trio_test(kdns_server):
    web = kdns_server.service("web", "shop")
    reply = await ask(kdns_server, "web.shop.svc.cluster.local")
    assert [rd.address for rrset in reply.answer for rd in rrset] == [web.cluster_ip]

    # kdns has a loop of its own: a delayed answer does not hold this test's loop up.
    kdns_server.delay("web.shop.svc.cluster.local", 0.5)
    ticks = []

    async def tick():
        while True:
            ticks.append(trio.current_time())
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        started = trio.current_time()
        reply = await ask(kdns_server, "web.shop.svc.cluster.local", timeout=3)
        elapsed = trio.current_time() - started
        nursery.cancel_scope.cancel()
    assert reply.rcode() == dns.rcode.NOERROR and elapsed >= 0.45
    assert len(ticks) >= 5

    kdns_server.reset()
    with pod_resolver(kdns_server, namespace="shop"):
        infos = await trio.to_thread.run_sync(socket.getaddrinfo, "web", 80)
    assert infos[0][4] == (web.cluster_ip, 80)
'''

ASYNCIO_TESTS = '''
import asyncio
import socket

import dns.asyncbackend
import dns.asyncquery
import dns.message
import dns.rcode

from kdns.testing import pod_resolver


def test_in_an_asyncio_program(kdns_server):
    async def main():
        web = kdns_server.service("web", "shop")  # called while the asyncio loop runs
        backend = dns.asyncbackend.get_backend("asyncio")
        query = dns.message.make_query("web.shop.svc.cluster.local", "A")
        reply = await dns.asyncquery.udp(query, kdns_server.host, port=kdns_server.port, timeout=2, backend=backend)
        assert [rd.address for rrset in reply.answer for rd in rrset] == [web.cluster_ip]

        kdns_server.fail("web.shop.svc.cluster.local", "REFUSED")
        reply = await dns.asyncquery.tcp(query, kdns_server.host, port=kdns_server.port, timeout=2, backend=backend)
        assert reply.rcode() == dns.rcode.REFUSED
        kdns_server.reset()

        with pod_resolver(kdns_server, namespace="shop"):
            infos = await asyncio.get_running_loop().getaddrinfo("web", 80, type=socket.SOCK_STREAM)
        assert infos[0][4] == (web.cluster_ip, 80)

    asyncio.run(main())
'''


def test_kdns_testing_works_without_pytest(tmp_path):
    """kdns.testing is for unittest suites and scripts too: with pytest unimportable, the
    package imports and its server answers a declared Service (only the plugin module needs
    pytest)."""
    script = (
        "import sys\n"
        "sys.modules['pytest'] = None  # every `import pytest` now fails\n"
        "import dns.message, dns.query\n"
        "from kdns.testing import KdnsServer, pod_resolver\n"
        "with KdnsServer() as server:\n"
        "    web = server.service('web', 'shop')\n"
        "    query = dns.message.make_query('web.shop.svc.cluster.local', 'A')\n"
        "    reply = dns.query.udp(query, server.host, port=server.port, timeout=2)\n"
        "    print(reply.answer[0][0].address, web.cluster_ip)\n"
        "try:\n"
        "    import kdns.testing.plugin\n"
        "except ImportError:\n"
        "    print('no plugin without pytest')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    address, cluster_ip, *rest = result.stdout.split(maxsplit=2)
    assert address == cluster_ip and ipaddress.ip_address(address) in SERVICE_CIDR, result.stdout
    assert [line.strip() for line in rest] == ["no plugin without pytest"], result.stdout


def test_fixture_in_plain_sync_tests(pytester):
    """Installing kdns is enough for a plain test file to use `kdns_server` (no conftest): it
    answers a declared Service over UDP, `pod_resolver` resolves it, a fault shows, and each
    test gets its own server with an empty cluster, stopped after the test."""
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_sync=SYNC_TESTS)
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=2)


def test_fixture_in_pytest_trio_tests(pytester):
    """`kdns_server` works in a pytest-trio test (trio_mode): queries with dnspython's trio
    backend, a delay that does not stall the test's own loop, getaddrinfo (in a worker
    thread) under `pod_resolver`."""
    pytester.makeini(INNER_INI + "trio_mode = true\n")
    pytester.makepyfile(test_trio=TRIO_TESTS)
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=1)


def test_fixture_in_asyncio_tests(pytester):
    """`kdns_server` works from a sync test that runs an asyncio program: calls made while
    the asyncio loop runs, dnspython's asyncio backend over UDP and TCP, loop.getaddrinfo
    under `pod_resolver`."""
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_asyncio=ASYNCIO_TESTS)
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=1)


# -- where it listens --------------------------------------------------------------------------


def test_address_host_and_port(kdns_server):
    """`.host`, `.port` and `.address` say where it answers, over UDP and TCP, on loopback."""
    assert kdns_server.host == "127.0.0.1"
    assert isinstance(kdns_server.port, int) and kdns_server.port > 0
    assert kdns_server.address == (kdns_server.host, kdns_server.port)
    web = kdns_server.service("web")
    for tcp in (False, True):
        reply = ask(kdns_server.address, svc("web", "default"), tcp=tcp)
        assert values(reply, "A") == {web.cluster_ip}


def test_starts_with_an_empty_cluster(kdns_server):
    """No demo objects: `kubernetes.default` is not there until a test declares it."""
    assert ask(kdns_server, svc("kubernetes", "default")).rcode() == dns.rcode.NXDOMAIN


# -- .service() ---------------------------------------------------------------------------------


def test_service_allocates_distinct_cluster_ips(kdns_server):
    """A Service declared without an address gets one from the service CIDR, as an API server
    would: distinct per Service, stable when declared again; `.fqdn` names it; the A answer
    carries it."""
    web = kdns_server.service("web", "shop")
    api = kdns_server.service("api", "shop")
    other = kdns_server.service("web", "billing")
    ips = {web.cluster_ip, api.cluster_ip, other.cluster_ip}
    assert len(ips) == 3
    assert all(ipaddress.ip_address(ip) in SERVICE_CIDR for ip in ips)
    assert web.fqdn == "web.shop.svc.cluster.local"
    assert web.endpoints == ()
    for info in (web, api, other):
        assert values(ask(kdns_server, info.fqdn), "A") == {info.cluster_ip}
    assert kdns_server.service("web", "shop").cluster_ip == web.cluster_ip


def test_service_with_a_given_cluster_ip(kdns_server):
    """`cluster_ip=` is the address served."""
    info = kdns_server.service("db", "shop", cluster_ip="10.96.0.77")
    assert info.cluster_ip == "10.96.0.77"
    assert values(ask(kdns_server, svc("db", "shop")), "A") == {"10.96.0.77"}


def test_allocation_skips_addresses_written_by_hand():
    """An API server never hands out a ClusterIP that another Service already has: a
    Service declared with an explicit `cluster_ip` keeps it to itself, and one declared
    afterwards without an address gets another one."""
    with KdnsServer() as probe:  # learn which address "b" would be given
        taken = probe.service("b", "shop").cluster_ip
    with KdnsServer() as server:
        server.service("a", "shop", cluster_ip=taken)
        b = server.service("b", "shop")
        assert b.cluster_ip != taken, f"'b' was given {taken}, the address 'a' was declared with"
        assert values(ask(server, svc("a", "shop")), "A") == {taken}


def test_named_and_unnamed_ports_give_srv_records(kdns_server):
    """Named ports get `_name._proto` SRV records (TCP by default, UDP when given); the
    Service name's SRV lists every port, unnamed ones included."""
    kdns_server.service("web", "shop", ports=[("http", 8080), ("dns", 53, "UDP"), 9000])
    target = svc("web", "shop") + "."
    assert values(ask(kdns_server, f"_http._tcp.{svc('web', 'shop')}", "SRV")) == {f"0 100 8080 {target}"}
    assert values(ask(kdns_server, f"_dns._udp.{svc('web', 'shop')}", "SRV")) == {f"0 100 53 {target}"}
    assert ask(kdns_server, f"_dns._tcp.{svc('web', 'shop')}", "SRV").rcode() == dns.rcode.NXDOMAIN
    ports = {int(v.split()[2]) for v in values(ask(kdns_server, svc("web", "shop"), "SRV"), "SRV")}
    assert ports == {8080, 53, 9000}


def test_headless_service_with_endpoints_and_hostnames(kdns_server):
    """A headless Service answers with its ready endpoints (not the unready one); endpoints
    with a hostname get `host.svc...` names, and SRV records point at each endpoint."""
    db = kdns_server.service(
        "db", "shop", headless=True, ports=[("pg", 5432)],
        endpoints=[
            {"ip": "10.1.0.10", "hostname": "db-0"},
            {"ip": "10.1.0.11", "hostname": "db-1"},
            {"ip": "10.1.0.12", "hostname": "db-2", "ready": False},
        ],
    )
    assert db.cluster_ip is None
    assert values(ask(kdns_server, svc("db", "shop")), "A") == {"10.1.0.10", "10.1.0.11"}
    assert values(ask(kdns_server, "db-1." + svc("db", "shop")), "A") == {"10.1.0.11"}
    srv = values(ask(kdns_server, f"_pg._tcp.{svc('db', 'shop')}", "SRV"))
    assert {tuple(v.split()[2:]) for v in srv} == {("5432", f"db-0.{svc('db', 'shop')}."), ("5432", f"db-1.{svc('db', 'shop')}.")}


def test_headless_service_gets_an_endpoint_by_default(kdns_server):
    """A headless Service declared without endpoints has one made up, so its name exists;
    `endpoints=N` makes up N distinct addresses."""
    h = kdns_server.service("h", "shop", headless=True)
    assert len(h.endpoints) == 1
    assert values(ask(kdns_server, svc("h", "shop")), "A") == set(h.endpoints)
    many = kdns_server.service("many", "shop", headless=True, endpoints=3)
    assert len(set(many.endpoints)) == 3
    assert values(ask(kdns_server, svc("many", "shop")), "A") == set(many.endpoints)


def test_dual_stack_endpoints(kdns_server):
    """IPv4 and IPv6 endpoint addresses of one headless Service answer A and AAAA."""
    kdns_server.service("dual", "shop", headless=True, endpoints=["10.1.0.20", "fd00:10:244::20"])
    assert values(ask(kdns_server, svc("dual", "shop"), "A"), "A") == {"10.1.0.20"}
    assert values(ask(kdns_server, svc("dual", "shop"), "AAAA"), "AAAA") == {"fd00:10:244::20"}


def test_declaring_a_service_again_replaces_its_endpoints(kdns_server):
    """`.service()` declares a Service and its endpoints; declaring it again with other
    endpoints leaves only those (no address of the first declaration is still served)."""
    kdns_server.service("db", "shop", headless=True, endpoints=["10.1.0.1", "fd00::1"])
    kdns_server.service("db", "shop", headless=True, endpoints=["10.1.0.2"])
    assert values(ask(kdns_server, svc("db", "shop"), "A"), "A") == {"10.1.0.2"}
    assert values(ask(kdns_server, svc("db", "shop"), "AAAA"), "AAAA") == set()


def test_external_name_service(kdns_server):
    """An ExternalName Service answers with a CNAME to its target, and has no ClusterIP."""
    ext = kdns_server.service("mail", "shop", external_name="smtp.example.com")
    assert ext.cluster_ip is None
    reply = ask(kdns_server, svc("mail", "shop"), "CNAME")
    assert values(reply, "CNAME") == {"smtp.example.com."}


# -- .apply(), .load(), .delete() --------------------------------------------------------------

SERVICE = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "pay", "namespace": "billing"},
    "spec": {"clusterIP": "10.96.0.31", "ports": [{"name": "http", "port": 80}]},
}
HEADLESS = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "data"}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kv", "namespace": "data"},
     "spec": {"clusterIP": "None", "ports": [{"name": "redis", "port": 6379}]}},
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
     "metadata": {"name": "kv-abc", "namespace": "data", "labels": {"kubernetes.io/service-name": "kv"}},
     "addressType": "IPv4", "ports": [{"name": "redis", "port": 6379}],
     "endpoints": [{"addresses": ["10.2.0.5"], "hostname": "kv-0", "conditions": {"ready": True}}]},
]
YAML = """
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {clusterIP: 10.96.0.41, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: search, namespace: shop}
spec: {clusterIP: 10.96.0.42, ports: [{port: 9200}]}
"""


def test_apply_one_manifest_dict(kdns_server):
    """`.apply(dict)` adds a real Service manifest; applying it again with another address
    replaces it."""
    kdns_server.apply(SERVICE)
    assert values(ask(kdns_server, svc("pay", "billing")), "A") == {"10.96.0.31"}
    changed = {**SERVICE, "spec": {**SERVICE["spec"], "clusterIP": "10.96.0.32"}}
    kdns_server.apply(changed)
    assert values(ask(kdns_server, svc("pay", "billing")), "A") == {"10.96.0.32"}


def test_apply_a_list_of_manifests(kdns_server):
    """`.apply([...])` takes Namespace, Service and EndpointSlice objects together, and a
    `kind: List` as well."""
    kdns_server.apply(HEADLESS)
    assert values(ask(kdns_server, svc("kv", "data")), "A") == {"10.2.0.5"}
    assert values(ask(kdns_server, "kv-0." + svc("kv", "data")), "A") == {"10.2.0.5"}
    kdns_server.apply({"apiVersion": "v1", "kind": "List", "items": [SERVICE]})
    assert values(ask(kdns_server, svc("pay", "billing")), "A") == {"10.96.0.31"}


def test_load_a_file_a_directory_and_yaml_text(kdns_server, tmp_path):
    """`.load()` takes a manifest file (Path or str), a directory of them, or YAML text with
    several documents."""
    one = tmp_path / "one.yaml"
    one.write_text(YAML)
    kdns_server.load(one)
    assert values(ask(kdns_server, svc("cart", "shop")), "A") == {"10.96.0.41"}
    assert values(ask(kdns_server, svc("search", "shop")), "A") == {"10.96.0.42"}

    two = tmp_path / "dir" / "pay.yaml"
    two.parent.mkdir()
    two.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: inv, namespace: shop}\nspec: {clusterIP: 10.96.0.43}\n")
    kdns_server.load(str(two.parent))
    assert values(ask(kdns_server, svc("inv", "shop")), "A") == {"10.96.0.43"}

    kdns_server.load(YAML.replace("10.96.0.41", "10.96.0.51").replace("cart,", "cart2,"))
    assert values(ask(kdns_server, svc("cart2", "shop")), "A") == {"10.96.0.51"}


def test_load_a_str_path_to_a_file(kdns_server, tmp_path):
    """A str naming a file is read as a path, not as YAML."""
    path = tmp_path / "svc.yaml"
    path.write_text(YAML)
    kdns_server.load(str(path))
    assert values(ask(kdns_server, svc("cart", "shop")), "A") == {"10.96.0.41"}


def test_delete(kdns_server):
    """`.delete(kind, namespace, name)` removes an object: the Service's name is gone at
    once; deleting a headless Service's EndpointSlice leaves it without addresses."""
    web = kdns_server.service("web", "shop")
    assert values(ask(kdns_server, web.fqdn), "A") == {web.cluster_ip}
    kdns_server.delete("Service", "shop", "web")
    assert ask(kdns_server, web.fqdn).rcode() == dns.rcode.NXDOMAIN
    kdns_server.apply(HEADLESS)
    kdns_server.delete("EndpointSlice", "data", "kv-abc")
    assert values(ask(kdns_server, svc("kv", "data")), "A") == set()


def test_changes_apply_before_the_call_returns(kdns_server):
    """Every change (`apply`, `load`, `service`, `delete`, a fault) is in place when the call
    returns: a query sent right after it (no sleep, many times over) sees it."""
    for i in range(30):
        manifest = {**SERVICE, "spec": {**SERVICE["spec"], "clusterIP": f"10.96.1.{i + 1}"}}
        kdns_server.apply(manifest)
        assert values(ask(kdns_server, svc("pay", "billing")), "A") == {f"10.96.1.{i + 1}"}
        kdns_server.load(YAML.replace("10.96.0.41", f"10.96.2.{i + 1}"))
        assert values(ask(kdns_server, svc("cart", "shop")), "A") == {f"10.96.2.{i + 1}"}
        info = kdns_server.service(f"s{i}", "shop", ports=[("http", 80 + i)])
        assert values(ask(kdns_server, info.fqdn), "A") == {info.cluster_ip}
        kdns_server.delete("Service", "shop", f"s{i}")
        assert ask(kdns_server, info.fqdn).rcode() == dns.rcode.NXDOMAIN
        kdns_server.fail(info.fqdn, "REFUSED")
        assert ask(kdns_server, info.fqdn).rcode() == dns.rcode.REFUSED


# -- .queries -----------------------------------------------------------------------------------


def test_queries_record_name_type_client_and_rcode(kdns_server):
    """`.queries` lists every question received, in order: name as asked (lowercased, no
    trailing dot), type, client address and rcode; over UDP and TCP; a dropped query has
    rcode None. Each is recorded by the time its reply arrives."""
    web = kdns_server.service("web", "shop")
    assert kdns_server.queries == []
    ask(kdns_server, "Web.Shop.svc.cluster.local.")
    ask(kdns_server, web.fqdn, "AAAA", tcp=True)
    ask(kdns_server, svc("nope", "shop"), "SRV")
    kdns_server.fail(web.fqdn, "SERVFAIL")
    ask(kdns_server, web.fqdn)
    kdns_server.drop(svc("gone", "shop"))
    with pytest.raises(dns.exception.Timeout):
        ask(kdns_server, svc("gone", "shop"), timeout=0.3)
    got = [(q.name, q.type, q.client, q.rcode) for q in kdns_server.queries]
    assert got == [
        ("web.shop.svc.cluster.local", "A", "127.0.0.1", "NOERROR"),
        ("web.shop.svc.cluster.local", "AAAA", "127.0.0.1", "NOERROR"),
        ("nope.shop.svc.cluster.local", "SRV", "127.0.0.1", "NXDOMAIN"),
        ("web.shop.svc.cluster.local", "A", "127.0.0.1", "SERVFAIL"),
        ("gone.shop.svc.cluster.local", "A", "127.0.0.1", None),
    ]


# -- fault switches -----------------------------------------------------------------------------


@pytest.mark.parametrize("rcode", ["SERVFAIL", "REFUSED"])
def test_fail_answers_that_rcode_for_that_name_only(kdns_server, rcode):
    """`.fail(name, rcode)` answers that name with the rcode and no records, over UDP and
    TCP, whatever the case or trailing dot the name is asked with; other names (another
    Service, the SRV name below the failed one) answer normally."""
    web = kdns_server.service("web", "shop")
    api = kdns_server.service("api", "shop")
    kdns_server.fail(web.fqdn, rcode)
    for name in (web.fqdn, "WEB.shop.SVC.cluster.local."):
        for tcp in (False, True):
            reply = ask(kdns_server, name, tcp=tcp)
            assert reply.rcode() == dns.rcode.from_text(rcode) and reply.answer == []
    assert values(ask(kdns_server, api.fqdn), "A") == {api.cluster_ip}
    srv = ask(kdns_server, f"_http._tcp.{web.fqdn}", "SRV")
    assert values(srv, "SRV") == {f"0 100 80 {web.fqdn}."}


def test_delay_answers_late(kdns_server):
    """`.delay(name, 0.5)`: a client that waits 0.2 s times out, one that waits 2 s gets the
    normal answer after about 0.5 s; another name is answered at once."""
    web = kdns_server.service("web", "shop")
    api = kdns_server.service("api", "shop")
    kdns_server.delay(web.fqdn, 0.5)
    with pytest.raises(dns.exception.Timeout):
        ask(kdns_server, web.fqdn, timeout=0.2)
    started = time.monotonic()
    reply = ask(kdns_server, web.fqdn, timeout=2)
    assert 0.45 <= time.monotonic() - started < 2
    assert values(reply, "A") == {web.cluster_ip}
    started = time.monotonic()
    assert values(ask(kdns_server, api.fqdn, timeout=0.2), "A") == {api.cluster_ip}
    assert time.monotonic() - started < 0.2


def test_delay_over_tcp(kdns_server):
    """A delayed name is late over TCP too."""
    web = kdns_server.service("web", "shop")
    kdns_server.delay(web.fqdn, 0.5)
    with pytest.raises(dns.exception.Timeout):
        ask(kdns_server, web.fqdn, tcp=True, timeout=0.2)
    assert values(ask(kdns_server, web.fqdn, tcp=True, timeout=2), "A") == {web.cluster_ip}


def test_truncate_sets_tc_over_udp(kdns_server):
    """`.truncate(name)`: the UDP reply has TC set and no records; other names are whole."""
    web = kdns_server.service("web", "shop")
    api = kdns_server.service("api", "shop")
    kdns_server.truncate(web.fqdn)
    reply = ask(kdns_server, web.fqdn)
    assert reply.flags & dns.flags.TC and reply.answer == []
    reply = ask(kdns_server, api.fqdn)
    assert not reply.flags & dns.flags.TC and values(reply, "A") == {api.cluster_ip}


def test_drop_never_answers(kdns_server):
    """`.drop(name)`: no reply at all, over UDP or TCP; other names answer."""
    web = kdns_server.service("web", "shop")
    api = kdns_server.service("api", "shop")
    kdns_server.drop(web.fqdn)
    for tcp in (False, True):
        with pytest.raises(dns.exception.Timeout):
            ask(kdns_server, web.fqdn, tcp=tcp, timeout=0.3)
    assert values(ask(kdns_server, api.fqdn), "A") == {api.cluster_ip}


def test_reset_removes_every_fault(kdns_server):
    """`.reset()` makes every faulted name answer normally again; the cluster and the
    recorded queries stay."""
    names = {n: kdns_server.service(n, "shop") for n in ("a", "b", "c", "d")}
    kdns_server.fail(names["a"].fqdn, "SERVFAIL")
    kdns_server.delay(names["b"].fqdn, 5)
    kdns_server.truncate(names["c"].fqdn)
    kdns_server.drop(names["d"].fqdn)
    assert ask(kdns_server, names["a"].fqdn).rcode() == dns.rcode.SERVFAIL
    seen = len(kdns_server.queries)
    kdns_server.reset()
    for info in names.values():
        reply = ask(kdns_server, info.fqdn, timeout=1)
        assert not reply.flags & dns.flags.TC and values(reply, "A") == {info.cluster_ip}
    assert len(kdns_server.queries) == seen + 4


# -- pod_resolver -------------------------------------------------------------------------------


def test_pod_resolver_resolves_like_a_pod(kdns_server):
    """Under `pod_resolver(server, namespace="shop")` the socket module resolves as a pod in
    `shop` would: short names through the search list, `name.ns`, `name.ns.svc` and the
    full name, Services of other namespaces via `name.ns`."""
    web = kdns_server.service("web", "shop", ports=[("http", 80)])
    pay = kdns_server.service("payments", "billing")
    with pod_resolver(kdns_server, namespace="shop"):
        infos = socket.getaddrinfo("web", 80)
        assert infos and {info[4] for info in infos} == {(web.cluster_ip, 80)}
        assert socket.gethostbyname("web") == web.cluster_ip
        assert socket.gethostbyname("web.shop") == web.cluster_ip
        assert socket.gethostbyname("web.shop.svc") == web.cluster_ip
        assert socket.gethostbyname("web.shop.svc.cluster.local") == web.cluster_ip
        assert socket.gethostbyname("payments.billing") == pay.cluster_ip
        assert socket.getaddrinfo("payments.billing.svc", 443, type=socket.SOCK_STREAM)[0][4] == (pay.cluster_ip, 443)


def test_pod_resolver_uses_the_namespace_search_list(kdns_server):
    """The queries are a pod's (ndots:5): `web.shop` is tried as `web.shop.shop.svc...`
    first, then `web.shop.svc.cluster.local`; `payments` is found in the pod's own
    namespace, not in another one."""
    web = kdns_server.service("web", "shop")
    kdns_server.service("payments", "billing")
    with pod_resolver(kdns_server, namespace="shop"):
        assert socket.gethostbyname("web.shop") == web.cluster_ip
        with pytest.raises(socket.gaierror):
            socket.gethostbyname("payments")
    asked = [q.name for q in kdns_server.queries if q.type == "A"]
    assert asked[:2] == ["web.shop.shop.svc.cluster.local", "web.shop.svc.cluster.local"]
    assert "payments.shop.svc.cluster.local" in asked


def test_pod_resolver_unknown_name_raises_gaierror(kdns_server):
    """A name the cluster does not have raises socket.gaierror, as getaddrinfo does."""
    with pod_resolver(kdns_server, namespace="shop"):
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("nothere", 80)
        with pytest.raises(socket.gaierror):
            socket.gethostbyname("nothere.shop.svc.cluster.local")


def test_pod_resolver_keeps_localhost(kdns_server):
    """In a pod, `localhost` resolves (the kubelet's /etc/hosts): code under test that talks
    to a sidecar or a local helper on localhost must keep working under `pod_resolver`,
    while cluster names resolve through kdns."""
    web = kdns_server.service("web", "shop")
    with pod_resolver(kdns_server, namespace="shop"):
        assert socket.gethostbyname("web") == web.cluster_ip
        addresses = {info[4][0] for info in socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)}
    assert addresses and addresses <= {"127.0.0.1", "::1"}


def test_pod_resolver_with_ai_addrconfig(kdns_server):
    """getaddrinfo with AI_ADDRCONFIG, as aiohttp's default ThreadedResolver calls it (and as
    glibc callers commonly do), resolves a Service under `pod_resolver`."""
    web = kdns_server.service("web", "shop")
    with pod_resolver(kdns_server, namespace="shop"):
        infos = socket.getaddrinfo("web", 80, socket.AF_INET, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG)
    assert {info[4] for info in infos} == {(web.cluster_ip, 80)}


async def test_pod_resolver_in_trio_code(kdns_server):
    """trio code under test (trio.open_tcp_stream, trio.socket.getaddrinfo, which pass the
    host to socket.getaddrinfo as IDNA bytes) reaches what the test put behind `web`."""
    received = []

    async def handler(stream):
        received.append(await stream.receive_some(100))
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        kdns_server.service("web", "shop", cluster_ip="127.0.0.1", ports=[("app", port)])
        try:
            with trio.fail_after(5), pod_resolver(kdns_server, namespace="shop"):
                infos = await trio.socket.getaddrinfo("web", port, type=trio.socket.SOCK_STREAM)
                assert infos[0][4] == ("127.0.0.1", port)
                stream = await trio.open_tcp_stream("web", port)
                async with stream:
                    await stream.send_all(b"ping")
                while not received:
                    await trio.sleep(0.01)
            assert received == [b"ping"]
        finally:
            nursery.cancel_scope.cancel()


def test_pod_resolver_restores_the_system_resolver(kdns_server):
    """After the `with` block (also when it raises), socket.getaddrinfo and gethostbyname are
    the original functions again."""
    originals = (socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex)
    with pod_resolver(kdns_server, namespace="shop"):
        assert socket.getaddrinfo is not originals[0]
    assert (socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex) == originals
    with pytest.raises(RuntimeError, match="boom"), pod_resolver(kdns_server, namespace="shop"):
        raise RuntimeError("boom")
    assert (socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex) == originals


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_http_clients_reach_what_the_test_put_behind_a_name(kdns_server):
    """An HTTP client in the code under test (urllib, requests) reaches `http://web:PORT/`
    when the test declares `web` with a ClusterIP where its HTTP server listens."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        kdns_server.service("web", "shop", cluster_ip="127.0.0.1", ports=[("http", port)])
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, whatever the env says
        with pod_resolver(kdns_server, namespace="shop"):
            with no_proxy.open(f"http://web:{port}/", timeout=5) as response:
                assert response.read() == f"hello from web:{port}".encode()
            with requests.Session() as session:
                session.trust_env = False
                assert session.get(f"http://web.shop:{port}/", timeout=5).text == f"hello from web.shop:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    assert ("web.shop.svc.cluster.local", "A") in {(q.name, q.type) for q in kdns_server.queries}


# -- .upstream() ---------------------------------------------------------------------------------


async def test_upstream_enables_forwarding(kdns_server, nursery):
    """Names outside the cluster are NXDOMAIN (a closed world) until `.upstream("127.0.0.1:PORT")`; then they
    are forwarded to that server, while cluster names (declared before or after) are still
    answered by kdns itself."""
    backend = dns.asyncbackend.get_backend("trio")

    async def aask(name: str) -> dns.message.Message:
        query = dns.message.make_query(name, "A")
        return await dns.asyncquery.udp(query, kdns_server.host, port=kdns_server.port, timeout=3, backend=backend)

    stub = StubDNS("outside.example. 300 IN A 192.0.2.7")
    await nursery.start(stub.serve)
    web = kdns_server.service("web", "shop")
    assert (await aask("outside.example")).rcode() == dns.rcode.NXDOMAIN
    assert stub.count() == 0

    kdns_server.upstream(stub.address)
    reply = await aask("outside.example")
    assert reply.rcode() == dns.rcode.NOERROR and values(reply, "A") == {"192.0.2.7"}
    assert stub.count("outside.example.") == 1
    assert values(await aask(web.fqdn), "A") == {web.cluster_ip}
    api = kdns_server.service("api", "shop")
    assert values(await aask(api.fqdn), "A") == {api.cluster_ip}
    assert stub.count(web.fqdn) == stub.count(api.fqdn) == 0


# -- two servers ------------------------------------------------------------------------------------


def test_two_servers_are_independent(kdns_server):
    """A second KdnsServer (the context manager the README offers outside pytest) has its
    own port, cluster, faults and recorded queries; once closed it no longer listens."""
    with KdnsServer() as other:
        assert other.port != kdns_server.port
        web = kdns_server.service("web", "shop", cluster_ip="10.96.0.61")
        db = other.service("db", "shop", cluster_ip="10.96.0.62")
        assert values(ask(kdns_server, web.fqdn), "A") == {"10.96.0.61"}
        assert ask(other, web.fqdn).rcode() == dns.rcode.NXDOMAIN
        assert values(ask(other, db.fqdn), "A") == {"10.96.0.62"}
        assert ask(kdns_server, db.fqdn).rcode() == dns.rcode.NXDOMAIN

        other.fail(db.fqdn, "SERVFAIL")
        kdns_server.service("db", "shop", cluster_ip="10.96.0.63")
        assert values(ask(kdns_server, db.fqdn), "A") == {"10.96.0.63"}
        assert ask(other, db.fqdn).rcode() == dns.rcode.SERVFAIL

        assert [q.name for q in other.queries] == [web.fqdn, db.fqdn, db.fqdn]
        assert [q.name for q in kdns_server.queries] == [web.fqdn, db.fqdn, db.fqdn]
        port = other.port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert values(ask(kdns_server, web.fqdn), "A") == {"10.96.0.61"}


# -- kdns serve --print-address --------------------------------------------------------------------


def _kdns_command() -> list[str]:
    script = Path(sys.executable).parent / "kdns"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kdns"]


def test_serve_print_address(tmp_path):
    """`kdns serve --manifests DIR --listen 127.0.0.1:0 --print-address` prints
    `127.0.0.1:PORT` as stdout's first line once it answers (a query sent right after
    reading the line is answered, UDP and TCP); SIGTERM stops it cleanly."""
    (tmp_path / "web.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
        "spec: {clusterIP: 10.96.0.50, ports: [{name: http, port: 80}]}\n"
    )
    proc = subprocess.Popen(
        [*_kdns_command(), "serve", "--manifests", str(tmp_path), "--listen", "127.0.0.1:0", "--print-address", "--lameduck", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=15), "kdns printed nothing within 15 s"
        line = proc.stdout.readline()
        match = re.fullmatch(r"127\.0\.0\.1:(\d+)\n", line)
        assert match, f"first stdout line: {line!r}"
        port = int(match.group(1))
        assert port > 0
        for tcp in (False, True):
            assert values(ask(("127.0.0.1", port), svc("web", "shop"), tcp=tcp), "A") == {"10.96.0.50"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == "", "stdout carries only the address"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
        proc.stderr.close()
