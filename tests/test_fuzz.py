"""Fuzzing the inputs kdns does not control (issue 7): packets, upstream replies, Kubernetes
objects and config files.

Four targets, each a plain function that raises AssertionError when an invariant breaks, so
that the same checks serve hypothesis here (a bounded number of examples, derandomised, in
`make test`), the replay of the regression corpus in `tests/fuzz_corpus/`, and the atheris
harness for long coverage-guided runs (`perf/fuzz.py`, which imports this module):

* `check_packet(data)`: query bytes into `Responder.handle` over the demo cluster (UDP and
  TCP; several configurations: plain, forwarding with autopath, verified pods, not yet
  synced). Never raises, never takes the "bug: SERVFAIL" path (an ERROR log), answers None
  exactly for packets too short for a header or with QR set, keeps the query's ID and
  opcode, stays within the size the transport and the client's EDNS allow, parses with
  dnspython, echoes a well-formed query's question byte for byte, gives the same bytes when
  asked again (memo and replay table) as a fresh Responder over the same snapshot would. An
  `UpstreamQuery` carries the query's ID and makes a well-formed SERVFAIL and upstream reply.
* `check_upstream(data)`: a selector byte (which client query, `CLIENT_QUERIES`) and an
  upstream's reply into `upstream.parse_reply`. Only `ReplyError` may come out; a parsed
  reply renders (`upstream.render`, fresh, aged and stale) into a reply to the client that
  dnspython parses, within the client's limit, with its ID and question.
* `check_objects(objects)`: Kubernetes objects (dicts as parsed from JSON/YAML) into
  `convert.convert`: a model value, None or `ObjectError`, nothing else. What converts is
  applied to an index of the demo cluster; the names it touches are answered well-formed,
  and a responder that memoised answers before the change answers exactly as a fresh one
  after it (and again after the objects are deleted).
* `check_config(data)` / `check_config_text(raw)`: a parsed config file (or the bytes of
  one) through `file_problems`, `check_file`, `load_file`, `build` and
  `check_config_file`: a list of problems or `ConfigError`, nothing else; a config that
  builds serves its zones' apex with well-formed replies.

tests/fuzz_corpus/README.md describes the corpus and how each file is replayed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.wire
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from kdns import names, upstream, wire
from kdns import settings as kdns_settings
from kdns.config import ConfigError, DnsConfig, PodsMode
from kdns.model import Delete, EndpointSlice, Namespace, Pod, Service, Upsert
from kdns.responder import Responder, UpstreamQuery
from kdns.sources import convert
from kdns.sources.allocate import ClusterIPAllocator
from kdns.sources.manifests import ManifestSet
from kdns.state import DnsState
from kdns.stats import QueryStats, replay_key
from kdns.transfer import TransferQuery

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo-cluster.yaml"
CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
TARGETS = ("packet", "reply", "manifest", "config")

QR, OPCODE_MASK, TC, RD = 0x8000, 0x7800, 0x0200, 0x0100
MAX_TCP = 65535
POD_CLIENT = "10.244.7.7"  # a Pod of namespace shop in the autopath responder's index
UPSTREAM_ID = 0x4B44  # the ID of "our" upstream query in the reply target
MAX_TTL = 30  # --cache-ttl for parse_reply


# -- the servers under test -------------------------------------------------------------------

DEMO_EVENTS = ManifestSet([str(DEMO)]).load()
EXTRA_POD = Pod("shop", "client", (POD_CLIENT,), False)
NS_ADDRESSES = ("127.0.0.1", "::1")

CONFIGS = {
    "plain": DnsConfig(ns_addresses=NS_ADDRESSES),
    "forwarding": DnsConfig(ns_addresses=NS_ADDRESSES, forwarding=True, autopath=True),
    "verified": DnsConfig(ns_addresses=NS_ADDRESSES, pods=PodsMode.VERIFIED, stub_domains=("example.org",)),
    "unsynced": DnsConfig(ns_addresses=NS_ADDRESSES, forwarding=True),
}


def demo_state(config: DnsConfig, *, synced: bool = True) -> DnsState:
    """The demo cluster published as the server publishes it (replay keys as the shell's)."""
    state = DnsState(config, sources=() if synced else ("api",), now=1000, replay_key=replay_key)
    state.apply([*DEMO_EVENTS, Upsert(EXTRA_POD)], now=1000)
    return state


SNAPSHOTS = {key: demo_state(cfg, synced=key != "unsynced").snapshot for key, cfg in CONFIGS.items()}
# Long-lived responders: their memo and replay table fill up as examples go by, so later
# examples meet the fast path and the replays of earlier ones.
RESPONDERS = {key: Responder(snap, replay_key=replay_key) for key, snap in SNAPSHOTS.items()}
FORWARDING = RESPONDERS["forwarding"]

ZONE = "cluster.local"
OUTSIDE_NAMES = [
    "example.org", "www.example.org", "payments.example.com", "a.root-servers.net", "", "com", "org",
    "cluster", "local", "arpa", "10.in-addr.arpa", "1.0.0.127.in-addr.arpa", "8.8.8.8.in-addr.arpa",
    "1.1.1.1.1.in-addr.arpa", "01.0.0.10.in-addr.arpa", "b.a.9.8.ip6.arpa",
    "example.org.shop.svc.cluster.local", "example.org.svc.cluster.local", "example.org.cluster.local",
    "web.shop", "web.shop.svc", "kubernetes.default", "web.shop.svc.cluster.local.example.org",
    "10-244-1-10.shop.pod.cluster.local", "10-244-7-7.shop.pod.cluster.local", "fd00-10-244-1--a.shop.pod.cluster.local",
    "fd00-10-244-1-0-0-0-0-a.shop.pod.cluster.local", "010-001-002-003.shop.pod.cluster.local",
    "10-1-2-3.nope.pod.cluster.local", "1-2-3-4-5.shop.pod.cluster.local", "--1.shop.pod.cluster.local",
    "x.web.shop.svc.cluster.local", "_http._udp.web.shop.svc.cluster.local", "*.shop.svc.cluster.local",
    "_tcp.db.shop.svc.cluster.local", "db-2.db.shop.svc.cluster.local", "storefront.shop.svc.cluster.local",
]
DEMO_NAMES = sorted(
    {names.join(rel, ZONE) for rel in SNAPSHOTS["plain"].names}
    | {names.reverse_name(ip) for ip in SNAPSHOTS["plain"].ptr}
    | {names.join(z) for z in ("in-addr.arpa", "ip6.arpa")}
    | set(OUTSIDE_NAMES)
)
LABELS = sorted({label for name in DEMO_NAMES for label in name.split(".") if label})


def stats(limit: int | None) -> QueryStats:
    return QueryStats("dns://127.0.0.1:53", "udp" if limit is None else "tcp", "1")


# -- checking a reply ---------------------------------------------------------------------------


class _Errors(logging.Handler):
    """Collects ERROR records of the `kdns` loggers: `Responder` logs a bug (then answers
    SERVFAIL) instead of raising, so a bug shows up here and nowhere else."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def no_errors_logged(what: str):
    handler = _Errors()
    logger = logging.getLogger("kdns")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    if handler.records:
        record = handler.records[0]
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        raise AssertionError(f"{what}: kdns logged an error: {text}")


def reply_edns(reply: bytes, what: str) -> int:
    """The EDNS version of the reply as dnspython reads it (-1: no OPT); AssertionError if
    dnspython cannot read the reply."""
    try:
        return _dnspython_edns(reply)
    except Exception as exc:  # noqa: BLE001 - any failure to parse is the finding
        raise AssertionError(f"{what}: dnspython cannot parse the reply ({type(exc).__name__}: {exc}): {reply.hex()}") from None


@functools.lru_cache(maxsize=4096)  # the same replies come back often (demo names): parse each once
def _dnspython_edns(reply: bytes) -> int:
    return dns.message.from_wire(reply, ignore_trailing=False).edns


def relayed_edns(reply: bytes, what: str) -> int:
    """Like `reply_edns` for a reply whose records dnspython may refuse as a whole: the
    header and question as dnspython reads them, then every record walked by hand (names
    with dnspython), the RDATA of the types kdns checks parsed by dnspython. The EDNS
    version of the OPT record, -1 without one."""
    try:
        dns.message.from_wire(reply, question_only=True)
        counts = struct.unpack_from("!4H", reply, 4)
        _, used = dns.name.from_wire(reply, 12)  # (name, bytes it takes up here)
        pos = 12 + used + 4
        edns = -1
        for i in range(sum(counts[1:])):
            _, used = dns.name.from_wire(reply, pos)
            rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", reply, pos + used)
            start = pos + used + 10
            pos = start + rdlength
            assert pos <= len(reply), "a record runs past the end"
            if rtype == dns.rdatatype.OPT:
                assert i == sum(counts[1:]) - 1 and edns < 0, "OPT not the last record, or twice"
                edns = (ttl >> 16) & 0xFF
            elif rtype in upstream._LAYOUTS:
                dns.rdata.from_wire_parser(rclass, rtype, dns.wire.Parser(reply[start:pos]))
        assert pos == len(reply), "bytes after the last record"
    except Exception as exc:  # noqa: BLE001 - any failure to parse is the finding
        raise AssertionError(f"{what}: malformed reply ({type(exc).__name__}: {exc}): {reply.hex()}") from None
    return edns


def udp_size_allowed(query: wire.Query | None) -> int:
    if query is None or query.edns is None:
        return wire.MIN_UDP
    return max(wire.MIN_UDP, min(query.edns.udp_size, wire.MAX_UDP))


def try_parse_query(data: bytes) -> wire.Query | None:
    try:
        return wire.parse_query(data)
    except wire.Malformed:
        return None


def check_reply_bytes(data: bytes, query: wire.Query | None, reply: bytes, limit: int | None, what: str, *, opaque: bool = False) -> None:
    """The invariants of any reply kdns sends to `data` (the query bytes, `query` parsed).

    `opaque`: the reply relays an upstream's records that dnspython itself refuses in the
    upstream's reply (RDATA of a type kdns copies as it is, RFC 3597): dnspython need not
    read the whole reply, but the records must still be laid out right and those of the
    types kdns checks (`upstream._LAYOUTS`) well-formed (`relayed_edns`)."""
    assert isinstance(reply, bytes), f"{what}: reply of type {type(reply).__name__}"
    assert len(reply) >= 12, f"{what}: reply shorter than a header: {reply.hex()}"
    assert reply[:2] == data[:2], f"{what}: reply ID {reply[:2].hex()} for query ID {data[:2].hex()}"
    flags = int.from_bytes(reply[2:4], "big")
    qflags = int.from_bytes(data[2:4], "big")
    assert flags & QR, f"{what}: QR not set in the reply"
    assert flags & OPCODE_MASK == qflags & OPCODE_MASK, f"{what}: opcode changed"
    most = limit if limit is not None else udp_size_allowed(query)
    assert len(reply) <= most, f"{what}: reply of {len(reply)} bytes, more than {most} allowed"
    edns = relayed_edns(reply, what) if opaque else reply_edns(reply, what)
    qdcount = int.from_bytes(reply[4:6], "big")
    if query is None:
        assert qdcount == 0, f"{what}: a malformed query got a reply with a question"
        return
    assert flags & RD == qflags & RD, f"{what}: RD not copied"
    assert qdcount == 1, f"{what}: {qdcount} questions in the reply to a well-formed query"
    assert reply[12 : 12 + len(query.question)] == query.question, f"{what}: question not echoed byte for byte"
    assert (edns >= 0) == (query.edns is not None), f"{what}: OPT in the reply does not follow the query"


def check_slip(data: bytes, query: wire.Query | None, reply: bytes, what: str) -> None:
    """The reply rate limiting sends instead of `reply` now and then (`wire.as_truncated`):
    same ID, TC, the question and the reply's OPT record only, well-formed."""
    what = f"{what} (RRL slip)"
    slip = wire.as_truncated(reply)
    assert slip[:2] == reply[:2] and len(slip) <= wire.MIN_UDP, f"{what}: {slip.hex()}"
    edns = reply_edns(slip, what)
    if query is not None:
        assert int.from_bytes(slip[2:4], "big") & TC, f"{what}: TC not set"
        assert (edns >= 0) == (reply_edns(reply, what) >= 0), f"{what}: OPT record lost or added"
        end = 12 + len(query.question)
        assert slip[4:10] == b"\x00\x01" + b"\x00" * 4 and slip[12:end] == query.question, f"{what}: not the question alone"
        assert len(slip) == end + (11 if edns >= 0 else 0), f"{what}: more than the question and OPT: {slip.hex()}"


def check_forward(responder: Responder, data: bytes, fwd: UpstreamQuery, limit: int | None, what: str) -> None:
    query = fwd.query
    assert responder.snapshot.config.forwarding or responder.snapshot.config.stub_domains, f"{what}: forwarded without upstreams"
    assert query.qid == data[:2], f"{what}: UpstreamQuery for ID {query.qid.hex()}, query ID {data[:2].hex()}"
    assert fwd.limit == (udp_size_allowed(query) if limit is None else limit), f"{what}: UpstreamQuery limit {fwd.limit}"
    try:
        asked, end = wire.read_name(fwd.question, 0, compressed=False)
    except wire.BadName as exc:  # UpstreamQuery.name and the forwarder's routing would raise it
        raise AssertionError(f"{what}: the question to ask upstream is not a valid name ({exc}): {fwd.question.hex()}") from None
    assert end + 4 == len(fwd.question) and fwd.question[-4:] == query.qtail, f"{what}: upstream question {fwd.question.hex()}"
    assert fwd.name == fwd.name.lower()
    if any(byte >= 0x80 for label in asked for byte in label):  # bytes that can only come from the client's name
        theirs = [label.lower() for label in wire.read_name(data, 12, compressed=False)[0]]
        assert [label.lower() for label in asked] == theirs[: len(asked)], f"{what}: upstream asked for other bytes than the client's: {fwd.question.hex()}"
    check_reply_bytes(data, query, wire.upstream_failure(query), fwd.limit, f"{what} (SERVFAIL after forwarding)")
    # A client outside --allow-recursion: our own records (an ExternalName's CNAME) or REFUSED.
    local = upstream.local_only(query, fwd.prefix, fwd.prefix_count, fwd.limit)
    check_reply_bytes(data, query, local, fwd.limit, f"{what} (recursion refused)")
    # An upstream's ordinary answer to the forwarded question, rendered for this client.
    for reply in plausible_upstream_replies(fwd.question):
        forwarded = upstream.parse_reply(reply, UPSTREAM_ID, fwd.question, MAX_TTL)
        out = upstream.render(forwarded, query, 0.0, fwd.limit, prefix=fwd.prefix, prefix_count=fwd.prefix_count)
        check_reply_bytes(data, query, out, fwd.limit, f"{what} (rendered upstream answer)")


def plausible_upstream_replies(question: bytes) -> list[bytes]:
    head = struct.pack("!6H", UPSTREAM_ID, QR | RD | 0x80, 1, 1, 0, 0) + question
    a = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + b"\x5d\xb8\xd8\x22"
    nx = struct.pack("!6H", UPSTREAM_ID, QR | RD | 0x80 | 3, 1, 0, 1, 0) + question
    nx += b"\x00" + struct.pack("!HHIH", 6, 1, 900, 64) + b"\x01a\x0croot-servers\x03net\x00" + b"\x05nstld\x0cverisign-grs\x03com\x00"
    nx += struct.pack("!5I", 2024010101, 1800, 900, 604800, 86400)
    return [head + a, nx]


def check_packet(data: bytes) -> None:
    """Every invariant of the packet path for one input; AssertionError when one breaks."""
    query = try_parse_query(data)
    for key, responder in RESPONDERS.items():
        clients = ("127.0.0.1", POD_CLIENT) if responder.snapshot.config.autopath else ("127.0.0.1",)
        for limit in (None, MAX_TCP):
            for client in clients:
                what = f"{key} responder, {'UDP' if limit is None else 'TCP'}, client {client}"
                _check_handle(responder, data, query, limit, client, what)
    _check_dnspython_agrees(data, query)


def _check_handle(responder: Responder, data: bytes, query: wire.Query | None, limit: int | None, client: str, what: str) -> None:
    fresh = Responder(responder.snapshot)
    other_id = bytes([data[0] ^ 0x5A]) + data[1:] if data else data
    with no_errors_logged(what):
        first = responder.handle(data, limit=limit, client=client)
        again = responder.handle(data, limit=limit, client=client)
        reference = fresh.handle(data, limit=limit, client=client)
        renamed = responder.handle(other_id, limit=limit, client=client)
        if isinstance(first, bytes):
            stats(limit).count(data, first, responder.zones, 0.001)  # as the shell counts what it sends
    replayed = responder.replies.get(data[2:]) if limit is None else None
    if replayed is not None:  # what the UDP loops (C and Python) send for these bytes from now on
        assert data[:2] + replayed[0] == first, f"{what}: the replay differs from the answer:\n{replayed[0]!r}\n{first!r}"
        assert replayed[1] == replay_key(data, first, responder.zones), f"{what}: replayed under another statistics key"
    is_query = len(data) >= 12 and not data[2] & 0x80
    if not is_query:
        assert first is None and again is None, f"{what}: a reply to a packet that is not a query"
        return
    assert first is not None, f"{what}: no reply to a query"
    assert first == again, f"{what}: asked twice, two different replies:\n{first!r}\n{again!r}"
    assert first == reference, f"{what}: a fresh responder answers differently:\n{first!r}\n{reference!r}"
    if isinstance(first, TransferQuery):  # AXFR/IXFR over TCP: the shell transfers the zone or refuses
        assert limit is not None and first.data == data and first.query.qtype in (251, 252), f"{what}: {first!r}"
        assert isinstance(renamed, TransferQuery) and renamed.query.question == first.query.question
        return
    if isinstance(first, UpstreamQuery):
        check_forward(responder, data, first, limit, what)
        assert isinstance(renamed, UpstreamQuery) and renamed.question == first.question and renamed.prefix == first.prefix
        return
    check_reply_bytes(data, query, first, limit, what)
    check_slip(data, query, first, what)
    assert isinstance(renamed, bytes) and renamed[2:] == first[2:], f"{what}: another ID changed the reply beyond its ID"


def _check_dnspython_agrees(data: bytes, query: wire.Query | None) -> None:
    """Where dnspython and kdns both read a query, they read the same question and EDNS."""
    if query is None:
        return
    try:
        theirs = dns.message.from_wire(data, ignore_trailing=False)
    except Exception:  # noqa: BLE001 - dnspython is stricter about RDATA than a server need be
        return
    if len(theirs.question) != 1:
        return
    q = theirs.question[0]
    assert q.name.to_wire(canonicalize=True) == query.qname, "dnspython reads another question name"
    assert (q.rdtype, q.rdclass) == (query.qtype, query.qclass), "dnspython reads another question type or class"
    assert (theirs.edns >= 0) == (query.edns is not None), "dnspython and kdns disagree about EDNS"
    if query.edns is not None:
        assert theirs.edns == query.edns.version and bool(theirs.ednsflags & dns.flags.DO) == query.edns.do


# -- upstream replies --------------------------------------------------------------------------


def _client_query(name: str, rdtype: str, *, qid: int, edns: int | None = None, payload: int = 1232, do: bool = False) -> bytes:
    if edns is None:
        message = dns.message.make_query(name, rdtype, use_edns=False)
    else:
        message = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload, want_dnssec=do)
    message.id = qid
    return message.to_wire()


