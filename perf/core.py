"""`make bench-core`: the serving core in this process, no sockets: what one query costs in
`Responder.handle`, the function every UDP and TCP query of `kdns serve` goes through.

The run: `make bench`'s cluster (`--services`, default 1,000) is read as manifests into an
index as `kdns serve --manifests DIR` reads it, once without an upstream (as `make bench` runs
kdns) and once with one (for the last case). Query bytes are prepared as stub resolvers send
them (RD, no EDNS, random IDs) and asked as over UDP (no size limit, no client address, no
statistics: those are the shell's). Each case is checked before it is timed (every query gets
the answer its kind expects; replayed queries are in the replay table, memo hits in the memo
and not in the replay table); a difference stops the run. Timing: `time.perf_counter()` (and
the thread's CPU time) around a plain loop of `handle` calls over prepared queries; queries
and fresh responders are made between timed loops. After a warm-up, `--rounds` rounds of at
least `--seconds` each; the table shows the median round, its spread and 1 / it (one core's
capacity for that case alone). The garbage collector stays on, as when serving.

The cases (perf/README.md has the table):

* replay-table hit: `make bench`'s query file (100,000 lines, about 15,000 distinct) asked
  once, then again: the stored reply gets the new ID. (Where the C part of the UDP loop is
  built, `kdns serve` answers these without calling `handle`.)
* memo hit, new ID and case: the same lines in a case the replay table does not hold (the
  k-th asking of a name flips the letters k's bits say): the memo's packed answer is spliced.
* first-time NXDOMAIN: `<svc>.<ns>.<other ns>.svc.cluster.local` (a pod's search-path misses),
  each once on a fresh responder: parsed, answered, packed, remembered.
* first-time positive: the A question of every ClusterIP and headless Service, likewise.
* needs an upstream: `host-N.example.com`, and ExternalNames to outside names (CNAME, then the
  target upstream): the work up to the upstream's question.

Usage: python -m perf.core [--services N] [--rounds N] [--seconds S] [--record]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dns.rcode
import dns.rdatatype

# --- kdns: every use of kdns's API is in this block (adapt it here when those APIs change) ----
from kdns.config import DnsConfig
from kdns.index import Index
from kdns.responder import Responder, UpstreamQuery
from kdns.sources.manifests import ManifestSet
from perf.bench import cluster, kdns_revision, log, machine, record


def build_snapshot(manifests: Path, forwarding: bool) -> object:
    """The snapshot `kdns serve --manifests DIR --listen 127.0.0.1:PORT` serves after its
    first read of DIR (with `--upstream ...` when `forwarding`)."""
    index = Index(DnsConfig(ns_addresses=("127.0.0.1",), forwarding=forwarding), now=1)
    index.apply(ManifestSet([str(manifests)]).load(), now=1)
    return index.snapshot


def new_handler(snapshot: object) -> tuple[Callable[[bytes], object], object]:
    """(handle, responder): a fresh responder on `snapshot` and the call a UDP query makes."""
    responder = Responder(snapshot)
    return responder.handle, responder


def upstream_question(result: object) -> bytes | None:
    """The question (name, type, class in wire form) to ask upstream, or None for a reply."""
    return result.question if isinstance(result, UpstreamQuery) else None


def replayed(responder: object, data: bytes) -> bool:
    """Whether `data` is answered from the replay table (its bytes after the ID are there)."""
    return data[2:] in responder.replies


def memoised(responder: object, data: bytes) -> bool:
    """Whether the packed answer to `data`'s question is in the memo."""
    end = data.index(0, 12) + 1
    return data[end : end + 4] in responder.memo.get(data[12:end].lower(), {})


