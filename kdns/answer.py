"""What a question means: the DNS answer for (name, type, class) given one snapshot.

Pure and synchronous: no sockets, no clock, no wire format. `answer()` returns records as
plain values; `wire` turns them into bytes and `responder` memoises the bytes.

The rules (Kubernetes DNS spec 1.1.0 plus CoreDNS's choices where the spec is silent):

* A name that does not exist is NXDOMAIN; a name that exists without the asked type is
  NOERROR with no answer (NODATA). Both carry the zone's SOA in the authority section.
  Before the first complete sync of the sources, would-be NXDOMAIN answers are SERVFAIL.
* An ExternalName Service is a CNAME. Its target is followed when it lies in one of our
  forward zones (up to `MAX_CHAIN` links); other targets are left to the client.
* SRV answers carry the targets' addresses in the additional section.
* `a-b-c-d.<ns>.pod.<zone>` answers with that address when pods are "insecure" and the
  namespace exists (CoreDNS's code checks the namespace even though its README says not).
* ANY gets one RRset, never everything (RFC 8482). AXFR/IXFR are REFUSED: kdns does not
  transfer zones. Classes other than IN, and names outside our zones, are REFUSED.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from kdns import names
from kdns.codes import AAAA, ANY, AXFR, CLASS_IN, CNAME, IXFR, NOERROR, NS, NXDOMAIN, PTR, REFUSED, SERVFAIL, SOA, SRV, TXT, A
from kdns.config import PodsMode
from kdns.index import DNS_VERSION_TTL, Snapshot
from kdns.records import Node

MAX_CHAIN = 8  # CNAME links followed inside our zones


# Record and Answer are values (nobody changes one), but not frozen dataclasses: building a
# frozen one takes 2-3 µs, a large share of a first-time name's budget (issue 15).
@dataclass(slots=True, unsafe_hash=True)
class Record:
    name: str  # absolute, lowercase
    rtype: int
    ttl: int
    data: object  # str for A/AAAA/CNAME/PTR/NS/TXT (names absolute); (prio, weight, port, target) for SRV


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


def answer(snap: Snapshot, labels: tuple[str, ...], qtype: int, qclass: int = CLASS_IN, client_ns: str | None = None) -> Answer:
    """The answer to one question. `labels` are the question's labels, lowercase.

    `client_ns` is the namespace of the pod that asks, when autopath is on and the client
    is a pod kdns can tell apart (else None).
    """
    if qclass != CLASS_IN or qtype in (AXFR, IXFR):
        return refused()
    found = find_zone(labels, snap.config.all_zones)
    if found is None:
        return from_upstream(".".join(labels)) if _can_forward(snap, labels) else refused()
    zone, rel = found
    if "." in "".join(rel):
        return _negative(snap, zone, NXDOMAIN)  # a dot inside a label: no such name here
    if not rel:
        return _apex(snap, zone, qtype)
    if zone in names.REVERSE_ZONES:
        return _reverse(snap, zone, rel, qtype)
    result = _lookup(snap, zone, rel, qtype, chain=())
    if result.rcode == NXDOMAIN and snap.config.autopath and len(rel) >= 3 and rel[-1] == "svc":
        # `<name>.<ns>.svc.<zone>` is the first name a pod in <ns> tries for <name>: the
        # answer depends on who asks, so it is never reused.
        if client_ns is not None and rel[-2] == client_ns:
            return _autopath(snap, zone, rel, qtype, result)
        return replace(result, cacheable=False)
    return result


def _can_forward(snap: Snapshot, labels: tuple[str, ...]) -> bool:
    """Whether some upstream takes this (outside) name: the default ones, or a stub domain's."""
    return snap.config.forwarding or find_zone(labels, snap.config.stub_domains) is not None