# The client queries of the reply target (its first byte picks one): each becomes a UpstreamQuery
# from the forwarding responder, over UDP or TCP.
CLIENT_QUERIES: list[tuple[bytes, int | None, str]] = [
    (_client_query("example.org", "A", qid=0x0101), None, "UDP, no EDNS"),
    (_client_query("ExAmPlE.oRg", "AAAA", qid=0x0202, edns=0, do=True), None, "UDP, EDNS 1232, DO"),
    (_client_query("payments.shop.svc.cluster.local", "A", qid=0x0303, edns=0), None, "ExternalName CNAME prefix"),
    (_client_query("example.org.shop.svc.cluster.local", "A", qid=0x0404), None, "autopath CNAME prefix"),
    (_client_query("mail.example.org", "MX", qid=0x0505, edns=0, payload=512), None, "UDP, EDNS 512"),
    (_client_query("99.99.99.10.in-addr.arpa", "PTR", qid=0x0606), None, "unknown PTR"),
    (_client_query("example.org", "ANY", qid=0x0707, edns=0), MAX_TCP, "TCP"),
    (_client_query("payments.shop.svc.cluster.local", "TXT", qid=0x0808), MAX_TCP, "TCP, ExternalName"),
]


def client_forward(selector: int) -> tuple[bytes, UpstreamQuery]:
    data, limit, _ = CLIENT_QUERIES[selector % len(CLIENT_QUERIES)]
    client = POD_CLIENT if b"example\x03org\x04shop" in data else "127.0.0.1"
    fwd = Responder(SNAPSHOTS["forwarding"]).handle(data, limit=limit, client=client)
    assert isinstance(fwd, UpstreamQuery), f"client query {selector} is not forwarded"
    return data, fwd


