"""`explain`: what kdns answers for a name and why, with the objects behind each record. Pure.

The answer is the one `kdns.answer.answer` gives for the snapshot: explain calls it, never a
copy of its rules. Around it, it says which table the name fell in (`find_zone`, the same
function the answer uses), what the snapshot holds there, which objects made each record
(kdns.explain.provenance), why a negative answer is NXDOMAIN, NODATA or SERVFAIL and which
names look like the one asked (kdns.explain.negative), and, for a relative name asked from a
pod's namespace, the resolver's walk down the search path (kdns.explain.search).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

from kdns import answer as ans
from kdns import codes, names
from kdns.explain import negative, provenance
from kdns.explain.report import Explanation, Line, Origin, record_text, soa_text
from kdns.index import Index
from kdns.model import ObjectKey, ServiceType
from kdns.result import Answer, Record, find_zone
from kdns.snapshot import Snapshot

ForwardInfo = Callable[[str, int], dict[str, Any]]  # (name, qtype) -> {"name", "upstreams", "cache", "note"}


@dataclass(frozen=True)
class View:
    """What an explanation reads: a snapshot and the index's objects of the same moment
    (`kdns.state.DnsState` keeps them in step), where the objects are defined (`locate`),
    and what the forwarder would do with a name (`forward`)."""

    snap: Snapshot
    index: Index
    locate: Callable[[ObjectKey], str | None] = lambda key: None
    forward: ForwardInfo | None = None
    source: str = ""


def qtype_number(qtype: str | int) -> int:
    if isinstance(qtype, int):
        return qtype
    text = qtype.strip().upper()
    if text.isdigit():
        return int(text)
    for number, name in codes.TYPES.items():
        if name == text:
            return number
    raise ValueError(f"unknown record type {qtype!r}")


def explain(view: View, name: str, qtype: str | int = "A", namespace: str | None = None) -> Explanation:
    """Explain the answer to `name` `qtype`. With `namespace` and a relative name (no final
    dot), also the search-path walk of a pod in that namespace; the answer explained is then
    the one the pod's resolver stops at; if it stops nowhere, the name tried that reads as a
    Service's in an existing namespace, else the name as written."""
    from kdns.explain import search  # (search imports this module's View)

    number = qtype_number(qtype)
    absolute = name.endswith(".")
    text = name.strip().rstrip(".").lower()
    walk = None
    client_ns = None
    if namespace is not None and not absolute:
        walk = search.walk(view, text, namespace)
        if walk.stops_at is not None:
            text = walk.steps[walk.stops_at - 1].name.rstrip(".")
            if walk.autopath and walk.stops_at == 1:
                client_ns = namespace
        else:
            text = _meant(view.snap, [step.name.rstrip(".") for step in walk.steps]) or text
    out = describe(view, text, number, client_ns)
    return replace(out, search=walk) if walk is not None else out


def _meant(snap: Snapshot, tried: list[str]) -> str | None:
    """Of the names a walk tried without an answer, the one that reads as a Service's name
    (`<svc>.<ns>.svc.<zone>`) in a namespace that exists: its explanation says which Service
    is missing and which names look alike ("redis" misspelt, asked from a pod)."""
    for name in tried:
        found = find_zone(tuple(name.split(".")), snap.config.zones)
        if found is not None and len(found[1]) == 3 and found[1][2] == "svc" and found[1][1] in snap.namespaces:
            return name
    return None


