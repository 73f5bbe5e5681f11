"""What `kdns explain` says, as values: an `Explanation`, its JSON form and its text form. Pure.

The JSON form is what `--json`, the `/explain` endpoint and the test double give
(`Explanation.to_json`); `from_json` reads it back (`kdns explain --server`); `text` is what
a person reads. Records are written as zone-file lines, lowercase, as `dig` prints them
(`web.shop.svc.cluster.local. 5 IN A 10.96.100.10`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from kdns import codes
from kdns.result import Record


@dataclass(frozen=True)
class Origin:
    """An object a record comes from: `kind namespace/name`, and where it is defined
    (`file:line`, `resourceVersion N`, a hosts file) when the source says."""

    kind: str
    namespace: str
    name: str
    where: str | None = None

    def __str__(self) -> str:
        who = f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"
        return f"{who} ({self.where})" if self.where else who

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name, "where": self.where}


@dataclass(frozen=True)
class Line:
    """One record of the answer: its section, its zone-file line, and where it comes from:
    the objects that made it, or (`note`) what else did ("kdns: the zone's SOA")."""

    section: str  # "answer", "authority", "additional"
    record: str
    origins: tuple[Origin, ...] = ()
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"section": self.section, "record": self.record, "from": [o.to_json() for o in self.origins], "note": self.note}


@dataclass(frozen=True)
class Step:
    """One name of a pod's search-path walk: the answers to A and AAAA, and what glibc does."""

    name: str
    answers: dict[str, str]  # "A" -> "NXDOMAIN", "NOERROR 10.96.100.10", "NODATA", "forwarded"...
    verdict: str  # "next" (glibc tries the next name), "stop" (it has its answer), "give up"
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "answers": dict(self.answers), "verdict": self.verdict, "why": self.why}


@dataclass(frozen=True)
class Walk:
    """A pod's search-path walk for a relative name (glibc's resolver, ndots:5, A and AAAA)."""

    namespace: str
    search: tuple[str, ...]
    ndots: int
    autopath: bool
    steps: tuple[Step, ...]
    stops_at: int | None  # 1-based step where glibc has its answer; None if it gives up
    queries: int  # queries the pod sends (A and AAAA per step taken)

    def to_json(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "search": list(self.search), "ndots": self.ndots, "autopath": self.autopath,
                "steps": [s.to_json() for s in self.steps], "stops_at": self.stops_at, "queries": self.queries}


@dataclass(frozen=True)
class Explanation:
    name: str  # absolute, with the final dot
    qtype: str
    rcode: str
    answered_by: str  # "cluster zone", "reverse zone", "external zone", "hosts file", "forwarding", "refused"...
    zone: str | None  # the zone kdns is authoritative for that the name lies in ("cluster.local.")
    reasons: tuple[str, ...]  # why, in order
    records: tuple[Line, ...]
    negative: str = ""  # for NXDOMAIN, NODATA and SERVFAIL: why that and not another answer
    nearest: tuple[str, ...] = ()  # names that exist and look like the one asked
    forward: dict[str, Any] | None = None  # {"name", "upstreams", "cache"} when an upstream has the answer
    search: Walk | None = None
    source: str = ""  # what kdns was looking at
    synced: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def answer(self) -> tuple[str, ...]:
        return tuple(line.record for line in self.records if line.section == "answer")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": self.qtype, "rcode": self.rcode, "answered_by": self.answered_by, "zone": self.zone,
            "reasons": list(self.reasons), "records": [line.to_json() for line in self.records], "negative": self.negative,
            "nearest": list(self.nearest), "forward": self.forward, "search": self.search.to_json() if self.search else None,
            "source": self.source, "synced": self.synced,
        }


