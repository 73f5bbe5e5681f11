"""Forwarding, the cache of forwarded answers, and search-path lookups (issue 3).

Every behaviour is shown through DNS queries (dnspython) to a real kdns on loopback, whose
upstreams are `StubDNS` servers (testkit/stubdns.py) in the same trio loop: they count the
queries they get, and can be slow, fail, truncate, send decoys or go away.

Note: kdns checks its upstreams for loops while it starts (a HINFO query for
`<random>.kdns-loop-check.`), and the stubs see that query too (answered late: the check
blocks the shared loop for its 0.5 s timeout). Counts here are per name, or leave out that
query and the health probes (`lookups`).
"""

from __future__ import annotations

import socket
import struct
import sys
import textwrap

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import trio

from testkit.clock import ManualClock
from testkit.dnswire import rrs
from testkit.repo import DEMO, ROOT, write
from testkit.stubdns import BOGUS, StubDNS

CL = "cluster.local."
WAIT = 5.0  # bound for every wait on something kdns does in the background


@pytest.fixture
def stub(nursery):
    """Start a StubDNS: `await stub(*zone_lines, mode=..., delay=...)`."""

    async def start(*zone_lines: str, **behaviour) -> StubDNS:
        server = StubDNS(*zone_lines)
        for attribute, value in behaviour.items():
            setattr(server, attribute, value)
        await nursery.start(server.serve)
        return server

    return start


def upstreams(*stubs: StubDNS, **options) -> list[str]:
    """kdns arguments: `--upstream` per stub, then `--option value` per keyword."""
    args = [arg for s in stubs for arg in ("--upstream", s.address)]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def addresses(reply: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in reply.answer if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for rd in rrset}


def ttls(reply: dns.message.Message, section: str = "answer") -> set[int]:
    return {rrset.ttl for rrset in getattr(reply, section)}


def lookups(server: StubDNS) -> int:
    """Queries other than kdns's health probes (`. NS`) and its start-up loop check."""
    return sum(1 for q in server.queries if q.name != "." and "kdns-loop-check" not in q.name.lower())


def many(prefix: str, ip_prefix: str, n: int = 60) -> list[str]:
    """`n` names `<prefix>0.example.org` ... each with one A record `<ip_prefix>.<i>`."""
    return [f"{prefix}{i}.example.org. 300 IN A {ip_prefix}.{i}" for i in range(n)]


async def wait_until(condition, timeout: float = WAIT, step: float = 0.02) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(step)


# -- forwarding and the cache -------------------------------------------------------------


async def test_forwarded_then_cached_with_ttl_counting_down(kdns, stub):
    """A name outside the zones is answered by the upstream (RA set, AA not, question echoed
    as the client spelled it); the second lookup, spelled differently, comes from the cache
    (the upstream sees nothing) with TTLs capped by --cache-ttl and counted down."""
    up = await stub("example.org. 300 IN A 127.0.0.11", "example.org. 300 IN A 127.0.0.12")
    cache_clock = ManualClock()
    kd = await kdns(DEMO, args=upstreams(up, cache_ttl=10), clock=cache_clock)

    first = await kd.query("ExAmPlE.oRg", "A")
    assert first.rcode() == dns.rcode.NOERROR
    assert addresses(first) == {"127.0.0.11", "127.0.0.12"}
    assert ttls(first) == {10}  # 300 capped by --cache-ttl
    assert first.flags & dns.flags.RA and not first.flags & dns.flags.AA
    assert first.question[0].name.to_text() == "ExAmPlE.oRg."
    assert [q.name for q in up.queries if "example.org" in q.name.lower()] == ["ExAmPlE.oRg."]  # asked as spelled

    cache_clock.advance(1.1)
    second = await kd.query("example.ORG", "A")
    assert up.count("example.org") == 1  # from the cache
    assert second.rcode() == dns.rcode.NOERROR and addresses(second) == {"127.0.0.11", "127.0.0.12"}
    assert ttls(second) == {9}
    assert second.question[0].name.to_text() == "example.ORG."
    assert second.flags & dns.flags.RA and not second.flags & dns.flags.AA


async def test_cache_key_has_type_and_do_bit(kdns, stub):
    """A and AAAA, and queries with and without the DO bit, are cached separately: each
    combination reaches the upstream once, then each is served from the cache."""
    up = await stub("dual.example.org. 300 IN A 127.0.0.21", "dual.example.org. 300 IN AAAA ::1")
    kd = await kdns(DEMO, args=upstreams(up))
    variants = [("A", False), ("AAAA", False), ("A", True), ("AAAA", True)]
    for round_ in range(2):
        for qtype, do in variants:
            reply = await kd.query("dual.example.org", qtype, want_dnssec=do)
            assert reply.rcode() == dns.rcode.NOERROR
            assert addresses(reply) == ({"127.0.0.21"} if qtype == "A" else {"::1"})
            assert bool(reply.ednsflags & dns.flags.DO) == do
        assert up.count("dual.example.org", "A") == 2 and up.count("dual.example.org", "AAAA") == 2, round_


