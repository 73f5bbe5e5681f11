"""What a question means: the DNS answer for (name, type, class) given one snapshot.

Pure and synchronous: no sockets, no clock, no wire format. `answer()` returns records as
plain values; `wire` turns them into bytes and `responder` memoises the bytes.

The rules (Kubernetes DNS spec 1.1.0 plus CoreDNS's choices where the spec is silent):

* A name that does not exist is NXDOMAIN; a name that exists without the asked type is
  NOERROR with no answer (NODATA). Both carry the zone's SOA in the authority section.
  Before the first complete sync of the sources, would-be NXDOMAIN answers are SERVFAIL.
* An ExternalName Service is a CNAME. Its target is followed when kdns holds it (a cluster
  or external zone's name, or a record for a name outside the zones; up to `MAX_CHAIN`
  links), asked of an upstream when one takes it, else left to the client.
* SRV answers carry the targets' addresses in the additional section.
* `a-b-c-d.<ns>.pod.<zone>` answers with that address when pods are "insecure" and the
  namespace exists (CoreDNS's code checks the namespace even though its README says not).
* ANY gets one RRset, never everything (RFC 8482). AXFR/IXFR are REFUSED: kdns does not
  transfer zones. Classes other than IN are REFUSED.
* A Corefile's `rewrite name` rules and `template`s (DnsConfig.rules; kdns.rewrite) come
  before everything else but the class check: the name they lead to is answered here.
* The external zones and the names outside every zone are answered from kdns.answer_hosts:
  a record kdns holds for an outside name (a hosts file, the test double) comes before any
  upstream; a name with none goes upstream, or gets `--outside-names` (REFUSED or NXDOMAIN).
"""

from __future__ import annotations

from dataclasses import replace

from kdns import answer_hosts, names, rewrite
from kdns.codes import AAAA, ANY, AXFR, CLASS_IN, CNAME, IXFR, NOERROR, NS, NXDOMAIN, PTR, REFUSED, SERVFAIL, SOA, SRV, TXT, A
from kdns.config import PodsMode
from kdns.records import Node
from kdns.result import MAX_CHAIN, Answer, Chase, Record, can_forward, find_zone, from_upstream, negative, refused
from kdns.snapshot import DNS_VERSION_TTL, Snapshot

__all__ = ["MAX_CHAIN", "Answer", "Record", "answer", "find_zone", "from_upstream", "refused"]


def answer(snap: Snapshot, labels: tuple[str, ...], qtype: int, qclass: int = CLASS_IN, client_ns: str | None = None,
           remote: str | None = None, *, rules: bool = True) -> Answer:
    """The answer to one question. `labels` are the question's labels, lowercase.

    `client_ns` is the namespace of the pod that asks, when autopath is on and the client
    is a pod kdns can tell apart (else None). `remote` is the client's address (a template's
    {{ .Remote }}). A Corefile's rewrite rules and templates (kdns.rewrite) come first, unless
    `rules` is False (the name they lead to).
    """
    if qclass != CLASS_IN or qtype in (AXFR, IXFR):
        return refused()
    if rules and snap.config.rules is not None:
        return rewrite.answer(snap.config.rules, labels, qtype, remote,
                              lambda name: answer(snap, name, qtype, qclass, client_ns, remote, rules=False))
    found = find_zone(labels, snap.config.all_zones)
    if found is None:
        return _chase(snap, answer_hosts.outside(snap, labels, qtype, ()), qtype)
    zone, rel = found
    if "." in "".join(rel):
        return negative(snap, zone, NXDOMAIN)  # a dot inside a label: no such name here
    if zone in snap.config.external_zones:
        return _fallthrough(snap, zone, labels, _chase(snap, answer_hosts.external(snap, zone, rel, qtype, ()), qtype))
    if not rel:
        return _apex(snap, zone, qtype)
    if zone in names.REVERSE_ZONES:
        return _reverse(snap, zone, rel, qtype)
    result = _lookup(snap, zone, rel, qtype, chain=())
    if result.rcode == NXDOMAIN and snap.config.autopath and len(rel) >= 3 and rel[-1] == "svc":
        # `<name>.<ns>.svc.<zone>` is the first name a pod in <ns> tries for <name>: the
        # answer depends on who asks, so it is never reused.
        if client_ns is not None and rel[-2] == client_ns:
            result = _autopath(snap, zone, rel, qtype, result)
            if result.upstream is not None:  # (an ExternalName's or an outside name's: not for replay)
                result = replace(result, per_client=True)
        else:
            result = replace(result, cacheable=False)
    return _fallthrough(snap, zone, labels, result) if result.rcode == NXDOMAIN else result


