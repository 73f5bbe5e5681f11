"""Issue 16: kdns.testing as the test double a new user reaches for first.

Each test runs a user's test file with pytester, in a fresh pytest process that gets the
fixtures from the installed entry point (no conftest of ours), as another project's suite
would: faults on names as the application writes them (with qtype, times, every kind, clear
mistakes, unused faults caught), the query log's helpers, a session-scoped server emptied
with clear(), fixture options through a marker or the factory, and the smaller fixes (the
zone in ServiceInfo.fqdn, nested pod_resolvers, load() of a missing path or a FIFO). The fast
stop of `kdns serve --print-address` is checked with the real command.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from kdns.testing import KdnsServer
from testkit.process import KdnsProcess
from testkit.repo import ROOT

pytest_plugins = ["pytester"]

INNER_INI = """
[pytest]
filterwarnings =
    error
"""
RUN_TIMEOUT = 120  # seconds a user's test run may take at most (a hang fails, never blocks the suite)

HELPERS = '''
import socket

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from kdns.testing import KdnsServer, pod_resolver

SERVFAIL, NXDOMAIN, NOERROR, REFUSED = dns.rcode.SERVFAIL, dns.rcode.NXDOMAIN, dns.rcode.NOERROR, dns.rcode.REFUSED


def ask(server, name, rdtype="A", tcp=False, timeout=2):
    query = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, server.host, port=server.port, timeout=timeout)


def addresses(reply):
    return [rd.address for rrset in reply.answer for rd in rrset]
'''


def run_user_tests(pytester: pytest.Pytester, code: str, *, ini: str = INNER_INI) -> pytest.RunResult:
    pytester.makeini(ini)
    pytester.makepyfile(test_user=HELPERS + code)
    return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", timeout=RUN_TIMEOUT)


# -- faults as the application writes the name ---------------------------------------------------

FAULTS_AS_WRITTEN = '''
def test_a_fault_on_the_name_the_application_writes(kdns_server):
    redis = kdns_server.service("redis", "app")
    fault = kdns_server.fail("redis", "SERVFAIL", namespace="app")
    with pod_resolver(kdns_server, namespace="app"):
        with pytest.raises(socket.gaierror):
            socket.gethostbyname("redis")
    assert fault.hits == 1
    for name in ("redis.app.svc.cluster.local", "redis.svc.cluster.local", "redis.cluster.local", "redis"):
        assert ask(kdns_server, name).rcode() == SERVFAIL, name
    assert fault.hits == 5
    assert ask(kdns_server, "redis.other.svc.cluster.local").rcode() == NXDOMAIN
    kdns_server.reset()
    with pod_resolver(kdns_server, namespace="app"):
        assert socket.gethostbyname("redis") == redis.cluster_ip


@pytest.mark.kdns(namespace="app")
def test_the_server_namespace_is_the_default(kdns_server):
    kdns_server.service("redis", "app")
    kdns_server.fail("redis")
    assert ask(kdns_server, "redis.app.svc.cluster.local").rcode() == SERVFAIL
    kdns_server.fail("web", "REFUSED", namespace="shop")
    assert ask(kdns_server, "web.shop.svc.cluster.local").rcode() == REFUSED
    assert ask(kdns_server, "web.app.svc.cluster.local").rcode() == NXDOMAIN
    with pod_resolver(kdns_server):  # the server's namespace too
        with pytest.raises(socket.gaierror):
            socket.gethostbyname("redis")


def test_absolute_names_and_suffixes(kdns_server):
    web = kdns_server.service("web", "shop")
    kdns_server.fail("web.shop.svc.cluster.local.", "REFUSED")  # absolute: that name only
    assert ask(kdns_server, web.fqdn).rcode() == REFUSED
    assert ask(kdns_server, web.fqdn + ".default.svc.cluster.local").rcode() == NXDOMAIN
    kdns_server.fail("*.example.com")
    assert ask(kdns_server, "api.example.com").rcode() == SERVFAIL
    assert ask(kdns_server, "a.b.example.com", "AAAA").rcode() == SERVFAIL
    assert ask(kdns_server, "example.com").rcode() != SERVFAIL
    kdns_server.fail("*", "NXDOMAIN")  # every name; the last fault added wins
    assert ask(kdns_server, "api.example.com").rcode() == NXDOMAIN


def test_one_query_type(kdns_server):
    web = kdns_server.service("web", "shop", headless=True, endpoints=["10.1.0.1", "fd00::1"])
    fault = kdns_server.fail("web.shop", qtype="AAAA")
    assert ask(kdns_server, web.fqdn, "AAAA").rcode() == SERVFAIL
    assert addresses(ask(kdns_server, web.fqdn, "A")) == ["10.1.0.1"]
    assert fault.hits == 1


def test_times_then_normal_answers(kdns_server):
    web = kdns_server.service("web", "shop")
    fault = kdns_server.fail("web.shop", times=2)
    rcodes = [ask(kdns_server, web.fqdn).rcode() for _ in range(4)]
    assert rcodes == [SERVFAIL, SERVFAIL, NOERROR, NOERROR]
    assert fault.hits == 2 and fault.exhausted and fault.used


@pytest.mark.parametrize("kind", ["drop", "truncate", "delay", "rcode"])
def test_every_kind_takes_qtype_and_times(kdns_server, kind):
    web = kdns_server.service("web", "shop", headless=True, endpoints=["10.1.0.1", "fd00::1"])
    fault = kdns_server.fault("web.shop", kind, 30 if kind == "delay" else None, qtype="A", times=1)
    if kind in ("drop", "delay"):
        with pytest.raises(dns.exception.Timeout):
            ask(kdns_server, web.fqdn, timeout=0.3)
    elif kind == "truncate":
        reply = ask(kdns_server, web.fqdn)
        assert reply.flags & dns.flags.TC and reply.answer == []
    else:
        assert ask(kdns_server, web.fqdn).rcode() == SERVFAIL
    assert addresses(ask(kdns_server, web.fqdn, "AAAA")) == ["fd00::1"]  # another type: untouched
    assert addresses(ask(kdns_server, web.fqdn, "A")) == ["10.1.0.1"]  # used up: normal again
    assert fault.hits == 1


def test_mistakes_are_value_errors_listing_the_valid_values(kdns_server):
    with pytest.raises(ValueError, match="unknown rcode 'SERVFAL'; valid: NOERROR, FORMERR, SERVFAIL, NXDOMAIN"):
        kdns_server.fail("redis", "SERVFAL")
    with pytest.raises(ValueError, match="unknown fault kind 'timeout'; the kinds are: rcode, delay, truncate, drop"):
        kdns_server.fault("redis", "timeout")
    with pytest.raises(ValueError, match="unknown query type 'AAA'; valid: A, NS, CNAME"):
        kdns_server.fail("redis", qtype="AAA")
    with pytest.raises(ValueError, match="times must be"):
        kdns_server.drop("redis", times=0)
    with pytest.raises(ValueError, match="a delay is a number of seconds above 0"):
        kdns_server.delay("redis", -1)
    with pytest.raises(ValueError, match="not a domain name"):
        kdns_server.fail("re..dis")
    assert kdns_server.faults == []


def test_a_fault_that_matched_nothing_can_be_caught(kdns_server):
    kdns_server.service("redis", "app")
    used = kdns_server.fail("redis", namespace="app")
    kdns_server.fail("rediss", namespace="app")  # misspelt
    ask(kdns_server, "redis.app.svc.cluster.local")
    assert used.hits == 1
    with pytest.raises(AssertionError, match="1 fault.*'rediss'.*names asked: redis.app.svc.cluster.local A"):
        kdns_server.assert_all_used()
'''


def test_faults_match_names_as_the_application_writes_them(pytester):
    """`fail("redis")` matches every name the search path makes of `redis` (in the fault's or
    the server's namespace), absolute names only themselves, `*.suffix` what is below;
    qtype= and times= work for every kind; mistakes are ValueErrors listing the valid values;
    a fault's handle counts its hits and assert_all_used() names the faults never used."""
    result = run_user_tests(pytester, FAULTS_AS_WRITTEN)
    result.assert_outcomes(passed=11)


STRICT = '''
@pytest.mark.kdns(strict=True)
def test_strict_server_with_an_unused_fault(kdns_server):
    kdns_server.drop("never-asked")


@pytest.mark.kdns(strict=True)
def test_strict_server_whose_faults_were_used(kdns_server):
    kdns_server.fail("web")
    assert ask(kdns_server, "web.default.svc.cluster.local").rcode() == SERVFAIL


def test_strict_server_of_the_factory(kdns_server_factory):
    server = kdns_server_factory(strict=True)
    server.fail("*.nowhere.test", times=3)


def test_strict_as_a_context_manager():
    with pytest.raises(AssertionError, match="changed no query"):
        with KdnsServer(strict=True) as server:
            server.truncate("never-asked")
'''


def test_strict_servers_fail_the_test_that_left_a_fault_unused(pytester):
    """strict=True (the marker, the factory, the context manager): a fault that changed no
    query by the end of the test is an error naming it; used faults are fine."""
    result = run_user_tests(pytester, STRICT)
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_strict_server_with_an_unused_fault*",
                                 "*ERROR at teardown of test_strict_server_of_the_factory*"])
    result.stdout.fnmatch_lines(["*changed no query: <Fault drop for 'never-asked', 0 hits>*"])


