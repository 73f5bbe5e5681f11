"""Hostile upstreams and padding floods (issue 13), through a real kdns on loopback.

The upstream is `HostileDNS` (tests/hostiledns.py) on 127.0.0.2, reached through
`--stub-domain hostile.test=127.0.0.2:PORT`: big compressed answers, answers that carry
records for cluster names, and honest but large ones. The clients are dnspython; what kdns
holds is read from `/metrics` (kdns_table_bytes, kdns_table_entries) and from the running
server's tables.
"""

from __future__ import annotations

import re

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import trio

from kdns import stats
from testkit.dnswire import rrs
from testkit.hostiledns import EVIL, INJECTED_CLUSTER_NAMES, HostileDNS, bomb_name
from testkit.repo import DEMO

WEB = "web.shop.svc.cluster.local"
CACHE_MAX_BYTES = 32 << 20  # --cache-max-bytes' default
WAIT = 5.0


@pytest.fixture
async def hostile(nursery) -> HostileDNS:
    server = HostileDNS()
    await nursery.start(server.serve)
    return server


def forwarding(hostile: HostileDNS, *args: str) -> list[str]:
    return ["--stub-domain", f"hostile.test={hostile.host}:{hostile.port}", "--metrics", "127.0.0.1:0", *args]


async def scrape(kd) -> str:
    address = kd.server.http_bound["/metrics"]
    async with await trio.open_tcp_stream(address.host, address.port) as stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: kdns\r\n\r\n")
        data = b""
        with trio.fail_after(WAIT):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return body.decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of /metrics (0 when absent: kdns did not serve it)."""
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{[^}}]*\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            return float(m.group(2))
    return 0.0


def held_record_bytes(kd) -> int:
    """The record bytes the forwarding cache holds, read from the running server."""
    return sum(len(entry.answer.records) for entry in kd.server.forwarder.cache._entries.values())


async def assert_cluster_answers(kd) -> None:
    reply = await kd.query(WEB)
    assert rrs(reply.answer) == {f"{WEB}. 5 IN A 10.96.100.10"}


# -- input 1: big compressed answers ------------------------------------------------------


async def test_big_compressed_answers_are_neither_expanded_nor_cached(kdns, hostile):
    """An upstream answering TC over UDP and, over TCP, 64 KB of ~4,000 A records whose owners
    are pointers to a 250-byte name: written out that is ~1 MB, more than any reply can carry.
    kdns reads no further than what a reply can carry, caches none of it, gives a TCP client
    the records that fit with TC set, and keeps answering."""
    kd = await kdns(DEMO, args=forwarding(hostile))
    names = [bomb_name(i) for i in range(40)]
    for name in names:
        reply = await kd.query(name, "A", tcp=True)
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.TC, name
        assert reply.answer and {rrset.name.to_text() for rrset in reply.answer} == {name + "."}
        assert len(reply.to_wire()) <= 65535
    assert held_record_bytes(kd) == 0, "nothing a client cannot get whole is cached"
    metrics = await scrape(kd)
    assert sample(metrics, "kdns_table_bytes", table="forward_cache") <= CACHE_MAX_BYTES
    assert sample(metrics, "kdns_table_entries", table="forward_cache") == 0
    # Asked again: not from the cache (the upstream is asked again over TCP).
    await kd.query(names[0], "A", tcp=True)
    assert hostile.count(names[0], "tcp") == 2
    # Over UDP the client gets TC and no records, and asks again over TCP.
    reply = await kd.query(bomb_name(99), "A")
    assert reply.flags & dns.flags.TC and not reply.answer
    await assert_cluster_answers(kd)


async def test_cache_is_bounded_in_bytes(kdns, hostile):
    """Large honest answers (60 A records of a 250-byte name, ~20 KB each in the cache) under
    --cache-max-bytes 200000: the cache never holds more than that, the least recently used
    answers go first, and the newest ones are served from the cache."""
    budget = 200_000
    kd = await kdns(DEMO, args=forwarding(hostile, "--cache-max-bytes", str(budget)))
    names = [bomb_name(i, "many60-") for i in range(30)]
    for name in names:
        reply = await kd.query(name, "A", tcp=True)
        assert len(reply.answer[0]) == 60, name
        metrics = await scrape(kd)
        assert sample(metrics, "kdns_table_bytes", table="forward_cache") <= budget
        assert held_record_bytes(kd) <= budget
    entries = sample(await scrape(kd), "kdns_table_entries", table="forward_cache")
    assert 1 <= entries < len(names)
    await kd.query(names[-1], "A", tcp=True)
    assert hostile.count(names[-1]) == 1, "the newest answer is served from the cache"
    await kd.query(names[0], "A", tcp=True)
    assert hostile.count(names[0]) == 2, "the oldest answer was evicted"
    await assert_cluster_answers(kd)


# -- scrubbing ------------------------------------------------------------------------------


def records(section) -> set[str]:
    """A section as `name TYPE data` lines, without TTLs (kdns caps them at --cache-ttl)."""
    return {re.sub(r" \d+ IN ", " ", line) for line in rrs(section)}


def all_records(reply: dns.message.Message) -> set[str]:
    return records(reply.answer) | records(reply.authority) | records(reply.additional)


async def test_forwarded_replies_carry_no_cluster_names_and_nothing_off_the_chain(kdns, hostile):
    """The upstream adds an answer record for another name, records for cluster names in every
    section (an A in the answer and additional sections, `svc.cluster.local NS` in authority,
    a PTR for a ClusterIP) and NS records of another zone. The client gets the question's
    records, its zone's NS and that NS's address, nothing else; twice (the second time from
    the cache); and the cluster names keep their own answers."""
    kd = await kdns(DEMO, args=forwarding(hostile))
    name = "inject.hostile.test."
    for _ in range(2):
        reply = await kd.query(name, "A")
        assert records(reply.answer) == {f"{name} A 192.0.2.1"}
        assert records(reply.authority) == {"hostile.test. NS ns.hostile.test."}
        assert records(reply.additional) == {"ns.hostile.test. A 192.0.2.53"}
    assert hostile.count(name) == 1
    await assert_cluster_answers(kd)
    ptr = await kd.query("10.100.96.10.in-addr.arpa", "PTR")
    assert rrs(ptr.answer) == {"10.100.96.10.in-addr.arpa. 5 IN PTR web.shop.svc.cluster.local."}


async def test_forwarded_cname_chain_is_kept_in_order_and_the_rest_dropped(kdns, hostile):
    kd = await kdns(DEMO, args=forwarding(hostile))
    name = "inject-chain.hostile.test."
    reply = await kd.query(name, "A", tcp=True)
    assert [(r.name.to_text(), dns.rdatatype.to_text(r.rdtype)) for r in reply.answer] == [
        (name, "CNAME"), ("target.hostile.test.", "A")]
    text = " ".join(all_records(reply))
    assert EVIL not in text and "offchain" not in text and "example.org" not in text
    assert not any(cluster in text for cluster in INJECTED_CLUSTER_NAMES)


# -- input 2: statistics keyed by exact sizes -----------------------------------------------


def padded(name: str, qtype: str, padding: int, qid: int) -> bytes:
    q = dns.message.make_query(name, qtype, use_edns=0, options=[dns.edns.GenericOption(dns.edns.PADDING, b"\0" * padding)])
    q.id = qid
    return q.to_wire()


async def test_padding_flood_does_not_grow_the_statistics(kdns):
    """600 queries, each padded to another length (EDNS padding, 0-599 bytes), for four types:
    the counters stay a handful (sizes are counted by bucket), every query is counted, and
    /metrics reports them all."""
    kd = await kdns(DEMO, args=["--metrics", "127.0.0.1:0"])
    sent = 0
    with trio.fail_after(60):
        for padding in range(600):
            qtype = ("A", "AAAA", "SRV", "TXT")[padding % 4]
            reply = await kd.udp_raw(padded(WEB, qtype, padding, padding), timeout=WAIT)
            assert reply is not None and reply[3] & 0xF == dns.rcode.NOERROR
            sent += 1
    listeners = kd.server.listener_stats()
    assert sum(len(listener.counts) for listener in listeners) <= 4 * 8, "replays are counted by size bucket"
    held = sum(listener.keys() for listener in listeners)
    assert held <= 80
    metrics = await scrape(kd)
    assert sample(metrics, "kdns_table_entries", table="query_stats") == held
    assert sample(metrics, "coredns_dns_requests_total", proto="udp", type="A") == sent // 4
    assert sample(metrics, "coredns_dns_request_size_bytes_count", proto="udp") == sent
    assert sample(metrics, "coredns_dns_request_size_bytes_bucket", proto="udp", le="+Inf") == sent
    zones = len(kd.server.responder.zones) + 1
    assert held <= sum(stats.max_keys(zones, listener.proto) for listener in listeners)
    await assert_cluster_answers(kd)


async def test_a_scrape_does_not_hold_up_answering(kdns):
    """With the statistics at their bound (every counter any mix of clients could make), a
    /metrics scrape folds them in a worker thread: queries sent meanwhile are answered before
    the scrape is done."""
    kd = await kdns(DEMO, args=["--metrics", "127.0.0.1:0"])
    zones = [z + "." for z in kd.server.responder.zones] + ["."]
    types = list(dict.fromkeys(stats.TYPES.values())) + ["other"]
    for listener in kd.server.listener_stats():
        for zone in zones:
            for qtype in types:
                for bucket in range(len(stats.DURATION_BUCKETS) + 1):
                    listener.requests[(zone, qtype, bucket)] += 1
                for rcode in ("NOERROR", "NXDOMAIN") if listener.proto == "udp" else ():
                    for qbucket in range(1, stats.REPLAY_REQUEST_BUCKETS + 1):
                        for rbucket in range(1, stats.REPLAY_RESPONSE_BUCKETS + 1):
                            listener.counts[(zone, qtype, rcode, qbucket, rbucket)] += 1
    done = trio.Event()
    answered_during = 0

    async def scraper() -> None:
        await scrape(kd)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(scraper)
        with trio.fail_after(30):
            while not done.is_set():
                reply = await kd.query(WEB)
                answered_during += not done.is_set() and bool(reply.answer)
    assert answered_during >= 5