def check_upstream(data: bytes) -> None:
    """`data[0]` picks the client query, `data[1:]` is the upstream's reply."""
    if not data:
        return
    client_data, fwd = client_forward(data[0])
    check_upstream_reply(client_data, fwd, data[1:])


def check_upstream_reply(client_data: bytes, fwd: UpstreamQuery, reply: bytes) -> None:
    try:
        forwarded = upstream.parse_reply(reply, UPSTREAM_ID, fwd.question, MAX_TTL)
    except upstream.ReplyError:
        return
    except Exception as exc:
        raise AssertionError(f"parse_reply raised {type(exc).__name__}: {exc} for {reply.hex()}") from exc
    n = sum(forwarded.counts)
    assert len(forwarded.ttl_offsets) == len(forwarded.ttls) == n
    assert 0 <= forwarded.lifetime <= MAX_TTL and 0 <= forwarded.rcode <= 15
    assert 0 <= forwarded.answer_size <= len(forwarded.records)
    for offset, ttl in zip(forwarded.ttl_offsets, forwarded.ttls):
        assert struct.unpack_from("!I", forwarded.records, offset)[0] == ttl, "a TTL offset does not point at the TTL"
    if forwarded.truncated:
        assert forwarded.lifetime == 0, "a truncated reply would be cached"
    query = fwd.query
    theirs_readable = check_same_records(reply, forwarded, fwd)
    for elapsed, stale in ((0.0, None), (12.5, None), (100000.0, None), (0.0, 30)):
        what = f"upstream reply {reply.hex()} rendered after {elapsed}s{' (stale)' if stale else ''}"
        try:
            out = upstream.render(forwarded, query, elapsed, fwd.limit, stale_ttl=stale, prefix=fwd.prefix, prefix_count=fwd.prefix_count)
        except Exception as exc:
            raise AssertionError(f"{what}: render raised {type(exc).__name__}: {exc}") from exc
        check_reply_bytes(client_data, query, out, fwd.limit, what, opaque=not theirs_readable)
        if forwarded.truncated:
            assert int.from_bytes(out[2:4], "big") & TC, f"{what}: a truncated upstream reply passed on without TC"


