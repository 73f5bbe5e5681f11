"""CoreDNS's forward options in kdns (issue 17): the order upstreams are asked in (policy),
the transport, when an upstream is down (max_fails) and how it is probed (health_check),
stub domains with options of their own, and `except` zones.

Over real sockets: kdns in the test's trio loop, its upstreams `StubDNS` servers that record
each query (name, type, UDP or TCP, RD). Counts, never durations, are asserted; every wait
is bounded (`wait_until`). Health probes are made frequent (--upstream-health-check 0.05) so
nothing waits long for them.
"""

from __future__ import annotations

import textwrap

import dns.rcode
import pytest
import trio

from testkit.corefile import serve_corefile, synced
from testkit.kubeapi import KubeAPI
from testkit.repo import DEMO
from testkit.stubdns import StubDNS

WAIT = 5.0


@pytest.fixture
def stub(nursery):
    async def start(*zone_lines: str, **behaviour) -> StubDNS:
        server = StubDNS(*zone_lines)
        for attribute, value in behaviour.items():
            setattr(server, attribute, value)
        await nursery.start(server.serve)
        return server

    return start


@pytest.fixture
def api():
    server = KubeAPI().start()
    yield server
    server.stop()


def many(prefix: str, ip_prefix: str, n: int = 40) -> list[str]:
    return [f"{prefix}{i}.example.org. 300 IN A {ip_prefix}.{i}" for i in range(n)]


def lookups(server: StubDNS, proto: str | None = None) -> int:
    """Queries other than health probes (`<domain> NS`) and kdns's start-up loop check."""
    return sum(1 for q in server.queries if q.type != "NS" and "kdns-loop-check" not in q.name.lower()
               and proto in (None, q.proto))


def probes(server: StubDNS, name: str = ".") -> list:
    return [q for q in server.queries if q.type == "NS" and q.name.lower() == name]


def addresses(reply) -> set[str]:
    return {rd.to_text() for rrset in reply.answer for rd in rrset}


async def wait_until(condition, timeout: float = WAIT, step: float = 0.02) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(step)


def flags(*stubs: StubDNS, **options) -> list[str]:
    args = [arg for s in stubs for arg in ("--upstream", s.address)]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return args


# -- policy --------------------------------------------------------------------------------


async def test_sequential_sends_every_question_to_the_first(kdns, stub):
    a, b = await stub(*many("s", "127.0.1")), await stub(*many("s", "127.0.1"))
    kd = await kdns(DEMO, args=flags(a, b, upstream_policy="sequential"))
    for i in range(8):
        assert addresses(await kd.query(f"s{i}.example.org")) == {f"127.0.1.{i}"}
    assert (lookups(a), lookups(b)) == (8, 0)


async def test_round_robin_sends_successive_questions_to_successive_upstreams(kdns, stub):
    ups = [await stub(*many("r", "127.0.2")) for _ in range(3)]
    kd = await kdns(DEMO, args=flags(*ups, upstream_policy="round_robin"))
    seen = []
    for i in range(9):
        before = [lookups(u) for u in ups]
        assert addresses(await kd.query(f"r{i}.example.org")) == {f"127.0.2.{i}"}
        seen.append(next(n for n, u in enumerate(ups) if lookups(u) > before[n]))
    assert [lookups(u) for u in ups] == [3, 3, 3]
    assert all(seen[i + 1] == (seen[i] + 1) % 3 for i in range(8)), seen


async def test_random_spreads_questions(kdns, stub):
    """The default: each question a fresh random order (40 questions all to one of two
    upstreams would happen once in 2**39 runs)."""
    a, b = await stub(*many("x", "127.0.3")), await stub(*many("x", "127.0.3"))
    kd = await kdns(DEMO, args=flags(a, b))
    for i in range(40):
        await kd.query(f"x{i}.example.org")
    assert lookups(a) + lookups(b) == 40 and lookups(a) and lookups(b)


# -- transport -----------------------------------------------------------------------------


