"""kdns.stats, pure: sizes counted by bucket, every table bounded whatever the queries."""

from __future__ import annotations

import random

import dns.edns
import dns.message
import dns.rcode
import pytest

from kdns import stats

ZONES = ("cluster.local", "in-addr.arpa", "ip6.arpa")


def query(name: str, qtype: str = "A", padding: int | None = None) -> bytes:
    options = [dns.edns.GenericOption(dns.edns.PADDING, b"\0" * padding)] if padding is not None else None
    return dns.message.make_query(name, qtype, use_edns=0 if options else False, options=options).to_wire()


def reply_to(data: bytes, size: int, rcode: int = 0) -> bytes:
    return data[:2] + bytes([0x84, rcode]) + data[4:12] + b"\0" * max(0, size - 12)


def test_sizes_go_into_coredns_buckets():
    assert [stats.size_bucket(n) for n in (0, 1, 100, 101, 511, 512, 1023, 64000, 64001, 65535)] == [
        0, 1, 1, 2, 5, 6, 6, 13, 14, 14]


def test_replay_key_holds_buckets_not_sizes():
    # (a zone of its own: keys are shared by every server in the process, the first sizes kept)
    a, b = query("web.shop.svc.sizes.example", padding=4), query("web.shop.svc.sizes.example", padding=30)
    assert len(a) != len(b)
    ka, kb = stats.replay_key(a, reply_to(a, 80), ("sizes.example",)), stats.replay_key(b, reply_to(b, 90), ("sizes.example",))
    assert ka == kb == ("sizes.example.", "A", "NOERROR", 1, 1)
    assert ka is kb  # one tuple per key, holding the sizes of the first reply made under it
    assert stats.key_sizes(ka) == stats.key_sizes(kb) == (len(a), 80)
    counts = stats.QueryStats("dns://127.0.0.1:53", "udp", "1").counts
    counts[ka] += 1
    counts[kb] += 1
    assert len(counts) == 1


def test_timed_counts_stay_bounded_under_any_sizes_types_and_durations():
    """50,000 queries of random sizes (trailing bytes, as padding makes them), types, rcodes
    and durations: the tables hold at most `max_keys`, and the totals add up."""
    rng = random.Random(13)
    s = stats.QueryStats("dns://127.0.0.1:53", "tcp", "1")
    bases = [query(name, qtype) for name in ("n.example.org", "n.shop.svc.cluster.local") for qtype in ("A", "SRV", "TXT", "MX", "CAA")]
    total_bytes = 0
    for _ in range(50_000):
        q = rng.choice(bases) + b"\0" * rng.randrange(0, 3000)
        s.count(q, reply_to(q, rng.randrange(12, 65535), rng.randrange(16)), ZONES, rng.random() * 10)
        total_bytes += len(q)
    assert s.keys() <= stats.max_keys(len(ZONES) + 1, "tcp")
    assert sum(s.requests.values()) == sum(s.responses.values()) == 50_000
    assert sum(s.request_bytes.values()) == total_bytes


def test_replay_keys_stay_within_their_share_of_max_keys():
    """Every type number 0-299, both replayed rcodes, every size of a replayable query (up to
    512 bytes) and reply (up to 1,232), in every zone: the distinct replay keys stay within
    what max_keys allows for them."""
    keys = set()
    for name in ("web.shop.svc.cluster.local", "10.100.96.10.in-addr.arpa", "1.ip6.arpa", "example.org"):
        labels = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\0"
        for qtype in range(300):
            for qsize in range(17 + len(labels), 513, 37):
                q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + qtype.to_bytes(2, "big") + b"\x00\x01"
                q += b"\0" * (qsize - len(q))
                for rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                    for rsize in range(40, 1233, 53):
                        keys.add(stats.replay_key(q, reply_to(q, rsize, rcode), ZONES))
    zones = len(ZONES) + 1
    assert len(keys) <= stats.max_keys(zones, "udp") - stats.max_keys(zones, "tcp")


# -- labels and duration buckets (from the per-module unit tests of issue 14) ------------------


@pytest.mark.parametrize(("seconds", "bucket"), [
    (0.0, 0), (0.00025, 0), (0.0003, 1), (0.0005, 1), (0.00051, 2), (0.001, 2), (8.192, 15), (8.2, 16), (3600.0, 16),
])
def test_duration_buckets_double_from_a_quarter_millisecond(seconds, bucket):
    assert stats.duration_bucket(seconds) == bucket
    if bucket < 16:
        assert seconds <= stats.DURATION_BUCKETS[bucket]


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
    labels = stats.labels(q, reply_to(q, len(q), rcode=3), ZONES)
    assert labels is not None and labels[0] == zone


def test_types_and_rcodes_without_a_metric_name_are_counted_as_such():
    q = query("example.org", 65280)  # a private-use type
    labels = stats.labels(q, reply_to(q, len(q), rcode=11), ZONES)  # rcode 11 has no name of ours
    assert labels is not None and labels[1:] == ("other", "11")


def test_nothing_to_count_without_a_reply_or_a_readable_question():
    q = query("web.shop.svc.cluster.local")
    assert stats.labels(q, None, ZONES) is None
    assert stats.labels(q[:11], reply_to(q, len(q)), ZONES) is None
    assert stats.labels(q[:12] + b"\xc0\x0c", reply_to(q, len(q)), ZONES) is None  # a compressed question