def forwarding_shell(snapshot: object, outside: list[bytes]) -> tuple[Callable[[bytes], object], Callable[[], None]]:
    """(ask, forget): the UDP slow path of `kdns serve --upstream ...` (`Serving.answer_udp`,
    with statistics) over a forwarding cache that holds a fresh answer (one A record, TTL 300)
    for every query of `outside`; `forget` empties the replay table, so that the next asking
    of each is a fresh cache hit answered in Python (as the first asking of each is)."""
    import time as clock

    import dns.message
    import dns.rrset

    from kdns import upstream as up
    from kdns.cache import ForwardCache
    from kdns.serve.forward import Forwarder, Upstream, _key
    from kdns.serve.serving import Serving
    from kdns.state import DnsState
    from kdns.stats import QueryStats, replay_key

    state = DnsState(snapshot.config, now=1, replay_key=replay_key)
    state.responder = Responder(snapshot, replay_key=replay_key)
    cache = ForwardCache(clock=clock.monotonic, maxsize=100_000, max_ttl=3600, stale_for=60)
    serving = Serving(state, forwarder=Forwarder([Upstream("127.0.0.1", 53)], {}, cache, timeout=1.0))
    for data in outside:
        uq = state.responder.handle(data)
        ours = dns.message.make_query(dns.name.from_wire(uq.question, 0)[0], "A", id=7, use_edns=0, payload=1232)
        reply = dns.message.make_response(ours)
        reply.answer.append(dns.rrset.from_text(ours.question[0].name, 300, "IN", "A", "192.0.2.1"))
        cache.put(_key(uq), up.parse_reply(reply.to_wire(), 7, uq.question, 3600, snapshot.config.all_zones))
    stats, peer = QueryStats("dns://127.0.0.1:53", "udp", "1"), ("127.0.0.1", 40000)
    return (lambda data: serving.answer_udp(data, peer, stats)), state.responder.drop_replies

# --- end of kdns's API ----------------------------------------------------------------------


PASS = 20_000  # queries per timed loop at most
HEADER = b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"  # ID 0, RD, one question
Handler = Callable[[bytes], object]


class CaseError(Exception):
    """A case's queries do not get the answers the case is about: its figure would mislead."""


def wire(qname: str, qtype: str) -> bytes:
    """The query as a stub resolver sends it: RD set, one question, no EDNS, class IN (ID 0;
    `with_id` sets one)."""
    name = b"".join(len(label).to_bytes(1, "big") + label.encode("ascii") for label in qname.rstrip(".").split("."))
    return HEADER + name + b"\x00" + dns.rdatatype.from_text(qtype).to_bytes(2, "big") + b"\x00\x01"


def with_id(data: bytes, rng: random.Random) -> bytes:
    return rng.randrange(65536).to_bytes(2, "big") + data[2:]


def letters(data: bytes) -> list[int]:
    """The offsets of the question name's letters (length octets are below 64, never letters)."""
    end = data.index(0, 12)
    return [i for i in range(12, end) if 0x61 <= data[i] <= 0x7A]


def recase(data: bytes, positions: list[int], k: int) -> bytes:
    """`data` with the letters at `positions` upper-cased where k's bits are set: a distinct
    spelling of the name for every k < 2 ** len(positions)."""
    out = bytearray(data)
    for pos in positions:
        if not k:
            break
        if k & 1:
            out[pos] ^= 0x20
        k >>= 1
    return bytes(out)


def answer_class(reply: bytes) -> str:
    """NOERROR (with answer records), NODATA, or the RCODE's name, from the reply's header."""
    rcode = dns.rcode.to_text(reply[3] & 0x0F)
    if rcode == "NOERROR":
        return "NOERROR" if reply[6:8] != b"\x00\x00" else "NODATA"
    return rcode


def name_of(question: bytes) -> str:
    labels, pos = [], 0
    while question[pos]:
        labels.append(question[pos + 1 : pos + 1 + question[pos]].decode("ascii"))
        pos += 1 + question[pos]
    return ".".join(labels).lower()


# --- the cases ------------------------------------------------------------------------------


@dataclass
class Case:
    label: str
    queries: str  # what is asked, for the table

    def check(self) -> None:
        """Raise CaseError unless every query gets the answer the case is about."""

    def next_pass(self) -> tuple[Handler, list[bytes]]:
        """The handler and the queries of the next timed loop (made here, untimed)."""
        raise NotImplementedError


def distinct(mix: list[cluster.Query]) -> tuple[dict[cluster.Query, bytes], dict[bytes, str]]:
    """({query: its bytes}, {bytes: the answer class its category expects}) of `mix`'s distinct queries."""
    base = {q: wire(q.qname, q.qtype) for q in set(mix)}
    return base, {data: cluster.CATEGORIES[q.category] for q, data in base.items()}


