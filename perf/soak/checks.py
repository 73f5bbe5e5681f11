"""The answer checks: names asked of kdns with dnspython (UDP, some over TCP), each judged
as it is answered against what the API holds (expected.py) and the faults in progress."""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename

from perf.bench import log
from perf.soak import cluster as soak_cluster
from perf.soak.expected import GRACE, Expected
from perf.soak.faults import Faults
from perf.soak.server import Kdns

CHECK_TIMEOUT = 3.0  # per try; three tries


@dataclass
class Check:
    t: float
    category: str
    name: str
    qtype: str
    proto: str
    got: str
    expected: str
    verdict: str  # "ok", "wrong", "tolerated" (an outside name failing during an upstream fault), "unanswered"
    during: list[str]
    detail: str = ""


def ask(port: int, name: str, qtype: str, proto: str) -> tuple[dns.message.Message | None, str, float]:
    """(reply or None, error, time.monotonic() the answered try was sent): up to three tries."""
    error = ""
    for _ in range(3):
        query = dns.message.make_query(name, qtype)
        sent = time.monotonic()
        try:
            if proto == "tcp":
                return dns.query.tcp(query, "127.0.0.1", port=port, timeout=CHECK_TIMEOUT), "", sent
            return dns.query.udp(query, "127.0.0.1", port=port, timeout=CHECK_TIMEOUT), "", sent
        except dns.exception.Timeout:
            error = "timeout"
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
    return None, error, time.monotonic()


def show(answer) -> str:
    if answer is None:
        return "NXDOMAIN"
    if isinstance(answer, frozenset):
        return "A " + ",".join(sorted(answer)) if answer else "A (none)"
    return str(answer)


def a_answer(reply: dns.message.Message, name: str):
    """NXDOMAIN as None, addresses as a frozenset, anything else as its text."""
    rcode = reply.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return None
    if rcode != dns.rcode.NOERROR:
        return dns.rcode.to_text(rcode)
    owner = dns.name.from_text(name)
    ips = frozenset(rd.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A and rrset.name == owner for rd in rrset)
    return ips if ips else "NODATA"