# -- the query log ---------------------------------------------------------------------------------

QUERY_LOG = '''
import threading


def test_each_query_says_its_transport(kdns_server):
    web = kdns_server.service("web", "shop")
    ask(kdns_server, web.fqdn)
    ask(kdns_server, web.fqdn, tcp=True)
    assert [(q.name, q.transport) for q in kdns_server.queries] == [(web.fqdn, "udp"), (web.fqdn, "tcp")]


def test_queries_for_a_name_as_written(kdns_server):
    kdns_server.service("redis", "app")
    kdns_server.service("web", "app")
    with pod_resolver(kdns_server, namespace="app"):
        socket.gethostbyname("redis")
        socket.gethostbyname("web")
        with pytest.raises(socket.gaierror):
            socket.gethostbyname("nothere")
    assert [q.name for q in kdns_server.queries.for_name("redis", namespace="app")] == ["redis.app.svc.cluster.local"]
    nothere = [q.name for q in kdns_server.queries.for_name("nothere", "A", namespace="app")]
    assert nothere[:3] == ["nothere.app.svc.cluster.local", "nothere.svc.cluster.local", "nothere.cluster.local"]
    assert kdns_server.queries.for_name("nothere", "AAAA", namespace="app") == []
    assert len(kdns_server.queries.for_name("*")) == len(kdns_server.queries)


def test_wait_for_a_query_the_code_under_test_sends(kdns_server):
    web = kdns_server.service("web", "shop")
    worker = threading.Thread(target=ask, args=(kdns_server, web.fqdn, "AAAA"))
    worker.start()
    query = kdns_server.queries.wait_for("web.shop", "AAAA", timeout=10)
    worker.join(10)
    assert (query.name, query.type, query.rcode, query.transport) == (web.fqdn, "AAAA", "NOERROR", "udp")
    with pytest.raises(TimeoutError, match="2 queries for 'web.shop' not received.*names asked: web.shop.svc.cluster.local AAAA"):
        kdns_server.queries.wait_for("web.shop", count=2, timeout=0.1)
    kdns_server.queries.clear()
    assert kdns_server.queries == []
'''

