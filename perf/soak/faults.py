"""The faults: on a schedule repeated every `CYCLE` seconds, the API server goes down,
compacts and drops watches, answers 500; the stub upstream drops, SERVFAILs, stops; bad UDP
packets and abusive TCP clients arrive (abuse.py). `Faults` injects them and watches kdns
come back to the API after each API fault (it must watch every resource in `WATCHED` again)."""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from perf.bench import log
from perf.soak import abuse, hostile
from perf.soak.expected import Health
from perf.soak.server import Kdns
from perf.soak.upstream import Upstream

if TYPE_CHECKING:
    from testkit.kubeapi import KubeAPI

UPSTREAM_GRACE = 10.0  # after an upstream fault, outside names may still fail this long
WATCHED = ("Namespace", "Service", "EndpointSlice")
CYCLE = 60.0
# (offset in each 60 s cycle, fault, seconds it lasts)
SCHEDULE = [
    (3, "UDP burst", 0),
    (5, "API down", 10),
    (10, "upstream drop", 10),  # overlaps the API outage for 5 s: both at once
    (16, "hostile upstream", 0),
    (22, "TCP abusers", 0),
    (25, "API relist", 0),
    (30, "upstream SERVFAIL", 10),
    (38, "UDP burst", 0),
    (42, "API 500s", 0),
    (46, "padding flood", 0),
    (48, "upstream stopped", 5),
]
API_FAULTS = ("API down", "API relist", "API 500s")
UPSTREAM_FAULTS = ("upstream drop", "upstream SERVFAIL", "upstream stopped")


@dataclass
class Fault:
    kind: str
    start: float  # seconds from the start of the load
    end: float | None = None  # released
    recovered: float | None = None  # API faults: kdns had every watch open again
    detail: str = ""


