"""CoreDNS's `template` plugin in kdns's answer path: answers made from record templates.

A Corefile's templates (kdns.corefile.translate.rewrite gives them as data) are compiled once
per configuration (`compile_template`) and asked in file order before kdns's own tables, on
the name after any rewrite (kdns.rewrite), as CoreDNS asks `template` before `hosts` and
`kubernetes`. For a name under one of a template's zones, of its type (or ANY) in class IN:

* the first `match` regex that finds the name (lowercase, with its trailing dot; no `match`
  is `.*`) makes the answer: `rcode` with the `answer`, `authority` and `additional` records, filled in
  (`{{ .Name }}`, `{{ .Zone }}`, `{{ .Class }}`, `{{ .Type }}`, `{{ .Remote }}`,
  `{{ index .Match N }}`, `{{ .Group.NAME }}`) and read as zone-file lines (owner, optional
  TTL, default 3600 as in CoreDNS, optional class IN, type, data); `rcode SERVFAIL` is a bare
  SERVFAIL; a record that does not read after filling in is SERVFAIL, as in CoreDNS;
* no regex matches: with `fallthrough` covering the name the next template is asked, then
  kdns's tables; without, SERVFAIL.

kdns serves template records of the types it answers with: A, AAAA, CNAME, PTR, NS, TXT,
SRV, MX, and SOA (for the authority section; `problem` says so for a template that would make
another). An answer that used `{{ .Remote }}` depends on the client: never reused.

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dnslib import QTYPE

from kdns import codes
from kdns.result import Answer, Record

if TYPE_CHECKING:
    from kdns.rewrite import Scope

DEFAULT_TTL = 3600  # miekg/dns's, for a template record without a TTL
TYPES = {"A": codes.A, "AAAA": codes.AAAA, "CNAME": codes.CNAME, "PTR": codes.PTR, "NS": codes.NS, "TXT": codes.TXT,
         "SRV": codes.SRV, "MX": codes.MX, "SOA": codes.SOA}
RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5, "YXDOMAIN": 6, "YXRRSET": 7,
          "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10}
CLASSES = ("IN", "CS", "CH", "HS", "NONE", "ANY")
_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|([^\s()"]+)')

# A record template: literal text and fields, ("Name"|"Zone"|"Class"|"Type"|"Remote", None),
# ("Match", N) or ("Group", NAME).
Part = str | tuple[str, int | str | None]


class TemplateError(ValueError):
    """A filled-in template that is no record kdns can serve."""


@dataclass(frozen=True, slots=True)
class TemplateRule:
    qtype: int | None  # None: ANY
    qtype_text: str
    zones: tuple[str, ...]  # absolute, lowercase, with their dot ("." for every name)
    patterns: tuple[re.Pattern[str], ...]
    rcode: int
    answer: tuple[tuple[Part, ...], ...]
    additional: tuple[tuple[Part, ...], ...]
    authority: tuple[tuple[Part, ...], ...]
    fallthrough: tuple[str, ...]  # like `zones`; () none
    remote: bool  # some record uses {{ .Remote }}
    scope: Scope  # the names the template's server block sees
    origin: str  # file:line


def _zone(z: str) -> str:
    return "." if z in (".", "") else z.lower().rstrip(".") + "."


def _under(name: str, zone: str) -> bool:
    return zone == "." or name == zone or name.endswith("." + zone)


def compile_template(qclass: str, qtype: str, zones: tuple[str, ...], patterns: tuple[str, ...], rcode: str,
                     answer: tuple[tuple[Part, ...], ...], additional: tuple[tuple[Part, ...], ...],
                     authority: tuple[tuple[Part, ...], ...], fallthrough: tuple[str, ...], scope: Scope,
                     origin: str) -> TemplateRule:
    """A template from the translator's values; TemplateError when kdns cannot serve it (`problem`)."""
    records = answer + additional + authority
    why = problem(qclass, qtype, rcode, records)
    if why:
        raise TemplateError(why)
    return TemplateRule(None if qtype == "ANY" else QTYPE.reverse[qtype], qtype, tuple(_zone(z) for z in zones),
                        tuple(re.compile(p) for p in patterns or (".*",)), RCODES[rcode], answer, additional, authority,
                        tuple(_zone(z) for z in fallthrough),
                        any(not isinstance(p, str) and p[0] == "Remote" for parts in records for p in parts), scope, origin)


def problem(qclass: str, qtype: str, rcode: str, records: tuple[tuple[Part, ...], ...]) -> str | None:
    """Why kdns cannot serve a template (None: it can)."""
    if qclass not in ("IN", "ANY"):
        return f"kdns answers class IN only; a template of class {qclass} would never be asked"
    if rcode not in RCODES:
        return f"rcode {rcode} does not fit a DNS header (an extended rcode): not supported by kdns"
    for parts in records:
        sample = fill(parts, "example.", ".", "IN", qtype if qtype != "ANY" else "A", "192.0.2.1", None)
        tokens = [m[1] if m[1] is not None else m[2] for m in _TOKEN.finditer(sample)]
        rtype = _type_of(tokens)
        if rtype is None or rtype not in TYPES:
            return (f"kdns serves template records of types {', '.join(TYPES)}; {text(parts)!r} makes "
                    f"{rtype or 'no record'}")
    return None


def text(parts: tuple[Part, ...]) -> str:
    return "".join(p if isinstance(p, str) else "{{ ." + p[0] + (f" {p[1]}" if p[1] is not None else "") + " }}" for p in parts)


def _type_of(tokens: list[str]) -> str | None:
    for token in tokens[1:4]:
        if token.isdigit() or token.upper() in CLASSES:
            continue
        return token.upper()
    return None


