"""`rewrite name ...` -> RewriteRule and `template CLASS TYPE [ZONES] {...}` -> Template.

rewrite (CoreDNS plugin/rewrite): `rewrite [continue|stop] name [TYPE] FROM TO [answer ...]`,
or the same words spread over a block (`rewrite stop { name regex ...; answer name ... }`),
which CoreDNS reads as one rule. TYPE is exact (the default with exactly two arguments),
prefix, suffix, substring or regex; options need the TYPE. Answer rewrites: `answer auto`,
`answer name FROM TO`, `answer value FROM TO` (regexes), the word `answer` optional after
the first; auto and explicit name rules do not mix. Other rewrite fields (type, class,
edns0, ttl, cname, rcode) are not supported by kdns.

template (CoreDNS plugin/template): `match` regexes (none: everything), `answer`,
`additional`, `authority` records, `rcode`, `fallthrough`. kdns supports record templates
that use only {{ .Name }}, {{ .Zone }}, {{ .Class }}, {{ .Type }}, {{ .Remote }},
{{ index .Match N }} and {{ .Group.NAME }}; other Go template actions, `var`, `expr` and
`ederror` are not supported.

Regexes are Go RE2; the serving path matches them with Python's re, so a pattern is refused
when the two would read it differently (lookaround and backreferences RE2 rejects, POSIX
classes, \\Q...\\E, \\p{...}, \\z) or when Python cannot compile it. At most 10,000 characters.
"""

from __future__ import annotations

import re

from dnslib import QTYPE

from kdns.corefile.model import Directive
from kdns.corefile.translate.context import DATA, NO_EFFECT, Block, Context, zones_of
from kdns.corefile.translate.values import AnswerRewrite, RecordTemplate, RewriteRule, Template, TemplateField

MAX_REGEX = 10_000
MATCHES = ("exact", "prefix", "suffix", "substring", "regex")
OTHER_FIELDS = {
    "type": "rewriting the query type", "class": "rewriting the query class", "edns0": "EDNS0 option rewrites",
    "ttl": "rewriting answer TTLs", "cname": "rewriting CNAME targets", "rcode": "rewriting response codes",
}
CLASSES = ("IN", "CS", "CH", "HS", "NONE", "ANY")
RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH",
          "NOTZONE", "BADSIG", "BADVERS", "BADKEY", "BADTIME", "BADMODE", "BADNAME", "BADALG", "BADTRUNC", "BADCOOKIE")
_UNLIKE = [(re.compile(p), why) for p, why in (
    (r"\(\?<?[=!]", "lookaround, which Go's RE2 rejects"), (r"\\[1-9]", "a backreference, which Go's RE2 rejects"),
    (r"\[:[a-z]+:\]", "a POSIX class ([:alpha:]), which Python reads differently"), (r"\\[QEpPz]", "an escape Python lacks"),
    (r"\(\?<[A-Za-z]", "a (?<name>...) group Python lacks (write (?P<name>...))"))]
_ACTION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_FIELDS = {".Name": "Name", ".Zone": "Zone", ".Class": "Class", ".Type": "Type", ".Remote": "Remote"}


def regex_problem(pattern: str) -> str | None:
    if len(pattern) > MAX_REGEX:
        return f"regex longer than {MAX_REGEX} characters"
    for rx, why in _UNLIKE:
        if rx.search(pattern):
            return f"regex {pattern!r} uses {why}"
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"regex {pattern!r} does not compile: {exc}"
    return None


def _groups_used(replacement: str) -> int:
    return max((int(n) for n in re.findall(r"\{([0-9]+)\}", replacement)), default=0)


def _fqdn(text: str) -> str:
    """CoreDNS's plugin.Name(x).Normalize(): lowercase, with a trailing dot."""
    return text.lower() if text.endswith(".") else text.lower() + "."


