"""The cache of forwarded answers (cachetools), with serve-stale and prefetch bookkeeping.

Keyed by (lowercased question name, type, class, DO bit, CD bit: a reply fetched without
DNSSEC checking must not reach a client that wants it checked). An entry lives for its upstream
lifetime (the smallest TTL of the answer, or the SOA minimum of a negative answer, capped by
`max_ttl`), then stays `stale_for` seconds longer as a stale copy that is only served when
every upstream fails (RFC 8767). The cache holds at most `maxsize` entries and `max_bytes`
bytes (each entry counted as `UpstreamAnswer.size`: its records, written out in full, plus
what the objects around them take); beyond either, the least recently used go first
(cachetools' TLRUCache, which also drops entries once they are past their stale window). An
answer that could not reach a client whole (truncated, or larger than any reply) is never
stored: `parse_reply` gives it a lifetime of 0.

A `CachePolicy` (--cache-zone, --cache-disable-success|denial, --cache-min-ttl,
--cache-denial-min-ttl, --cache-denial-ttl: CoreDNS's `cache TTL ZONES`, `disable`, `success`/
`denial` TTL and MINTTL) says which answers `put` keeps, how long at least, and negative ones
at most: an answer it does not keep is forwarded every time (and, never being a fresh entry,
never replayed). A minimum raises the lifetime and the TTLs below it (as CoreDNS serves every
record of a cached answer with the entry's TTL), never past `max_ttl`. The policy is looked at
only when an answer is stored, never on a hit.

Cluster names never enter this cache: they are answered from the live index.
Pure: the clock is injected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from cachetools import TLRUCache

from kdns.config import CachePolicy
from kdns.upstream import UpstreamAnswer

EVERYTHING = CachePolicy()

Key = tuple[bytes, int, int, bool, bool]  # (qname lowercased wire form, qtype, qclass, DO, CD)

PREFETCH_HITS = 2  # an entry asked for this often ...
PREFETCH_WINDOW = 0.1  # ... is refreshed once less than this share of its lifetime is left


@dataclass(slots=True)
class Entry:
    answer: UpstreamAnswer
    stored: float
    expires: float
    hits: int = 0
    refreshing: bool = False


class ForwardCache:
    def __init__(self, *, clock: Callable[[], float], maxsize: int, max_ttl: int, stale_for: float, max_bytes: int = 32 << 20,
                 policy: CachePolicy = EVERYTHING):
        """`maxsize` entries at most (--cache-size) and `max_bytes` bytes (--cache-max-bytes),
        kept `max_ttl` seconds at most (--cache-ttl), then `stale_for` seconds more for
        serve-stale (--serve-stale); `policy`: which answers, and how long at least."""
        self.clock = clock
        self.policy = policy
        self._filtered = policy != EVERYTHING
        self.max_ttl = max_ttl
        self.stale_for = stale_for
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self._entries: TLRUCache[Key, Entry] = TLRUCache(max_bytes, ttu=self._drop_after, timer=clock, getsizeof=_entry_size)
        self.hits = 0
        self.hits_success = 0  # hits on positive answers (the rest: denials, CoreDNS's word)
        self.misses = 0
        self.stale_served = 0

    def _drop_after(self, _key: Key, entry: Entry, _now: float) -> float:
        return entry.expires + self.stale_for

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """What the entries held take, as counted against `max_bytes`."""
        return int(self._entries.currsize)

    def get(self, key: Key) -> tuple[Entry | None, bool]:
        """(entry, fresh): a fresh entry counts as a hit; a stale one is only a fallback."""
        entry = self._entries.get(key)
        if entry is not None and self.clock() < entry.expires:
            entry.hits += 1
            self.hits += 1
            if _success(entry.answer):
                self.hits_success += 1
            return entry, True
        self.misses += 1
        return entry, False

    def fresh(self, key: Key) -> Entry | None:
        """A fresh entry, counted as a hit; None (counting nothing: the caller that then asks
        the upstreams goes through `get`) when there is none."""
        entry = self._entries.get(key)
        if entry is None or self.clock() >= entry.expires:
            return None
        entry.hits += 1
        self.hits += 1
        if _success(entry.answer):
            self.hits_success += 1
        return entry

    def replay_until(self, entry: Entry) -> float:
        """Until when a reply rendered from `entry` may be replayed (its TTLs counted down by
        the replay: kdns.ttlpatch): never past its expiry, nor into the window where a popular
        entry is refreshed (prefetch must see the queries then)."""
        return entry.expires - (entry.expires - entry.stored) * PREFETCH_WINDOW  # (the window's start)

    def put(self, key: Key, answer: UpstreamAnswer) -> Entry | None:
        """Keep `answer` (the entry made, or None when it is not kept)."""
        lifetime = min(answer.lifetime, self.max_ttl)
        if lifetime <= 0:
            return None
        if answer.size > self.max_bytes:
            return None
        if self._filtered:
            success = _success(answer)
            if not self.policy.caches(_dotted(key[0]), success):
                return None
            ceiling = self.max_ttl if success or not self.policy.denial_max_ttl else min(self.max_ttl, self.policy.denial_max_ttl)
            floor = min(self.policy.success_min_ttl if success else self.policy.denial_min_ttl, ceiling)
            if lifetime < floor:
                lifetime = floor
                answer = replace(answer, lifetime=floor, ttls=tuple(max(ttl, floor) for ttl in answer.ttls))
            elif lifetime > ceiling:
                lifetime = ceiling
                answer = replace(answer, lifetime=ceiling)
        now = self.clock()
        entry = Entry(answer, now, now + lifetime)
        self._entries[key] = entry
        while len(self._entries) > self.maxsize:
            self._entries.popitem()  # the least recently used
        return entry

    def peek(self, key: Key) -> tuple[float, UpstreamAnswer] | None:
        """(seconds it stays fresh, the answer) of the entry for `key`, or None: for `kdns
        explain`, counted neither as a hit nor as a miss."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        return entry.expires - self.clock(), entry.answer

    def due_for_refresh(self, entry: Entry) -> bool:
        """A popular entry close to expiry: refresh it before clients see a miss."""
        if entry.refreshing or entry.hits < PREFETCH_HITS:
            return False
        lifetime = entry.expires - entry.stored
        return entry.expires - self.clock() < lifetime * PREFETCH_WINDOW

    def clear(self) -> None:
        self._entries.clear()

    def sizes(self) -> tuple[int, int]:
        """(positive answers, negative answers) held, for coredns_cache_entries."""
        entries = list(self._entries.values())
        success = sum(1 for e in entries if _success(e.answer))
        return success, len(entries) - success


def _dotted(wire_name: bytes) -> str:
    """A lowercase name in wire form as dotted text ("" for the root)."""
    labels, at = [], 0
    while at < len(wire_name) and wire_name[at]:
        labels.append(wire_name[at + 1 : at + 1 + wire_name[at]].decode("latin-1"))
        at += 1 + wire_name[at]
    return ".".join(labels)


def _entry_size(entry: Entry) -> int:
    return entry.answer.size


def _success(answer: UpstreamAnswer) -> bool:
    return answer.rcode == 0 and answer.counts[0] > 0