class Replay(Case):
    def __init__(self, snapshot, mix: list[cluster.Query], rng: random.Random):
        super().__init__("replay-table hit", f"the `make bench` file: {len(mix):,} lines, {len(set(mix)):,} distinct; random IDs")
        self.handle, self.responder = new_handler(snapshot)
        base, self.expected = distinct(mix)
        for data in base.values():  # fills the memo and the replay table
            self.handle(with_id(data, rng))
        self.lines = [with_id(base[q], rng) for q in mix]
        self.at = 0

    def check(self) -> None:
        for data, expected in self.expected.items():
            if not replayed(self.responder, data):
                raise CaseError(f"{self.label}: {name_of(data[12:])} is not in the replay table after one asking")
            got = answer_class(self.handle(data))
            if got != expected:
                raise CaseError(f"{self.label}: {name_of(data[12:])} got {got}, expected {expected}")

    def next_pass(self) -> tuple[Handler, list[bytes]]:
        chunk = self.lines[self.at : self.at + PASS]
        self.at = (self.at + PASS) % len(self.lines)
        return self.handle, chunk


class MemoHit(Case):
    def __init__(self, snapshot, mix: list[cluster.Query], rng: random.Random):
        super().__init__("memo hit, new ID and case", "the lines with records in their answer, each with a new ID and a spelling "
                                                      "(case) the replay table does not hold")
        self.handle, self.responder = new_handler(snapshot)
        self.rng = rng
        base, expected = distinct(mix)
        for data in base.values():  # fills the memo (and the replay table with the lowercase bytes)
            self.handle(data)
        # (answers without records, NXDOMAIN and NODATA, are not kept in the memo: they are
        # made again, as the first-time cases measure)
        kept = {q for q, data in base.items() if memoised(self.responder, data)}
        self.expected = {base[q]: expected[base[q]] for q in kept}
        self.lines = [base[q] for q in mix if q in kept]
        self.positions = {data: letters(data) for data in base.values()}
        self.asked = dict.fromkeys(base.values(), 0)  # spellings of each query made so far
        self.at = 0

    def spelling(self, data: bytes) -> bytes:
        """The next spelling of `data`'s name: 1, 2, ... 2 ** letters - 1, then 1 again. The
        tightest, a PTR name (1,023 spellings) in 42 of the 100,000 lines (--services 100),
        comes back after 2 million queries: the replay table (50,000 at most) forgot it."""
        positions = self.positions[data]
        k = self.asked[data] = self.asked[data] % (2 ** len(positions) - 1) + 1
        return with_id(recase(data, positions, k), self.rng)

    def check(self) -> None:
        if len(self.expected) < 100:
            raise CaseError(f"{self.label}: only {len(self.expected)} questions kept in the memo")
        for data, expected in self.expected.items():
            variant = self.spelling(data)
            if replayed(self.responder, variant) or not memoised(self.responder, variant):
                raise CaseError(f"{self.label}: {name_of(data[12:])} in a new case is not a memo hit that misses the replay table")
            got = answer_class(self.handle(variant))
            if got != expected:
                raise CaseError(f"{self.label}: {name_of(data[12:])} got {got}, expected {expected}")

    def next_pass(self) -> tuple[Handler, list[bytes]]:
        chunk = [self.spelling(data) for data in self.lines[self.at : self.at + PASS]]
        self.at = (self.at + PASS) % len(self.lines)
        return self.handle, chunk


class FirstTime(Case):
    """Each query once per fresh responder: every one takes the full path."""

    def __init__(self, label: str, queries: str, snapshot, pool: list[bytes], expected: str, rng: random.Random):
        super().__init__(label, queries)
        self.snapshot, self.pool, self.expected, self.rng = snapshot, pool, expected, rng
        self.at = 0

    def check(self) -> None:
        if len(set(self.pool)) != len(self.pool):
            raise CaseError(f"{self.label}: the same question twice in the pool")
        handle, responder = new_handler(self.snapshot)
        for data in self.pool:
            if memoised(responder, data):
                raise CaseError(f"{self.label}: {name_of(data[12:])} is in a fresh responder's memo")
            got = answer_class(handle(data))
            if got != self.expected:
                raise CaseError(f"{self.label}: {name_of(data[12:])} got {got}, expected {self.expected}")

    def next_pass(self) -> tuple[Handler, list[bytes]]:
        handle, _ = new_handler(self.snapshot)
        chunk = [with_id(data, self.rng) for data in self.pool[self.at : self.at + PASS]]
        self.at = 0 if self.at + PASS >= len(self.pool) else self.at + PASS
        return handle, chunk