@pytest.mark.parametrize(
    "negative_ttl, cache_ttl",
    [(1, 30), (60, 1)],
    ids=["soa-minimum", "capped-by-cache-ttl"],
)
async def test_negative_answers_cached_per_soa_minimum(kdns, stub, negative_ttl, cache_ttl):
    """NXDOMAIN and NODATA from upstream are cached for the SOA minimum (RFC 2308), capped by
    --cache-ttl: repeated at once they come from the cache with that TTL on the SOA; after
    it they are asked again."""
    up = await stub("only-a.example.org. 300 IN A 127.0.0.31", negative_ttl=negative_ttl)
    cache_clock = ManualClock()
    kd = await kdns(DEMO, args=upstreams(up, cache_ttl=cache_ttl), clock=cache_clock)
    cases = [("nx.example.org", "A", dns.rcode.NXDOMAIN), ("only-a.example.org", "AAAA", dns.rcode.NOERROR)]
    for _ in range(2):
        for name, qtype, rcode in cases:
            reply = await kd.query(name, qtype)
            assert reply.rcode() == rcode and not reply.answer
            assert [r.rdtype for r in reply.authority] == [dns.rdatatype.SOA]
            assert ttls(reply, "authority") == {1}
    assert up.count("nx.example.org", "A") == 1 and up.count("only-a.example.org", "AAAA") == 1
    cache_clock.advance(1.2)
    for name, qtype, rcode in cases:
        assert (await kd.query(name, qtype)).rcode() == rcode
    assert up.count("nx.example.org", "A") == 2 and up.count("only-a.example.org", "AAAA") == 2


async def test_servfail_from_upstream_is_not_cached(kdns, stub):
    """An upstream's SERVFAIL reaches the client as SERVFAIL but is not cached: once the
    upstream recovers, the next query gets the real answer."""
    up = await stub("flaky.example.org. 300 IN A 127.0.0.41", mode="servfail")
    kd = await kdns(DEMO, args=upstreams(up))
    assert (await kd.query("flaky.example.org")).rcode() == dns.rcode.SERVFAIL
    up.mode = "ok"
    reply = await kd.query("flaky.example.org")
    assert reply.rcode() == dns.rcode.NOERROR and addresses(reply) == {"127.0.0.41"}
    assert up.count("flaky.example.org") == 2


async def test_truncated_upstream_reply_is_not_cached(kdns, stub):
    """A reply that is truncated even over TCP is passed on but never cached: the same
    question asked again goes upstream again (over UDP, then TCP)."""
    up = await stub("part.example.org. 300 IN A 127.0.0.51", "part.example.org. 300 IN A 127.0.0.52", mode="truncate-all")
    kd = await kdns(DEMO, args=upstreams(up))
    for _ in range(2):
        reply = await kd.query("part.example.org", tcp=True)
        assert reply.flags & dns.flags.TC, "a part must not pass for the whole answer"
    assert up.count("part.example.org", proto="udp") == 2 and up.count("part.example.org", proto="tcp") == 2


async def test_upstream_truncation_retried_over_tcp(kdns, stub):
    """When the upstream's UDP reply has TC, kdns asks again over TCP: the client gets the
    full answer over UDP when it fits its EDNS size, TC without EDNS (512 bytes), and the full
    answer over TCP; the full answer is what gets cached."""
    lines = [f"big.example.org. 300 IN A 127.0.1.{i}" for i in range(1, 31)]  # ~900 bytes
    up = await stub(*lines, mode="truncate")
    kd = await kdns(DEMO, args=upstreams(up))
    full = {f"127.0.1.{i}" for i in range(1, 31)}

    reply = await kd.query("big.example.org", use_edns=0, payload=1232)
    assert reply.rcode() == dns.rcode.NOERROR and not reply.flags & dns.flags.TC
    assert addresses(reply) == full
    assert up.count("big.example.org", proto="udp") == 1 and up.count("big.example.org", proto="tcp") == 1

    small = await kd.query("big.example.org")  # no EDNS: does not fit 512 bytes
    assert small.flags & dns.flags.TC
    over_tcp = await kd.query("big.example.org", tcp=True)
    assert over_tcp.rcode() == dns.rcode.NOERROR and addresses(over_tcp) == full
    assert up.count("big.example.org") == 2  # both came from the cache


async def test_upstream_resetting_tcp_is_a_failure_not_a_crash(kdns, stub):
    """An upstream that sets TC over UDP and then resets the TCP connection (RST) is just a
    failing upstream: the client gets SERVFAIL and kdns goes on serving, cluster names and
    forwarded ones (once the upstream behaves)."""
    up = await stub("reset.example.org. 300 IN A 127.0.0.55", mode="reset")
    kd = await kdns(DEMO, args=upstreams(up))
    reply = await kd.query("reset.example.org")
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert up.count("reset.example.org", proto="tcp") == 1
    assert addresses(await kd.query("web.shop.svc.cluster.local")) == {"10.96.100.10"}
    up.mode = "ok"
    assert addresses(await kd.query("reset.example.org")) == {"127.0.0.55"}