def from_json(data: dict[str, Any]) -> Explanation:
    """An Explanation from its JSON form (what `/explain` sends)."""
    walk = data.get("search")
    return Explanation(
        name=data["name"], qtype=data["type"], rcode=data["rcode"], answered_by=data["answered_by"], zone=data.get("zone"),
        reasons=tuple(data.get("reasons") or ()),
        records=tuple(Line(r["section"], r["record"], tuple(Origin(**o) for o in r.get("from") or ()), r.get("note") or "")
                      for r in data.get("records") or ()),
        negative=data.get("negative") or "", nearest=tuple(data.get("nearest") or ()), forward=data.get("forward"),
        search=None if not walk else Walk(
            walk["namespace"], tuple(walk["search"]), walk["ndots"], walk["autopath"],
            tuple(Step(s["name"], s["answers"], s["verdict"], s["why"]) for s in walk["steps"]), walk["stops_at"], walk["queries"]),
        source=data.get("source") or "", synced=data.get("synced", True),
    )


def record_text(record: Record) -> str:
    """A record as a zone-file line, as dig prints it (lowercase)."""
    kind = codes.TYPES.get(record.rtype, f"TYPE{record.rtype}")
    return f"{_absolute(record.name).lower()} {record.ttl} IN {kind} {_data(record).lower()}"


def soa_text(zone: str, serial: int, ttl: int, mname: str, rname: str) -> str:
    """The SOA record of a zone as `wire.soa_record` makes it."""
    return f"{_absolute(zone)} {min(ttl, 300)} IN SOA {_absolute(mname)} {_absolute(rname)} {serial} 7200 1800 86400 {ttl}"


def _absolute(name: str) -> str:
    return name + "." if name else "."


def _data(record: Record) -> str:
    t, d = record.rtype, record.data
    if t in (codes.CNAME, codes.PTR, codes.NS):
        return _absolute(str(d))
    if t == codes.SRV:
        priority, weight, port, target = cast(tuple[int, int, int, str], d)
        return f"{priority} {weight} {port} {_absolute(target)}"
    if t == codes.MX:
        preference, exchange = cast(tuple[int, str], d)
        return f"{preference} {_absolute(exchange)}"
    if t == codes.TXT:
        parts = d if isinstance(d, tuple) else (d,)
        return " ".join('"' + str(p).replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)
    return str(d)


def text(ex: Explanation) -> str:
    """The explanation for a person to read."""
    out = [f"{ex.name} {ex.qtype}: {ex.rcode}, {ex.answered_by}" + (f" ({ex.zone})" if ex.zone else "")]
    if ex.source:
        out.append(f"  looking at: {ex.source}" + ("" if ex.synced else " (not synced yet)"))
    out += [f"  {reason}" for reason in ex.reasons]
    if ex.negative:
        out.append(f"  why {ex.rcode}: {ex.negative}")
    if ex.nearest:
        out.append(f"  names that do exist and look alike: {', '.join(ex.nearest)}")
    if ex.forward:
        out.append(f"  {_forward_text(ex.forward)}")
    for section in ("answer", "authority", "additional"):
        lines = [line for line in ex.records if line.section == section]
        if lines:
            out.append(f"{section}:")
            for line in lines:
                out.append(f"  {line.record}")
                for origin in line.origins:
                    out.append(f"      from {origin}")
                if line.note:
                    out.append(f"      {line.note}")
    if ex.search is not None:
        out += _walk_text(ex.search)
    return "\n".join(out) + "\n"


def _forward_text(forward: dict[str, Any]) -> str:
    where = ", ".join(forward.get("upstreams") or ()) or "no upstream"
    said = f"forwarded: {forward.get('name')} goes to {where}"
    cache = forward.get("cache")
    if cache:
        said += f"; in the cache for {cache['ttl_left']:g} s more ({cache['rcode']}, {cache['records']} record(s))"
    elif forward.get("note"):
        said += f"; {forward['note']}"
    return said


def _walk_text(walk: Walk) -> list[str]:
    out = [f"search path of a pod in namespace {walk.namespace} (ndots:{walk.ndots}"
           + (", autopath" if walk.autopath else "") + f"): {' '.join(walk.search)}"]
    for i, step in enumerate(walk.steps, 1):
        answers = "; ".join(f"{t} {a}" for t, a in step.answers.items())
        out.append(f"  {i}. {step.name}  {answers}  -> {step.verdict}: {step.why}")
    if walk.stops_at is not None:
        out.append(f"  glibc stops at step {walk.stops_at}, after {walk.queries} queries")
    else:
        out.append(f"  glibc gives up after {walk.queries} queries")
    return out