ASYNC_WAIT = '''
import asyncio

import dns.asyncbackend
import dns.asyncquery
import trio


async def test_wait_for_async_in_trio(kdns_server):
    web = kdns_server.service("web", "shop")
    backend = dns.asyncbackend.get_backend("trio")

    async def application():
        await trio.sleep(0.05)
        query = dns.message.make_query(web.fqdn, "A")
        await dns.asyncquery.tcp(query, kdns_server.host, port=kdns_server.port, timeout=5, backend=backend)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(application)
        query = await kdns_server.queries.wait_for_async("web.shop", timeout=10)
    assert (query.name, query.transport) == (web.fqdn, "tcp")


def test_wait_for_async_in_asyncio(kdns_server):
    web = kdns_server.service("web", "shop")

    async def main():
        backend = dns.asyncbackend.get_backend("asyncio")
        query = dns.message.make_query(web.fqdn, "A")
        sent = asyncio.ensure_future(dns.asyncquery.udp(query, kdns_server.host, port=kdns_server.port, timeout=5,
                                                        backend=backend))
        seen = await kdns_server.queries.wait_for_async(web.fqdn + ".", timeout=10)
        await sent
        return seen

    assert asyncio.run(main()).name == web.fqdn
'''


def test_query_log_helpers(pytester):
    """Each recorded query says UDP or TCP; `queries.for_name` takes the name as the
    application writes it; `queries.wait_for` returns once the code under test (another
    thread here) has asked, or raises TimeoutError saying what was asked instead."""
    result = run_user_tests(pytester, QUERY_LOG)
    result.assert_outcomes(passed=3)


def test_query_log_wait_in_async_tests(pytester):
    """`queries.wait_for_async` awaits in trio (pytest-trio) and asyncio code, letting the
    application's own task run meanwhile."""
    result = run_user_tests(pytester, ASYNC_WAIT, ini=INNER_INI + "trio_mode = true\n")
    result.assert_outcomes(passed=2)


