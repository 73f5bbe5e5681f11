"""CoreDNS's `rewrite name` and `template` in kdns's answer path: the question's name rewritten
before kdns looks it up, the answer's names rewritten back, and templated answers.

A Corefile's rules (kdns.corefile.translate.rewrite gives them as data) are compiled once per
configuration into a `Rules` value that `DnsConfig.rules` holds (None when there are none:
then `kdns.answer.answer` costs nothing more than that one test). Per query:

1. The name rules of the server block the name belongs to, in file order (CoreDNS's rewrite
   plugin): each one that matches rewrites the name (lowercase, with its trailing dot as
   CoreDNS sees it); the first matching `stop` rule ends the list, `continue` ones chain, a
   later rule seeing the name the earlier ones made. A name that is no domain name after a
   rewrite is SERVFAIL, as in CoreDNS.
2. The templates (kdns.templates) of the block, on the rewritten name (CoreDNS asks
   templates after rewrite and before hosts and kubernetes).
3. Else kdns answers the rewritten name as it answers any name: the cluster zones, hosts,
   an upstream (which is asked the rewritten name: `Answer.upstream`).

Then the response rules the matching rules gave are applied to every record, the last rule's
first (CoreDNS's ResponseReverter): `answer auto` (always on for `exact`) maps the rewritten
name back to the one before it, in owner names and in the names inside CNAME, NS, PTR, SRV
and MX records (for `suffix` rules: the suffix swapped back); `answer name FROM TO` and
`answer value FROM TO` rewrite owners and record data with a regex, the whole name becoming
TO with {0}..{n} filled in. The client's question is sent back as it asked it; an owner
mapped back to the asked name is written as a pointer to the question, so it keeps the
client's spelling. The records of a forwarded answer get the same treatment
(`Reverter.upstream`, which kdns.serve.forward applies to each reply it renders). kdns's own
SOA record (negative answers) is left as it is.

An answer that went through a rewrite depends on another name's data: `Answer.via` says so,
and the responder drops such memo entries on every change of the index.

Pure: no I/O.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, cast

from kdns import codes
from kdns import templates as tpl
from kdns.result import Answer, Record
from kdns.templates import TemplateRule

if TYPE_CHECKING:
    from kdns.corefile.translate.values import RewriteRule, Template, Translation
    from kdns.upstream import UpstreamAnswer

MAX_NAME = 255  # bytes of a domain name in wire form
_VALUE_TYPES = (codes.CNAME, codes.PTR, codes.NS)
_GROUP = re.compile(r"\{([0-9]+)\}")


# -- compiled rules --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StringRewriter:
    """One response rule's string rewrite: `regex` (FROM, TO with groups), `remap` (an exact
    name and the names below it, back to another) or `suffix` (a suffix swapped)."""

    kind: str  # regex | remap | suffix
    source: str
    replacement: str
    pattern: re.Pattern[str] | None = None

    def apply(self, text: str) -> str:
        if self.kind == "regex":
            assert self.pattern is not None
            m = self.pattern.search(text)
            return text if m is None else fill(self.replacement, m)
        if self.kind == "remap":
            if text == self.source:
                return self.replacement
            at = len(text) - len(self.source)
            if at > 0 and text[at - 1] == "." and text[at:] == self.source:
                return text[:at] + self.replacement
            return text
        if text.endswith(self.source):
            return text[: len(text) - len(self.source)] + self.replacement
        return text


@dataclass(frozen=True, slots=True)
class ResponseRule:
    field: str  # name (owner names) | value (names inside records)
    rewriter: StringRewriter


@dataclass(frozen=True, slots=True)
class NameRule:
    """One `rewrite name` rule, compiled: see kdns.corefile.translate.values.RewriteRule."""

    mode: str  # stop | continue
    match: str  # exact | prefix | suffix | substring | regex
    source: str
    target: str
    pattern: re.Pattern[str] | None
    auto: bool
    static: tuple[ResponseRule, ...]  # answer name/value rules, and a suffix rule's auto ones
    scope: Scope
    origin: str  # file:line

    def rewrite(self, name: str) -> str | None:
        """The rewritten name (lowercase, absolute with its dot), or None when it does not match."""
        match = self.match
        if match == "exact":
            return self.target if name == self.source else None
        if match == "prefix":
            return self.target + name[len(self.source):] if name.startswith(self.source) else None
        if match == "suffix":
            return name[: len(name) - len(self.source)] + self.target if name.endswith(self.source) else None
        if match == "substring":
            return name.replace(self.source, self.target) if self.source in name else None
        assert self.pattern is not None
        m = self.pattern.search(name)
        return None if m is None else normalize(fill(self.target, m))

    def responses(self, before: str, after: str) -> tuple[ResponseRule, ...]:
        if not self.auto or self.match == "suffix":
            return self.static
        back = StringRewriter("remap", after, before)
        return (ResponseRule("name", back), ResponseRule("value", back), *self.static)


@dataclass(frozen=True, slots=True)
class Scope:
    """The names a rule of one server block sees: under `zones` (absolute, dotted: "." for
    every name) and not under a deeper block's zone (`excluded`)."""

    zones: tuple[str, ...]
    excluded: tuple[str, ...] = ()

    def covers(self, name: str) -> bool:
        return any(_under(name, z) for z in self.zones) and not any(_under(name, z) for z in self.excluded)