def check_same_records(reply: bytes, forwarded: upstream.UpstreamAnswer, fwd: UpstreamQuery) -> bool:
    """Where dnspython reads the upstream's reply, the client gets the same records (TTLs and
    case aside), section by section, after our own CNAMEs: re-encoding must not change a name.
    False when dnspython does not read the upstream's reply."""
    try:
        theirs = dns.message.from_wire(reply, ignore_trailing=True)
    except Exception:  # noqa: BLE001 - replies dnspython refuses are judged by what kdns sends (check_reply_bytes)
        return False
    out = upstream.render(forwarded, fwd.query, 0.0, MAX_TCP, prefix=fwd.prefix, prefix_count=fwd.prefix_count)
    try:
        ours = dns.message.from_wire(out)
        prefix = dns.message.from_wire(upstream.local_only(fwd.query, fwd.prefix, fwd.prefix_count, MAX_TCP))
    except Exception:  # noqa: BLE001 - check_reply_bytes reports it
        return True
    what = f"upstream reply {reply.hex()}, relayed as {out.hex()}"
    kept = _scrubbed(theirs)
    for i, name in enumerate(("answer", "authority", "additional")):
        # A failure without a question (FORMERR...) is relayed as its rcode alone: records
        # that cannot be tied to our question are not passed on. The others pass through
        # upstream.scrub (issue 13), whose rules _scrubbed restates with dnspython's names.
        theirs_records = _record_set(kept[i]) if theirs.question else set()
        expected = theirs_records | (_record_set(prefix.answer) if i == 0 else set())
        got = _record_set(ours.sections[i + 1])
        if forwarded.truncated:  # (read only as far as a reply can carry: a part of them)
            assert got <= expected, f"{what}: the {name} section gained {sorted(got - expected)}"
        else:
            assert got == expected, f"{what}: the {name} section changed: {sorted(expected - got)} became {sorted(got - expected)}"
    return True


def _scrubbed(message: dns.message.Message) -> list[list]:
    """The answer, authority and additional rrsets of an upstream's reply that kdns may relay
    (upstream.scrub without zones of its own): the answer for the question's CNAME chain (and
    a DNAME above it); authority and additional at or below the deepest SOA or NS owner of the
    authority section that is a chain name or above one, nothing without one."""
    if not message.question:
        return [[], [], []]
    chain = {message.question[0].name}
    grew = True
    while grew:
        grew = False
        for rrset in message.answer:
            if rrset.rdtype == dns.rdatatype.CNAME and rrset.name in chain:
                for rd in rrset:
                    if rd.target not in chain:
                        chain.add(rd.target)
                        grew = True
    answer = [r for r in message.answer if r.name in chain or (
        r.rdtype == dns.rdatatype.DNAME and any(n != r.name and n.is_subdomain(r.name) for n in chain))]
    apex = None
    for rrset in message.authority:
        zone = rrset.rdtype in (dns.rdatatype.SOA, dns.rdatatype.NS) and any(n.is_subdomain(rrset.name) for n in chain)
        if zone and (apex is None or len(rrset.name) > len(apex)):
            apex = rrset.name
    if apex is None:
        return [answer, [], []]
    return [answer] + [[r for r in section if r.name.is_subdomain(apex)] for section in (message.authority, message.additional)]


def _record_set(section) -> set[tuple]:
    return {
        (rrset.name.to_text().lower(), rrset.rdtype, rrset.rdclass, rd.to_digestable())
        for rrset in section
        if rrset.rdtype not in (dns.rdatatype.OPT, dns.rdatatype.TSIG)
        for rd in rrset
    }


# -- Kubernetes objects ---------------------------------------------------------------------


MODEL_TYPES = (Namespace, Service, EndpointSlice, Pod)


def check_objects(objects: list[Any], *, config_key: str = "verified", allocate: bool = True) -> None:
    """Convert `objects`, apply what converts to the demo cluster, answer the names it touches."""
    allocator = ClusterIPAllocator() if allocate else None
    models = []
    for obj in objects:
        try:
            model = convert.convert(obj, allocator)
        except convert.ObjectError as exc:
            assert str(exc), "an ObjectError without a message"
            continue
        except Exception as exc:
            raise AssertionError(f"convert raised {type(exc).__name__}: {exc} for {obj!r}") from exc
        assert model is None or isinstance(model, MODEL_TYPES), f"convert returned {model!r}"
        if model is not None and model.key not in {m.key for m in models}:
            models.append(model)

    config = CONFIGS[config_key]
    state = demo_state(config)
    warm = state.responder
    questions = [q for model in models for q in questions_for(model)] + DEMO_QUESTIONS
    for data in questions:  # fill the memo and the replay cache with the answers before the change
        warm.handle(data, client=POD_CLIENT)
    for events in ([Upsert(m) for m in models], [Delete(m.key) for m in models]):
        with no_errors_logged(f"applying {events!r}"):
            state.apply(events, now=2000)
        fresh = Responder(state.snapshot)
        for data in questions:
            for limit in (None, MAX_TCP):
                what = f"after {events!r}: query {data.hex()} ({'UDP' if limit is None else 'TCP'})"
                with no_errors_logged(what):
                    got = warm.handle(data, limit=limit, client=POD_CLIENT)
                    expected = fresh.handle(data, limit=limit, client=POD_CLIENT)
                assert got == expected, f"{what}: stale answer after the change:\n{got!r}\n{expected!r}"
                if isinstance(got, UpstreamQuery):
                    check_forward(warm, data, got, limit, what)
                else:
                    check_reply_bytes(data, wire.parse_query(data), got, limit, what)


def _ask(name: str, rdtype: int, qid: int = 0x1234) -> bytes:
    labels = [label.encode() for label in name.split(".") if label]
    if sum(len(label) + 1 for label in labels) + 1 > 255 or any(len(label) > 63 for label in labels):
        return b""
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    return struct.pack("!6H", qid, RD, 1, 0, 0, 0) + qname + struct.pack("!HH", rdtype, 1)


A, NS, CNAME, SOA, PTR, TXT, AAAA, SRV, ANY = 1, 2, 5, 6, 12, 16, 28, 33, 255


def questions_for(model) -> list[bytes]:
    """Queries for every name an object could make or change."""
    out: list[tuple[str, int]] = []
    if isinstance(model, Namespace):
        out += [(f"{model.name}.svc.{ZONE}", A), (f"10-1-2-3.{model.name}.pod.{ZONE}", A)]
    elif isinstance(model, Service):
        base = f"{model.name}.{model.namespace}.svc.{ZONE}"
        out += [(base, A), (base, AAAA), (base, SRV), (base, ANY), (base, CNAME), (base, TXT)]
        out += [(f"_{p.name}._{p.protocol}.{base}", SRV) for p in model.ports if p.name]
        out += [(names.reverse_name(ip), PTR) for ip in model.cluster_ips]
    elif isinstance(model, EndpointSlice):
        base = f"{model.service}.{model.namespace}.svc.{ZONE}"
        out += [(base, A), (base, AAAA), (base, SRV)]
        out += [(f"_{p.name}._{p.protocol}.{base}", SRV) for p in model.ports if p.name]
        for ep in model.endpoints:
            label = ep.hostname or names.dashed_ip(ep.addresses[0])
            out += [(f"{label}.{base}", A), (f"{label}.{base}", AAAA)]
            out += [(names.reverse_name(ip), PTR) for ip in ep.addresses]
    elif isinstance(model, Pod):
        for ip in model.ips:
            out += [(f"{names.dashed_ip(ip)}.{model.namespace}.pod.{ZONE}", A), (names.reverse_name(ip), PTR)]
        out += [(f"example.org.{model.namespace}.svc.{ZONE}", A)]
    return [q for q in (_ask(name, rdtype) for name, rdtype in out) if q]


DEMO_QUESTIONS = [
    _ask(name, rdtype)
    for name, rdtype in [
        (f"web.shop.svc.{ZONE}", A), (f"storefront.shop.svc.{ZONE}", A), (f"_postgres._tcp.db.shop.svc.{ZONE}", SRV),
        (f"db-0.db.shop.svc.{ZONE}", A), (ZONE, NS), (ZONE, SOA), (f"nope.shop.svc.{ZONE}", A),
        (f"10-244-7-7.shop.pod.{ZONE}", A), ("10.100.96.10.in-addr.arpa", PTR), (f"shop.svc.{ZONE}", A),
    ]
]


# -- config files -------------------------------------------------------------------------------


def check_config(data: Any, tmp: Path) -> None:
    """A parsed config file: problems or ConfigError only; a config that builds serves its apex."""
    problems = kdns_settings.file_problems(data)
    assert isinstance(problems, list) and all(isinstance(p, ConfigError) and str(p) for p in problems)
    try:
        checked = kdns_settings.check_file(data)
    except ConfigError:
        assert problems, "check_file refused a file without problems"
        checked = None
    else:
        assert not problems, "check_file accepted a file with problems"
    if checked is not None and _safe_paths(checked):
        build_and_check(checked, checked)
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:
        return
    if isinstance(data, dict) and not _safe_paths(data):
        return
    check_config_text(text.encode("utf-8"), tmp)