class Faults:
    """Injects the scheduled faults and bad inputs; watches kdns's recovery from API faults."""

    def __init__(self, api: KubeAPI, upstream: Upstream, kdns: Kdns, health: Health, names: list[str], t0: float,
                 stop: threading.Event):
        self.api, self.upstream, self.kdns, self.health = api, upstream, kdns, health
        self.names, self.t0, self.stop = names, t0, stop
        self.lock = threading.Lock()
        self.log: list[Fault] = []
        self.udp: list[abuse.UdpBurst] = []
        self.tcp: list[abuse.TcpAbuse] = []
        self.hostile: list[hostile.HostileRound] = []
        self.padding: list[hostile.PaddingFlood] = []
        self.rng = random.Random(11)
        self.threads: list[threading.Thread] = []
        self.skipped: Counter = Counter()
        self.monitor = threading.Thread(target=self._monitor, name="api-health", daemon=True)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def active(self, at: float | None = None, margin: float = 0.0) -> list[str]:
        """The faults in progress at `at` (API faults until kdns recovered), `margin` s after."""
        at = self.now() if at is None else at
        with self.lock:
            out = []
            for f in self.log:
                end = f.recovered if f.kind in API_FAULTS else f.end
                if f.start <= at and (end is None or at <= end + margin):
                    out.append(f.kind)
            return out

    def upstream_trouble(self, at: float) -> bool:
        return any(k in UPSTREAM_FAULTS for k in self.active(at, UPSTREAM_GRACE))

    def _open(self, kind: str) -> Fault:
        fault = Fault(kind, self.now())
        with self.lock:
            self.log.append(fault)
        log(f"t={fault.start:6.1f}s {kind}")
        return fault

    def _release(self, fault: Fault) -> None:
        with self.lock:
            fault.end = self.now()

    # -- the schedule --

    def begin(self, kind: str, seconds: float) -> Fault | None:
        if kind in API_FAULTS:
            self.health.open_fault(time.monotonic())
        fault = self._open(kind)
        if kind == "API down":
            self.api.down()
        elif kind == "API relist":
            self.api.compact()
            self.api.drop_watches()
            self._release(fault)
        elif kind == "API 500s":
            self.api.fail_next(2 * len(WATCHED), 500)
            self.api.drop_watches()
            self._release(fault)
        elif kind == "upstream drop":
            self.upstream.set_mode("drop")
        elif kind == "upstream SERVFAIL":
            self.upstream.set_mode("servfail")
        elif kind == "upstream stopped":
            self.upstream.stop_listening()
        elif kind == "UDP burst":
            burst = abuse.udp_burst(self.kdns.port, 3000, self.names, self.rng)
            self.udp.append(burst)
            fault.detail = f"{burst.sent} packets"
            self._release(fault)
        elif kind == "hostile upstream":
            thread = threading.Thread(target=self._hostile, args=(fault,), name="hostile-upstream-round", daemon=True)
            self.threads.append(thread)
            thread.start()
        elif kind == "padding flood":
            flood = hostile.padding_flood(self.kdns.port, self.kdns.metrics_text, self.names[0])
            self.padding.append(flood)
            fault.detail = f"{flood.sent} packets"
            self._release(fault)
        elif kind == "TCP abusers":
            thread = threading.Thread(target=self._tcp, args=(fault,), name="tcp-abusers", daemon=True)
            self.threads.append(thread)
            thread.start()
        return fault

    def finish(self, fault: Fault) -> None:
        kind = fault.kind
        if kind == "API down":
            self.api.up()
        elif kind in ("upstream drop", "upstream SERVFAIL"):
            self.upstream.set_mode("ok")
        elif kind == "upstream stopped":
            self.upstream.restart()
        self._release(fault)
        log(f"t={fault.end:6.1f}s {kind}: over")

    def _tcp(self, fault: Fault) -> None:
        try:
            result = abuse.tcp_abuse(self.kdns.port, self.stop)
            self.tcp.append(result)
            fault.detail = ", ".join(f"{k} {v}" for k, v in result.opened.items())
        finally:
            self._release(fault)

    def _hostile(self, fault: Fault) -> None:
        try:
            result = hostile.hostile_round(self.kdns.port, lambda: self.kdns.status_kb("VmRSS"), self.kdns.metrics_text, self.stop,
                                           self.names[0], base=300 * len(self.hostile))
            self.hostile.append(result)
            fault.detail = f"{result.names} names"
        finally:
            self._release(fault)

    def _monitor(self) -> None:
        """An API fault is over for the checks when it has been released for 0.3 s and kdns
        has a watch open on every resource again (so it has listed or resumed)."""
        while not self.stop.is_set():
            time.sleep(0.05)
            with self.lock:
                api = [f for f in self.log if f.kind in API_FAULTS]
                pending = [f for f in api if f.recovered is None]
                busy = any(f.end is None for f in api)
                last_end = max((f.end for f in pending if f.end is not None), default=None)
            if not pending or busy or self.now() - last_end < 0.3:
                continue
            if all(self.api.watchers(k) >= 1 for k in WATCHED):
                now = time.monotonic()
                self.health.close(now)
                self.api.fail_next(0)
                with self.lock:
                    for f in pending:
                        f.recovered = now - self.t0
                log(f"t={now - self.t0:6.1f}s kdns watches every resource again ({', '.join(f.kind for f in pending)})")

    def wait_recovered(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.health.healthy:
                return True
            time.sleep(0.1)
        return False

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in [*self.threads, self.monitor]:
            with contextlib.suppress(RuntimeError):  # never started
                t.join(max(0.1, deadline - time.monotonic()))


def schedule(seconds: float) -> list[tuple[float, str, float]]:
    """(start, fault, duration) over the run: SCHEDULE every CYCLE seconds, each ending at
    least 5 s before the load does."""
    events = []
    for c in range(math.ceil(seconds / CYCLE)):
        for offset, kind, duration in SCHEDULE:
            at = c * CYCLE + offset
            if at + duration + 5 <= seconds:
                events.append((at, kind, duration))
    return sorted(events)


def window_end(f: Fault) -> float:
    end = f.recovered if f.kind in API_FAULTS else f.end
    return (end if end is not None else f.start) + 1.0