@dataclass(frozen=True, slots=True)
class Rules:
    """What `DnsConfig.rules` holds: the name rules and templates, compiled, in file order."""

    rewrites: tuple[NameRule, ...] = ()
    templates: tuple[TemplateRule, ...] = ()

    def may_see(self, suffix: str) -> bool:
        """Whether some rule or template may act on a name ending in `suffix` (absolute, with
        its dot: "svc.cluster.local."): the responder's quick NXDOMAIN is off there."""
        if any(may_touch(rule, suffix) for rule in self.rewrites):
            return True
        return any(t.scope.covers(suffix) or any(_under(z, suffix) for z in t.scope.zones)
                   for t in self.templates if any(_under(suffix, z) or _under(z, suffix) for z in t.zones))


def _under(name: str, zone: str) -> bool:
    return zone == "." or name == zone or name.endswith("." + zone)


def normalize(name: str) -> str:
    """CoreDNS's plugin.Name(x).Normalize(): lowercase, absolute."""
    name = name.lower()
    return name if name.endswith(".") else name + "."


def fill(replacement: str, m: re.Match[str]) -> str:
    """`replacement` with {0}..{n} replaced by the match's groups (an unmatched group: "")."""
    def group(g: re.Match[str]) -> str:
        i = int(g[1])
        return (m[i] or "") if i <= m.re.groups else g[0]
    return _GROUP.sub(group, replacement)


def response_rule(field: str, pattern: str, replacement: str) -> ResponseRule:
    return ResponseRule(field, StringRewriter("regex", pattern, replacement, re.compile(pattern)))


def name_rule(mode: str, match: str, source: str, target: str, auto: bool, answers: tuple[tuple[str, str, str], ...],
              scope: Scope, origin: str) -> NameRule:
    """A name rule from the translator's values (`answers`: (field, FROM, TO) each)."""
    static = tuple(response_rule(*a) for a in answers)
    if match == "suffix" and auto:
        back = StringRewriter("suffix", target, source)
        static = (ResponseRule("name", back), ResponseRule("value", back), *static)
    return NameRule(mode, match, source, target, re.compile(source) if match == "regex" else None, auto, static, scope, origin)


def may_touch(rule: NameRule, suffix: str) -> bool:
    """Whether `rule` may match some name ending in `suffix` (e.g. "svc.cluster.local.")."""
    if not rule.scope.covers(suffix) and not any(_under(z, suffix) for z in rule.scope.zones):
        return False
    if rule.match == "exact":
        return rule.source.endswith("." + suffix)
    if rule.match == "suffix":
        return suffix.endswith(rule.source) or rule.source.endswith("." + suffix)
    return True  # prefix, substring, regex: any name may match