# -- a session-scoped server, emptied between tests --------------------------------------------------

SESSION = '''
FIRST = {}


@pytest.fixture(scope="session")
def shared():
    with KdnsServer() as server:
        yield server


@pytest.fixture
def dns_server(shared):
    shared.clear()
    return shared


def test_first_uses_the_server(dns_server):
    web = dns_server.service("web", "shop")
    dns_server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "empty"}})
    dns_server.fail("api", namespace="shop")
    dns_server.upstream("127.0.0.1:1")  # nothing listens there: forwarded names get SERVFAIL
    assert ask(dns_server, "outside.test").rcode() == SERVFAIL
    FIRST.update(port=dns_server.port, ip=web.cluster_ip)


def test_second_gets_it_empty(dns_server):
    assert dns_server.port == FIRST["port"]
    assert dns_server.queries == [] and dns_server.faults == []
    assert ask(dns_server, "web.shop.svc.cluster.local").rcode() == NXDOMAIN
    assert ask(dns_server, "api.shop.svc.cluster.local").rcode() == NXDOMAIN  # no fault any more
    assert ask(dns_server, "1-2-3-4.empty.pod.cluster.local").rcode() == NXDOMAIN  # the Namespace is gone too
    assert ask(dns_server, "outside.test").rcode() != SERVFAIL  # not forwarded any more
    assert dns_server.service("web", "shop").cluster_ip == FIRST["ip"]  # addresses handed out afresh
'''


def test_clear_empties_a_session_scoped_server(pytester):
    """`clear()` between tests gives a server shared by a session the state of a fresh one:
    no objects, no faults, no forwarding, an empty query log, the same addresses handed out."""
    result = run_user_tests(pytester, SESSION)
    result.assert_outcomes(passed=2)


# -- fixture options ---------------------------------------------------------------------------------

OPTIONS = '''
@pytest.mark.kdns(zone="corp.internal", ttl=30, namespace="shop")
def test_marker_options(kdns_server):
    web = kdns_server.service("web", "shop")
    assert web.fqdn == "web.shop.svc.corp.internal"
    reply = ask(kdns_server, web.fqdn)
    assert [(rrset.ttl, rd.address) for rrset in reply.answer for rd in rrset] == [(30, web.cluster_ip)]
    with pod_resolver(kdns_server):
        assert socket.gethostbyname("web") == web.cluster_ip
    assert kdns_server.queries[-1].name == "web.shop.svc.corp.internal"


@pytest.mark.kdns(zone="outer.test")
class TestMarkersNest:
    @pytest.mark.kdns(ttl=7)
    def test_closest_wins_and_both_apply(self, kdns_server):
        web = kdns_server.service("web", "shop")
        reply = ask(kdns_server, web.fqdn)
        assert web.fqdn.endswith(".outer.test") and reply.answer[0].ttl == 7


def test_factory_with_options(kdns_server_factory):
    east = kdns_server_factory(zone="east.local")
    west = kdns_server_factory(zone="west.local", pods="disabled")
    assert east.port != west.port
    for server in (east, west):
        server.service("web", "shop")
    assert ask(east, "10-1-0-1.shop.pod.east.local").rcode() == NOERROR
    assert ask(west, "10-1-0-1.shop.pod.west.local").rcode() == NXDOMAIN
    assert ask(east, "web.shop.svc.west.local").rcode() != NOERROR


@pytest.mark.kdns("corp.internal")
def test_positional_marker_arguments_are_refused(kdns_server):
    pass
'''


def test_fixture_options_through_a_marker_or_the_factory(pytester):
    """`@pytest.mark.kdns(zone=..., ttl=..., pods=..., namespace=...)` sets the fixture's
    server options (the closest marker winning), `kdns_server_factory(**options)` starts
    servers with options of their own; the marker is registered (no unknown-mark warning,
    which the inner ini makes an error)."""
    result = run_user_tests(pytester, OPTIONS)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*TypeError: @pytest.mark.kdns takes keyword arguments only*"])


# -- the smaller ones (problem 7) -------------------------------------------------------------------

