"""Per-query statistics, kept cheap enough for the hot path and bounded whatever clients send.

Each listener (one socket: a server address, UDP or TCP) has a `QueryStats`. What it counts
is what CoreDNS's metrics label or bucket by: the zone, the type, the rcode, the request and
response sizes (in CoreDNS's size buckets, never exact: a client that varies its EDNS padding
must not make a new counter per query) and the duration (in CoreDNS's duration buckets).

* A reply replayed from the Responder's table of whole replies carries its key along
  (`replay_key`, the key the shell gives the Responder): (zone, type, rcode, request-size
  bucket, response-size bucket), and for a reply made from the forwarding cache the kind of
  cache hit it is (`forwarded_key`). A replay costs one increment of `counts[key]`, in Python
  or in the C loop (kdns/_udpbatch.c), and is counted in the first duration bucket.
* Every other reply is timed and counted by `QueryStats.count`, one counter per metric
  family, so that the number of counters is a sum over the labels, not a product; or, when it
  has a replay key and took less than the first duration bucket (the usual case), by one
  increment of `quick[key]` (`count_key`).

Every counter's key is made of values from small fixed sets (the zones kdns serves, `TYPES`
and "other", 16 rcodes, 15 size buckets, 17 duration buckets), so the tables cannot grow
past `max_keys` (docs/operating.md has the figure). `observe` folds them into Prometheus
families when /metrics is scraped, not before. Pure: no clock, no I/O.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kdns import names, wire
from kdns.codes import RCODES, TYPES

# A replay's key: (zone, type, rcode, request-size bucket, response-size bucket[, cache hit
# kind]), a plain tuple of strings and ints (hashed and compared in C too: the C loop looks it
# up; and never tracked by the garbage collector, nor is the replay table entry that holds
# it). One tuple per distinct key (`_interned`), which remembers the exact sizes of the first
# query and reply it was made for (`key_sizes`): the histograms' sums count each replay at
# those sizes, exact when the replays under one key are the same query, as stub resolvers
# send them.
Key = tuple[Any, ...]


# CoreDNS's buckets: durations 0.25 ms doubling 16 times (to 8.192 s); sizes in bytes.
DURATION_FIRST = 0.00025
DURATION_BUCKETS = tuple(DURATION_FIRST * 2**i for i in range(16))
SIZE_BUCKETS = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16000, 32000, 48000, 64000)
TYPE_LABELS = len(set(TYPES.values())) + 1  # and "other"
RCODE_LABELS = 16  # the header's four bits
# Replayed replies are NOERROR or NXDOMAIN answers (kdns.answer: the others are not kept; the
# forwarding cache keeps no other), to queries of at most 512 bytes
# (responder.MAX_REPLAYED_QUERY), in at most 1,232 (UDP). A forwarded reply's key says what
# kind of cache hit it is: NOERROR "success" or "denial", NXDOMAIN "denial".
REPLAY_RCODES = 2
FORWARDED_KINDS = 3


def duration_bucket(seconds: float) -> int:
    """Index of the first bucket whose bound is >= `seconds` (16 for longer)."""
    return min(16, (math.ceil(seconds / DURATION_FIRST) - 1).bit_length()) if seconds > DURATION_FIRST else 0


def size_index() -> bytes:
    """size -> its bucket for every size a DNS message can have (64 KiB, made once)."""
    parts, low = [], 0
    for i, bound in enumerate(SIZE_BUCKETS):
        parts.append(bytes([i]) * (bound + 1 - low))
        low = bound + 1
    parts.append(bytes([len(SIZE_BUCKETS)]) * (65536 - low))
    return b"".join(parts)


_SIZE_INDEX = size_index()


def size_bucket(size: int) -> int:
    """Index of the first size bucket whose bound is >= `size` (len(SIZE_BUCKETS) for larger)."""
    return _SIZE_INDEX[size] if size < 65536 else len(SIZE_BUCKETS)


REPLAY_REQUEST_BUCKETS = size_bucket(512) + 1
REPLAY_RESPONSE_BUCKETS = size_bucket(wire.MAX_UDP) + 1


def max_keys(zones: int, proto: str) -> int:
    """The most counters one listener can hold with `zones` zones (kdns's own, plus "." for
    the rest): the bound of every table of `QueryStats` together."""
    timed = zones * (TYPE_LABELS * (len(DURATION_BUCKETS) + 1) + RCODE_LABELS + 2 * (len(SIZE_BUCKETS) + 1) + 2)
    replayed = zones * TYPE_LABELS * (REPLAY_RCODES + FORWARDED_KINDS) * REPLAY_REQUEST_BUCKETS * REPLAY_RESPONSE_BUCKETS
    return timed + (2 * replayed if proto == "udp" else 0)  # `counts` and `quick`


@dataclass
class QueryStats:
    """One listener's counters: labels fixed, counts by key, and the time spent on timed queries."""

    server: str  # "dns://127.0.0.1:5353", as CoreDNS names its servers
    proto: str  # "udp" or "tcp"
    family: str  # "1" for IPv4, "2" for IPv6 (CoreDNS's values)
    counts: Counter[Key] = field(default_factory=Counter)  # replays, by `Key` (the C loop adds to it)
    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # timed: (zone, type, duration bucket)
    responses: Counter[tuple[str, str]] = field(default_factory=Counter)  # timed: (zone, rcode)
    request_sizes: Counter[tuple[str, int]] = field(default_factory=Counter)  # timed: (zone, size bucket)
    response_sizes: Counter[tuple[str, int]] = field(default_factory=Counter)  # timed: (zone, size bucket)
    request_bytes: Counter[str] = field(default_factory=Counter)  # timed: zone -> bytes
    response_bytes: Counter[str] = field(default_factory=Counter)  # timed: zone -> bytes
    seconds: float = 0.0  # sum of the durations measured
    received: int = 0  # queries received, answered or not
    # timed, answered within the first duration bucket, with a replay key (the Python path's
    # usual case: one increment, not one per metric family); their bytes go to *_bytes
    quick: Counter[Key] = field(default_factory=Counter)

    def count(self, query: bytes, reply: bytes | None, zones: tuple[str, ...], seconds: float) -> None:
        """Count one answered query that took `seconds` (`zones`: the zones kdns serves)."""
        k = labels(query, reply, zones) if reply is not None else None
        if k is None or reply is None:
            return
        zone, qtype, rcode = k
        self.requests[(zone, qtype, duration_bucket(seconds))] += 1
        self.responses[(zone, rcode)] += 1
        self.request_sizes[(zone, size_bucket(len(query)))] += 1
        self.response_sizes[(zone, size_bucket(len(reply)))] += 1
        self.request_bytes[zone] += len(query)
        self.response_bytes[zone] += len(reply)
        self.seconds += seconds

    def count_key(self, key: Key, seconds: float, qsize: int, rsize: int) -> None:
        """`count` for a query of `qsize` bytes whose reply (`rsize` bytes) has the replay key
        `key` (which holds the labels and buckets)."""
        zone = key[0]
        if seconds <= DURATION_FIRST:
            quick = self.quick  # (dict's get and set: a Counter's += costs twice as much)
            quick[key] = quick.get(key, 0) + 1
            self.request_bytes[zone] = self.request_bytes.get(zone, 0) + qsize
            self.response_bytes[zone] = self.response_bytes.get(zone, 0) + rsize
            self.seconds += seconds
            return
        qtype, rcode, qbucket, rbucket = key[1:5]
        self.requests[(zone, qtype, duration_bucket(seconds))] += 1
        self.responses[(zone, rcode)] += 1
        self.request_sizes[(zone, qbucket)] += 1
        self.response_sizes[(zone, rbucket)] += 1
        self.request_bytes[zone] += qsize
        self.response_bytes[zone] += rsize
        self.seconds += seconds

    def copy(self) -> QueryStats:
        """A copy whose tables no one else changes (each copied at C speed: no Python code
        runs between two entries, so the C loop cannot change a table mid-copy)."""
        return QueryStats(self.server, self.proto, self.family, Counter(self.counts), Counter(self.requests),
                          Counter(self.responses), Counter(self.request_sizes), Counter(self.response_sizes),
                          Counter(self.request_bytes), Counter(self.response_bytes), self.seconds, self.received,
                          Counter(self.quick))

    def keys(self) -> int:
        """Counters held in all tables (each bounded: see `max_keys`)."""
        tables: tuple[Counter[Any], ...] = (self.counts, self.requests, self.responses, self.request_sizes, self.response_sizes,
                                            self.request_bytes, self.response_bytes, self.quick)
        return sum(len(t) for t in tables)