def from_translation(t: Translation) -> Rules | None:
    """A Corefile's rewrite and template directives, compiled (None when it has none);
    TemplateError for a template kdns cannot serve (the review refuses those first)."""
    if not t.rewrites and not t.templates:
        return None
    blocks = [tuple(_zone(z) for z in b.zones) for b in t.blocks]

    def scope(block_zones: tuple[str, ...]) -> Scope:
        own = tuple(_zone(z) for z in block_zones) or (".",)
        deeper = tuple(dict.fromkeys(z for zones in blocks for z in zones
                                     if z not in own and any(_under(z, b) for b in own)))
        return Scope(own, deeper)

    def where(d: RewriteRule | Template) -> str:
        return d.origin.where if d.origin is not None else "the Corefile"

    rewrites = tuple(name_rule(r.mode, r.match, r.source, r.target, r.auto,
                               tuple((a.field, a.pattern, a.replacement) for a in r.answers), scope(r.block_zones), where(r))
                     for r in t.rewrites)
    templates = tuple(tpl.compile_template(x.qclass, x.qtype, x.zones, x.patterns, x.rcode, _parts(x.answer), _parts(x.additional),
                                           _parts(x.authority), x.fallthrough, scope(x.block_zones), where(x))
                      for x in t.templates)
    return Rules(rewrites, templates)


def _parts(records: tuple[object, ...]) -> tuple[tuple[tpl.Part, ...], ...]:
    """The translator's RecordTemplates as kdns.templates's parts."""
    return tuple(tuple(p if isinstance(p, str) else (p.name, p.key) for p in r.parts)  # type: ignore[attr-defined]
                 for r in records)


def _zone(z: str) -> str:
    return "." if z in (".", "") else z.lower().rstrip(".") + "."


# -- per query --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Via:
    """How an answer was made other than by kdns's tables: `steps` (for kdns explain: "rewritten
    by FILE:LINE from X to Y" for each rule, "answered by the template at FILE:LINE"), `rewritten` when the name
    looked up was not the asked one (the answer then depends on another name's data), and
    the response rules to apply to the records (last first)."""

    steps: tuple[str, ...]
    rewritten: bool
    responses: tuple[ResponseRule, ...] = ()
    looked_up: str = ""  # the name kdns's tables or a template were asked (dotless, as `Record` names)
    template: bool = False  # a template answered

    def name(self, name: str) -> str:
        """An owner name (dotless, as in `Record`) mapped back."""
        return _dotless(self._apply("name", name + "."))

    def value(self, name: str) -> str:
        return _dotless(self._apply("value", name + "."))

    def _apply(self, field: str, text: str) -> str:
        for rule in reversed(self.responses):
            if rule.field == field:
                text = rule.rewriter.apply(text)
        return text

    def record(self, r: Record) -> Record:
        name = self.name(r.name)
        data = r.data
        if r.rtype in _VALUE_TYPES:
            data = self.value(data)  # type: ignore[arg-type]
        elif r.rtype == codes.SRV:
            srv = cast("tuple[int, int, int, str]", data)
            data = (*srv[:3], self.value(srv[3]))
        elif r.rtype == codes.MX:
            mx = cast("tuple[int, str]", data)
            data = (mx[0], self.value(mx[1]))
        elif r.rtype == codes.SOA:  # (a template's: the MNAME, as CoreDNS)
            soa = cast("tuple[str, ...]", data)
            data = (self.value(soa[0]), *soa[1:])
        if name == r.name and data is r.data:
            return r
        return Record(name, r.rtype, r.ttl, data)

    def upstream(self, answer: UpstreamAnswer, asked: bytes = b"") -> UpstreamAnswer:
        """A forwarded answer's records with the response rules applied (see `revert_wire`);
        `asked`: the client's question name in wire form, its spelling kept for owners mapped
        back to it."""
        return revert_wire(answer, self, asked) if self.responses else answer


def _dotless(name: str) -> str:
    return "" if name == "." else name.removesuffix(".")


def _valid(name: str) -> bool:
    """A domain name (absolute, dotted) that fits the wire: no empty label, each label at most
    63 bytes, 255 in all (miekg/dns IsDomainName, which CoreDNS checks after a rewrite)."""
    if name == ".":
        return True
    labels = name[:-1].split(".")
    if not name.endswith(".") or any(not label or len(label.encode("latin-1", "replace")) > 63 for label in labels):
        return False
    return sum(len(label) + 1 for label in labels) + 1 <= MAX_NAME


Inner = Callable[[tuple[str, ...]], Answer]