async def test_decoy_datagrams_ignored(kdns, stub):
    """Datagrams that do not answer kdns's query (wrong ID; right ID but another question;
    right ID and question from another source port) are ignored: the client gets the real
    answer, from one upstream query."""
    up = await stub("real.example.org. 300 IN A 127.0.0.61", mode="decoy")
    kd = await kdns(DEMO, args=upstreams(up))
    reply = await kd.query("real.example.org")
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == {"127.0.0.61"} and BOGUS not in addresses(reply)
    assert up.count("real.example.org") == 1


async def raw_upstream(task_status=trio.TASK_STATUS_IGNORED) -> None:
    """An upstream that answers every query with one A record for the question, whose RDATA
    is 4 bytes for names starting `good` and 0 bytes (malformed) for the others."""
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        task_status.started(sock.getsockname()[1])
        while True:
            data, peer = await sock.recvfrom(65535)
            end = data.index(0, 12) + 5  # the question: name, type, class
            rdata = b"\x7f\x00\x00\x3e" if data[13:17] == b"good" else b""
            record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, len(rdata)) + rdata
            await sock.sendto(data[:2] + struct.pack("!5H", 0x8180, 1, 1, 0, 0) + data[12:end] + record, peer)


async def test_malformed_upstream_record_is_not_relayed(kdns, nursery):
    """An upstream reply with an A record of 0 bytes is not passed on (the client's parser
    would reject the whole reply): after the upstream timeout the client gets SERVFAIL; a
    well-formed reply from the same upstream is relayed."""
    port = await nursery.start(raw_upstream)
    kd = await kdns(DEMO, args=["--upstream", f"127.0.0.1:{port}", "--upstream-timeout", "0.3"])
    assert addresses(await kd.query("good.example.org")) == {"127.0.0.62"}
    reply = await kd.query("bad.example.org")  # dnspython raises if the reply is malformed
    assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer


async def test_cache_size_bounded_least_recently_used_evicted(kdns, stub):
    """With --cache-size 2, a third name evicts the least recently used entry: that one is
    asked upstream again, the other two are still cached."""
    up = await stub(*many("e", "127.0.0"))
    kd = await kdns(DEMO, args=upstreams(up, cache_size=2))
    for name in ("e1", "e2", "e1", "e3", "e1", "e2"):  # e3 evicts e2 (e1 was used since)
        assert addresses(await kd.query(f"{name}.example.org")) == {f"127.0.0.{name[1:]}"}
    assert [up.count(f"e{i}.example.org") for i in (1, 2, 3)] == [1, 2, 1]


async def test_identical_questions_in_flight_share_one_upstream_query(kdns, stub):
    """Ten clients asking the same uncached name at once, while the upstream is slow, cause
    one upstream query; all ten get the answer."""
    up = await stub("popular.example.org. 300 IN A 127.0.0.71", delay=0.3)
    kd = await kdns(DEMO, args=upstreams(up))
    replies = []

    async def ask():
        replies.append(await kd.query("popular.example.org"))

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(ask)
    assert len(replies) == 10
    assert all(r.rcode() == dns.rcode.NOERROR and addresses(r) == {"127.0.0.71"} for r in replies)
    assert up.count("popular.example.org") == 1


async def test_popular_entry_prefetched_before_expiry(kdns, stub):
    """An entry asked for at least twice is refreshed in the background once less than a
    tenth of its lifetime is left: with --cache-ttl 2, a hit 1.85 s after it was stored makes
    the upstream see a second query (the cache's clock stands still meanwhile: before the entry
    expires), and a query after the original expiry is still a cache hit."""
    up = await stub("hot.example.org. 300 IN A 127.0.0.81")
    cache_clock = ManualClock()
    kd = await kdns(DEMO, args=upstreams(up, cache_ttl=2), clock=cache_clock)
    await kd.query("hot.example.org")
    for _ in range(2):
        await kd.query("hot.example.org")  # two hits: popular
    assert up.count("hot.example.org") == 1

    cache_clock.advance(1.85)  # less than 0.2 s (a tenth of 2 s) left
    reply = await kd.query("hot.example.org")
    assert addresses(reply) == {"127.0.0.81"}
    await wait_until(lambda: up.count("hot.example.org") == 2)

    cache_clock.advance(0.45)  # the original entry has expired
    reply = await kd.query("hot.example.org")
    assert reply.rcode() == dns.rcode.NOERROR and addresses(reply) == {"127.0.0.81"}
    assert up.count("hot.example.org") == 2  # served from the refreshed entry


