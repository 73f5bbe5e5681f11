"""When a failing list or watch of the API server is tried again (pure: the clock and the
jitter are parameters; kdns.sources.kubernetes passes time.monotonic() and random.uniform).

Delays double from `first` and stop at `cap`, each jittered down to as little as half (so
the reflectors of many kdns replicas do not retry in step). A success (a whole list, a watch
that ended normally), or a watch that had been open `stable_after` seconds before it failed,
shows the API server healthy again: the next failure starts from `first` (an outage long ago
must not slow the reconnect after today's blip).
"""

from __future__ import annotations

from collections.abc import Callable

# Capped at 5 s (client-go: 30 s): kdns is a handful of watches, and an answer kept stale
# for want of a retry is worse for DNS than a few more requests to a recovering server.
FIRST, CAP = 0.25, 5.0
STABLE_AFTER = 2.0


class Backoff:
    def __init__(self, uniform: Callable[[float, float], float], *, first: float = FIRST, cap: float = CAP,
                 stable_after: float = STABLE_AFTER) -> None:
        self.uniform = uniform  # (low, high) -> a delay in between
        self.first = first
        self.cap = cap
        self.stable_after = stable_after
        self.failures = 0  # in a row, counted only while the delay still grows
        self._opened: float | None = None  # clock time the open watch was accepted

    def succeeded(self) -> None:
        self.failures = 0

    def watch_opened(self, now: float) -> None:
        self._opened = now

    def failed(self, now: float) -> float:
        """One more failure at clock time `now`: the seconds to wait before trying again."""
        opened, self._opened = self._opened, None
        if opened is not None and now - opened >= self.stable_after:
            self.failures = 0
        delay = min(self.cap, self.first * 2**self.failures)
        if delay < self.cap:  # past the cap the count stops (2**n would overflow a float in a long outage)
            self.failures += 1
        return self.uniform(delay / 2, delay)
