"""What kdns must answer for each cluster name at any moment, allowing for propagation.

`Expected` keeps every name's history of answers (recorded by `cluster.Churn` before each
change it makes); `acceptable` says which answers are right for a query sent at a moment: a
name's state must be served once it has been unchanged for `GRACE` seconds while the API
server was reachable and kdns's watches were open (`Health.due`); until then the state
before it, or any later one, is fine too.
"""

from __future__ import annotations

import math
import threading

GRACE = 2.0  # seconds a change may take to reach kdns's answers

Answer = frozenset | None  # the A addresses of a name, or None: the name does not exist (NXDOMAIN)


class Health:
    """When the API server could not deliver changes to kdns: API faults from the moment one
    is injected until kdns has a watch open again on every resource (`open_fault`/`close`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.intervals: list[list[float | None]] = []  # [start, end or None]

    def open_fault(self, now: float) -> None:
        with self.lock:
            if not self.intervals or self.intervals[-1][1] is not None:
                self.intervals.append([now, None])

    def close(self, now: float) -> None:
        with self.lock:
            if self.intervals and self.intervals[-1][1] is None:
                self.intervals[-1][1] = now

    @property
    def healthy(self) -> bool:
        with self.lock:
            return not self.intervals or self.intervals[-1][1] is not None

    def due(self, t: float) -> float:
        """When a change made at `t` must be served: GRACE after it, or GRACE after the API
        outages overlapping that window have ended (infinity while one lasts)."""
        with self.lock:
            intervals = [tuple(i) for i in self.intervals]
        d = t + GRACE
        changed = True
        while changed:
            changed = False
            for start, end in intervals:
                if start < d and (end is None or end > t):
                    if end is None:
                        return math.inf
                    if end + GRACE > d:
                        d = end + GRACE
                        changed = True
        return d


class Expected:
    """Every cluster name's history of answers: [(time, answer)], oldest first."""

    def __init__(self, health: Health) -> None:
        self.health = health
        self.lock = threading.Lock()
        self.history: dict[str, list[tuple[float, Answer]]] = {}

    def record(self, answers: dict[str, Answer], now: float) -> None:
        with self.lock:
            for name, answer in answers.items():
                hist = self.history.setdefault(name, [(-math.inf, None)])
                if hist[-1][1] != answer:
                    hist.append((now, answer))

    def names(self) -> list[str]:
        with self.lock:
            return sorted(self.history)

    def current(self, name: str) -> Answer:
        with self.lock:
            return self.history[name][-1][1]

    def last_change(self, name: str) -> float:
        with self.lock:
            return self.history[name][-1][0]

    def acceptable(self, name: str, asked: float) -> tuple[list[Answer], Answer]:
        """(answers acceptable for a query sent at `asked`, the one required by then or None).

        The required state is the newest whose `due` time has passed; it and every later
        state are acceptable (later changes may have reached kdns already)."""
        with self.lock:
            hist = list(self.history[name])
        k = 0
        for j, (t, _) in enumerate(hist):
            if t == -math.inf or self.health.due(t) <= asked:
                k = j
        return [a for _, a in hist[k:]], hist[k][1]
