"""The tables of absolute names beside the cluster zone's: the external zones and the names
outside every zone (hosts files, the test double's records, Ingress and Gateway hosts).

Objects claim names: a Service its names in the external zones (kdns.external), a hosts file
or a `record()` call its names (kdns.static), an Ingress or a route its hosts
(kdns.webhosts). `NameTables.set(owner, names, ptrs)` replaces everything one object claims;
`publish` then writes the winner of each name it touched into the snapshot's persistent maps,
so that a query is one lookup:

* `hosts`: absolute name -> `HostEntry` (its record sets, the external zone it lies in, and
  the objects that made it: provenance, for `kdns explain`). The lowest rank wins a name,
  whole (records are never mixed); equal ranks go to the owner that sorts first, with a
  warning naming both. The names above a claimed name are empty non-terminals (no records:
  NODATA, not NXDOMAIN), up to the zone, or up to the top-level label outside the zones.
* `xptr`: address -> `PtrEntry`, the PTR targets of addresses no cluster PTR claims: every
  owner of the best rank, merged (two Services sharing a load-balancer address).

Wildcard names (`*.example.com`) are kept as they are; `publish` says when one changed,
since that changes answers for names nobody can list. A claim may say that its wildcard
stands for any depth below (a Gateway listener's `*.example.com`; `HostEntry.deep`), not just
one label. Pure.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, NamedTuple

import immutables

from kdns import codes
from kdns.config import DnsConfig
from kdns.model import ObjectKey, Rrset, describe

log = logging.getLogger("kdns.index")

# (rank, records, the objects they come from), and optionally whether a wildcard name stands
# for any depth below it (default: one label).
Claim = tuple[int, tuple[Rrset, ...], tuple[ObjectKey, ...]] | tuple[int, tuple[Rrset, ...], tuple[ObjectKey, ...], bool]
PtrClaim = tuple[int, tuple[str, ...], int]  # (rank, absolute targets, TTL)
# The external zones' name-server names (`ns1.<apex>.<zone>`) are kdns's own: no object made
# them, so their owner has no Kind.
APEX_OWNER: ObjectKey = ("", "", "apex")  # type: ignore[assignment]


class HostEntry(NamedTuple):
    rrsets: tuple[Rrset, ...]  # () for an empty non-terminal
    zone: str  # the external zone the name lies in; "" outside every zone
    origins: tuple[ObjectKey, ...] = ()
    deep: bool = False  # a wildcard name that stands for names any depth below it, not one label

    def find(self, rtype: int) -> Rrset | None:
        for rr in self.rrsets:
            if rr.rtype == rtype:
                return rr
        return None


class PtrEntry(NamedTuple):
    targets: tuple[str, ...]  # absolute names
    ttl: int
    origins: tuple[ObjectKey, ...] = ()


class Published(NamedTuple):
    names: frozenset[str]  # absolute names whose entries changed
    ips: frozenset[str]  # addresses whose PTR entries changed
    wildcard: bool  # a wildcard name changed: answers below it cannot be listed
    external: bool  # something in an external zone changed (its SOA serial moves)


class NameTables:
    def __init__(self, config: DnsConfig):
        self.zones = config.external_zones
        self._claims: dict[str, Held] = {}  # name -> its claims (see `_put`)
        self._ptr_claims: dict[str, Held] = {}  # address -> its PTR claims
        self._owned: dict[ObjectKey, tuple[tuple[str, ...], tuple[str, ...]]] = {}  # owner -> (names, ips)
        self._below: Counter[str] = Counter()  # name -> claimed names strictly below it
        self._dirty: set[str] = set()
        self._dirty_ips: set[str] = set()
        # Names whose answer follows a CNAME into kdns's own data: it changes with that data.
        # Those that are wildcards answer names nobody can list (`wild_chasers`).
        self.chasers: set[str] = set()
        self.wild_chasers: set[str] = set()
        # Answers that carry another name's addresses (SRV targets' in the additional section,
        # the zone's NS glue): name -> the names whose answers hold its records.
        self._glue_users: dict[str, set[str]] = {}
        self._glue_of: dict[str, tuple[str, ...]] = {}  # an SRV name -> its targets
        for zone in self.zones:
            self._glue_users[f"ns1.{config.external_apex}.{zone}"] = {zone}

    def zone_of(self, name: str) -> str:
        """The external zone `name` lies in (the apex included), or ""."""
        if not self.zones:
            return ""
        for zone in self.zones:
            if name == zone or name.endswith("." + zone):
                return zone
        return ""

    def _ancestors(self, name: str) -> list[str]:
        """The names between `name` and its zone (outside the zones: up to the top label)."""
        zone = self.zone_of(name)
        labels = name.split(".")
        stop = len(labels) - (zone.count(".") + 1 if zone else 1)
        return [".".join(labels[i:]) for i in range(1, stop)]

    # -- the writer's side ----------------------------------------------------------------

    def set(self, owner: ObjectKey, names: dict[str, Claim], ptrs: dict[str, PtrClaim]) -> None:
        """`owner` now claims exactly these names and addresses (nothing: {} and {})."""
        old_names, old_ips = self._owned.get(owner, ((), ()))
        for name in old_names:
            if name not in names and _drop(self._claims, name, owner):
                self._dirty.add(name)
                if name not in self._claims:
                    for above in self._ancestors(name):
                        self._below[above] -= 1
                        if self._below[above] <= 0:
                            del self._below[above]
                            self._dirty.add(above)
        for name, claim in names.items():
            self._claim(name, owner, claim)
        for ip in old_ips:
            if ip not in ptrs and _drop(self._ptr_claims, ip, owner):
                self._dirty_ips.add(ip)
        for ip, ptr in ptrs.items():
            if _put(self._ptr_claims, ip, owner, ptr) is not None:
                self._dirty_ips.add(ip)
        if names or ptrs:
            self._owned[owner] = (tuple(names), tuple(ptrs))
        else:
            self._owned.pop(owner, None)

    def _claim(self, name: str, owner: ObjectKey, claim: Claim) -> None:
        before = _put(self._claims, name, owner, claim)
        if before is None:
            return  # the same claim as before
        self._dirty.add(name)
        if not before:
            for above in self._ancestors(name):
                self._below[above] += 1
                if self._below[above] == 1:
                    self._dirty.add(above)
            return
        rivals = [other for other, held in before if other != owner and held[0] == claim[0]]
        if rivals and owner not in dict(before):
            first = min([owner, *rivals])
            log.warning("%s: claimed by %s and %s; %s wins (the first in order)", name, describe(owner),
                        ", ".join(map(describe, rivals)), describe(first))

    def owners(self) -> list[ObjectKey]:
        return list(self._owned)

    # -- into the snapshot ------------------------------------------------------------------

    def entry(self, name: str) -> HostEntry | None:
        held = self._claims.get(name)
        if held is not None:
            owner, claim = held if isinstance(held, tuple) else min(held.items(), key=_rank_then_owner)
            deep = len(claim) > 3 and bool(claim[3])
            return HostEntry(claim[1], self.zone_of(name), claim[2] or (owner,), deep)
        if self._below.get(name):
            return HostEntry((), self.zone_of(name))
        return None

    def ptr_entry(self, ip: str) -> PtrEntry | None:
        held = self._ptr_claims.get(ip)
        if held is None:
            return None
        if isinstance(held, tuple):
            owner, (_, targets, ttl) = held
            return PtrEntry(targets, ttl, (owner,))
        best = min(rank for rank, _, _ in held.values())
        winners = sorted(owner for owner, (rank, _, _) in held.items() if rank == best)
        targets = tuple(sorted({target for owner in winners for target in held[owner][1]}))
        return PtrEntry(targets, min(held[owner][2] for owner in winners), tuple(winners))

    def _track(self, name: str, entry: HostEntry | None) -> None:
        """Keep `chasers` and the SRV glue dependencies up to date with `name`'s new entry."""
        if entry is not None and entry.find(codes.CNAME) is not None:
            self.chasers.add(name)
            if name.startswith("*."):
                self.wild_chasers.add(name)
        else:
            self.chasers.discard(name)
            self.wild_chasers.discard(name)
        srv = entry.find(codes.SRV) if entry is not None else None
        targets = tuple(dict.fromkeys(value[3] for value in srv.values)) if srv is not None else ()
        for target in self._glue_of.pop(name, ()):
            users = self._glue_users.get(target)
            if users is not None:
                users.discard(name)
                if not users:
                    del self._glue_users[target]
        if targets:
            self._glue_of[name] = targets
            for target in targets:
                self._glue_users.setdefault(target, set()).add(name)

    def publish(self, hosts: immutables.MapMutation[str, HostEntry], xptr: immutables.MapMutation[str, PtrEntry]) -> Published:
        """Write the entries of every name and address changed since the last call into the
        maps being mutated (`immutables.Map.mutate()`); return what changed."""
        touched, touched_ips, wildcard, external = set(), set(), False, False
        for name in self._dirty:
            entry = self.entry(name)
            if entry == hosts.get(name):
                continue
            touched.add(name)
            wildcard |= name.startswith("*.")
            external |= bool(entry.zone if entry is not None else self.zone_of(name))
            touched.update(self._glue_users.get(name, ()))
            self._track(name, entry)
            if entry is None:
                hosts.pop(name, None)
            else:
                hosts[name] = entry
        for ip in self._dirty_ips:
            ptr = self.ptr_entry(ip)
            if ptr != xptr.get(ip):
                touched_ips.add(ip)
                if ptr is None:
                    xptr.pop(ip, None)
                else:
                    xptr[ip] = ptr
        self._dirty.clear()
        self._dirty_ips.clear()
        return Published(frozenset(touched), frozenset(touched_ips), wildcard, external)


