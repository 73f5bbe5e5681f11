"""A pod's search-path walk for a relative name, as glibc's resolver takes it. Pure.

A pod's /etc/resolv.conf (ClusterFirst) has `search <ns>.svc.<zone> svc.<zone> <zone>` and
`options ndots:5`. glibc's `res_nsearch`, for a name without a final dot:

* with fewer dots than ndots, tries the name with each search domain appended, then the
  name as it is; with ndots dots or more, the name as it is first, then the search list;
* asks A and AAAA for each name (getaddrinfo with AF_UNSPEC: both in one exchange);
* goes on to the next name after NXDOMAIN, NODATA (NOERROR and no records) or SERVFAIL, and
  stops at the first name whose A or AAAA answer holds records; any other rcode (REFUSED)
  ends the walk without an answer.

Each name is answered by `kdns.answer.answer` on the same snapshot, as the pod's queries
would be (with autopath, as coming from a pod of that namespace kdns can tell apart). A name
that goes to an upstream is answered by the upstream: when the forwarding cache of a running
kdns holds its answer that is what the walk uses, else the walk assumes the upstream has
records (and says so).
"""

from __future__ import annotations

from typing import Any

from kdns import answer as ans
from kdns import codes
from kdns.explain.report import Step, Walk
from kdns.explain.why import View
from kdns.result import Answer, Record

NDOTS = 5  # a pod's resolv.conf (kubelet writes ndots:5)
TYPES = (codes.A, codes.AAAA)


def search_list(zone: str, namespace: str) -> tuple[str, ...]:
    """The search domains of a pod in `namespace` (ClusterFirst)."""
    return (f"{namespace}.svc.{zone}", f"svc.{zone}", zone)


def candidates(name: str, search: tuple[str, ...], ndots: int = NDOTS) -> list[str]:
    """The names glibc tries for `name` (no final dot), in order."""
    expanded = [f"{name}.{domain}" for domain in search]
    return [name, *expanded] if name.count(".") >= ndots else [*expanded, name]


def walk(view: View, name: str, namespace: str, ndots: int = NDOTS) -> Walk:
    snap = view.snap
    search = search_list(snap.config.zones[0], namespace)
    client_ns = namespace if snap.config.autopath else None
    steps: list[Step] = []
    stops_at = None
    for i, candidate in enumerate(candidates(name, search, ndots), 1):
        labels = tuple(candidate.split("."))
        outcomes = {codes.TYPES[t]: _outcome(view, ans.answer(snap, labels, t, codes.CLASS_IN, client_ns), t) for t in TYPES}
        verdict, why = _verdict(outcomes)
        steps.append(Step(f"{candidate}.", {t: text for t, (text, _) in outcomes.items()}, verdict, why))
        if verdict == "stop":
            stops_at = i
            break
        if verdict == "give up":
            break
    return Walk(namespace, search, ndots, snap.config.autopath, tuple(steps), stops_at, len(TYPES) * len(steps))


def _outcome(view: View, result: Answer, qtype: int) -> tuple[str, str]:
    """(what the answer is, in words; its kind: "records", "negative", "refused", "assumed")."""
    if result.upstream is not None:
        info: dict[str, Any] = view.forward(result.upstream, qtype) if view.forward is not None else {}
        cache = info.get("cache")
        if cache:
            kind = "records" if cache["rcode"] == "NOERROR" and cache["records"] else (
                "negative" if cache["rcode"] in ("NOERROR", "NXDOMAIN", "SERVFAIL") else "refused")
            return f"forwarded, cached: {cache['rcode']}, {cache['records']} record(s)", kind
        return "forwarded", "assumed"
    rcode = codes.RCODES.get(result.rcode, str(result.rcode))
    if result.answer:
        return f"{rcode} " + " ".join(_value(r) for r in result.answer), "records"
    if result.rcode == codes.NOERROR:
        return "NODATA", "negative"
    if result.rcode in (codes.NXDOMAIN, codes.SERVFAIL):
        return rcode, "negative"
    return rcode, "refused"


def _value(record: Record) -> str:
    if record.rtype == codes.CNAME:
        return f"CNAME {record.data}."
    return str(record.data)


def _verdict(outcomes: dict[str, tuple[str, str]]) -> tuple[str, str]:
    kinds = [kind for _, kind in outcomes.values()]
    if "records" in kinds:
        return "stop", "an answer with records"
    if "assumed" in kinds:
        return "stop", "forwarded: glibc stops here if the upstream has records (kdns explain assumes it has)"
    if "refused" in kinds:
        return "give up", "an rcode other than NXDOMAIN or SERVFAIL ends glibc's walk"
    return "next", "no records (NXDOMAIN, NODATA or SERVFAIL): glibc tries the next name"