def check_config_text(raw: bytes, tmp: Path) -> None:
    """The bytes of a config file, through `load_file` and `check_config_file`."""
    path = tmp / "kdns.yaml"
    path.write_bytes(raw)
    try:
        parsed = yaml.safe_load(raw)
    except Exception:  # noqa: BLE001 - the YAML error path is what load_file must handle
        parsed = None
    if isinstance(parsed, dict) and not _safe_paths(parsed):
        return
    try:
        problems = kdns_settings.check_config_file(str(path), {})
    except Exception as exc:
        raise AssertionError(f"check_config_file raised {type(exc).__name__}: {exc} for {raw!r}") from exc
    assert isinstance(problems, list) and all(isinstance(p, ConfigError) and str(p).startswith(f"{path}: ") for p in problems)
    try:
        values = kdns_settings.load_file(str(path))
    except ConfigError:
        return
    except Exception as exc:
        raise AssertionError(f"load_file raised {type(exc).__name__}: {exc} for {raw!r}") from exc
    build_and_check(values, raw)


def build_and_check(values: dict, source: Any) -> None:
    """Build a ServeConfig from file values (no flags, no environment): a ConfigError or a
    config `check_built` accepts; anything else fails, naming `source` (the input)."""
    try:
        built = kdns_settings.build(kdns_settings.merge(argparse.Namespace(), values), {})
    except ConfigError:
        return
    except Exception as exc:
        raise AssertionError(f"build raised {type(exc).__name__}: {exc} for {source!r}") from exc
    check_built(built)


def check_built(built) -> None:
    """A ServeConfig that `build` accepted: usable numbers, zones it can serve."""
    for field in dataclasses.fields(built):
        value = getattr(built, field.name)
        # trio refuses NaN deadlines (ValueError), so a NaN duration crashes the server.
        assert not (isinstance(value, float) and math.isnan(value)), f"build accepted NaN for {field.name}"
    check_serves(built.dns)


def _safe_paths(data: dict) -> bool:
    """Config files name files kdns reads (resolv-conf): not device files, which never end."""
    value = data.get("resolv-conf")
    return not (isinstance(value, str) and value.strip().startswith(("/dev", "/proc", "/sys")))


def check_serves(config: DnsConfig) -> None:
    """An index with that configuration answers its zones' apex and a demo name well-formed."""
    state = DnsState(config, now=1000)
    state.apply(DEMO_EVENTS, now=1000)
    responder = state.responder
    questions = [_ask("10.100.96.10.in-addr.arpa", PTR)]
    for zone in config.all_zones:
        questions += [_ask(zone, SOA), _ask(zone, NS), _ask(f"web.shop.svc.{zone}", A), _ask(f"nope.{zone}", A)]
    for data in filter(None, questions):
        for limit in (None, MAX_TCP):
            what = f"{config!r}: query {data.hex()}"
            with no_errors_logged(what):
                reply = responder.handle(data, limit=limit)
            if not isinstance(reply, UpstreamQuery):
                check_reply_bytes(data, wire.parse_query(data), reply, limit, what)


# -- strategies: packets -----------------------------------------------------------------------

QTYPES = [1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 41, 43, 46, 48, 64, 65, 99, 250, 251, 252, 253, 254, 255, 256, 257, 0, 65535]
QCLASSES = [1, 1, 1, 3, 4, 254, 255, 0, 2, 65535]


def _wire_name(labels: list[bytes]) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def _flip_case(text: bytes, mask: int) -> bytes:
    return bytes(c ^ 0x20 if chr(c).isalpha() and chr(c).isascii() and mask >> (i % 64) & 1 else c for i, c in enumerate(text))


@st.composite
def labels_strategy(draw) -> list[bytes]:
    kind = draw(st.integers(0, 6))
    if kind <= 2:  # a demo name, maybe with random labels in front, in random case (0x20)
        name = draw(st.sampled_from(DEMO_NAMES))
        labels = [label.encode() for label in name.split(".") if label]
        labels = draw(st.lists(st.sampled_from(LABELS).map(str.encode) | st.binary(min_size=1, max_size=8), max_size=2)) + labels
        mask = draw(st.integers(0, 2**64 - 1))
        return [_flip_case(label, mask) for label in labels]
    if kind == 3:  # random bytes as labels, under a zone or not
        labels = draw(st.lists(st.binary(min_size=1, max_size=63), max_size=6))
        tails = [[], [b"cluster", b"local"], [b"in-addr", b"arpa"], [b"ip6", b"arpa"], [b"svc", b"cluster", b"local"], [b"shop", b"svc", b"cluster", b"local"]]
        return labels + draw(st.sampled_from(tails))
    if kind == 4:  # a full reverse name, decimal or nibbles
        if draw(st.booleans()):
            return [str(draw(st.integers(0, 300))).encode() for _ in range(draw(st.integers(3, 5)))] + [b"in-addr", b"arpa"]
        return [draw(st.sampled_from(b"0123456789abcdefABCDEFg")).to_bytes(1, "big") for _ in range(draw(st.integers(30, 33)))] + [b"ip6", b"arpa"]
    if kind == 5:  # names of 253 to 256 bytes in wire form
        size = draw(st.integers(250, 258))
        tail = [b"shop", b"svc", b"cluster", b"local"] if draw(st.booleans()) else []
        labels, used = [], sum(len(t) + 1 for t in tail) + 1
        while used < size:
            n = min(63, size - used - 1)
            if n < 1:
                break
            labels.append(b"a" * n)
            used += n + 1
        return labels + tail
    return [draw(st.sampled_from(LABELS)).encode() for _ in range(draw(st.integers(0, 5)))]


@st.composite
def name_bytes(draw, position: int, compressed_ok: bool) -> bytes:
    """A name in wire form for `position` in a message: plain, or with odd label bytes and
    compression pointers (to the question, forward, at itself, past the end)."""
    labels = draw(labels_strategy())
    style = draw(st.integers(0, 9))
    if style <= 5:
        return _wire_name(labels)
    prefix = b"".join(bytes([len(label)]) + label for label in labels[: draw(st.integers(0, len(labels)))])
    here = position + len(prefix)
    if style == 6:  # a pointer: back to the question, forward, at itself, into the header, anywhere
        target = draw(st.sampled_from([12, here, here + 2, here + 10, 0, 4, 0x3FFF]) | st.integers(0, 0x3FFF))
        return prefix + struct.pack("!H", 0xC000 | target)
    if style == 7:  # a label type other than a length (0x40, 0x80 extended and reserved)
        return prefix + bytes([draw(st.integers(0x40, 0xBF))]) + draw(st.binary(max_size=4)) + b"\x00"
    if style == 8:  # a length byte running past the end, or an over-long label
        return prefix + bytes([draw(st.integers(1, 63))]) + draw(st.binary(max_size=3))
    return prefix + bytes([draw(st.integers(64, 255))]) + b"x" * draw(st.integers(0, 70)) + b"\x00"


@st.composite
def opt_record(draw, position: int) -> bytes:
    owner = b"\x00" if draw(st.integers(0, 9)) else draw(name_bytes(position, True))
    size = draw(st.sampled_from([0, 1, 511, 512, 513, 1200, 1231, 1232, 1233, 1400, 4096, 65535]) | st.integers(0, 65535))
    ext_rcode = draw(st.sampled_from([0, 0, 0, 1, 255]))
    version = draw(st.sampled_from([0, 0, 0, 0, 1, 2, 255]))
    eflags = draw(st.sampled_from([0, 0x8000, 0x7FFF, 0xFFFF]) | st.integers(0, 0xFFFF))
    options = b""
    for code, payload in draw(st.lists(st.tuples(st.sampled_from([3, 8, 10, 12, 15, 0, 65535]) | st.integers(0, 65535), st.binary(max_size=40)), max_size=3)):
        length = len(payload) if draw(st.integers(0, 4)) else draw(st.integers(0, 0xFFFF))
        options += struct.pack("!HH", code, length) + payload
    rdlength = len(options) if draw(st.integers(0, 5)) else draw(st.integers(0, 0xFFFF))
    return owner + struct.pack("!HHBBHH", 41, size, ext_rcode, version, eflags, rdlength) + options