@pytest.fixture
def port_53():
    """Skip unless servers can listen on port 53 of 127.0.0.153 and 127.0.0.154 (root, and
    the ports free): resolv.conf has no port numbers."""
    for host in ("127.0.0.153", "127.0.0.154"):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
                udp.bind((host, 53))
                tcp.bind((host, 53))
        except OSError as exc:
            pytest.skip(f"cannot listen on {host}:53: {exc.strerror}")


async def test_resolv_conf_nameservers_are_the_upstreams(kdns, stub, tmp_path, port_53):
    """--resolv-conf PATH forwards to the nameserver lines of that file (port 53), ignoring
    the other lines."""
    up = await stub("example.org. 300 IN A 127.0.0.151", host="127.0.0.153", port=53)
    resolv = write(
        tmp_path / "resolv.conf",
        """
        # written by a test
        search default.svc.cluster.local svc.cluster.local cluster.local
        nameserver 127.0.0.153
        options ndots:5
        """,
    )
    kd = await kdns(DEMO, args=["--resolv-conf", str(resolv)])
    reply = await kd.query("example.org")
    assert reply.rcode() == dns.rcode.NOERROR and addresses(reply) == {"127.0.0.151"}
    assert up.count("example.org") == 1


# -- failover, health, serve-stale ---------------------------------------------------------


@pytest.mark.parametrize("failure", ["drop", "servfail", "refused"])
async def test_failover_to_the_next_upstream(kdns, stub, failure):
    """When the upstream asked first drops the query, says SERVFAIL or says REFUSED, the next
    upstream answers: every client gets the good upstream's records."""
    bad = await stub(*many("f", "127.0.2"), mode=failure)
    good = await stub(*many("f", "127.0.3"))
    kd = await kdns(DEMO, args=upstreams(bad, good, upstream_timeout=0.3))
    for i in range(30):
        reply = await kd.query(f"f{i}.example.org")
        assert reply.rcode() == dns.rcode.NOERROR and addresses(reply) == {f"127.0.3.{i}"}
        if lookups(bad):
            break
    assert lookups(bad) >= 1, "the failing upstream was never asked first"


async def test_unhealthy_upstream_skipped_until_probe_succeeds(kdns, stub):
    """An upstream that failed twice (timeouts) gets no more queries, only `. NS` health
    probes; once it answers a probe it gets queries again."""
    bad = await stub(*many("h", "127.0.4"), mode="drop")
    good = await stub(*many("h", "127.0.5"))
    kd = await kdns(DEMO, args=upstreams(bad, good, upstream_timeout=0.2))
    i = 0
    while lookups(bad) < 2:
        assert i < 40, "the dropping upstream was not asked first twice in 40 queries"
        reply = await kd.query(f"h{i}.example.org")
        assert addresses(reply) == {f"127.0.5.{i}"}
        i += 1

    asked = lookups(bad)
    for _ in range(10):
        reply = await kd.query(f"h{i}.example.org")
        assert addresses(reply) == {f"127.0.5.{i}"}
        i += 1
    assert lookups(bad) == asked  # skipped

    bad.mode = "ok"
    recovered = trio.current_time()
    await wait_until(lambda: any(q.name == "." and q.type == "NS" and q.time > recovered for q in bad.queries))
    state = next(u for u in kd.server.forwarder.upstreams if u.port == bad.port)
    await wait_until(lambda: state.healthy)  # the probe's answer is in
    for _ in range(30):
        await kd.query(f"h{i}.example.org")
        i += 1
        if lookups(bad) > asked:
            break
    assert lookups(bad) > asked, "the recovered upstream got no queries"


async def test_stopped_upstream_fails_over_fast_and_comes_back(kdns, stub):
    """An upstream whose port refuses is passed over at once (no timeout wait); it is marked
    unhealthy, and after it comes back on the same port a health probe (`. NS`) reaches it and
    then queries do."""
    gone = await stub(*many("s", "127.0.6"))
    good = await stub(*many("s", "127.0.7"))
    kd = await kdns(DEMO, args=upstreams(gone, good, upstream_timeout=2))
    gone.stop()
    state = kd.server.forwarder.upstreams[0]
    assert state.port == gone.port
    i = 0
    while state.healthy:
        assert i < 40, "the stopped upstream never became unhealthy"
        start = trio.current_time()
        reply = await kd.query(f"s{i}.example.org")
        assert addresses(reply) == {f"127.0.7.{i}"}
        assert trio.current_time() - start < 1.0, "failover waited for a timeout"
        i += 1

    gone.restart()
    await wait_until(lambda: gone.count(".", "NS") >= 1)
    await wait_until(lambda: state.healthy)  # the probe's answer is in
    for _ in range(30):
        await kd.query(f"s{i}.example.org")
        i += 1
        if lookups(gone):
            break
    assert lookups(gone) >= 1, "the restarted upstream got no queries"