def _autopath(snap: Snapshot, zone: str, rel: tuple[str, ...], qtype: int, original: Answer) -> Answer:
    """Walk the rest of the pod's search list (`svc.<zone>`, `<zone>`, then the bare name)
    and answer with a CNAME from the asked name to the first name that exists."""
    name = rel[:-2]
    owner = names.join(".".join(rel), zone)

    def link(target: str) -> Record:
        return Record(owner, CNAME, _ttl(snap), target)

    for candidate in (name + ("svc",), name):
        result = _lookup(snap, zone, candidate, qtype, chain=())
        if result.rcode not in (NXDOMAIN, SERVFAIL):
            target = names.join(".".join(candidate), zone)
            return replace(result, answer=(link(target),) + result.answer, cacheable=False)
    bare = ".".join(name)
    if find_zone(name, snap.config.all_zones) is not None:  # e.g. `kubernetes.default.svc.cluster.local`
        result = answer(snap, name, qtype)
        if result.rcode not in (NXDOMAIN, SERVFAIL, REFUSED):
            return replace(result, answer=(link(bare),) + result.answer, cacheable=False)
    elif _can_forward(snap, name):
        return from_upstream(bare, (link(bare),))
    return replace(original, cacheable=False)


def _ttl(snap: Snapshot) -> int:
    return snap.config.ttl


def _negative(snap: Snapshot, zone: str, rcode: int, answer: tuple[Record, ...] = ()) -> Answer:
    if rcode == NXDOMAIN and not snap.synced:
        # Never NXDOMAIN out of ignorance: the name may exist once the sources have synced.
        return Answer(SERVFAIL, answer, cacheable=False)
    if answer:
        return Answer(rcode, answer, soa_zone=zone)
    # The bulk of first-time names: one (immutable) Answer per zone and rcode, not one per query.
    shared = _NEGATIVE.get((zone, rcode))
    if shared is None:
        if len(_NEGATIVE) >= 256:
            _NEGATIVE.clear()
        shared = _NEGATIVE[(zone, rcode)] = Answer(rcode, soa_zone=zone)
    return shared


_NEGATIVE: dict[tuple[str, int], Answer] = {}


def _apex(snap: Snapshot, zone: str, qtype: int) -> Answer:
    if qtype in (SOA, ANY):
        return Answer(NOERROR, soa_zone=zone, soa_in_answer=True)
    if qtype == NS:
        primary = snap.config.zones[0]
        ns_zone = zone if zone in snap.config.zones else primary
        target = names.join(snap.ns_target, ns_zone)
        glue = _addresses(snap, snap.node(snap.ns_target), target, (A, AAAA))
        return Answer(NOERROR, (Record(zone, NS, _ttl(snap), target),), additional=glue)
    return _negative(snap, zone, NOERROR)


def _reverse(snap: Snapshot, zone: str, rel: tuple[str, ...], qtype: int) -> Answer:
    ip = names.ip_from_reverse(rel, zone)
    targets = snap.ptr.get(ip) if ip is not None else None
    if not targets:
        if snap.config.forwarding and snap.synced:  # CoreDNS's `fallthrough in-addr.arpa ip6.arpa`
            return from_upstream(names.join(".".join(rel), zone))
        return _negative(snap, zone, NXDOMAIN)
    if qtype not in (PTR, ANY):
        return _negative(snap, zone, NOERROR)
    owner = names.join(".".join(rel), zone)
    primary = snap.config.zones[0]
    return Answer(NOERROR, tuple(Record(owner, PTR, _ttl(snap), names.join(t, primary)) for t in targets))


def _pod_node(snap: Snapshot, rel: tuple[str, ...]) -> tuple[Node | None, bool]:
    """The address node of a pod name, and whether the answer may be memoised."""
    if len(rel) != 3 or rel[2] != "pod" or snap.config.pods is PodsMode.DISABLED:
        return None, True
    if rel[1] not in snap.namespaces:
        return None, True
    ip = names.ip_from_dashed(rel[0])
    if ip is None:
        return None, True
    if snap.config.pods is PodsMode.VERIFIED:
        # The index invalidates the canonical spellings when Pods come and go; answers to
        # other spellings of the same address are worked out afresh each time.
        cacheable = rel[0] in names.pod_labels(ip)
        if (rel[1], ip) not in snap.pod_ips:
            return None, cacheable
        return _address_node_for(ip), cacheable
    return _address_node_for(ip), True