@st.composite
def other_record(draw, position: int) -> bytes:
    owner = draw(name_bytes(position, True) | st.just(b"\xc0\x0c") | st.just(b"\x00"))
    rtype = draw(st.sampled_from([1, 2, 5, 6, 12, 16, 28, 33, 41, 250, 255]) | st.integers(0, 65535))
    rdata = draw(st.binary(max_size=30))
    rdlength = len(rdata) if draw(st.integers(0, 5)) else draw(st.integers(0, 0xFFFF))
    return owner + struct.pack("!HHIH", rtype, draw(st.sampled_from([1, 254, 255]) | st.integers(0, 65535)), draw(st.integers(0, 2**32 - 1)), rdlength) + rdata


@st.composite
def pointer_chain(draw, position: int) -> tuple[bytes, int]:
    """A record whose RDATA is a chain of pointers (each to the one before, the first to the
    question), and the offset of the last pointer: a name there takes `n` hops."""
    n = draw(st.sampled_from([1, 2, 63, 64, 65, 66, 200]))
    owner = b"\xc0\x0c"
    start = position + len(owner) + 10
    chain = b"\xc0\x0c" + b"".join(struct.pack("!H", 0xC000 | (start + 2 * (i - 1))) for i in range(1, n))
    record = owner + struct.pack("!HHIH", 16, 1, 0, len(chain)) + chain
    return record, start + 2 * (n - 1)


@st.composite
def dns_messages(draw) -> bytes:
    """A query built from parts: header, question, records, OPT; then perhaps cut or padded."""
    qid = draw(st.integers(0, 0xFFFF))
    flags = draw(st.sampled_from([0, RD, RD, RD | 0x0010, 0x0020, TC, 0x0400 | RD]) | st.integers(0, 0xFFFF))
    if draw(st.integers(0, 9)) == 0:
        flags |= draw(st.integers(1, 15)) << 11
    body = bytearray()
    questions = draw(st.sampled_from([1, 1, 1, 1, 1, 1, 0, 2]))
    for _ in range(questions):
        body += draw(name_bytes(12 + len(body), False))
        body += struct.pack("!HH", draw(st.sampled_from(QTYPES) | st.integers(0, 0xFFFF)), draw(st.sampled_from(QCLASSES) | st.integers(0, 0xFFFF)))
    counts = [questions, 0, 0, 0]
    for section in (1, 2, 3):
        for _ in range(draw(st.integers(0, 2) if section == 3 else st.sampled_from([0, 0, 0, 1, 2]))):
            kind = draw(st.integers(0, 5))
            if kind == 0 or (section == 3 and kind <= 2):
                body += draw(opt_record(12 + len(body)))
            elif kind == 3:
                record, last = draw(pointer_chain(12 + len(body)))
                body += record
                counts[section] += 1
                body += struct.pack("!H", 0xC000 | last) + struct.pack("!HHIH", 1, 1, 0, 0)
            else:
                body += draw(other_record(12 + len(body)))
            counts[section] += 1
    if draw(st.integers(0, 5)) == 0:  # counts that lie
        counts = [draw(st.sampled_from([c, c + 1, max(c - 1, 0), 0xFFFF]) | st.integers(0, 0xFFFF)) for c in counts]
    message = struct.pack("!6H", qid, flags, *counts) + bytes(body)
    ending = draw(st.integers(0, 9))
    if ending == 0:
        message = message[: draw(st.integers(0, len(message)))]
    elif ending == 1:
        message += draw(st.binary(min_size=1, max_size=20))
    return message


@st.composite
def mutated_queries(draw) -> bytes:
    """A query made by dnspython, then bytes flipped, set, inserted or deleted."""
    name = draw(st.sampled_from(DEMO_NAMES).filter(bool))
    rdtype = draw(st.sampled_from(["A", "AAAA", "SRV", "PTR", "ANY", "SOA", "NS", "TXT", "CNAME", "MX", "AXFR"]))
    message = dns.message.make_query(
        name,
        rdtype,
        use_edns=draw(st.sampled_from([False, 0, 1])),
        payload=draw(st.sampled_from([512, 1232, 4096, 65535])),
        want_dnssec=draw(st.booleans()),
        options=draw(st.sampled_from([None, [dns.edns.GenericOption(10, b"\x01" * 8)], [dns.edns.GenericOption(12, b"\x00" * 30)]])),
    )
    message.id = draw(st.integers(0, 0xFFFF))
    data = bytearray(message.to_wire())
    for _ in range(draw(st.integers(1, 4))):
        op, at = draw(st.integers(0, 3)), draw(st.integers(0, max(len(data) - 1, 0)))
        if op == 0 and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and data:
            data[at] = draw(st.sampled_from([0, 1, 0x3F, 0x40, 0x80, 0xC0, 0xFF, 0x29]) | st.integers(0, 255))
        elif op == 2:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif data:
            del data[at : at + draw(st.integers(1, 4))]
    return bytes(data)


# -- strategies: upstream replies -------------------------------------------------------------

RDATA_TEXT = {
    "A": st.sampled_from(["93.184.216.34", "10.0.0.1", "0.0.0.0"]),
    "AAAA": st.sampled_from(["2001:db8::1", "::", "fd00::a"]),
    "CNAME": st.sampled_from(["target.example.org.", "web.shop.svc.cluster.local.", "."]),
    "NS": st.sampled_from(["ns1.example.org.", "a.iana-servers.net."]),
    "PTR": st.sampled_from(["host.example.org.", "web.shop.svc.cluster.local."]),
    "MX": st.sampled_from(["10 mail.example.org.", "0 ."]),
    "TXT": st.sampled_from(['"v=spf1 -all"', '"' + "x" * 200 + '"', '"a" "b"']),
    "SRV": st.sampled_from(["0 100 443 svc.example.org.", "10 5 53 ."]),
    "SOA": st.sampled_from(["ns.example.org. hostmaster.example.org. 1 7200 1800 86400 30", ". . 0 0 0 0 0"]),
    "CAA": st.just('0 issue "letsencrypt.org"'),
    "DNAME": st.just("example.net."),
}


@st.composite
def dnspython_upstream_replies(draw) -> tuple[int, bytes]:
    """A well-formed upstream reply to a client query's UpstreamQuery, made by dnspython."""
    selector = draw(st.integers(0, len(CLIENT_QUERIES) - 1))
    _, fwd = client_forward(selector)
    qname = dns.name.from_wire(fwd.question, 0)[0]
    rdtype = struct.unpack_from("!H", fwd.question, len(fwd.question) - 4)[0]
    query = dns.message.make_query(qname, rdtype, use_edns=0)
    query.id = UPSTREAM_ID
    reply = dns.message.make_response(query)
    reply.set_rcode(draw(st.sampled_from([0, 0, 0, 3, 2, 5, 1])))
    if draw(st.integers(0, 9)) == 0:
        reply.flags |= dns.flags.TC
    owners = [qname, dns.name.from_text("example.org."), dns.name.from_text("a.b.c.example.org."), dns.name.root]
    for section in (reply.answer, reply.authority, reply.additional):
        for _ in range(draw(st.integers(0, 4))):
            text_type = draw(st.sampled_from([*sorted(RDATA_TEXT), "TYPE65280"]))
            if text_type == "TYPE65280":  # a type nobody knows: opaque RDATA
                rdata = dns.rdata.GenericRdata(dns.rdataclass.IN, 65280, draw(st.binary(max_size=12)))
            else:
                rdata = dns.rdata.from_text(dns.rdataclass.IN, text_type, draw(RDATA_TEXT[text_type]))
            rrset = dns.rrset.from_rdata(draw(st.sampled_from(owners)), draw(st.sampled_from([0, 5, 30, 300, 2**31 - 1, 2**31 + 5])), rdata)
            section.append(rrset)
    wire_bytes = reply.to_wire(max_size=65535)
    return selector, wire_bytes