async def test_slow_upstream_times_out_and_the_other_answers(kdns, stub):
    """An upstream slower than --upstream-timeout is given up after the timeout and the
    other upstream's answer is served, well before the slow one would have answered."""
    slow = await stub(*many("t", "127.0.8"), delay=1.0)
    fast = await stub(*many("t", "127.0.9"))
    kd = await kdns(DEMO, args=upstreams(slow, fast, upstream_timeout=0.3))
    for i in range(30):
        start = trio.current_time()
        reply = await kd.query(f"t{i}.example.org")
        took = trio.current_time() - start
        assert reply.rcode() == dns.rcode.NOERROR and addresses(reply) == {f"127.0.9.{i}"}
        assert took < 0.9
        if lookups(slow):
            assert took >= 0.29  # it did wait for the slow one, for the timeout
            break
    assert lookups(slow) == 1


async def test_servfail_when_every_upstream_fails(kdns, stub):
    """With one upstream refusing and the other silent, and nothing cached, the client gets
    SERVFAIL (with RA) within the bounded tries."""
    gone = await stub()
    silent = await stub(mode="drop")
    kd = await kdns(DEMO, args=upstreams(gone, silent, upstream_timeout=0.3))
    gone.stop()
    start = trio.current_time()
    reply = await kd.query("nowhere.example.org")
    assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer
    assert reply.flags & dns.flags.RA
    assert trio.current_time() - start < 2.0
    assert silent.count("nowhere.example.org") == 1


@pytest.mark.parametrize("serve_stale", [None, 0], ids=["default", "disabled"])
async def test_serve_stale_when_upstreams_fail(kdns, stub, serve_stale):
    """An expired answer is served with TTL 30 when every upstream fails (RFC 8767);
    with --serve-stale 0 the client gets SERVFAIL instead."""
    up = await stub("old.example.org. 300 IN A 127.0.0.91")
    args = upstreams(up, cache_ttl=1) + ([] if serve_stale is None else ["--serve-stale", str(serve_stale)])
    cache_clock = ManualClock()
    kd = await kdns(DEMO, args=args, clock=cache_clock)
    fresh = await kd.query("old.example.org")
    assert addresses(fresh) == {"127.0.0.91"} and ttls(fresh) == {1}
    cache_clock.advance(1.2)
    up.stop()
    reply = await kd.query("old.example.org")
    if serve_stale is None:
        assert reply.rcode() == dns.rcode.NOERROR
        assert addresses(reply) == {"127.0.0.91"} and ttls(reply) == {30}
    else:
        assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer


# -- what goes upstream and where ---------------------------------------------------------


async def test_without_upstream_outside_names_refused(kdns):
    """Without --upstream or --stub-domain, names outside the zones get REFUSED."""
    kd = await kdns(DEMO)
    reply = await kd.query("example.org")
    assert reply.rcode() == dns.rcode.REFUSED and not reply.answer


async def test_stub_domain_alone(kdns, stub):
    """With only --stub-domain corp.example=..., names under corp.example (any case) go to
    that server; other outside names, including look-alike suffixes, are REFUSED."""
    corp = await stub("corp.example. 300 IN A 127.0.0.101", "intranet.corp.example. 300 IN A 127.0.0.102")
    kd = await kdns(DEMO, args=["--stub-domain", f"corp.example={corp.address}"])
    assert addresses(await kd.query("corp.example")) == {"127.0.0.101"}
    assert addresses(await kd.query("InTrAnEt.Corp.Example")) == {"127.0.0.102"}
    for name in ("example.org", "notcorp.example", "example"):
        assert (await kd.query(name)).rcode() == dns.rcode.REFUSED, name
    assert lookups(corp) == 2


async def test_stub_domain_and_upstream_route_by_domain(kdns, stub):
    """With both, names under the stub domain go only to its server and the rest only to
    the default upstream."""
    default = await stub("example.org. 300 IN A 127.0.0.111", "intranet.corp.example. 300 IN A 127.0.0.119")
    corp = await stub("intranet.corp.example. 300 IN A 127.0.0.112")
    kd = await kdns(DEMO, args=upstreams(default) + ["--stub-domain", f"corp.example.={corp.address}"])
    assert addresses(await kd.query("intranet.corp.example")) == {"127.0.0.112"}
    assert addresses(await kd.query("example.org")) == {"127.0.0.111"}
    assert corp.count("intranet.corp.example") == 1 and lookups(corp) == 1
    assert default.count("example.org") == 1 and lookups(default) == 1


async def test_stub_domain_alone_serves_externalnames_into_it(kdns, stub, tmp_path):
    """An ExternalName pointing into a stub domain is completed by that domain's server even
    without a default upstream."""
    corp = await stub("billing.corp.example. 300 IN A 127.0.0.103")
    manifest = write(tmp_path / "svc.yaml", """
        apiVersion: v1
        kind: Service
        metadata: {name: billing, namespace: shop}
        spec: {type: ExternalName, externalName: billing.corp.example}
    """)
    kd = await kdns(manifest, args=["--stub-domain", f"corp.example={corp.address}"])
    reply = await kd.query(f"billing.shop.svc.{CL}", "A")
    assert rrs(reply.answer) == {f"billing.shop.svc.{CL} 5 IN CNAME billing.corp.example.", "billing.corp.example. 30 IN A 127.0.0.103"}


