"""Per-query statistics, kept cheap enough for the hot path.

Each listener (one socket: a server address, UDP or TCP) has a `QueryStats`: a Counter of
small tuples, one increment per query. The tuple holds everything CoreDNS's metrics label or
bucket by: (zone, type, rcode, request size, response size, duration bucket). The shell counts
every reply it sends (`QueryStats.count`); a reply replayed from the Responder's table of whole
replies carries its key along (`replay_key`, the key the shell gives the Responder), so a
replayed query costs one Counter increment; only the rest are timed. `observe` folds the counters into Prometheus
families when /metrics is scraped, not before. Pure: no clock, no I/O.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass, field

from kdns import names, wire
from kdns.codes import RCODES, TYPES

Key = tuple[str, str, str, int, int, int]  # zone, type, rcode, request bytes, response bytes, duration bucket

# CoreDNS's buckets: durations 0.25 ms doubling 16 times (to 8.192 s); sizes in bytes.
DURATION_FIRST = 0.00025
DURATION_BUCKETS = tuple(DURATION_FIRST * 2**i for i in range(16))
SIZE_BUCKETS = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16000, 32000, 48000, 64000)



def duration_bucket(seconds: float) -> int:
    """Index of the first bucket whose bound is >= `seconds` (16 for longer)."""
    return min(16, (math.ceil(seconds / DURATION_FIRST) - 1).bit_length()) if seconds > DURATION_FIRST else 0


@dataclass
class QueryStats:
    """One listener's counters: labels fixed, counts by key, and the time spent on timed queries."""

    server: str  # "dns://127.0.0.1:5353", as CoreDNS names its servers
    proto: str  # "udp" or "tcp"
    family: str  # "1" for IPv4, "2" for IPv6 (CoreDNS's values)
    counts: Counter[Key] = field(default_factory=Counter)
    seconds: float = 0.0  # sum of the durations measured
    received: int = 0  # queries received, answered or not

    def count(self, query: bytes, reply: bytes | None, zones: tuple[str, ...], seconds: float) -> None:
        """Count one answered query that took `seconds` (`zones`: the zones kdns serves)."""
        k = key(query, reply, zones, seconds)
        if k is not None:
            self.counts[k] += 1
            self.seconds += seconds


def key(query: bytes, reply: bytes | None, zones: tuple[str, ...], seconds: float) -> Key | None:
    """The statistics key of one answered query (None if there is nothing to count)."""
    if reply is None or len(query) < 12 or len(reply) < 4:
        return None
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
    return (zone, TYPES.get(qtype, "other"), RCODES.get(rcode, str(rcode)), len(query), len(reply), duration_bucket(seconds))


def replay_key(query: bytes, reply: bytes, zones: tuple[str, ...]) -> Key | None:
    """The key a replayed reply is counted under (by the C loop too): replays take no time
    worth measuring, so the first duration bucket."""
    return key(query, reply, zones, 0.0)


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