def labels(query: bytes, reply: bytes | None, zones: tuple[str, ...], end: int | None = None) -> tuple[str, str, str] | None:
    """(zone, type, rcode) of one answered query (None if there is nothing to count). `end`:
    where the question name ends, when the caller knows."""
    if reply is None or len(query) < 12 or len(reply) < 4:
        return None
    if end is None:
        try:
            _, end = wire.read_name(query, 12, compressed=False)
        except wire.BadName:
            return None
    qtype = int.from_bytes(query[end : end + 2], "big") if end + 2 <= len(query) else 0
    qname = query[12:end].lower()
    zone = "."
    for wire_name, label in zone_wires(zones):  # the longest zone first
        if qname.endswith(wire_name) and _at_label(qname, len(qname) - len(wire_name)):
            zone = label
            break
    rcode = reply[3] & 0xF
    return zone, TYPES.get(qtype, "other"), RCODES.get(rcode, str(rcode))


def replay_key(query: bytes, reply: bytes, zones: tuple[str, ...], end: int | None = None, zone: int | None = None) -> Key | None:
    """The key a replayed reply is counted under (by the C loop too): its labels and the
    buckets of its sizes (and the sizes themselves, aside). Replays take no time worth
    measuring: the first duration bucket. `end`: where the question name ends, and `zone`:
    the index in `zones` of the zone the question is in (-1: none of them), when the caller
    knows them. One key object per distinct key (`_interned`)."""
    if zone is not None and end is not None and len(reply) >= 4:
        qtype = int.from_bytes(query[end : end + 2], "big")
        rcode = reply[3] & 0xF
        label = zone_labels(zones)[zone] if zone >= 0 else "."
        return _interned((label, TYPES.get(qtype, "other"), RCODES.get(rcode) or str(rcode), size_bucket(len(query)),
                          size_bucket(len(reply))), len(query), len(reply))
    k = labels(query, reply, zones, end)
    if k is None:
        return None
    return _interned((*k, size_bucket(len(query)), size_bucket(len(reply))), len(query), len(reply))