def rewrite(ctx: Context, d: Directive, block: Block) -> RewriteRule | None:
    args = list(d.args)
    if d.block is not None:
        if len(args) >= 2:
            ctx.refuse(d, "a rewrite rule is either on the line or in the block, not both")
            return None
        args += [word for line in d.block for word in (line.name, *line.args)]
    mode = "stop"
    if args and args[0].lower() in ("stop", "continue"):
        mode = args.pop(0).lower()
    if not args:
        ctx.refuse(d, "no rule: expected name [exact|prefix|suffix|substring|regex] FROM TO")
        return None
    field = args.pop(0).lower()
    if field in OTHER_FIELDS:
        ctx.refuse(d, f"kdns rewrites query names only; {OTHER_FIELDS[field]} is not supported")
        return None
    if field != "name":
        ctx.refuse(d, "response rewrites must begin with a name rule" if field == "answer" else f"invalid rule type {field!r}")
        return None
    if len(args) < 2:
        ctx.refuse(d, "too few arguments for a name rule: FROM and TO")
        return None
    if len(args) == 2:
        args.insert(0, "exact")
    match = args[0].lower()
    if match not in MATCHES:
        ctx.refuse(d, f"name rules match {', '.join(MATCHES)}; got {args[0]!r} (options need the match type)")
        return None
    source, target = args[1], args[2]
    if match == "regex":
        problem = regex_problem(source)
        if problem is None and _groups_used(target) > re.compile(source).groups:
            problem = f"{target!r} uses more groups than {source!r} has"
        if problem:
            ctx.refuse(d, problem)
            return None
    else:
        source = _fqdn(source)
    answers = _answers(ctx, d, args[3:], match)
    if answers is None:
        return None
    auto, rules = answers
    rule = RewriteRule(mode, match, source, _fqdn(target), auto or match == "exact", rules, block.zones, d.origin)
    back = " (answers mapped back)" if rule.auto else ""
    more = f", {len(rules)} answer rewrite{'s' if len(rules) > 1 else ''}" if rules else ""
    ctx.explain(d, DATA, f"query names {match} {rule.source} -> {rule.target}{back}{more}, then {mode}: kept as "
                         "Translation.rewrites (CoreDNS rewrites before the block's other plugins see the query)")
    for line in d.block or ():
        ctx.explain(line, DATA, "part of the rewrite rule above")
    return rule


def _answers(ctx: Context, d: Directive, words: list[str], match: str) -> tuple[bool, tuple[AnswerRewrite, ...]] | None:
    if not words:
        return False, ()
    if len(words) < 2 or words[0] != "answer":
        ctx.refuse(d, f"unexpected {' '.join(words)!r} after the name rule: answer options start with 'answer'")
        return None
    auto, rules, i = False, [], 0
    while i < len(words):
        if words[i] == "answer":
            i += 1
        kind = words[i] if i < len(words) else ""
        i += 1
        if kind == "auto":
            auto = True
            continue
        if kind not in ("name", "value") or i + 2 > len(words):
            ctx.refuse(d, f"answer rules are auto, name FROM TO or value FROM TO; got {' '.join(words[i - 1:]) or 'nothing'!r}")
            return None
        pattern, replacement = words[i], words[i + 1]
        problem = regex_problem(pattern)
        if problem is None and _groups_used(replacement) > re.compile(pattern).groups:
            problem = f"{replacement!r} uses more groups than {pattern!r} has"
        if problem:
            ctx.refuse(d, f"answer {kind}: {problem}")
            return None
        rules.append(AnswerRewrite(kind, pattern, _fqdn(replacement)))
        i += 2
    if auto and any(r.field == "name" for r in rules):
        ctx.refuse(d, "answer auto cannot be combined with answer name rules")
        return None
    return auto, tuple(rules)


