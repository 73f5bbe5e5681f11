"""The API reflector's retry delays (kdns/sources/backoff.py), with the clock and the jitter
given: no test here waits for time to pass. tests/test_watch.py checks, against the test API
server, that kdns logs and waits these delays."""

from __future__ import annotations

import pytest

from kdns.sources.backoff import CAP, FIRST, STABLE_AFTER, Backoff


def longest(low: float, high: float) -> float:
    return high


def shortest(low: float, high: float) -> float:
    return low


def test_delays_double_from_a_quarter_second_and_stop_at_five():
    backoff = Backoff(longest)
    assert [backoff.failed(now=0.0) for _ in range(8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert (FIRST, CAP) == (0.25, 5.0)


def test_each_delay_is_jittered_down_to_as_little_as_half():
    asked = []

    def uniform(low: float, high: float) -> float:
        asked.append((low, high))
        return (low + high) / 2

    backoff = Backoff(uniform)
    assert [backoff.failed(now=0.0) for _ in range(3)] == [0.1875, 0.375, 0.75]
    assert asked == [(0.125, 0.25), (0.25, 0.5), (0.5, 1.0)]
    assert Backoff(shortest).failed(now=0.0) == 0.125


def test_a_day_long_outage_still_retries_every_five_seconds():
    """The failure count stops at the cap: 2**n past ~1,000 failures would not fit a float."""
    backoff = Backoff(longest)
    delays = [backoff.failed(now=i * 5.0) for i in range(20_000)]
    assert delays[-1] == 5.0 and max(delays) == 5.0


def test_a_success_starts_afresh():
    backoff = Backoff(longest)
    for _ in range(10):
        backoff.failed(now=0.0)
    backoff.succeeded()  # a whole list, or a watch the server ended normally
    assert backoff.failed(now=1.0) == 0.25


@pytest.mark.parametrize(("open_for", "next_delay"), [(STABLE_AFTER, 0.25), (STABLE_AFTER - 0.01, 5.0)])
def test_a_watch_open_long_enough_before_it_fails_starts_afresh(open_for, next_delay):
    """An outage long ago must not slow the reconnect after today's blip; a watch that fails
    soon after it opened is part of the same outage."""
    backoff = Backoff(longest)
    for i in range(10):
        backoff.failed(now=float(i))
    backoff.watch_opened(now=100.0)
    assert backoff.failed(now=100.0 + open_for) == next_delay


def test_only_the_watch_open_before_this_failure_counts():
    backoff = Backoff(longest)
    for _ in range(10):
        backoff.failed(now=0.0)
    backoff.watch_opened(now=10.0)
    assert backoff.failed(now=10.5) == 5.0  # the watch failed at once
    assert backoff.failed(now=60.0) == 5.0  # and this failure had no watch open (a list failed)