async def test_zone_transfers_are_refused_not_forwarded(kdns, stub):
    up = await stub("example.org. 300 IN A 127.0.0.1")
    kd = await kdns(DEMO, args=upstreams(up))
    reply = await kd.query("example.org", "AXFR", tcp=True)
    assert reply.rcode() == dns.rcode.REFUSED
    assert lookups(up) == 0


async def test_cd_bit_is_part_of_the_cache_key(kdns, stub):
    """An answer fetched without DNSSEC checking (CD) is not given to a client that wants it checked."""
    up = await stub("example.org. 300 IN A 127.0.0.141")
    kd = await kdns(DEMO, args=upstreams(up))
    await kd.query("example.org", "A", flags=dns.flags.RD | dns.flags.CD)
    await kd.query("example.org", "A")
    await kd.query("example.org", "A", flags=dns.flags.RD | dns.flags.CD)
    assert up.count("example.org", "A") == 2


async def test_unknown_reverse_names_go_upstream(kdns, stub):
    """A PTR name kdns does not know is forwarded when there is an upstream; a ClusterIP's
    PTR is answered from the index (authoritative) without asking upstream."""
    up = await stub(
        "1.2.3.4.in-addr.arpa. 300 IN PTR host.example.org.",
        "10.100.96.10.in-addr.arpa. 300 IN PTR wrong.example.org.",
    )
    kd = await kdns(DEMO, args=upstreams(up))
    unknown = await kd.query("1.2.3.4.in-addr.arpa", "PTR")
    assert rrs(unknown.answer) == {"1.2.3.4.in-addr.arpa. 30 IN PTR host.example.org."}
    assert not unknown.flags & dns.flags.AA
    known = await kd.query("10.100.96.10.in-addr.arpa", "PTR")
    assert rrs(known.answer) == {f"10.100.96.10.in-addr.arpa. 5 IN PTR web.shop.svc.{CL}"}
    assert known.flags & dns.flags.AA
    assert up.count("1.2.3.4.in-addr.arpa") == 1 and up.count("10.100.96.10.in-addr.arpa") == 0


async def test_externalname_outside_target_resolved_upstream(kdns, stub):
    """An ExternalName whose target is outside the cluster: A gets the CNAME and the target's
    A records from upstream in one reply; CNAME gets just the CNAME, without asking upstream."""
    up = await stub("payments.example.com. 300 IN A 127.0.0.121", "payments.example.com. 300 IN A 127.0.0.122")
    kd = await kdns(DEMO, args=upstreams(up))
    reply = await kd.query("payments.shop.svc.cluster.local", "A")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer[0].rdtype == dns.rdatatype.CNAME
    assert rrs(reply.answer) == {
        f"payments.shop.svc.{CL} 5 IN CNAME payments.example.com.",
        "payments.example.com. 30 IN A 127.0.0.121",
        "payments.example.com. 30 IN A 127.0.0.122",
    }
    assert up.count("payments.example.com", "A") == 1

    cname = await kd.query("payments.shop.svc.cluster.local", "CNAME")
    assert rrs(cname.answer) == {f"payments.shop.svc.{CL} 5 IN CNAME payments.example.com."}
    assert up.count("payments.example.com") == 1