def answer(rules: Rules, labels: tuple[str, ...], qtype: int, remote: str | None, inner: Inner) -> Answer:
    """The answer to `labels` (lowercase) with the rules: `inner(labels)` is kdns's answer to a
    name without them."""
    asked = ".".join(labels) + "." if labels else "."
    name = asked
    responses: list[ResponseRule] = []
    steps: list[str] = []
    for rule in rules.rewrites:
        if not rule.scope.covers(asked):
            continue
        new = rule.rewrite(name)
        if new is None:
            continue
        if not _valid(new):
            return Answer(codes.SERVFAIL, cacheable=False)
        responses += rule.responses(name, new)
        steps.append(f"rewritten by {rule.origin} from {name} to {new}")
        name = new
        if rule.mode == "stop":
            break
    rewritten = name != asked
    if rules.templates:
        got = tpl.answer(rules.templates, asked, name, qtype, remote)
        if got is not None:
            result, origin = got
            steps.append(f"answered by the template at {origin}")
            return _back(result, Via(tuple(steps), rewritten, tuple(responses), _dotless(name), True))
    if not rewritten:
        return inner(labels)
    result = inner(tuple(name[:-1].split(".")) if name != "." else ())
    return _back(result, Via(tuple(steps), True, tuple(responses), _dotless(name)))


def _back(result: Answer, via: Via) -> Answer:
    """`result` with its records' names mapped back, and `via` noted."""
    if via.responses:
        result = replace(result, answer=tuple(via.record(r) for r in result.answer),
                         additional=tuple(via.record(r) for r in result.additional),
                         authority=tuple(via.record(r) for r in result.authority))
    else:
        result = replace(result)  # (a copy: negative answers are shared)
    result.via = via
    return result


# -- forwarded answers: the same rules on the wire ---------------------------------------------

# Where a name sits in RDATA: type -> offset of the one name kdns rewrites (the rest is copied).
_NAME_AT = {codes.CNAME: 0, codes.NS: 0, codes.PTR: 0, 39: 0, codes.SOA: 0, codes.MX: 2, codes.SRV: 6}


def _read(data: bytes, pos: int) -> tuple[str, int]:
    """An uncompressed wire name at `pos` as dotted text (latin-1), and where it ends."""
    labels = []
    while data[pos]:
        n = data[pos]
        labels.append(data[pos + 1 : pos + 1 + n].decode("latin-1"))
        pos += 1 + n
    return (".".join(labels) + "." if labels else "."), pos + 1


def _wire(text: str, fallback: bytes) -> bytes:
    if not _valid(text):
        return fallback
    if text == ".":
        return b"\x00"
    out = bytearray()
    for label in text[:-1].split("."):
        raw = label.encode("latin-1", "replace")
        out.append(len(raw))
        out += raw
    return bytes(out) + b"\x00"


def revert_wire(answer: UpstreamAnswer, via: Via, asked: bytes = b"") -> UpstreamAnswer:
    """The records of an upstream's answer (uncompressed, as kdns.upstream keeps them) with
    `via`'s response rules applied to owners and names in CNAME, NS, PTR, DNAME, SOA (MNAME),
    MX and SRV data; TTL offsets and the answer section's size follow the new lengths. An
    owner that becomes the asked name is written as `asked` spells it."""
    data = answer.records
    lower = asked.lower()
    out = bytearray()
    offsets: list[int] = []
    answer_size = 0
    pos = 0
    count = 0
    while pos < len(data):
        owner, after = _read(data, pos)
        name = _wire(via._apply("name", owner), data[pos:after])
        out += asked if name.lower() == lower else name
        rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", data, after)
        rdata = data[after + 10 : after + 10 + rdlength]
        at = _NAME_AT.get(rtype)
        if at is not None and rclass == codes.CLASS_IN and len(rdata) > at:
            target, end = _read(rdata, at)
            rdata = rdata[:at] + _wire(via._apply("value", target), rdata[at:end]) + rdata[end:]
        offsets.append(len(out) + 4)
        out += struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata
        pos = after + 10 + rdlength
        count += 1
        if count == answer.counts[0]:
            answer_size = len(out)
    return replace(answer, records=bytes(out), answer_size=answer_size, ttl_offsets=tuple(offsets))


__all__ = ["NameRule", "ResponseRule", "Rules", "Scope", "StringRewriter", "Via", "answer", "from_translation", "name_rule", "normalize",
           "response_rule", "revert_wire"]
