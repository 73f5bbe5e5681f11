"""Answers from the tables of absolute names (kdns.tables): the external zones, and the names
outside every zone that kdns holds records for. kdns.answer calls these and follows the
CNAMEs they return (`Chase`) through every table. Pure.

* An external zone is a zone like the cluster's: authoritative, its SOA (`ns1.<apex>.<zone>.
  hostmaster.<apex>.<zone>.`, its own serial, the external TTL) in negative answers, `<zone>
  NS ns1.<apex>.<zone>` with the name server's addresses as glue.
* A name outside the zones that kdns holds (a hosts file, the test double's records, the
  hosts of Ingresses and Gateway routes) is answered authoritatively, ahead of any upstream;
  another type of it is NODATA (without an SOA: there is no zone, as CoreDNS's hosts plugin
  answers). `*.example.com` stands for any one label there that has no records of its own
  (an empty non-terminal does not hide it, as a web server's host matching would not); a
  wildcard from a Gateway listener (`HostEntry.deep`) for any name below example.com that
  nothing closer claims.
* Before the first sync, with `--ingress-hosts` or `--gateway-hosts`, an outside name kdns
  does not hold yet is SERVFAIL, not forwarded: it may be a host an Ingress claims, and an
  upstream's answer (a public address, NXDOMAIN) would be the wrong one.
* Any other outside name goes upstream when one takes it. With none: REFUSED, or with
  `--outside-names nxdomain` NXDOMAIN (not authoritative, no SOA: stub resolvers, glibc's
  and musl's included, stop at the rcode; SERVFAIL before the first sync). The names above a
  name kdns holds exist in that closed world (NODATA), as they would in a real zone.
"""

from __future__ import annotations

from kdns.codes import AAAA, ANY, CNAME, NOERROR, NS, NXDOMAIN, PTR, SERVFAIL, SOA, SRV, A
from kdns.config import OutsideNames
from kdns.result import Answer, Chase, Record, can_forward, from_upstream, negative, refused
from kdns.snapshot import Snapshot
from kdns.tables import HostEntry, PtrEntry


def outside(snap: Snapshot, labels: tuple[str, ...], qtype: int, chain: tuple[Record, ...]) -> Answer | Chase:
    """A name outside every zone (`chain`: the CNAMEs that led here, if any)."""
    name = ".".join(labels)
    entry = None
    if not any("." in label for label in labels):  # (a label holding a dot names nothing kdns holds)
        entry = snap.hosts.get(name)
        if (entry is None or not entry.rrsets) and len(labels) > 1:
            entry = _wildcard(snap, labels) or entry
    if entry is not None and entry.rrsets:
        return _entry(snap, name, entry, qtype, chain)
    if not snap.synced and snap.config.claims_outside:
        return Answer(SERVFAIL, chain, authoritative=False, cacheable=False)
    if can_forward(snap, labels):
        return from_upstream(name, chain)
    if chain:
        return Answer(NOERROR, chain)  # a CNAME to a name kdns does not hold: the client follows it
    if entry is not None:
        return Answer(NOERROR)  # above a name kdns holds: it exists, without records
    if snap.config.outside_names is OutsideNames.NXDOMAIN:
        if not snap.synced:
            return Answer(SERVFAIL, authoritative=False, cacheable=False)
        return Answer(NXDOMAIN, authoritative=False)
    return refused()


def _wildcard(snap: Snapshot, labels: tuple[str, ...]) -> HostEntry | None:
    """The wildcard that answers for a name: `*.<its parent>`, else the closest `*.<ancestor>`
    that stands for any depth (a Gateway listener's)."""
    found = snap.hosts.get("*." + ".".join(labels[1:]))
    if found is not None and found.rrsets:
        return found
    for i in range(2, len(labels)):
        found = snap.hosts.get("*." + ".".join(labels[i:]))
        if found is not None and found.deep and found.rrsets:
            return found
    return None


def external(snap: Snapshot, zone: str, rel: tuple[str, ...], qtype: int, chain: tuple[Record, ...]) -> Answer | Chase:
    """A name in an external zone: `rel` are its labels below `zone`."""
    if not rel:
        return _apex(snap, zone, qtype)
    name = ".".join(rel) + "." + zone
    entry = snap.hosts.get(name)
    if entry is None:
        return negative(snap, zone, NXDOMAIN, chain)
    return _entry(snap, name, entry, qtype, chain)


def ptr(snap: Snapshot, zone: str, owner: str, entry: PtrEntry, qtype: int) -> Answer:
    """The PTR answer for an address that only these tables claim."""
    if qtype not in (PTR, ANY):
        return negative(snap, zone, NOERROR)
    return Answer(NOERROR, tuple(Record(owner, PTR, entry.ttl, target) for target in entry.targets))


def _apex(snap: Snapshot, zone: str, qtype: int) -> Answer:
    if qtype in (SOA, ANY):
        return Answer(NOERROR, soa_zone=zone, soa_in_answer=True)
    if qtype == NS:
        server = f"ns1.{snap.config.external_apex}.{zone}"
        glue = _addresses(snap.hosts.get(server), server)
        return Answer(NOERROR, (Record(zone, NS, snap.config.external_ttl, server),), additional=glue)
    return negative(snap, zone, NOERROR)


def _entry(snap: Snapshot, owner: str, entry: HostEntry, qtype: int, chain: tuple[Record, ...]) -> Answer | Chase:
    cname = entry.find(CNAME)
    if cname is not None:
        link = Record(owner, CNAME, cname.ttl, cname.values[0])
        if qtype == CNAME:
            return Answer(NOERROR, chain + (link,))
        return Chase(cname.values[0], chain + (link,))
    rr = entry.find(qtype) if qtype != ANY else (entry.rrsets[0] if entry.rrsets else None)
    if rr is None:
        return negative(snap, entry.zone or None, NOERROR, chain)
    records = tuple(Record(owner, rr.rtype, rr.ttl, value) for value in rr.values)
    additional: tuple[Record, ...] = ()
    if rr.rtype == SRV:
        seen = dict.fromkeys(value[3] for value in rr.values)
        additional = tuple(record for target in seen for record in _addresses(snap.hosts.get(target), target))
    return Answer(NOERROR, chain + records, additional=additional)


def _addresses(entry: HostEntry | None, owner: str) -> tuple[Record, ...]:
    if entry is None:
        return ()
    return tuple(Record(owner, rr.rtype, rr.ttl, ip) for rr in entry.rrsets if rr.rtype in (A, AAAA) for ip in rr.values)
