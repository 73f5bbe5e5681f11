"""The values an answer is made of, and the small rules every table's answers share.

`kdns.answer` decides what a question means and calls the tables (the cluster zone there,
the external zones and the names outside the zones in kdns.answer_hosts); all of them speak
in these values. Pure.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kdns.codes import NOERROR, NXDOMAIN, REFUSED, SERVFAIL
from kdns.snapshot import Snapshot

if TYPE_CHECKING:
    from kdns.rewrite import Via

MAX_CHAIN = 8  # CNAME links followed inside kdns's own data


# Record and Answer are values (nobody changes one), but not frozen dataclasses: building a
# frozen one takes 2-3 µs, a large share of a first-time name's budget (issue 15).
@dataclass(slots=True, unsafe_hash=True)
class Record:
    name: str  # absolute, lowercase
    rtype: int
    ttl: int
    # str for A/AAAA/CNAME/PTR/NS/TXT (names absolute; a TXT may also be a tuple of its
    # character-strings); (prio, weight, port, target) for SRV; (preference, exchange) for MX
    data: object


@dataclass(slots=True, unsafe_hash=True)
class Answer:
    rcode: int
    answer: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    # The zone whose SOA record ends the message: in the authority section of negative
    # answers, in the answer section of an apex SOA query. None when there is no SOA.
    soa_zone: str | None = None
    soa_in_answer: bool = False
    authoritative: bool = True
    # False when the bytes must not be reused: answers given before the sync, REFUSED,
    # anything that depends on the client (autopath) or on an upstream.
    cacheable: bool = True
    # Set when the rest of the answer must come from an upstream: the (absolute, lowercase)
    # name to ask for, with the question's type and class. `answer` then holds what goes
    # before the upstream's records: the CNAMEs that led there (none for a plain forward).
    upstream: str | None = None
    # Set when a Corefile's rewrite or template made the answer (kdns.rewrite): how, and the
    # rules that map an upstream's records back to the asked name.
    via: Via | None = None
    # Records of the authority section other than kdns's own SOA (a Corefile's template's):
    # never beside `soa_zone`.
    authority: tuple[Record, ...] = ()
    # Set on an upstream answer that depends on who asks (autopath: the client's namespace):
    # the reply made from the forwarding cache is then not kept for replay.
    per_client: bool = False


def refused() -> Answer:
    return Answer(REFUSED, authoritative=False, cacheable=False)


def from_upstream(name: str, chain: tuple[Record, ...] = ()) -> Answer:
    """Ask an upstream for `name`; `chain` (our CNAMEs) goes before its records."""
    return Answer(NOERROR, chain, authoritative=bool(chain), cacheable=False, upstream=name)


@functools.lru_cache(maxsize=64)
def _zone_labels(zones: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...], int], ...]:
    """(zone, its labels, how many) for each of `zones`, the longest first."""
    return tuple((zone, tuple(zone.split(".")), zone.count(".") + 1) for zone in sorted(zones, key=len, reverse=True))


def find_zone(labels: tuple[str, ...], zones: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
    """The longest zone that `labels` lies in, and the labels below it."""
    total = len(labels)
    for zone, zl, n in _zone_labels(tuple(zones)):
        if total >= n and tuple(labels[total - n :]) == zl:
            return zone, labels[: total - n]
    return None


@dataclass(frozen=True, slots=True)
class Chase:
    """The answer goes on at `target` (absolute): `chain` holds the CNAMEs so far. The table
    that found the CNAME does not know the others; kdns.answer follows it."""

    target: str
    chain: tuple[Record, ...]


def can_forward(snap: Snapshot, labels: tuple[str, ...]) -> bool:
    """Whether some upstream takes this (outside) name: the default ones, or a stub domain's."""
    return snap.config.forwarding or find_zone(labels, snap.config.stub_domains) is not None


def negative(snap: Snapshot, zone: str | None, rcode: int, answer: tuple[Record, ...] = ()) -> Answer:
    if rcode == NXDOMAIN and not snap.synced:
        # Never NXDOMAIN out of ignorance: the name may exist once the sources have synced.
        return Answer(SERVFAIL, answer, cacheable=False)
    if answer:
        return Answer(rcode, answer, soa_zone=zone)
    # The bulk of first-time names: one Answer per zone and rcode, not one per query (so
    # nobody may change an Answer: they are shared).
    shared = _NEGATIVE.get((zone, rcode))
    if shared is None:
        if len(_NEGATIVE) >= 256:
            _NEGATIVE.clear()
        shared = _NEGATIVE[(zone, rcode)] = Answer(rcode, soa_zone=zone)
    return shared


_NEGATIVE: dict[tuple[str | None, int], Answer] = {}