def fill(parts: tuple[Part, ...], name: str, zone: str, qclass: str, qtype: str, remote: str,
         m: re.Match[str] | None) -> str:
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
            continue
        field, key = p
        if field == "Name":
            out.append(name)
        elif field == "Zone":
            out.append(zone)
        elif field == "Class":
            out.append(qclass)
        elif field == "Type":
            out.append(qtype)
        elif field == "Remote":
            out.append(remote)
        elif m is None:
            out.append("0")
        elif field == "Match":
            assert isinstance(key, int)
            if key > m.re.groups:
                raise TemplateError(f"index .Match {key}: the regex has {m.re.groups} groups")
            out.append(m[key] or "")
        else:
            groups = {str(i): m[i] or "" for i in range(m.re.groups + 1)} | {k: v or "" for k, v in m.groupdict().items()}
            if key not in groups:
                raise TemplateError(f".Group.{key}: no such group")
            out.append(groups[str(key)])
    return "".join(out)


def _absolute(name: str) -> str:
    """A name of a record template as kdns keeps names: lowercase, without the final dot."""
    if name in ("@", "."):
        return ""
    return name.lower().rstrip(".")


def parse_record(line: str) -> Record:
    """One zone-file line (owner [TTL] [IN] TYPE DATA) as a Record; TemplateError if it is none."""
    tokens = [(m[1] if m[1] is not None else m[2], m[1] is not None) for m in _TOKEN.finditer(line)]
    if len(tokens) < 3:
        raise TemplateError(f"not a record: {line!r}")
    owner = _absolute(tokens[0][0])
    ttl, at = DEFAULT_TTL, 1
    while at < len(tokens) and at <= 2:
        word = tokens[at][0]
        if word.isdigit():
            ttl = int(word)
        elif word.upper() in CLASSES:
            if word.upper() != "IN":
                raise TemplateError(f"class {word}: kdns answers class IN only")
        else:
            break
        at += 1
    rtype = TYPES.get(tokens[at][0].upper()) if at < len(tokens) else None
    data = [t for t, _ in tokens[at + 1:]]
    if rtype is None or not data or ttl > 0x7FFFFFFF:
        raise TemplateError(f"not a record kdns serves: {line!r}")
    try:
        value: object
        if rtype == codes.A:
            value = str(ipaddress.IPv4Address(data[0]))
        elif rtype == codes.AAAA:
            value = str(ipaddress.IPv6Address(data[0]))
        elif rtype in (codes.CNAME, codes.PTR, codes.NS):
            value = _absolute(data[0])
        elif rtype == codes.TXT:
            strings = tuple(t.replace('\\"', '"').replace("\\\\", "\\") for t, _ in tokens[at + 1:])
            if any(len(s.encode()) > 255 for s in strings):
                raise TemplateError("a TXT string longer than 255 bytes")
            value = strings
        elif rtype == codes.SRV:
            prio, weight, port = (int(x) for x in data[:3])
            if not all(0 <= v <= 0xFFFF for v in (prio, weight, port)):
                raise TemplateError("SRV numbers out of range")
            value = (prio, weight, port, _absolute(data[3]))
        elif rtype == codes.SOA:
            numbers = tuple(int(x) for x in data[2:7])
            if len(numbers) != 5 or not all(0 <= v <= 0xFFFFFFFF for v in numbers):
                raise TemplateError("an SOA record has five numbers")
            value = (_absolute(data[0]), _absolute(data[1]), *numbers)
        else:  # MX
            pref = int(data[0])
            if not 0 <= pref <= 0xFFFF:
                raise TemplateError("MX preference out of range")
            value = (pref, _absolute(data[1]))
    except (ValueError, IndexError) as exc:
        raise TemplateError(f"not a record: {line!r}: {exc}") from None
    return Record(owner, rtype, ttl, value)


def answer(templates: tuple[TemplateRule, ...], asked: str, name: str, qtype: int,
           remote: str | None) -> tuple[Answer, str] | None:
    """The templates' answer to `name` (lowercase, with its dot; `asked` before any rewrite,
    which chooses the server block) and the template's origin, or None: kdns's tables answer."""
    for t in templates:
        if not t.scope.covers(asked):
            continue
        zone = max((z for z in t.zones if _under(name, z)), key=len, default=None)
        if zone is None or (t.qtype is not None and qtype != codes.ANY and qtype != t.qtype):
            continue
        m = next((found for p in t.patterns if (found := p.search(name)) is not None), None)
        if m is None:
            if any(_under(name, z) for z in t.fallthrough):
                continue
            return Answer(codes.SERVFAIL, cacheable=False), t.origin
        if t.rcode == codes.SERVFAIL:
            return Answer(codes.SERVFAIL, cacheable=False), t.origin
        qtype_text = t.qtype_text if qtype == codes.ANY else QTYPE.get(qtype)
        try:
            records = tuple(parse_record(fill(p, name, zone, "IN", qtype_text, remote or "", m)) for p in t.answer)
            extra = tuple(parse_record(fill(p, name, zone, "IN", qtype_text, remote or "", m)) for p in t.additional)
            authority = tuple(parse_record(fill(p, name, zone, "IN", qtype_text, remote or "", m)) for p in t.authority)
        except TemplateError:
            return Answer(codes.SERVFAIL, cacheable=False), t.origin
        return Answer(t.rcode, records, extra, cacheable=not t.remote, authority=authority), t.origin
    return None


__all__ = ["DEFAULT_TTL", "RCODES", "TYPES", "TemplateError", "TemplateRule", "answer", "compile_template", "parse_record",
           "problem"]