@pytest.mark.parametrize(("transport", "over_udp", "over_tcp"), [
    ("udp", "udp", "udp"),  # kdns's default and CoreDNS's prefer_udp
    ("client", "udp", "tcp"),  # CoreDNS's default: the client's transport
    ("tcp", "tcp", "tcp"),  # CoreDNS's force_tcp
])
async def test_transport(kdns, stub, transport, over_udp, over_tcp):
    up = await stub("u.example.org. 300 IN A 127.0.4.1", "t.example.org. 300 IN A 127.0.4.2")
    kd = await kdns(DEMO, args=flags(up, upstream_transport=transport))
    assert addresses(await kd.query("u.example.org")) == {"127.0.4.1"}
    assert addresses(await kd.query("t.example.org", tcp=True)) == {"127.0.4.2"}
    assert [q.proto for q in up.queries if q.name.startswith("u.")] == [over_udp]
    assert [q.proto for q in up.queries if q.name.startswith("t.")] == [over_tcp]


# -- max_fails and health checks ------------------------------------------------------------


async def test_max_fails_one_marks_down_at_once_and_the_probe_brings_it_back(kdns, stub):
    """Sequential, max_fails 1: the first upstream stops; one failed question marks it down
    (the next ones go straight to the second); probes with the configured domain, without RD,
    reach it once it listens again, and then it takes the questions again."""
    a, b = await stub(*many("h", "127.0.5")), await stub(*many("h", "127.0.5"))
    kd = await kdns(DEMO, args=flags(a, b, upstream_policy="sequential", upstream_max_fails=1, upstream_health_check=0.05,
                                     upstream_health_domain="probe.example", no_upstream_health_recursion=True))
    assert addresses(await kd.query("h0.example.org")) == {"127.0.5.0"} and lookups(a) == 1
    a.stop()
    for i in range(1, 6):
        assert addresses(await kd.query(f"h{i}.example.org")) == {f"127.0.5.{i}"}
    assert lookups(b) == 5
    state = kd.server.forwarder.upstreams[0]
    assert not state.healthy  # down after one failure: the other four went straight to b
    a.restart()
    await wait_until(lambda: probes(a, "probe.example."))
    assert not any(q.rd for q in probes(a, "probe.example.")) and not probes(a, ".")
    await wait_until(lambda: state.healthy)
    assert addresses(await kd.query("h6.example.org")) == {"127.0.5.6"}
    assert (lookups(a), lookups(b)) == (2, 5)


async def test_max_fails_zero_never_marks_an_upstream_down(kdns, stub):
    """max_fails 0: however often the first upstream fails, it stays first in line: no probe,
    and the question after it comes back goes to it."""
    a, b = await stub(*many("z", "127.0.6")), await stub(*many("z", "127.0.6"))
    kd = await kdns(DEMO, args=flags(a, b, upstream_policy="sequential", upstream_max_fails=0, upstream_health_check=0.05))
    a.stop()
    for i in range(6):
        assert addresses(await kd.query(f"z{i}.example.org")) == {f"127.0.6.{i}"}
    assert lookups(b) == 6 and kd.server.forwarder.upstreams[0].healthy
    a.restart()
    assert addresses(await kd.query("z6.example.org")) == {"127.0.6.6"}
    assert (lookups(a), lookups(b)) == (1, 6) and not probes(a)


async def test_default_max_fails_is_two(kdns, stub):
    a, b = await stub(*many("d", "127.0.7")), await stub(*many("d", "127.0.7"))
    kd = await kdns(DEMO, args=flags(a, b, upstream_policy="sequential", upstream_health_check=0.05))
    a.stop()
    state = kd.server.forwarder.upstreams[0]
    await kd.query("d0.example.org")
    assert state.healthy  # one failure: still healthy
    await kd.query("d1.example.org")
    assert not state.healthy  # two in a row: down


# -- stub domains with options of their own, except ----------------------------------------


async def test_stub_domain_options_are_its_own(kdns, stub):
    """The default group round-robins over UDP; the stub domain's entries say sequential over
    TCP: each group follows its own."""
    d1, d2 = await stub(*many("o", "127.0.8")), await stub(*many("o", "127.0.8"))
    s1 = await stub(*[f"c{i}.corp.example. 300 IN A 127.0.9.{i}" for i in range(6)])
    s2 = await stub(*[f"c{i}.corp.example. 300 IN A 127.0.9.{i}" for i in range(6)])
    items = ",policy=sequential,transport=tcp"
    kd = await kdns(DEMO, args=[*flags(d1, d2, upstream_policy="round_robin"), "--stub-domain", f"corp.example={s1.address}{items}",
                                "--stub-domain", f"corp.example={s2.address}{items}"])
    for i in range(6):
        assert addresses(await kd.query(f"o{i}.example.org")) == {f"127.0.8.{i}"}
        assert addresses(await kd.query(f"c{i}.corp.example")) == {f"127.0.9.{i}"}
    assert (lookups(d1, "udp"), lookups(d2, "udp")) == (3, 3)
    assert (lookups(s1, "tcp"), lookups(s1), lookups(s2)) == (6, 6, 0)