def _fallthrough(snap: Snapshot, zone: str, labels: tuple[str, ...], result: Answer) -> Answer:
    """CoreDNS's `fallthrough ZONES` (kubernetes, k8s_external): a name of the zone that kdns
    does not hold (NXDOMAIN: never NODATA, never before the sync) goes on to the next plugin,
    the upstream; with none that takes it, the NXDOMAIN stands."""
    config = snap.config
    if result.rcode != NXDOMAIN or result.answer or not snap.synced or not (config.cluster_fallthrough or config.external_fallthrough):
        return result
    name = ".".join(labels)
    if zone in config.external_zones and names.within(name, f"{config.external_apex}.{zone}"):
        return result  # the name server's own names: k8s_external answers them itself
    return from_upstream(name) if config.falls_through(zone, name) and can_forward(snap, labels) else result


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
    result = answer(snap, name, qtype)  # e.g. `kubernetes.default.svc.cluster.local`, `example.com`
    if result.upstream is not None:
        return from_upstream(result.upstream, (link(bare),) + result.answer)
    if result.rcode not in (NXDOMAIN, SERVFAIL, REFUSED):
        return replace(result, answer=(link(bare),) + result.answer, cacheable=False)
    return replace(original, cacheable=False)


def _chase(snap: Snapshot, result: Answer | Chase, qtype: int) -> Answer:
    """Follow the CNAMEs a table answered with, through every table, to an answer."""
    while isinstance(result, Chase):
        result = _follow(snap, result.target, qtype, result.chain)
    return result


def _follow(snap: Snapshot, target: str, qtype: int, chain: tuple[Record, ...]) -> Answer | Chase:
    """What comes after a CNAME to `target` (absolute), `chain` being the CNAMEs so far."""
    if len(chain) >= MAX_CHAIN or any(r.name == target for r in chain):
        return Answer(NOERROR, chain)  # too long, or a loop: the client's resolver decides
    labels = tuple(target.split("."))
    found = find_zone(labels, snap.config.zones + snap.config.external_zones)
    if found is None:
        return answer_hosts.outside(snap, labels, qtype, chain)
    zone, rel = found
    if not rel:
        return Answer(NOERROR, chain)  # a zone apex: not worth a special case, the client asks
    if zone in snap.config.external_zones:
        return answer_hosts.external(snap, zone, rel, qtype, chain)
    return _lookup(snap, zone, rel, qtype, chain)


def _ttl(snap: Snapshot) -> int:
    return snap.config.ttl


def _apex(snap: Snapshot, zone: str, qtype: int) -> Answer:
    if qtype in (SOA, ANY):
        return Answer(NOERROR, soa_zone=zone, soa_in_answer=True)
    if qtype == NS:
        primary = snap.config.zones[0]
        ns_zone = zone if zone in snap.config.zones else primary
        target = names.join(snap.ns_target, ns_zone)
        glue = _addresses(snap, snap.node(snap.ns_target), target, (A, AAAA))
        return Answer(NOERROR, (Record(zone, NS, _ttl(snap), target),), additional=glue)
    return negative(snap, zone, NOERROR)


def _reverse(snap: Snapshot, zone: str, rel: tuple[str, ...], qtype: int) -> Answer:
    ip = names.ip_from_reverse(rel, zone)
    targets = snap.ptr.get(ip) if ip is not None else None
    if not targets:
        other = snap.xptr.get(ip) if ip is not None else None
        if other is not None:  # an external address, or an address of a hosts file
            return answer_hosts.ptr(snap, zone, names.join(".".join(rel), zone), other, qtype)
        if snap.config.forwarding and snap.synced:  # CoreDNS's `fallthrough in-addr.arpa ip6.arpa`
            return from_upstream(names.join(".".join(rel), zone))
        return negative(snap, zone, NXDOMAIN)
    if qtype not in (PTR, ANY):
        return negative(snap, zone, NOERROR)
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
        return negative(snap, zone, NXDOMAIN, chain)
    ttl = _ttl(snap)

    if node.cname:
        link = Record(owner, CNAME, ttl, node.cname)
        if qtype == CNAME:
            return Answer(NOERROR, chain + (link,))
        return _chase(snap, _follow(snap, node.cname, qtype, chain + (link,)), qtype)

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
        return negative(snap, zone, NOERROR, chain)
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
    out: list[Record] = []
    if A in types:
        out.extend(Record(owner, A, ttl, ip) for ip in node.a)
    if AAAA in types:
        out.extend(Record(owner, AAAA, ttl, ip) for ip in node.aaaa)
    return tuple(out)