def _address_node_for(ip: str) -> Node:
    return Node(a=(ip,)) if names.ip_family(ip) == 4 else Node(aaaa=(ip,))


def _lookup(snap: Snapshot, zone: str, rel: tuple[str, ...], qtype: int, chain: tuple[Record, ...]) -> Answer:
    relname = ".".join(rel)
    owner = relname + "." + zone  # (names.join: `rel` and `zone` are never empty here)
    node = snap.node(relname)
    if node is None:
        node, cacheable = _pod_node(snap, rel)
        if not cacheable:
            return replace(_lookup_node(snap, zone, owner, node, qtype, chain), cacheable=False)
    return _lookup_node(snap, zone, owner, node, qtype, chain)


def _lookup_node(snap: Snapshot, zone: str, owner: str, node: Node | None, qtype: int, chain: tuple[Record, ...]) -> Answer:
    if node is None:
        return _negative(snap, zone, NXDOMAIN, chain)
    ttl = _ttl(snap)

    if node.cname:
        link = Record(owner, CNAME, ttl, node.cname)
        if qtype == CNAME:
            return Answer(NOERROR, chain + (link,))
        chain += (link,)
        target = find_zone(tuple(node.cname.split(".")), snap.config.zones)
        if target is None and _can_forward(snap, tuple(node.cname.split("."))):
            return from_upstream(node.cname, chain)  # outside our zones: its records come from upstream
        if (
            target is None  # outside our zones, no upstream: the client's resolver follows the CNAME
            or not target[1]  # a zone apex: not worth a special case, the client asks
            or len(chain) >= MAX_CHAIN
            or any(r.name == node.cname for r in chain)  # a loop
        ):
            return Answer(NOERROR, chain)
        return _lookup(snap, target[0], target[1], qtype, chain)

    records: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    if qtype == A or (qtype == ANY and node.a):
        records = tuple(Record(owner, A, ttl, ip) for ip in node.a)
    elif qtype == AAAA or (qtype == ANY and node.aaaa):
        records = tuple(Record(owner, AAAA, ttl, ip) for ip in node.aaaa)
    elif qtype == SRV or (qtype == ANY and node.srv):
        records, additional = _srv(snap, zone, owner, node)
    elif qtype == TXT or (qtype == ANY and node.txt):
        records = tuple(Record(owner, TXT, DNS_VERSION_TTL, text) for text in node.txt)
    if not records:
        return _negative(snap, zone, NOERROR, chain)
    return Answer(NOERROR, chain + records, additional=additional)


def _srv(snap: Snapshot, zone: str, owner: str, node: Node) -> tuple[tuple[Record, ...], tuple[Record, ...]]:
    ttl = _ttl(snap)
    records = []
    additional: list[Record] = []
    seen: set[str] = set()
    for srv in node.srv:
        target = names.join(srv.target, zone)
        records.append(Record(owner, SRV, ttl, (srv.priority, srv.weight, srv.port, target)))
        if target not in seen:
            seen.add(target)
            additional.extend(_addresses(snap, snap.node(srv.target), target, (A, AAAA)))
    return tuple(records), tuple(additional)


def _addresses(snap: Snapshot, node: Node | None, owner: str, types: tuple[int, ...]) -> tuple[Record, ...]:
    if node is None:
        return ()
    ttl = _ttl(snap)
    out = []
    if A in types:
        out.extend(Record(owner, A, ttl, ip) for ip in node.a)
    if AAAA in types:
        out.extend(Record(owner, AAAA, ttl, ip) for ip in node.aaaa)
    return tuple(out)
