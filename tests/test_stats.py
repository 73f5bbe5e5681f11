"""kdns/stats.py on its own: the per-query statistics key and its buckets, from query and
reply bytes (no server). tests/test_lifecycle.py checks the /metrics families built from them."""

from __future__ import annotations

import pytest

from kdns import stats
from kdns.stats import QueryStats
from testkit.dnswire import NOERROR, NXDOMAIN, QR, query, with_flags

ZONES = ("cluster.local", "in-addr.arpa", "ip6.arpa")


def reply(packet: bytes, rcode: int = NOERROR, extra: int = 0) -> bytes:
    """A reply of the query's size plus `extra` bytes (only its header is read)."""
    flagged = with_flags(packet, set_bits=QR | rcode)
    return flagged + b"\x00" * extra


@pytest.mark.parametrize(("seconds", "bucket"), [
    (0.0, 0), (0.00025, 0), (0.0003, 1), (0.0005, 1), (0.00051, 2), (0.001, 2), (8.192, 15), (8.2, 16), (3600.0, 16),
])
def test_duration_buckets_double_from_a_quarter_millisecond(seconds, bucket):
    assert stats.duration_bucket(seconds) == bucket
    if bucket < 16:
        assert seconds <= stats.DURATION_BUCKETS[bucket]


def test_key_says_zone_type_rcode_sizes_and_duration():
    q = query("web.shop.svc.cluster.local", "AAAA")
    r = reply(q, extra=28)
    assert stats.key(q, r, ZONES, 0.0006) == ("cluster.local.", "AAAA", "NOERROR", len(q), len(q) + 28, 2)


@pytest.mark.parametrize(("name", "zone"), [
    ("cluster.local", "cluster.local."),
    ("CLUSTER.Local", "cluster.local."),
    ("1.0.96.10.in-addr.arpa", "in-addr.arpa."),
    ("example.org", "."),
    ("notcluster.local", "."),  # a zone's name must end at a label boundary
    ("xcluster.local.evil", "."),
])
def test_the_zone_is_the_longest_served_suffix_at_a_label_boundary(name, zone):
    q = query(name)
    assert stats.key(q, reply(q, NXDOMAIN), ZONES, 0.0)[0] == zone


def test_types_and_rcodes_without_a_metric_name_are_counted_as_such():
    q = query("example.org", 65280)  # a private-use type
    k = stats.key(q, reply(q, 11), ZONES, 0.0)  # rcode 11 has no name of ours
    assert k is not None and k[1:3] == ("other", "11")


def test_nothing_to_count_without_a_reply_or_a_readable_question():
    q = query("web.shop.svc.cluster.local")
    assert stats.key(q, None, ZONES, 0.0) is None
    assert stats.key(q[:11], reply(q), ZONES, 0.0) is None
    assert stats.key(q[:12] + b"\xc0\x0c", reply(q), ZONES, 0.0) is None  # a compressed question


def test_replays_count_in_the_first_duration_bucket():
    q = query("web.shop.svc.cluster.local")
    assert stats.replay_key(q, reply(q), ZONES) == stats.key(q, reply(q), ZONES, 0.0)


def test_a_listeners_counters():
    s = QueryStats("dns://127.0.0.1:53", "udp", "1")
    q = query("web.shop.svc.cluster.local")
    s.count(q, reply(q), ZONES, 0.001)
    s.count(q, reply(q), ZONES, 0.001)
    s.count(q, None, ZONES, 0.5)  # dropped: not counted, not timed
    assert sum(s.counts.values()) == 2 and s.seconds == pytest.approx(0.002)