# Types whose RDATA holds names, which a server may have compressed (RFC 3597 section 4):
# type -> (bytes before the first name, number of names). NAPTR's strings are left out.
NAMES_IN_RDATA = {2: (0, 1), 5: (0, 1), 6: (0, 2), 7: (0, 1), 12: (0, 1), 14: (0, 2), 15: (2, 1), 17: (0, 2), 18: (2, 1),
                  21: (2, 1), 33: (6, 1), 36: (2, 1), 39: (0, 1)}


@st.composite
def hostile_upstream_replies(draw) -> tuple[int, bytes]:
    """A reply with our ID and question, then records made of parts: pointers, short RDATA,
    name-bearing types with bad names, lying counts."""
    selector = draw(st.integers(0, len(CLIENT_QUERIES) - 1))
    _, fwd = client_forward(selector)
    question = fwd.question
    qstyle = draw(st.integers(0, 5))
    if qstyle == 0:
        question = _flip_case(question[:-4], draw(st.integers(0, 2**64 - 1))) + question[-4:]
    elif qstyle == 1:
        question = b"\xc0\x0c" + question[-4:]
    flags = QR | draw(st.sampled_from([0, RD | 0x80, TC, 0x0400]) | st.integers(0, 0x7FFF))
    body = bytearray(question)
    counts = [1, 0, 0, 0]
    for section in (1, 2, 3):
        for _ in range(draw(st.integers(0, 3))):
            position = 12 + len(body)
            owner = draw(st.sampled_from([b"\xc0\x0c", b"\x00"]) | name_bytes(position, True))
            rtype = draw(st.sampled_from([1, 2, 5, 6, 7, 12, 14, 15, 16, 17, 18, 21, 28, 33, 35, 36, 39, 41, 249, 250, 255]) | st.integers(0, 0xFFFF))
            rdstart = position + len(owner) + 10
            if rtype in NAMES_IN_RDATA and draw(st.booleans()):
                fixed, count = NAMES_IN_RDATA[rtype]
                rdata = draw(st.binary(min_size=fixed, max_size=fixed))
                for _ in range(count):
                    rdata += draw(name_bytes(rdstart + len(rdata), True))
                if rtype == 6:
                    rdata += draw(st.binary(max_size=24))
            else:
                rdata = draw(st.binary(max_size=24))
            rdlength = len(rdata) if draw(st.integers(0, 4)) else draw(st.integers(0, 0xFFFF))
            ttl = draw(st.sampled_from([0, 30, 2**31 - 1, 2**31, 2**32 - 1]) | st.integers(0, 2**32 - 1))
            body += owner + struct.pack("!HHIH", rtype, draw(st.sampled_from([1, 1, 3, 255]) | st.integers(0, 0xFFFF)), ttl, rdlength) + rdata
            counts[section] += 1
    if draw(st.integers(0, 4)) == 0:
        counts = [draw(st.sampled_from([c, c + 1, 0, 0xFFFF])) for c in counts]
    qid = UPSTREAM_ID if draw(st.integers(0, 9)) else draw(st.integers(0, 0xFFFF))
    data = struct.pack("!6H", qid, flags, *counts) + bytes(body)
    if draw(st.integers(0, 5)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return selector, data


@st.composite
def mutated_upstream_replies(draw) -> tuple[int, bytes]:
    selector, data = draw(dnspython_upstream_replies())
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op, at = draw(st.integers(0, 2)), draw(st.integers(2, max(len(data) - 1, 2)))
        if op == 0 and at < len(data):
            data[at] = draw(st.sampled_from([0, 1, 0x3F, 0xC0, 0xFF]) | st.integers(0, 255))
        elif op == 1:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[at : at + draw(st.integers(1, 6))]
    return selector, bytes(data)


# -- strategies: Kubernetes objects -----------------------------------------------------------

JSON_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
DNS_LABELS = st.sampled_from(["web", "shop", "db", "a", "x" * 63, "kube-dns", "default", "kube-system", "0", "a-b"])
LABELISH = DNS_LABELS | st.sampled_from(["", "Web", "-a", "a-", "a.b", "x" * 64, "a_b", "é", " web", "web\n"]) | st.text(max_size=10)
IPS = st.sampled_from([
    "10.96.0.50", "10.96.100.10", "10.244.1.10", "10.244.7.7", "fd00:10:96::50", "fd00:10:244:1::a", "::1", "0.0.0.0",
    "::", "::ffff:10.0.0.1", "255.255.255.255", "10.0.0.x", "1.2.3", "01.02.03.04", "fe80::1%eth0", "2001:db8::", "None", "",
])


def maybe(strategy):
    """Mostly the plausible value, sometimes a value of any JSON type, sometimes absent."""
    return st.one_of(strategy, strategy, strategy, JSON_JUNK, st.just(None))


def ports():
    port = st.fixed_dictionaries(
        {},
        optional={
            "name": maybe(st.sampled_from(["http", "dns", "grpc", "", "x" * 64, "HTTP", "a.b"])),
            "protocol": maybe(st.sampled_from(["TCP", "UDP", "SCTP", "tcp", "HTTP"])),
            "port": maybe(st.sampled_from([80, 53, 1, 65535, 0, 65536, -1, True, "80", 8.0])),
        },
    )
    return maybe(st.lists(maybe(port), max_size=3))


def metadata(kind_namespaced: bool):
    fields = {"name": maybe(LABELISH)}
    optional = {"namespace": maybe(LABELISH)} if kind_namespaced else {}
    optional["labels"] = maybe(st.dictionaries(st.sampled_from(["kubernetes.io/service-name", "app"]), maybe(LABELISH), max_size=2))
    optional["annotations"] = maybe(st.dictionaries(st.just(convert.TRIGGER_TIME), maybe(st.sampled_from(["2024-01-01T00:00:00Z", "nope", "2024-13-01T00:00:00Z"])), max_size=1))
    return maybe(st.fixed_dictionaries(fields, optional=optional))


def services():
    spec = st.fixed_dictionaries(
        {},
        optional={
            "type": maybe(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName", "Headless", ""])),
            "clusterIP": maybe(IPS),
            "clusterIPs": maybe(st.lists(maybe(IPS), max_size=3)),
            "ipFamilies": maybe(st.lists(maybe(st.sampled_from(["IPv4", "IPv6", "IPv5"])), max_size=3)),
            "ipFamilyPolicy": maybe(st.sampled_from(["SingleStack", "PreferDualStack", "RequireDualStack", "Any"])),
            "externalName": maybe(st.sampled_from(["example.org", "web.shop.svc.cluster.local", "x.", "", "a..b", "-a.com",
                                                   ".".join(["a" * 63] * 4), "cluster.local", "10.1.2.3", "storefront.shop.svc.cluster.local"])),
            "ports": ports(),
        },
    )
    return st.fixed_dictionaries({"apiVersion": st.just("v1"), "kind": st.just("Service"), "metadata": metadata(True)}, optional={"spec": maybe(spec)})


def endpoint_slices():
    endpoint = st.fixed_dictionaries(
        {},
        optional={
            "addresses": maybe(st.lists(maybe(IPS), max_size=3)),
            "hostname": maybe(LABELISH),
            "conditions": maybe(st.fixed_dictionaries({}, optional={"ready": maybe(st.booleans())})),
        },
    )
    return st.fixed_dictionaries(
        {"apiVersion": st.just("discovery.k8s.io/v1"), "kind": st.just("EndpointSlice"), "metadata": metadata(True)},
        optional={
            "addressType": maybe(st.sampled_from(["IPv4", "IPv6", "FQDN", "ipv4"])),
            "endpoints": maybe(st.lists(maybe(endpoint), max_size=3)),
            "ports": ports(),
        },
    )


def pods():
    status = st.fixed_dictionaries(
        {}, optional={"podIP": maybe(IPS), "podIPs": maybe(st.lists(maybe(st.fixed_dictionaries({"ip": maybe(IPS)})), max_size=3))}
    )
    spec = st.fixed_dictionaries({}, optional={"hostNetwork": maybe(st.booleans())})
    return st.fixed_dictionaries(
        {"apiVersion": st.just("v1"), "kind": st.just("Pod"), "metadata": metadata(True)},
        optional={"status": maybe(status), "spec": maybe(spec)},
    )


def namespaces():
    return st.fixed_dictionaries({"apiVersion": st.just("v1"), "kind": st.just("Namespace"), "metadata": metadata(False)})


def kube_objects():
    odd = st.fixed_dictionaries(
        {"apiVersion": maybe(st.sampled_from(["v1", "v2", "discovery.k8s.io/v1beta1", "apps/v1"])),
         "kind": maybe(st.sampled_from(["Service", "Pod", "Deployment", "List", "EndpointSlice"]))},
        optional={"metadata": metadata(True), "spec": JSON_JUNK},
    )
    return st.one_of(services(), services(), endpoint_slices(), endpoint_slices(), pods(), namespaces(), odd, JSON_JUNK)


# -- strategies: config files --------------------------------------------------------------------

OPTION_VALUES = {
    str: st.sampled_from([
        "127.0.0.1:5353", "[::1]:53", "0.0.0.0:0", "127.0.0.1", ":8080", "off", "", "cluster.local", "example.com",
        "Cluster.Local.", "in-addr.arpa", "10.in-addr.arpa", ".".join(["a" * 63] * 3) + ".b", ".".join(["z" * 63] * 4)[:253],
        "10.0.0.1", "10.0.0.1:99999", "[fe80::1]:53", "corp.example=10.0.0.2:53", "cluster.local=10.0.0.2", "a=b",
        "http://127.0.0.1:8001", "ftp://x", "debug", "json", "insecure", "verified", "disabled", "shop,default", "a b",
        "app=web,tier!=db", "/nonexistent/resolv.conf", "é", "\x00", "10.0.0.0/8", "::/0", "fe80::/10", "10.0.0.1/33",
        "192.168.0.0/16,127.0.0.1", "none", "any",
    ]) | st.text(max_size=20),
    int: st.sampled_from([0, 1, 5, 3600, 3601, -1, 2**63, 10_000]) | st.integers(),
    float: st.sampled_from([0.0, 0.1, 1.5, -1.0, float("inf"), float("nan"), 1e308]) | st.floats(),
    bool: st.booleans(),
}


@st.composite
def config_files(draw) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON_JUNK)
    data: dict[Any, Any] = {}
    for option in draw(st.lists(st.sampled_from(kdns_settings.OPTIONS), max_size=6, unique_by=lambda o: o.name)):
        plausible = OPTION_VALUES[option.kind]
        if option.repeat and draw(st.integers(0, 3)):
            value: Any = draw(st.lists(plausible | JSON_JUNK, max_size=3))
        else:
            value = draw(st.one_of(plausible, plausible, JSON_JUNK, st.none()))
        data[option.name] = value
    if draw(st.integers(0, 5)) == 0:
        data[draw(st.sampled_from(["ttll", "upstreams", "log_level", "zone ", "", "t"]) | st.text(max_size=6) | st.integers())] = draw(JSON_JUNK)
    return data


# -- the hypothesis tests ---------------------------------------------------------------------

# Derandomised (a fixed seed per test, no example database), bounded, no deadline: the same
# examples on every run and in CI. Failures are reported as found, not shrunk (shrinking can
# take minutes; the corpus keeps small reproducers): KDNS_FUZZ_SHRINK=1 turns shrinking on.
FUZZ = {
    "derandomize": True,
    "database": None,
    "deadline": None,
    "phases": [Phase.explicit, Phase.generate] + ([Phase.shrink, Phase.explain] if os.environ.get("KDNS_FUZZ_SHRINK") else []),
}


@settings(max_examples=300, **FUZZ)
@given(st.binary(max_size=600))
def test_packets_random_bytes(data):
    check_packet(data)


@settings(max_examples=150, **FUZZ)
@given(st.tuples(st.sampled_from([0x0000, 0x0100, 0x0120, 0x8000]), st.binary(min_size=8, max_size=300)))
def test_packets_random_bytes_behind_a_query_header(parts):
    flags, rest = parts
    check_packet(struct.pack("!HH", 0x2B2B, flags) + rest)


# Health checks: the composite strategies draw many small choices per message (by design:
# every header field, label and record is one), which the too_slow and large_base_example
# checks take for a mistake.
@settings(max_examples=350, suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example], **FUZZ)
@given(dns_messages())
def test_packets_dns_aware(data):
    check_packet(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], **FUZZ)
