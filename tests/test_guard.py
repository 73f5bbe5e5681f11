"""kdns/guard.py on its own: the recursion allow list and response rate limiting, with the
clock given (no server, no sleeping). tests/test_abuse.py checks them through DNS."""

from __future__ import annotations

import ipaddress

from kdns import guard
from kdns.guard import DROP, SEND, SLIP, RateLimiter, RecursionAcl


def acl(*cidrs: str) -> RecursionAcl:
    return RecursionAcl(tuple(ipaddress.ip_network(c) for c in cidrs))


def test_no_ranges_allow_everyone():
    assert acl().allows("203.0.113.9") and acl().allows(None)


def test_ranges_allow_only_their_clients():
    only = acl("10.0.0.0/8", "fd00::/8")
    assert only.allows("10.1.2.3") and only.allows("fd00::1")
    assert not only.allows("fe80::1%eth0")
    assert not only.allows("192.168.1.1") and not only.allows("2001:db8::1")
    assert only.allows("fd00::1%eth0"), "a scoped address is judged by its address"
    assert not only.allows("not an address")
    assert only.allows(None), "no client address (an in-process caller): not a forwarder for anyone"


def test_acl_verdicts_are_remembered_within_a_bound(monkeypatch):
    monkeypatch.setattr(guard, "MAX_PREFIXES", 3)
    only = acl("10.0.0.0/8")
    for i in range(10):
        assert only.allows(f"10.0.0.{i}")
        assert len(only._seen) <= 3


def test_a_burst_of_one_seconds_worth_then_the_rate():
    limiter = RateLimiter(rate=5, slip=0)
    assert [limiter.check("192.0.2.1", now=0.0) for _ in range(7)] == [SEND] * 5 + [DROP] * 2
    assert limiter.check("192.0.2.1", now=0.2) == SEND  # 0.2 s at 5/s: one token back
    assert limiter.check("192.0.2.1", now=0.2) == DROP
    assert [limiter.check("192.0.2.1", now=100.0) for _ in range(6)] == [SEND] * 5 + [DROP], "the burst is capped"
    assert limiter.dropped == 4 and limiter.slipped == 0


def test_every_slip_th_held_back_response_goes_out_truncated():
    limiter = RateLimiter(rate=1, slip=2)
    assert [limiter.check("192.0.2.1", now=0.0) for _ in range(6)] == [SEND, DROP, SLIP, DROP, SLIP, DROP]
    assert (limiter.dropped, limiter.slipped) == (3, 2)


def test_clients_share_a_bucket_per_prefix():
    limiter = RateLimiter(rate=1, slip=0)
    assert limiter.check("192.0.2.1", now=0.0) == SEND
    assert limiter.check("192.0.2.200", now=0.0) == DROP, "same /24"
    assert limiter.check("192.0.3.1", now=0.0) == SEND, "another /24"
    assert limiter.check("2001:db8:0:ff::1", now=0.0) == SEND
    assert limiter.check("2001:db8:0:ee::2", now=0.0) == DROP, "same /56"
    assert limiter.check("2001:db8:0:100::1", now=0.0) == SEND, "another /56"
    assert RateLimiter.prefix("2001:db8::1%eth0") == "2001:db8::"


def test_buckets_are_bounded_least_recently_seen_first(monkeypatch):
    monkeypatch.setattr(guard, "MAX_PREFIXES", 2)
    limiter = RateLimiter(rate=1, slip=0)
    for client in ("192.0.2.1", "198.51.100.1", "192.0.2.1", "203.0.113.1"):  # the second is seen least recently
        limiter.check(client, now=0.0)
    assert list(limiter._buckets) == ["192.0.2", "203.0.113"]
    assert limiter.check("198.51.100.1", now=0.0) == SEND, "a forgotten prefix starts with a full bucket"
