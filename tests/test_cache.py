"""kdns/cache.py on its own: the cache of forwarded answers, with its clock given (a
ManualClock moved on by hand: no test here waits for a TTL to pass)."""

from __future__ import annotations

import pytest

from kdns.cache import ForwardCache, Key
from kdns.upstream import UpstreamAnswer
from testkit.clock import ManualClock

NOERROR, NXDOMAIN = 0, 3


def answer(lifetime: int, rcode: int = NOERROR, records: int = 1) -> UpstreamAnswer:
    return UpstreamAnswer(rcode, b"", (records, 0, 0), 0, (), (), lifetime, False)


def key(name: str = "example.org", qtype: int = 1, do: bool = False, cd: bool = False) -> Key:
    return (name.encode(), qtype, 1, do, cd)


@pytest.fixture
def cache_clock() -> ManualClock:
    return ManualClock()


def cache(cache_clock: ManualClock, maxsize: int = 100, max_ttl: int = 3600, stale_for: float = 60) -> ForwardCache:
    return ForwardCache(clock=cache_clock, maxsize=maxsize, max_ttl=max_ttl, stale_for=stale_for)


def test_an_entry_is_fresh_for_its_lifetime(cache_clock):
    c = cache(cache_clock)
    c.put(key(), answer(30))
    entry, fresh = c.get(key())
    assert fresh and entry is not None and entry.stored == cache_clock.now
    cache_clock.advance(29.9)
    assert c.get(key())[1]
    cache_clock.advance(0.1)
    assert c.get(key()) == (entry, False), "expired: a stale fallback, not a hit"
    assert (c.hits, c.misses) == (2, 1)


def test_lifetime_is_capped_and_nothing_is_kept_for_none(cache_clock):
    c = cache(cache_clock, max_ttl=10)
    entry = c.put(key(), answer(300))
    assert entry is not None and entry.expires - entry.stored == 10
    assert c.put(key("servfail.example.org"), answer(0, rcode=2)) is None
    assert c.get(key("servfail.example.org")) == (None, False)


def test_stale_entries_go_after_the_serve_stale_window(cache_clock):
    c = cache(cache_clock, stale_for=60)
    c.put(key(), answer(30))
    cache_clock.advance(89)
    assert c.get(key())[0] is not None  # stale, still there for serve-stale
    cache_clock.advance(1)
    assert c.get(key()) == (None, False) and len(c) == 0


def test_the_key_separates_type_do_and_cd(cache_clock):
    c = cache(cache_clock)
    c.put(key(), answer(30))
    for other in (key(qtype=28), key(do=True), key(cd=True), key("example.net")):
        assert c.get(other) == (None, False)


def test_least_recently_used_go_first_beyond_maxsize(cache_clock):
    c = cache(cache_clock, maxsize=2)
    c.put(key("a"), answer(30))
    c.put(key("b"), answer(30))
    c.get(key("a"))
    c.put(key("c"), answer(30))
    assert len(c) == 2 and c.get(key("b")) == (None, False) and c.get(key("a"))[1] and c.get(key("c"))[1]


def test_a_popular_entry_is_due_for_refresh_in_its_last_tenth(cache_clock):
    c = cache(cache_clock)
    entry = c.put(key(), answer(100))
    assert entry is not None
    cache_clock.advance(95)
    assert not c.due_for_refresh(entry), "not popular yet"
    c.get(key())
    c.get(key())
    assert c.due_for_refresh(entry)
    entry.refreshing = True
    assert not c.due_for_refresh(entry), "one refresh at a time"


def test_a_popular_entry_is_not_refreshed_early(cache_clock):
    c = cache(cache_clock)
    entry = c.put(key(), answer(100))
    assert entry is not None
    c.get(key())
    c.get(key())
    cache_clock.advance(89)
    assert not c.due_for_refresh(entry)
    cache_clock.advance(2)
    assert c.due_for_refresh(entry)


def test_sizes_and_hits_tell_answers_from_denials(cache_clock):
    c = cache(cache_clock)
    c.put(key("a"), answer(30))
    c.put(key("nx"), answer(30, rcode=NXDOMAIN, records=0))
    c.put(key("nodata"), answer(30, records=0))
    assert c.sizes() == (1, 2)
    for name in ("a", "nx", "nodata"):
        c.get(key(name))
    assert (c.hits, c.hits_success) == (3, 1)
    c.clear()
    assert len(c) == 0