@given(mutated_queries())
def test_packets_mutated_dnspython_queries(data):
    check_packet(data)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], **FUZZ)
@given(dnspython_upstream_replies())
def test_upstream_well_formed_replies(case):
    selector, reply = case
    check_upstream(bytes([selector]) + reply)
    # A well-formed reply to our query is always taken.
    _, fwd = client_forward(selector)
    upstream.parse_reply(reply, UPSTREAM_ID, fwd.question, MAX_TTL)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example], **FUZZ)
@given(hostile_upstream_replies())
def test_upstream_hostile_replies(case):
    selector, reply = case
    check_upstream(bytes([selector]) + reply)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], **FUZZ)
@given(mutated_upstream_replies())
def test_upstream_mutated_replies(case):
    selector, reply = case
    check_upstream(bytes([selector]) + reply)


@settings(max_examples=150, **FUZZ)
@given(st.integers(0, 255), st.binary(max_size=400))
def test_upstream_random_bytes(selector, rest):
    check_upstream(bytes([selector]) + struct.pack("!H", UPSTREAM_ID) + rest)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], **FUZZ)
@given(st.lists(kube_objects(), min_size=1, max_size=4), st.sampled_from(["verified", "forwarding", "plain"]), st.booleans())
def test_kubernetes_objects(objects, config_key, allocate):
    check_objects(objects, config_key=config_key, allocate=allocate)


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow], **FUZZ)
@given(config_files())
def test_config_files(data):
    with tempfile.TemporaryDirectory() as tmp:
        check_config(data, Path(tmp))


@settings(max_examples=100, **FUZZ)
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8")))
def test_config_file_bytes(raw):
    with tempfile.TemporaryDirectory() as tmp:
        check_config_text(raw, Path(tmp))


# -- the regression corpus --------------------------------------------------------------------


def replay(path: Path, tmp: Path) -> None:
    """Run one corpus file through its target (the directory it is in)."""
    target = path.parent.name
    raw = path.read_bytes()
    if target == "packet":
        check_packet(raw)
    elif target == "reply":
        check_upstream(raw)
    elif target == "manifest":
        check_objects(load_objects(raw))
    elif target == "config":
        check_config_text(raw, tmp)
    else:  # pragma: no cover - a file in the wrong place
        raise AssertionError(f"{path}: unknown target {target!r}")


def load_objects(raw: bytes) -> list[Any]:
    """A JSON document: an object, a list of them, or a `kind: List` with `items`."""
    data = json.loads(raw)
    if isinstance(data, dict) and data.get("kind") == "List":
        data = data.get("items") or []
    return data if isinstance(data, list) else [data]


CORPUS_FILES = sorted(p for target in TARGETS for p in (CORPUS / target).glob("*") if p.is_file() and p.name != "README.md")


def test_slip_reply_keeps_the_opt_record():
    """RFC 6891 section 7: a response to a query with OPT includes OPT, the truncated one
    that rate limiting slips through included."""
    data = (CORPUS / "packet" / "srv-postgres-edns-do.bin").read_bytes()
    reply = Responder(SNAPSHOTS["plain"]).handle(data)
    assert reply_edns(reply, "reply") == 0
    slip = wire.as_truncated(reply)
    assert reply_edns(slip, "slip") == 0, f"the slipped reply has no OPT record: {slip.hex()}"


def test_corpus_is_not_empty():
    for target in TARGETS:
        assert any(p.parent.name == target for p in CORPUS_FILES), f"no corpus files for {target}"


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[f"{p.parent.name}/{p.name}" for p in CORPUS_FILES])
def test_corpus(path, tmp_path):
    replay(path, tmp_path)