async def test_upstream_except_is_servfail_and_forwards_nothing(kdns, stub):
    up = await stub("a.internal.example. 300 IN A 127.0.10.1", "ok.example.org. 300 IN A 127.0.10.2",
                    "a.deeper.internal.example. 300 IN A 127.0.10.3")
    deeper = await stub("a.deeper.internal.example. 300 IN A 127.0.10.4")
    kd = await kdns(DEMO, args=[*flags(up), "--upstream-except", "internal.example",
                                "--stub-domain", f"deeper.internal.example={deeper.address}"])
    assert (await kd.query("a.internal.example")).rcode() == dns.rcode.SERVFAIL
    assert (await kd.query("internal.example", "NS", tcp=True)).rcode() == dns.rcode.SERVFAIL
    assert addresses(await kd.query("ok.example.org")) == {"127.0.10.2"}
    assert addresses(await kd.query("a.deeper.internal.example")) == {"127.0.10.4"}  # a deeper stub domain still takes its names
    assert up.count("a.internal.example") == 0 and up.count("internal.example") == 0 and up.count("a.deeper.internal.example") == 0


# -- from a Corefile -------------------------------------------------------------------------


def corefile(tmp_path, api: KubeAPI, body: str) -> str:
    path = tmp_path / "Corefile"
    path.write_text(textwrap.dedent(f"""\
        .:0 {{
            bind 127.0.0.1
            kubernetes cluster.local {{
                endpoint {api.url}
            }}
        {textwrap.indent(textwrap.dedent(body), "    ")}
        }}
        """))
    return str(path)


async def test_corefile_forward_options_served(nursery, stub, api, tmp_path):
    """`forward . A B { policy sequential; max_fails 1; force_tcp }`: A takes every question,
    over TCP only; once A stops, one failure marks it down and B takes them, over TCP; A is
    probed (over TCP, '. NS' with RD) until it listens again, then takes them back."""
    a, b = await stub(*many("f", "127.0.11")), await stub(*many("f", "127.0.11"))
    path = corefile(tmp_path, api, f"""\
        forward . {a.address} {b.address} {{
            policy sequential
            max_fails 1
            force_tcp
            health_check 50ms
        }}
        """)
    kd = await synced(await serve_corefile(nursery, path))
    for i in range(4):
        assert addresses(await kd.query(f"f{i}.example.org")) == {f"127.0.11.{i}"}
    assert (lookups(a, "tcp"), lookups(a, "udp"), lookups(b)) == (4, 0, 0)
    a.stop()
    for i in range(4, 8):
        assert addresses(await kd.query(f"f{i}.example.org")) == {f"127.0.11.{i}"}
    assert (lookups(b, "tcp"), lookups(b, "udp")) == (4, 0)
    a.restart()
    await wait_until(lambda: probes(a))
    assert all(q.proto == "tcp" and q.rd for q in probes(a))
    state = kd.server.forwarder.upstreams[0]
    await wait_until(lambda: state.healthy)
    assert addresses(await kd.query("f8.example.org")) == {"127.0.11.8"}
    assert (lookups(a, "tcp"), lookups(b)) == (5, 4)