class ForwardHit(Case):
    """A fresh answer of the forwarding cache, answered where the query arrives (no task): the
    first asking of each question (the rest are replayed until the prefetch window opens)."""

    def __init__(self, snapshot, names: list[bytes], rng: random.Random):
        super().__init__("forwarding-cache hit", f"{len(names):,} outside names, A, each a fresh cache entry; "
                                                 "the shell's UDP path with statistics (`Serving.answer_udp`)")
        self.handle, self.forget = forwarding_shell(snapshot, names)
        self.lines, self.rng = names, rng

    def check(self) -> None:
        self.forget()
        for data in self.lines:
            reply = self.handle(data)
            if not isinstance(reply, bytes) or answer_class(reply) != "NOERROR":
                raise CaseError(f"{self.label}: {name_of(data[12:])} was not answered from the cache at once")

    def next_pass(self) -> tuple[Handler, list[bytes]]:
        self.forget()
        return self.handle, [with_id(data, self.rng) for data in self.lines[:PASS]]


class NeedsUpstream(Case):
    def __init__(self, snapshot, targets: dict[bytes, str], rng: random.Random):
        externals = sum(1 for data, target in targets.items() if name_of(data[12:]) != target)
        super().__init__("needs an upstream",
                         f"{len(targets) - externals:,} outside names and {externals} ExternalNames to outside names, A; up to the upstream's question")
        self.handle, _ = new_handler(snapshot)
        self.targets, self.rng = targets, rng
        self.lines = list(targets)

    def check(self) -> None:
        for data, target in self.targets.items():
            question = upstream_question(self.handle(data))
            if question is None or name_of(question) != target:
                raise CaseError(f"{self.label}: {name_of(data[12:])} did not give the upstream question for {target}")

    def next_pass(self) -> tuple[Handler, list[bytes]]:
        return self.handle, [with_id(self.lines[i % len(self.lines)], self.rng) for i in range(PASS)]


def make_cases(snapshot, forwarding, model: list[cluster.Service], rng: random.Random) -> list[Case]:
    """The cases on `snapshot` (no upstream), the upstream one on `forwarding`."""
    mix = cluster.make_queries(model, cluster.QUERY_LINES)
    namespaces = sorted({s.namespace for s in model})
    misses = [wire(f"{s.name}.{s.namespace}.{ns}.svc.{cluster.ZONE}", "A") for s in model for ns in namespaces if ns != s.namespace]
    found = [wire(s.fqdn, "A") for s in model if s.kind in ("clusterip", "headless")]
    outside = {wire(f"host-{n}.example.com", "A"): f"host-{n}.example.com" for n in range(1_000)}
    outside |= {wire(s.fqdn, "A"): s.external_name for s in model
                if s.kind == "external" and not s.external_name.endswith(f".svc.{cluster.ZONE}")}
    return [
        Replay(snapshot, mix, rng),
        MemoHit(snapshot, mix, rng),
        ForwardHit(forwarding, list(outside)[:1_000], rng),
        FirstTime("first-time NXDOMAIN", f"{len(misses):,} search-path misses `svc.ns.<other ns>.svc.cluster.local`, A",
                  snapshot, misses, "NXDOMAIN", rng),
        FirstTime("first-time positive", f"{len(found):,} ClusterIP and headless Services, A", snapshot, found, "NOERROR", rng),
        NeedsUpstream(forwarding, outside, rng),
    ]


# --- timing ---------------------------------------------------------------------------------


def timed(handle: Handler, queries: list[bytes]) -> tuple[float, float]:
    """(seconds by time.perf_counter, CPU seconds of this thread) of asking `queries`."""
    cpu, started = time.thread_time(), time.perf_counter()
    for data in queries:
        handle(data)
    return time.perf_counter() - started, time.thread_time() - cpu


@dataclass
class Round:
    us: float  # per query, by time.perf_counter
    cpu_us: float  # per query, CPU time of this thread


def measure(case: Case, rounds: int, seconds: float) -> list[Round]:
    timed(*case.next_pass())  # warm-up
    figures = []
    for _ in range(rounds):
        spent, cpu, count = 0.0, 0.0, 0
        while spent < seconds:
            handle, queries = case.next_pass()
            wall, on_cpu = timed(handle, queries)
            spent, cpu, count = spent + wall, cpu + on_cpu, count + len(queries)
        figures.append(Round(spent / count * 1e6, cpu / count * 1e6))
    return figures