SMALLER = '''
import os


def test_service_info_fqdn_uses_the_zone():
    with KdnsServer(zone="corp.internal") as server:
        web = server.service("web", "shop")
        assert web.fqdn == "web.shop.svc.corp.internal"
        assert addresses(ask(server, web.fqdn)) == [web.cluster_ip]


def test_a_nested_pod_resolver_restores_the_outer_one(kdns_server):
    shop = kdns_server.service("web", "shop")
    billing = kdns_server.service("web", "billing")
    original = socket.getaddrinfo
    with pod_resolver(kdns_server, namespace="shop"):
        assert socket.gethostbyname("web") == shop.cluster_ip
        with pod_resolver(kdns_server, namespace="billing"):
            assert socket.gethostbyname("web") == billing.cluster_ip
        assert socket.gethostbyname("web") == shop.cluster_ip
        assert socket.getaddrinfo("web", 80)[0][4] == (shop.cluster_ip, 80)
    assert socket.getaddrinfo is original


def test_loading_a_path_that_does_not_exist(kdns_server):
    with pytest.raises(FileNotFoundError, match="k8s/nope.yaml"):
        kdns_server.load("k8s/nope.yaml")


def test_load_reads_files_as_kdns_serve_does(kdns_server, tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        kdns_server.load(fifo)  # refused, not waited on for ever
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    bomb.write_text("\\n".join(lines) + "\\n")
    with pytest.raises(ValueError, match="bomb.yaml: .*too big"):
        kdns_server.load(bomb)
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Service\\nmetadata: {name: [\\n")
    with pytest.raises(ValueError, match="broken.yaml"):
        kdns_server.load(str(broken))
'''


def test_the_smaller_problems(pytester):
    """`ServiceInfo.fqdn` uses the server's zone; a nested `pod_resolver` gives the outer one
    back; `.load()` of a path that does not exist is a FileNotFoundError (not YAML text),
    and files are read with kdns's bounds (a FIFO and an alias bomb are refused, naming the
    file)."""
    result = run_user_tests(pytester, SMALLER)
    result.assert_outcomes(passed=4)


# -- stopping fast -----------------------------------------------------------------------------------

KDNS = [sys.executable, "-m", "kdns"]


def serve(*args: str) -> tuple[subprocess.Popen, KdnsProcess, int]:
    proc = subprocess.Popen([*KDNS, "serve", "--manifests", "config/demo-cluster.yaml", "--listen", "127.0.0.1:0",
                             "--print-address", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    process = KdnsProcess(proc)
    host, port = process.wait_address()
    assert host == "127.0.0.1", (host, process.lines)
    return proc, process, port


def answers(port: int) -> bool:
    query = dns.message.make_query("web.shop.svc.cluster.local", "A")
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=2).rcode() == dns.rcode.NOERROR


def test_print_address_means_no_lameduck():
    """`kdns serve --print-address` (a server started by a test) stops at once on SIGTERM: its
    lameduck period is 0 when neither --lameduck nor a config file gives one."""
    proc, process, port = serve()
    try:
        assert answers(port)
        proc.send_signal(signal.SIGTERM)
        process.wait_for(r"SIGTERM received, shutting down after a 0s lameduck period", timeout=10)
        assert process.wait_exit(10) == 0
    finally:
        process.close()
        proc.stdout.close()


@pytest.mark.parametrize("source", ["flag", "config file"])
def test_an_explicit_lameduck_is_kept(tmp_path, source):
    """--lameduck given (as a flag, or in the config file) is honoured with --print-address
    too: after SIGTERM kdns goes on answering; SIGINT then stops it."""
    args = ["--lameduck", "60"]
    if source == "config file":
        (tmp_path / "kdns.yaml").write_text("lameduck: 60\n")
        args = ["--config", str(tmp_path / "kdns.yaml")]
    proc, process, port = serve(*args)
    try:
        proc.send_signal(signal.SIGTERM)
        process.wait_for(r"shutting down after a 60s lameduck period", timeout=10)
        assert answers(port) and proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert process.wait_exit(10) == 0
    finally:
        process.close()
        proc.stdout.close()


def test_stop_does_not_wait_for_late_answers():
    """`KdnsServer.stop()` while a client waits for a 60 s delayed answer returns at once
    with the server closed (nothing in flight holds it)."""
    server = KdnsServer().start()
    web = server.service("web", "shop")
    late = server.delay(web.fqdn, 60)
    query = dns.message.make_query(web.fqdn, "A")
    client = threading.Thread(target=_ask_expecting_no_answer, args=(query, server.port), daemon=True)
    client.start()
    for _ in range(1000):  # until the query has arrived (at most 10 s)
        if late.hits:
            break
        time.sleep(0.01)
    assert late.hits == 1
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    client.join(10)


def _ask_expecting_no_answer(query: dns.message.Message, port: int) -> None:
    with contextlib.suppress(dns.exception.Timeout):
        dns.query.udp(query, "127.0.0.1", port=port, timeout=3)