# Claims on one key, kept small: almost every name and address has one owner, held as the pair
# (owner, claim); only a key several owners claim gets a dict of them.
Held = tuple[ObjectKey, Any] | dict[ObjectKey, Any]


def _put(store: dict[str, Held], key: str, owner: ObjectKey, claim: Any) -> list[tuple[ObjectKey, Any]] | None:
    """Record `owner`'s claim on `key`. None when it was already so; else the claims held
    before, as (owner, claim) pairs ([] for a new key)."""
    held = store.get(key)
    if held is None:
        store[key] = (owner, claim)
        return []
    if isinstance(held, tuple):
        if held[0] == owner:
            if held[1] == claim:
                return None
            store[key] = (owner, claim)
            return [held]
        store[key] = {held[0]: held[1], owner: claim}
        return [held]
    if held.get(owner) == claim:
        return None
    before = list(held.items())
    held[owner] = claim
    return before


def _drop(store: dict[str, Held], key: str, owner: ObjectKey) -> bool:
    """Forget `owner`'s claim on `key`; whether it had one (the key goes when none is left)."""
    held = store.get(key)
    if held is None:
        return False
    if isinstance(held, tuple):
        if held[0] != owner:
            return False
        del store[key]
        return True
    if held.pop(owner, None) is None:
        return False
    if len(held) == 1:
        store[key] = next(iter(held.items()))
    return True


def _rank_then_owner(item: tuple[ObjectKey, Any]) -> tuple[int, ObjectKey]:
    return (item[1][0], item[0])