async def test_externalname_target_nxdomain_upstream(kdns, stub):
    """When the upstream says the ExternalName's target does not exist, the client gets the
    CNAME with NXDOMAIN (and the upstream's SOA)."""
    up = await stub()
    kd = await kdns(DEMO, args=upstreams(up))
    reply = await kd.query("payments.shop.svc.cluster.local", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert rrs(reply.answer) == {f"payments.shop.svc.{CL} 5 IN CNAME payments.example.com."}
    assert [r.rdtype for r in reply.authority] == [dns.rdatatype.SOA]
    assert up.count("payments.example.com", "A") == 1


async def test_search_path_names_nxdomain_without_upstream_hop(kdns, stub):
    """Names a pod's search list makes of an external name are NXDOMAIN from the index, with
    the cluster's SOA, and never reach the upstream."""
    up = await stub("example.org. 300 IN A 127.0.0.131")
    kd = await kdns(DEMO, args=upstreams(up))
    for name in ("example.org.default.svc.cluster.local", "example.org.svc.cluster.local", "example.org.cluster.local"):
        for qtype in ("A", "AAAA"):
            reply = await kd.query(name, qtype)
            assert reply.rcode() == dns.rcode.NXDOMAIN, (name, qtype)
            assert {r.name.to_text() for r in reply.authority} == {CL}
    assert lookups(up) == 0


async def test_cluster_names_never_come_from_the_cache(kdns, stub, tmp_path):
    """A Service added to the manifests resolves as soon as kdns reloads, although the same
    name was NXDOMAIN just before: cluster names come from the live index, never from the
    forward cache, and never from the upstream (which has a bogus record for it)."""
    manifest = write(
        tmp_path / "cluster.yaml",
        """
        apiVersion: v1
        kind: Namespace
        metadata: {name: team}
        """,
    )
    up = await stub(f"fresh.team.svc.{CL} 300 IN A {BOGUS}")
    kd = await kdns(manifest, args=upstreams(up))
    for _ in range(2):
        assert (await kd.query("fresh.team.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN
    manifest.write_text(
        manifest.read_text()
        + textwrap.dedent(
            """
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: fresh, namespace: team}
            spec: {clusterIP: 10.96.7.7, ports: [{port: 80}]}
            """
        )
    )
    with trio.fail_after(WAIT):
        while (reply := await kd.query("fresh.team.svc.cluster.local")).rcode() != dns.rcode.NOERROR:
            assert reply.rcode() == dns.rcode.NXDOMAIN
            await trio.sleep(0.05)
    assert addresses(reply) == {"10.96.7.7"}
    assert lookups(up) == 0


# -- loop detection -----------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` for UDP and TCP at this moment."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError(f"no port free for UDP and TCP on {host}")


async def run_kdns(*args: str) -> trio.Process:
    """`kdns serve` on the demo cluster as a subprocess; killed if it outlives the bound."""
    argv = [sys.executable, "-m", "kdns", "serve", "--manifests", "config/demo-cluster.yaml", *args]
    with trio.fail_after(20):  # on timeout trio kills the process
        return await trio.run_process(argv, cwd=ROOT, capture_stdout=True, capture_stderr=True, check=False)


async def test_upstream_that_is_kdns_itself_refused_at_start():
    """An upstream equal to kdns's own listen address is reported in one line, exit 1."""
    # (an address of its own: no client connection on 127.0.0.1 takes the port meanwhile)
    port = free_port("127.0.0.157")
    result = await run_kdns("--listen", f"127.0.0.157:{port}", "--upstream", f"127.0.0.157:{port}")
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 1, lines
    assert len(lines) == 1 and lines[0].startswith(f"kdns: error: upstream 127.0.0.157:{port} is kdns itself"), lines


async def test_resolv_conf_pointing_at_kdns_refused_at_start(tmp_path, port_53):
    """A --resolv-conf whose nameserver is kdns's own listen address is reported in one
    line, exit 1 (rather than forwarding to itself)."""
    resolv = write(tmp_path / "resolv.conf", "nameserver 127.0.0.154\n")
    result = await run_kdns("--listen", "127.0.0.154:53", "--resolv-conf", str(resolv))
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 1, lines
    assert len(lines) == 1 and lines[0].startswith("kdns: error: upstream 127.0.0.154:53 is kdns itself"), lines


async def test_upstream_that_loops_back_refused_at_start(nursery):
    """An upstream that sends kdns's queries back to kdns (a relay forwarding to kdns's
    port) is found at start: one line naming it and the loop, exit 1."""
    port = free_port()
    relay = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await relay.bind(("127.0.0.1", 0))
    relay_port = relay.getsockname()[1]
    onward = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await onward.connect(("127.0.0.1", port))
    relayed = []

    async def forward_queries():
        while True:
            data, client = await relay.recvfrom(65535)
            relayed.append(client)
            try:
                await onward.send(data)
            except OSError:
                pass

    async def relay_replies():
        while True:
            try:
                data = await onward.recv(65535)
            except OSError:  # refused: nothing listens on the port (yet)
                continue
            if relayed:
                await relay.sendto(data, relayed[-1])

    with relay, onward:
        nursery.start_soon(forward_queries)
        nursery.start_soon(relay_replies)
        result = await run_kdns("--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{relay_port}")
        nursery.cancel_scope.cancel()
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 1, lines
    assert relayed, "kdns never asked the relay"
    assert len(lines) == 1 and lines[0].startswith(f"kdns: error: upstream 127.0.0.1:{relay_port} "), lines
    assert "loop" in lines[0], lines


# -- autopath -----------------------------------------------------------------------------


def client_pods(*pods: str) -> str:
    """Pod manifests; each argument is `<namespace>/<name>[/hostNetwork]`, all at 127.0.0.1
    (where the tests' queries come from)."""
    docs = []
    for pod in pods:
        namespace, name, *flags = pod.split("/")
        docs.append(
            f"""
            apiVersion: v1
            kind: Pod
            metadata: {{name: {name}, namespace: {namespace}}}
            spec: {{hostNetwork: {str(bool(flags)).lower()}, containers: [{{name: c, image: busybox}}]}}
            status: {{podIP: 127.0.0.1, podIPs: [{{ip: 127.0.0.1}}]}}
            """
        )
    return "---".join(textwrap.dedent(d) for d in docs)


@pytest.fixture
async def autopath(kdns, stub, tmp_path):
    """kdns with --autopath, the demo cluster, and one Pod at 127.0.0.1 in `default`."""
    up = await stub("example.org. 300 IN A 127.0.0.141")
    pods = write(tmp_path / "pods.yaml", client_pods("default/client"))
    kd = await kdns(DEMO, pods, args=upstreams(up) + ["--autopath"])
    return kd, up, pods


async def test_autopath_external_name_in_one_query(autopath):
    """From a pod in `default`, `example.org.default.svc.cluster.local A` gets, in one reply,
    a CNAME to `example.org.` and the upstream's A record; the upstream is asked only for
    example.org."""
    kd, up, _ = autopath
    reply = await kd.query("example.org.default.svc.cluster.local", "A")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer[0].rdtype == dns.rdatatype.CNAME
    assert rrs(reply.answer) == {
        f"example.org.default.svc.{CL} 5 IN CNAME example.org.",
        "example.org. 30 IN A 127.0.0.141",
    }
    assert lookups(up) == 1 and up.count("example.org", "A") == 1


async def test_autopath_cluster_names(autopath):
    """Autopath through the rest of the search list: `web.shop` (tried as
    `web.shop.default.svc`) lands on `web.shop.svc.cluster.local`, and a full cluster name
    with the search suffix appended lands on itself; no upstream query."""
    kd, up, _ = autopath
    reply = await kd.query("web.shop.default.svc.cluster.local", "A")
    assert rrs(reply.answer) == {
        f"web.shop.default.svc.{CL} 5 IN CNAME web.shop.svc.{CL}",
        f"web.shop.svc.{CL} 5 IN A 10.96.100.10",
    }
    reply = await kd.query("kubernetes.default.svc.cluster.local.default.svc.cluster.local", "A")
    assert rrs(reply.answer) == {
        f"kubernetes.default.svc.{CL}default.svc.{CL} 5 IN CNAME kubernetes.default.svc.{CL}",
        f"kubernetes.default.svc.{CL} 5 IN A 10.96.0.1",
    }
    assert lookups(up) == 0


async def test_autopath_asks_upstream_for_the_clients_own_bytes(autopath):
    """A search-path name with bytes outside ASCII (UTF-8 `café`, and a 63-byte label of
    `é`s): the upstream is asked for the client's labels byte for byte (not re-encoded,
    which made the long label too long for DNS and stopped kdns), the pod gets the CNAME and
    the upstream's verdict, and kdns goes on serving."""
    kd, up, _ = autopath
    for label in ("café".encode(), "é".encode() * 31 + b"x"):
        name = dns.name.Name([label, b"default", b"svc", b"cluster", b"local", b""])
        reply = await kd.query(name, "A")
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert [(rr.name, rr.rdtype, rr[0].target) for rr in reply.answer] == [(name, dns.rdatatype.CNAME, dns.name.Name([label, b""]))]
        assert up.count(dns.name.Name([label, b""]).to_text(), "A") == 1
    assert rrs((await kd.query("web.shop.svc.cluster.local")).answer) == {f"web.shop.svc.{CL} 5 IN A 10.96.100.10"}


async def test_autopath_only_for_the_clients_namespace(autopath):
    """The search path of a pod in `default` does not contain `shop.svc`: a query shaped for
    another namespace is plain NXDOMAIN, with no upstream query."""
    kd, up, _ = autopath
    reply = await kd.query("example.org.shop.svc.cluster.local", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer
    assert lookups(up) == 0


async def test_no_autopath_without_the_flag(kdns, stub, tmp_path):
    """Without --autopath, the same client gets plain NXDOMAIN for a search-path name."""
    up = await stub("example.org. 300 IN A 127.0.0.141")
    pods = write(tmp_path / "pods.yaml", client_pods("default/client"))
    kd = await kdns(DEMO, pods, args=upstreams(up))
    reply = await kd.query("example.org.default.svc.cluster.local", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer
    assert lookups(up) == 0


@pytest.mark.parametrize("pods", [("default/client", "default/other"), ("default/client/hostNetwork",)], ids=["shared-ip", "host-network"])
async def test_autopath_off_for_ambiguous_clients(autopath, pods):
    """A client address shared by two Pods, or used by a hostNetwork Pod, speaks for no
    namespace: once the manifests say so, autopath stops (plain NXDOMAIN)."""
    kd, up, manifest = autopath
    reply = await kd.query("example.org.default.svc.cluster.local", "A")
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer  # autopath works for now
    manifest.write_text(client_pods(*pods))
    with trio.fail_after(WAIT):
        while (reply := await kd.query("example.org.default.svc.cluster.local", "A")).rcode() != dns.rcode.NXDOMAIN:
            await trio.sleep(0.05)
    assert not reply.answer
    assert up.count("example.org") == 1  # only the first, autopathed query