def describe(view: View, name: str, qtype: int, client_ns: str | None = None) -> Explanation:
    snap = view.snap
    labels = tuple(name.split(".")) if name else ()
    if qtype in (codes.AXFR, codes.IXFR):
        return _transfer(view, name, qtype)
    result = ans.answer(snap, labels, qtype, codes.CLASS_IN, client_ns)
    via = result.via  # a Corefile's rewrite or template (kdns.rewrite): explain the name looked up
    asked = name
    if via is not None and via.rewritten:
        name = via.looked_up
        labels = tuple(name.split(".")) if name else ()
    found = find_zone(labels, snap.config.all_zones)
    zone = found[0] if found else None
    answered_by, reasons = _what(view, name, labels, qtype, result, found, client_ns)
    if via is not None:
        reasons = [*via.steps, *(() if via.template else reasons)]
        answered_by = "template" if via.template else answered_by
    lines = [_line(view, "answer", r) for r in result.answer]
    if result.soa_zone is not None:
        serial, ttl, mname, rname = snap.soa(result.soa_zone)
        section = "answer" if result.soa_in_answer else "authority"
        lines.append(Line(section, soa_text(result.soa_zone, serial, ttl, mname, rname), (), "kdns: the zone's SOA record"))
    lines += [_line(view, "additional", r) for r in result.additional]
    rcode = codes.RCODES.get(result.rcode, str(result.rcode))
    why_negative, near = "", cast(tuple[str, ...], ())
    final_name = _final_name(asked, result)
    has_records = any(r.name == final_name for r in result.answer)
    if result.upstream is None and not has_records and result.rcode in (codes.NOERROR, codes.NXDOMAIN, codes.SERVFAIL):
        missing = name if final_name == asked else final_name  # (the name looked up, after a rewrite)
        why_negative = negative.why_missing(snap, view.index, missing, qtype, result.rcode)
        if final_name != asked:
            why_negative = f"the CNAME's target {final_name}.: {why_negative}"
        if result.rcode == codes.NXDOMAIN:
            near = negative.nearest(snap, view.index, missing)
    elif result.rcode == codes.REFUSED:
        why_negative = negative.why_missing(snap, view.index, name, qtype, result.rcode)
    forward = None
    if result.upstream is not None:
        forward = view.forward(result.upstream, qtype) if view.forward is not None else {"name": f"{result.upstream}.", "upstreams": []}
        nowhere = _forwarded_nowhere(snap, result.upstream)
        if nowhere is not None:  # what the forwarder answers itself: SERVFAIL or REFUSED
            rcode, why_negative = nowhere
    if via is not None and via.template:
        why_negative, near = "", ()
    return Explanation(f"{asked}." if asked else ".", codes.TYPES.get(qtype, str(qtype)), rcode, answered_by, zone and f"{zone}.",
                       tuple(reasons), tuple(lines), why_negative, near, forward, None, view.source, snap.synced)


def _forwarded_nowhere(snap: Snapshot, name: str) -> tuple[str, str] | None:
    """The rcode and the reason when the forwarder asks no upstream for `name`: an except
    zone (SERVFAIL, naming where it was set), or an --upstream-default zone without default
    upstreams (REFUSED); None when some upstream is asked."""
    cfg = snap.config
    if not cfg.except_zones and not cfg.default_domains:
        return None
    found = find_zone(tuple(name.split(".")) if name else (), cfg.stub_domains + cfg.default_domains)
    if found is None:
        return None
    where = dict(cfg.except_zones).get(found[0])
    if where is not None:
        return "SERVFAIL", (f"{name}. lies under {found[0]}., which no upstream takes ({where}): SERVFAIL, as CoreDNS's forward "
                            "except when no plugin after forward takes the name")
    if found[0] in cfg.default_domains and not cfg.forwarding:
        return "REFUSED", (f"{name}. lies under {found[0]}. (--upstream-default), whose names go to the default upstreams, "
                           "and there are none: REFUSED")
    return None


def _final_name(name: str, result: Answer) -> str:
    """The name a chain of CNAMEs in the answer leads to."""
    current = name
    for record in result.answer:
        if record.rtype == codes.CNAME and record.name == current:
            current = str(record.data)
    return current


def _line(view: View, section: str, record: Record) -> Line:
    keys, note = provenance.origins(view.snap, view.index, record)
    return Line(section, record_text(record), tuple(Origin(str(k[0]), k[1], k[2], view.locate(k)) for k in keys), note)