def loop_cost(seconds: float) -> float:
    """µs per query of the timing loop itself, calling a function that does nothing."""
    queries = [b""] * PASS
    spent, count = 0.0, 0
    while spent < seconds:
        spent += timed(lambda data: None, queries)[0]
        count += len(queries)
    return spent / count * 1e6


# --- the report -----------------------------------------------------------------------------


def report(args: argparse.Namespace, cases: list[Case], figures: dict[str, list[Round]], loop_us: float, revision: str) -> str:
    rows = []
    for case in cases:
        us = [r.us for r in figures[case.label]]
        median = statistics.median(us)
        cpu = statistics.median(r.cpu_us for r in figures[case.label])
        rows.append(f"| {case.label} | {case.queries} | **{median:.2f}** | {min(us):.2f}–{max(us):.2f} | {1e6 / median:,.0f} | {cpu:.2f} |")
    return f"""## In-process: the serving core, `Responder.handle` ({time.strftime('%Y-%m-%d')})

Machine: {machine()}; kdns at {revision}.
Command: `python -m perf.core --services {args.services} --rounds {args.rounds} --seconds {args.seconds:g}`

* Cluster: `make bench`'s, {args.services:,} Services, read as manifests into an index in this process as `kdns serve
  --manifests DIR` reads them (with `--upstream` for the last case); a `Responder` on its snapshot. No sockets.
* Queries as stub resolvers send them (RD, no EDNS, random IDs), asked as over UDP, without statistics; each case's
  answers checked first. Figures: the median of {args.rounds} rounds of at least {args.seconds:g} s of `handle` calls
  (`time.perf_counter` around a loop over prepared queries, GC on), the rounds' range beside it; queries/s is one core's
  capacity for that case alone. The loop's own cost, {loop_us:.3f} µs per query, is included in every figure. CPU µs:
  this thread's CPU time (`time.thread_time`) over the same calls; well below the µs per query, the process was
  waiting for a core (a busy machine) and the CPU figure is the steadier one.

| case | queries | µs per query (median) | rounds (µs) | queries/s | CPU µs per query (median) |
| --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1_000, help="Services in the generated cluster (default 1000)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per case (default 5)")
    parser.add_argument("--seconds", type=float, default=0.5, help="seconds of timed calls per round, at least (default 0.5)")
    parser.add_argument("--record", action="store_true", help="prepend the results to perf/RESULTS.md (below its intro)")
    args = parser.parse_args()
    if args.services < 100 or not 1 <= args.rounds <= 50 or not 0.05 <= args.seconds <= 60:
        parser.error("--services at least 100, --rounds 1-50, --seconds 0.05-60")
    rng = random.Random(1)
    model = cluster.make_cluster(args.services)
    with tempfile.TemporaryDirectory(prefix="kdns-core-") as tmp:
        cluster.write_manifests(model, Path(tmp))
        served = build_snapshot(Path(tmp), forwarding=False)
        forwarding = build_snapshot(Path(tmp), forwarding=True)
    cases = make_cases(served, forwarding, model, rng)
    try:
        for case in cases:
            case.check()
    except CaseError as exc:
        sys.exit(f"bench-core: error: {exc}")
    log(f"{len(cases)} cases checked; timing {args.rounds} rounds of {args.seconds:g} s each")
    gc.collect()
    figures = {}
    for case in cases:
        figures[case.label] = rounds = measure(case, args.rounds, args.seconds)
        log(f"{case.label}: {', '.join(f'{r.us:.2f}' for r in rounds)} µs per query "
            f"(CPU {', '.join(f'{r.cpu_us:.2f}' for r in rounds)})")
        if sum(r.cpu_us for r in rounds) < 0.9 * sum(r.us for r in rounds):
            log(f"note: {case.label} was on a core {sum(r.cpu_us for r in rounds) / sum(r.us for r in rounds):.0%} of the time: "
                "the machine is busy, compare the CPU figures")
    section = report(args, cases, figures, loop_cost(args.seconds), kdns_revision())
    print(section)
    if args.record:
        record(section)
        log("prepended to perf/RESULTS.md")


if __name__ == "__main__":
    main()