async def test_corefile_except_and_several_forwards(nursery, stub, api, tmp_path):
    """Each forward line keeps its options; an except zone goes to the next forward of the
    block, and one nobody takes is SERVFAIL, as in CoreDNS (the hosts plugin, ahead of
    forward, still answers its own names there)."""
    main = await stub(*many("m", "127.0.12"), "x.nowhere.example. 300 IN A 127.0.12.99")
    corp1 = await stub(*[f"c{i}.corp.example. 300 IN A 127.0.13.{i}" for i in range(4)])
    corp2 = await stub(*[f"c{i}.corp.example. 300 IN A 127.0.13.{i}" for i in range(4)])
    legacy = await stub("db.legacy.corp.example. 300 IN A 127.0.14.1")
    path = corefile(tmp_path, api, f"""\
        forward corp.example {corp1.address} {corp2.address} {{
            policy round_robin
            except legacy.corp.example
        }}
        hosts {{
            127.0.15.1 db.nowhere.example
            fallthrough
        }}
        forward . {main.address} {{
            except nowhere.example
        }}
        forward legacy.corp.example {legacy.address}
        """)
    kd = await synced(await serve_corefile(nursery, path))
    for i in range(4):
        assert addresses(await kd.query(f"c{i}.corp.example")) == {f"127.0.13.{i}"}
    assert (lookups(corp1), lookups(corp2)) == (2, 2)  # round_robin in the stub group
    # legacy.corp.example: excepted by the corp forward; the next forward of the block that
    # matches is `forward .`, as CoreDNS hands it on.
    reply = await kd.query("db.legacy.corp.example")
    assert reply.rcode() == dns.rcode.NXDOMAIN and main.count("db.legacy.corp.example") == 1 and not lookups(legacy)
    assert (await kd.query("x.nowhere.example")).rcode() == dns.rcode.SERVFAIL
    assert main.count("x.nowhere.example") == 0
    assert addresses(await kd.query("db.nowhere.example")) == {"127.0.15.1"}  # hosts answers ahead of forward, as in CoreDNS
    assert addresses(await kd.query("m1.example.org")) == {"127.0.12.1"}
    # No prefer_udp nor force_tcp: CoreDNS asks over the client's transport.
    assert addresses(await kd.query("m2.example.org", tcp=True)) == {"127.0.12.2"}
    assert [q.proto for q in main.queries if q.name.startswith(("m1.", "m2."))] == ["udp", "tcp"]


# -- an except zone handed on to the `.` forward (--upstream-default) ------------------------


async def test_upstream_default_takes_names_back_from_a_stub_domain(kdns, stub):
    """--upstream-default open.corp.example: those names go to the default upstreams although
    corp.example is a stub domain; a deeper stub domain still takes its own."""
    default = await stub("a.open.corp.example. 300 IN A 127.0.16.1", "x.example.org. 300 IN A 127.0.16.2")
    corp = await stub("a.open.corp.example. 300 IN A 127.0.17.1", "db.corp.example. 300 IN A 127.0.17.2")
    deep = await stub("a.deep.open.corp.example. 300 IN A 127.0.18.1")
    kd = await kdns(DEMO, args=[*flags(default), "--stub-domain", f"corp.example={corp.address}",
                                "--upstream-default", "open.corp.example",
                                "--stub-domain", f"deep.open.corp.example={deep.address}"])
    assert addresses(await kd.query("a.open.corp.example")) == {"127.0.16.1"}
    assert addresses(await kd.query("db.corp.example")) == {"127.0.17.2"}
    assert addresses(await kd.query("a.deep.open.corp.example")) == {"127.0.18.1"}
    assert (default.count("a.open.corp.example"), corp.count("a.open.corp.example")) == (1, 0)


@pytest.fixture
def port_53_at_156():
    """Skip unless a server can listen on port 53 of 127.0.0.156 (root, the port free):
    resolv.conf's nameserver lines have no port numbers."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.156", 53))
            tcp.bind(("127.0.0.156", 53))
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.156:53: {exc.strerror}")


async def test_corefile_except_handed_to_a_resolv_conf_forward(nursery, stub, api, tmp_path, port_53_at_156):
    """`forward corp.example A { except open.corp.example }` then `forward . RESOLV.CONF`:
    CoreDNS sends open.corp.example's names to resolv.conf's nameservers, and so does kdns;
    the rest of corp.example goes to A."""
    default = await stub("a.open.corp.example. 300 IN A 127.0.19.1", "x.example.org. 300 IN A 127.0.19.2",
                         host="127.0.0.156", port=53)
    corp = await stub("a.open.corp.example. 300 IN A 127.0.20.1", "db.corp.example. 300 IN A 127.0.20.2")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search svc.cluster.local\nnameserver 127.0.0.156\n")
    path = corefile(tmp_path, api, f"""\
        forward corp.example {corp.address} {{
            except open.corp.example
        }}
        forward . {resolv}
        """)
    kd = await synced(await serve_corefile(nursery, path))
    assert addresses(await kd.query("a.open.corp.example")) == {"127.0.19.1"}
    assert addresses(await kd.query("db.corp.example")) == {"127.0.20.2"}
    assert addresses(await kd.query("x.example.org")) == {"127.0.19.2"}
    assert (default.count("a.open.corp.example"), corp.count("a.open.corp.example")) == (1, 0)