_KEYS: dict[Key, tuple[Key, tuple[int, int]]] = {}  # key -> (the one tuple for it, first sizes)
MAX_INTERNED = 65_536  # more than max_keys for any sane number of zones; emptied when full


def _interned(values: Key, qsize: int, rsize: int) -> Key:
    """The one tuple for the key `values` (a replay table of 50,000 replies holds a few
    hundred keys, not 50,000), and the sizes of the first query and reply counted under it."""
    held = _KEYS.get(values)
    if held is None:
        if len(_KEYS) >= MAX_INTERNED:
            _KEYS.clear()
        held = _KEYS[values] = (values, (qsize, rsize))
    return held[0]


def key_sizes(key: Key) -> tuple[int, int]:
    """(query size, reply size) of the first reply counted under `key` ((0, 0) if forgotten)."""
    held = _KEYS.get(key)
    return held[1] if held is not None else (0, 0)


@functools.lru_cache(maxsize=16)
def zone_labels(zones: tuple[str, ...]) -> tuple[str, ...]:
    """Each zone's metric label, in the order of `zones`."""
    return tuple(z + "." for z in zones)


def forwarded_key(query: bytes, reply: bytes, zones: tuple[str, ...], success: bool, end: int | None = None) -> Key | None:
    """`replay_key` for a reply made from the forwarding cache, with the kind of cache hit it
    is ("success": records in the upstream's answer; else "denial"), so that each replay of
    it also counts as a cache hit (coredns_cache_hits). `end`: where the question name ends."""
    k = labels(query, reply, zones, end)
    if k is None:
        return None
    return _interned((*k, size_bucket(len(query)), size_bucket(len(reply)), "success" if success else "denial"), len(query), len(reply))


def _at_label(name: bytes, offset: int) -> bool:
    """Whether `offset` is where a label starts in the wire name `name`."""
    pos = 0
    while pos < offset:
        pos += 1 + name[pos]
    return pos == offset


@functools.lru_cache(maxsize=16)
def zone_wires(zones: tuple[str, ...]) -> tuple[tuple[bytes, str], ...]:
    """(wire form, metric label) of each zone, the longest first (kept: zones rarely change)."""
    ordered = sorted(zones, key=len, reverse=True)
    return tuple((names.to_wire(z), z + ".") for z in ordered)