class Checker:
    """Asks kdns about a sample of names and judges each answer (see the module docstring)."""

    def __init__(self, kdns: Kdns, churn: soak_cluster.Churn, expected: Expected, faults: Faults | None, t0: float,
                 svcs: list[soak_cluster.Svc]):
        self.kdns, self.churn, self.expected, self.faults, self.t0 = kdns, churn, expected, faults, t0
        self.checks: list[Check] = []
        self.lock = threading.Lock()
        self.rng = random.Random(3)
        self.stable = [s for s in svcs if not s.churnable and s.kind != "external"]
        self.stable_ips = [s for s in self.stable if s.kind == "clusterip"]
        self.externals = [s for s in svcs if s.kind == "external"]
        self.misses = [f"{s.name}.{s.namespace}.{ns}.svc.{soak_cluster.ZONE}" for s in svcs[:60] for ns in ("ns-0", "ns-1")]
        self.misses += [f"{soak_cluster.outside_name(n)}.ns-{n % 6}.svc.{soak_cluster.ZONE}" for n in range(10)]
        self.misses += [f"{soak_cluster.outside_name(n)}.{soak_cluster.ZONE}" for n in range(10)]

    def now(self) -> float:
        return time.monotonic() - self.t0

    def during(self, at: float) -> list[str]:
        return self.faults.active(at) if self.faults else []

    def add(self, check: Check) -> None:
        with self.lock:
            self.checks.append(check)
        if check.verdict in ("wrong", "unanswered"):
            log(f"{check.verdict.upper()}: t={check.t:.1f}s {check.name} {check.qtype} over {check.proto} ({check.category}): "
                f"got {check.got}, expected {check.expected}; during: {', '.join(check.during) or 'no fault'}; {check.detail}")

    # -- one check --

    def cluster_a(self, category: str, name: str, proto: str = "udp") -> None:
        reply, error, sent = ask(self.kdns.port, name, "A", proto)
        at = sent - self.t0
        during = self.during(at)
        acceptable, _ = self.expected.acceptable(name, sent)
        expected = " or ".join(dict.fromkeys(show(a) for a in acceptable))
        if reply is None:
            self.add(Check(at, category, name, "A", proto, error, expected, "unanswered", during))
            return
        got = a_answer(reply, name)
        verdict = "ok" if got in acceptable else "wrong"
        detail = ""
        if verdict == "wrong":
            with self.expected.lock:
                hist = self.expected.history[name][-4:]
            detail = "history (s from load start, answer; 'due' = when kdns had to serve it): " + "; ".join(
                f"{t - self.t0:.2f}s {show(a)} due {self.expected.health.due(t) - self.t0:.2f}s" if t != -math.inf else f"initial {show(a)}"
                for t, a in hist)
        self.add(Check(at, category, name, "A", proto, show(got), expected, verdict, during, detail))

    def fixed(self, category: str, name: str, qtype: str, judge, expected: str, outside: bool = False, proto: str = "udp") -> None:
        """`judge(reply)` -> (answer text, right?). An outside name may fail (SERVFAIL, no
        answer, the ExternalName's CNAME alone) while the upstream is failing."""
        reply, error, sent = ask(self.kdns.port, name, qtype, proto)
        at = sent - self.t0
        during = self.during(at)
        trouble = outside and self.faults is not None and self.faults.upstream_trouble(at)
        if reply is None:
            self.add(Check(at, category, name, qtype, proto, error, expected, "tolerated" if trouble else "unanswered", during))
            return
        got, right, degraded = judge(reply)
        verdict = "ok" if right and not degraded else ("tolerated" if trouble and (right or degraded) else "wrong")
        self.add(Check(at, category, name, qtype, proto, got, expected, verdict, during))

    def outside(self, n: int, proto: str = "udp") -> None:
        want = soak_cluster.outside_ip(n)
        name = soak_cluster.outside_name(n)

        def judge(reply):
            got = a_answer(reply, name)
            if got == "SERVFAIL":
                return "SERVFAIL", False, True
            return show(got), got == frozenset([want]), False
        self.fixed("outside name (forwarded)", name, "A", judge, f"A {want}", outside=True, proto=proto)

    def external(self, svc: soak_cluster.Svc) -> None:
        target = svc.external_name.rstrip(".") + "."
        inside = target.endswith(f".svc.{soak_cluster.ZONE}.")
        want_ip = None if inside else soak_cluster.external_target_ip(int(svc.name.split("-")[1]))

        def judge(reply):
            if reply.rcode() != dns.rcode.NOERROR:
                text = dns.rcode.to_text(reply.rcode())
                return text, False, text == "SERVFAIL" and not inside
            cnames = [rd.target.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.CNAME for rd in rrset]
            ips = {rd.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset}
            text = f"CNAME {','.join(cnames) or '-'}" + (f" A {','.join(sorted(ips))}" if ips else "")
            if cnames != [target]:
                return text, False, False
            if inside:
                return text, True, False
            if not ips:
                return text, True, True  # the CNAME alone: the upstream did not answer
            return text, ips == {want_ip}, False
        expected = f"CNAME {target}" + ("" if inside else f" A {want_ip}")
        self.fixed("ExternalName " + ("inside" if inside else "outside"), svc.fqdn, "A", judge, expected, outside=not inside)

    def miss(self, name: str) -> None:
        def judge(reply):
            return dns.rcode.to_text(reply.rcode()), reply.rcode() == dns.rcode.NXDOMAIN, False
        self.fixed("search-path miss", name, "A", judge, "NXDOMAIN")

    def ptr(self, svc: soak_cluster.Svc) -> None:
        name = dns.reversename.from_address(svc.cluster_ip).to_text()

        def judge(reply):
            targets = [rd.target.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.PTR for rd in rrset]
            return (f"PTR {','.join(targets)}" if targets else dns.rcode.to_text(reply.rcode())), targets == [svc.fqdn + "."], False
        self.fixed("PTR of a stable ClusterIP", name, "PTR", judge, f"PTR {svc.fqdn}.")

    # -- a sample --

    def sample(self) -> None:
        now = time.monotonic()
        rng = self.rng
        with self.churn.lock:
            everyone = self.churn.all_svcs()
            churned = [(s.changed, s) for s in everyone if s.changed > -math.inf]
        settled = [s for t, s in churned if now - 8 <= t <= now - GRACE and s.present]
        flight = [s for t, s in churned if t > now - GRACE]
        deleted = [s for t, s in churned if t < now - GRACE and not s.present]
        for s in rng.sample(settled, min(4, len(settled))):
            self.cluster_a("changed 2-8 s ago", s.fqdn)
        for s in rng.sample(flight, min(2, len(flight))):
            self.cluster_a("changed < 2 s ago", s.fqdn)
        for s in rng.sample(deleted, min(2, len(deleted))):
            self.cluster_a("deleted > 2 s ago", s.fqdn)
        for s in rng.sample(self.stable, 4):
            self.cluster_a("stable", s.fqdn)
        sts = [s for s in everyone if s.statefulset]
        for s in rng.sample(sts, min(2, len(sts))):
            self.cluster_a("StatefulSet hostname", f"{s.name}-{rng.randrange(5)}.{s.fqdn}")
        for n in rng.sample(range(soak_cluster.OUTSIDE_HOSTS), 2):
            self.outside(n)
        outside = [s for s in self.externals if not s.external_name.endswith(soak_cluster.ZONE)]
        inside = [s for s in self.externals if s.external_name.endswith(soak_cluster.ZONE)]
        for group in (outside, inside):
            if group:
                self.external(rng.choice(group))
        self.miss(rng.choice(self.misses))
        self.ptr(rng.choice(self.stable_ips))
        self.cluster_a("stable", rng.choice(self.stable).fqdn, proto="tcp")
        pool = settled or self.stable
        self.cluster_a("changed 2-8 s ago" if settled else "stable", rng.choice(pool).fqdn, proto="tcp")

    def sweep(self, category: str) -> None:
        """Every cluster name, the outside names and the ExternalNames, once."""
        for name in self.expected.names():
            self.cluster_a(category, name)
        for n in range(soak_cluster.OUTSIDE_HOSTS):
            self.outside(n)
        for svc in self.externals:
            self.external(svc)
