"""A clock a test moves on by hand, for code that takes its clock as a parameter (the
forwarding cache, kdns.app.Server(clock=...)): `advance(seconds)` instead of sleeping."""

from __future__ import annotations


class ManualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "a monotonic clock does not go back"
        self.now += seconds