def _what(view: View, name: str, labels: tuple[str, ...], qtype: int, result: Answer, found: tuple[str, tuple[str, ...]] | None,
          client_ns: str | None) -> tuple[str, list[str]]:
    """Which table answered, and the reasons that lead there."""
    snap = view.snap
    reasons: list[str] = []
    if found is None:
        return _outside(view, name, labels, result)
    zone, rel = found
    if zone in snap.config.external_zones:
        reasons.append(f"{name}. lies in the external zone {zone}. (--external-zone): Services' external addresses by name")
        answered_by = "external zone"
    elif zone in names.REVERSE_ZONES:
        answered_by = "reverse zone"
        ip = names.ip_from_reverse(rel, zone)
        if ip is not None:
            reasons.append(_reverse_reason(snap, ip, result))
            if result.upstream is not None:
                answered_by = "forwarding"
    else:
        answered_by = "cluster zone"
        reasons.append(f"{name}. lies in the cluster zone {zone}.")
        if rel:
            reasons += _cluster_reasons(view, rel)
        if client_ns is not None and any(r.rtype == codes.CNAME and r.name == name for r in result.answer) and snap.node(".".join(rel)) is None:
            answered_by = "autopath"
            reasons.append(f"autopath: {name}. does not exist, so kdns walked the search path of a pod in {client_ns} and "
                           "answers with a CNAME to the first name that does")
    if result.upstream == name and not result.answer and answered_by != "forwarding":
        answered_by = "forwarding"
        reasons.append(f"kdns holds no {name}. and it lies under a fallthrough zone (--cluster-fallthrough, "
                       "--external-fallthrough): forwarded, as CoreDNS's fallthrough hands it to forward")
    reasons += _chain_reasons(view, name, result)
    if result.upstream is not None and answered_by != "forwarding":
        reasons.append(f"{result.upstream}. lies outside the zones kdns serves: its records come from an upstream")
    return answered_by, reasons


def _outside(view: View, name: str, labels: tuple[str, ...], result: Answer) -> tuple[str, list[str]]:
    snap = view.snap
    reasons = [f"{name}. lies outside the zones kdns serves ({', '.join(z + '.' for z in snap.config.all_zones)})"]
    entry = snap.hosts.get(name) if not any("." in label for label in labels) else None
    wildcard = False
    if entry is None and len(labels) > 1 and not any("." in label for label in labels):
        entry = snap.hosts.get("*." + name.split(".", 1)[1])
        wildcard = entry is not None
    if entry is not None and entry.rrsets:
        what = negative.describe_kinds(entry.origins)
        made = ", ".join(_describe(k) for k in entry.origins)
        reasons.append(f"kdns holds records for {'*.' + name.split('.', 1)[1] if wildcard else name}. ({made}): they come before "
                       "any upstream")
        reasons += _chain_reasons(view, name, result)
        return what, reasons
    if result.upstream is not None:
        stub = find_zone(labels, snap.config.stub_domains + snap.config.default_domains)
        if stub is not None and stub[0] in snap.config.default_domains:
            reasons.append(f"kdns holds no record for it: forwarded to the default upstreams (--upstream-default {stub[0]}, "
                           "even inside a stub domain)")
        elif stub is not None and stub[0] in dict(snap.config.except_zones):
            reasons.append("kdns holds no record for it, and no upstream takes it")
        else:
            reasons.append("kdns holds no record for it: forwarded" + (f" to the upstreams of stub domain {stub[0]}" if stub else ""))
        return "forwarding", reasons
    if result.rcode == codes.REFUSED:
        reasons.append("kdns holds no record for it and no upstream takes it: REFUSED (--outside-names refused; --upstream "
                       "forwards such names)")
        return "refused", reasons
    if result.rcode == codes.SERVFAIL:
        return "closed world", reasons + ["kdns has not synced with its sources yet: SERVFAIL rather than NXDOMAIN"]
    return "closed world", reasons