def template(ctx: Context, d: Directive, block: Block) -> Template | None:
    if not ctx.arity(d, 2):
        return None
    qclass, qtype = d.args[0], d.args[1]
    if qclass not in CLASSES:
        ctx.refuse(d, f"invalid query class {qclass!r}: one of {', '.join(CLASSES)}")
        return None
    if qtype not in QTYPE.reverse:
        ctx.refuse(d, f"invalid query type {qtype!r} (types are written in capitals: A, AAAA, ANY...)")
        return None
    zones = zones_of(ctx, d, d.args[2:], block)
    if zones is None:
        return None
    patterns: list[str] = []
    records: dict[str, list[RecordTemplate]] = {"answer": [], "additional": [], "authority": []}
    fallthrough: tuple[str, ...] | None
    rcode, fallthrough = "NOERROR", ()
    for line in d.block or ():
        if line.name in ("match", "rcode", "fallthrough", *records):
            ctx.explain(line, DATA, "part of the template above")
        if line.name == "match" and ctx.arity(line, 1):
            for pattern in line.args:
                problem = regex_problem(pattern)
                if problem:
                    ctx.refuse(line, problem)
                    return None
                patterns.append(pattern)
        elif line.name in records and ctx.arity(line, 1):
            for text in line.args:
                record = record_template(ctx, line, text)
                if record is None:
                    return None
                records[line.name].append(record)
        elif line.name == "rcode" and ctx.arity(line, 1, 1):
            if line.args[0] not in RCODES:
                ctx.refuse(line, f"unknown rcode {line.args[0]!r}")
                return None
            rcode = line.args[0]
        elif line.name == "fallthrough":
            if (fallthrough := ctx.fallthrough(line)) is None:
                return None
        elif line.name == "upstream":
            ctx.explain(line, NO_EFFECT, "CoreDNS ignores it (to be removed); kdns too")
        elif line.name in ("var", "expr", "ederror"):
            ctx.refuse(line, f"template {line.name} is not supported by kdns")
            return None
        else:
            if line.name not in ("match", "rcode", *records):
                ctx.refuse(line, f"unknown template property {line.name!r}")
            return None
    t = Template(qclass, qtype, zones, tuple(patterns), rcode, tuple(records["answer"]), tuple(records["additional"]),
                 tuple(records["authority"]), fallthrough, block.zones, d.origin)
    rrs = sum(map(len, records.values()))
    ctx.explain(d, DATA, f"{qclass} {qtype} queries under {', '.join(zones)}"
                         + (f" matching {len(patterns)} pattern{'s' if len(patterns) > 1 else ''}" if patterns else "")
                         + f": {rcode}{f' with {rrs} record(s)' if rrs else ''}"
                         + (("; others go on down the chain" + ("" if fallthrough == (".",) else f" under {' '.join(fallthrough)}"))
                            if fallthrough else "; others get SERVFAIL" if patterns else "")
                         + ": kept as Translation.templates (CoreDNS asks templates before hosts and kubernetes)")
    return t


def record_template(ctx: Context, line: Directive, text: str) -> RecordTemplate | None:
    """Split an RR template into literal text and the fields kdns fills in."""
    parts: list[str | TemplateField] = []
    at = 0
    for m in _ACTION.finditer(text):
        if m.start() > at:
            parts.append(text[at : m.start()])
        action = m[1].strip()
        if action in _FIELDS:
            parts.append(TemplateField(_FIELDS[action]))
        elif (found := re.fullmatch(r"index \.Match ([0-9]+)", action)) is not None:
            parts.append(TemplateField("Match", int(found[1])))
        elif (found := re.fullmatch(r"\.Group\.([A-Za-z_][A-Za-z0-9_]*)", action)) is not None:
            parts.append(TemplateField("Group", found[1]))
        else:
            ctx.refuse(line, f"template action {{{{{m[1]}}}}}: kdns fills in only .Name, .Zone, .Class, .Type, .Remote, "
                                  "index .Match N and .Group.NAME")
            return None
        at = m.end()
    rest = text[at:]
    if "{{" in rest or "}}" in rest:
        ctx.refuse(line, f"unbalanced {{{{ }}}} in {text!r}")
        return None
    if rest:
        parts.append(rest)
    return RecordTemplate(text, tuple(parts))