def _describe(key: ObjectKey) -> str:
    kind, namespace, name = key
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def _reverse_reason(snap: Snapshot, ip: str, result: Answer) -> str:
    if snap.ptr.get(ip):
        return f"{ip} is the address of a Service or a ready endpoint: its PTR names them (a ClusterIP's Service wins)"
    if snap.xptr.get(ip):
        return f"{ip} is an address kdns holds outside the cluster zone (an external address, a hosts file...)"
    if result.upstream is not None:
        return f"no Service or endpoint has {ip}: kdns forwards unknown reverse names (CoreDNS's fallthrough)"
    return f"no Service or endpoint has {ip}"


def _cluster_reasons(view: View, rel: tuple[str, ...]) -> list[str]:
    """What the name is in the cluster zone's grammar, in terms of the objects."""
    index = view.index
    relname = ".".join(rel)
    if relname == "dns-version":
        return ["dns-version holds the version of the Kubernetes DNS schema kdns serves (TXT)"]
    if relname == "ns.dns":
        return ["ns.dns is the name server of the SOA record: the addresses of kube-system/kube-dns, else those kdns listens on"]
    if rel[-1] == "pod":
        return [f"a pod name (--pods {view.snap.config.pods.value})"] if len(rel) == 3 else []
    if rel[-1] != "svc" or len(rel) < 3:
        return []
    namespace, service = rel[-2], rel[-3]
    svc = index.service(namespace, service)
    if svc is None:
        return []
    below = rel[:-3]
    base = f"Service {namespace}/{service}"
    if svc.type is ServiceType.EXTERNAL_NAME:
        return []  # its CNAME says it (`_chain_reasons`)
    if not below:
        if svc.type is ServiceType.HEADLESS:
            return [f"{base} is headless: its name holds the addresses of its ready endpoints, from its EndpointSlices"]
        return [(f"{base} is a ClusterIP Service ({', '.join(svc.cluster_ips) or 'no address'}): its name holds its ClusterIPs, "
                "and SRV records for its named ports")]
    if len(below) == 2 and below[0].startswith("_") and below[1].startswith("_"):
        return [f"{below[0]}.{below[1]} names port {below[0][1:]} ({below[1][1:]}) of {base}: SRV records"]
    if len(below) == 1 and not below[0].startswith("_"):
        return [f"{below[0]} is an endpoint of {base} (an endpoint is named by its hostname, else by its dashed address)"]
    return []


def _chain_reasons(view: View, name: str, result: Answer) -> list[str]:
    out = []
    for record in result.answer:
        if record.rtype == codes.CNAME:
            keys, _ = provenance.origins(view.snap, view.index, record)
            made = f" ({', '.join(_describe(k) for k in keys)})" if keys else ""
            out.append(f"{record.name}. is a CNAME to {record.data}.{made}: kdns follows it when it holds the target")
    return out


def _transfer(view: View, name: str, qtype: int) -> Explanation:
    snap = view.snap
    labels = tuple(name.split(".")) if name else ()
    found = find_zone(labels, snap.config.all_zones)
    apex = found is not None and not found[1]
    reasons = [("a zone transfer: kdns sends the whole zone over TCP, SOA first and last, to clients --allow-transfer "
               "allows (by default loopback); over UDP, and to other clients, REFUSED")]
    if apex:
        reasons.append("IXFR gets the whole zone too, or its SOA alone when the client's serial is current")
    else:
        reasons.append(f"{name}. is not the apex of a zone kdns serves ({', '.join(z + '.' for z in snap.config.all_zones)}): REFUSED")
    kind = codes.TYPES[qtype]
    return Explanation(f"{name}.", kind, "NOERROR" if apex else "REFUSED", "zone transfer", f"{found[0]}." if found else None,
                       tuple(reasons), (), source=view.source, synced=snap.synced)
