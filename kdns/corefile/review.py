"""The last word on a translated Corefile before kdns serves it: honoured, or refused.

The translator (kdns.corefile.translate) keeps as data what kdns's options cannot say
(explanations of kind "data"). `review` decides each of them for the kdns that exists today:

- honoured: `hosts` (served from kdns's hosts table, kdns.sources.hosts), `rewrite name`
  (kdns.rewrite) and `template` (kdns.templates, record types kdns answers with), `k8s_external`
  (the external-zone options, its `fallthrough` as external-fallthrough), `max_concurrent`
  (upstream-max-concurrent), the kubernetes `ignore empty_service` (ignore-empty-services),
  `fallthrough` for cluster zones (cluster-fallthrough), `noendpoints` (no endpoints) and
  `endpoint_pod_names` (endpoint-pod-names), `bufsize` below 1232 (udp-max-size), the cache
  rules of the block forwarding every other name (`cache TTL ZONES`: cache-zone; `disable`:
  cache-disable-success|denial, for a narrower block's cache under its own zones; `success`/
  `denial` minimum TTLs: cache-min-ttl, cache-denial-min-ttl), `except` zones (the translator
  routes them: to the forward or server block that takes them next, else SERVFAIL as in
  CoreDNS), the line-level details of those;
- accepted with a warning, where kdns behaves a little differently and refusing would
  refuse every distribution's Corefile: `loadbalance` (kdns does not shuffle), `prefetch`
  (kdns's own rule), `log` classes (kdns logs every query);
- refused, naming file:line and why: templates of a class other than IN, with an extended
  rcode or a record type kdns does not answer with (the translator itself refuses rewrites of
  anything but the name, and template actions outside its subset), a second `max_concurrent`
  that differs from the first, minimum TTLs in a narrower block's cache (kdns's one cache has
  one), k8s_external zones kdns cannot serve; and, by default, any data this module does not
  know (a translator newer than the review).

With `ignore_unknown` (--corefile-ignore-unknown) each refusal made here becomes a warning
("ignored"): the directive is not applied and kdns serves the rest. The translator's own
refusals (what CoreDNS itself would reject, what a known directive cannot do) still stand.

It also adds what follows from the Corefile as a whole: `in-cluster` when the kubernetes
directive names no endpoint and no kubeconfig (CoreDNS's in-cluster credentials), and each
`hosts` directive as a `HostsPlan` (its file's path made absolute against the directory of
the file holding the directive, names under deeper server blocks left to those blocks).

Pure: no I/O.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace
from typing import Any

from kdns import templates
from kdns.corefile.model import Corefile, CorefileError, Directive, Origin
from kdns.corefile.translate.context import head
from kdns.corefile.translate.forward import except_outcome
from kdns.corefile.translate.kubernetes import REVERSE, is_reverse
from kdns.corefile.translate.values import DATA, NO_EFFECT, OPTION, REFUSED, WARNING, Explanation, ForwardRule, HostsSource, Translation

IGNORE_FLAG = "--corefile-ignore-unknown"
NOT_YET = "not yet supported by kdns"

# The directives kdns reads and serves without refusing them outright (`kdns -plugins`).
UNDERSTOOD = ("autopath", "bind", "bufsize", "cache", "cancel", "debug", "errors", "forward", "health", "hosts",
              "k8s_external", "kubernetes", "loadbalance", "log", "loop", "metadata", "pprof", "prometheus", "proxy",
              "ready", "reload", "rewrite", "template")


@dataclass(frozen=True, slots=True)
class HostsPlan:
    """What one `hosts` directive serves: `path` absolute, `inline` (address, names) pairs."""

    path: str
    inline: tuple[tuple[str, tuple[str, ...]], ...]
    zones: tuple[str, ...]
    excluded: tuple[str, ...]
    ttl: int
    reverse: bool
    reload: float
    origin: Origin


@dataclass(frozen=True)
class Review:
    translation: Translation
    config: tuple[tuple[str, Any], ...]  # the options, the translation's and those added here
    origins: tuple[tuple[str, Origin], ...]  # where each added option came from
    hosts: tuple[HostsPlan, ...]
    explanations: tuple[Explanation, ...]
    problems: tuple[CorefileError, ...]
    warnings: tuple[CorefileError, ...]

    @property
    def options(self) -> dict[str, Any]:
        """A fresh dict in kdns's config-file form (lists for the repeatable options)."""
        return {name: list(value) if isinstance(value, tuple) else value for name, value in self.config}

    def origin_of(self, option: str) -> Origin | None:
        return dict(self.origins).get(option) or self.translation.origin_of(option)

    @property
    def ok(self) -> bool:
        return not self.problems

    def check(self) -> Review:
        if self.problems:
            first = CorefileError(self.problems[0].origin, self.problems[0].message)
            first.problems = self.problems
            raise first
        return self


def within(name: str, zone: str) -> bool:
    return zone == "." or name == zone or name.endswith("." + zone)


class _Notes:
    """What the review decides, as it goes."""

    def __init__(self, t: Translation, ignore_unknown: bool) -> None:
        self.t = t
        self.ignore_unknown = ignore_unknown
        self.options: dict[str, Any] = {}
        self.origins: dict[str, Origin] = {}
        self.problems: list[CorefileError] = []
        self.warnings: list[CorefileError] = []

    def option(self, name: str, value: Any, origin: Origin) -> None:
        self.options[name] = value
        self.origins.setdefault(name, origin)

    def refuse(self, e: Explanation, reason: str, *, report: bool = True) -> Explanation:
        """`e` refused (or, with ignore_unknown, ignored with a warning); `report`: count it as a
        problem (False for the lines of a directive refused as a whole)."""
        if self.ignore_unknown:
            if report:
                self.warnings.append(CorefileError(e.origin, f"{_short(e.directive)}: ignored ({IGNORE_FLAG}): {reason}"))
            return replace(e, kind=WARNING, effect=f"ignored ({IGNORE_FLAG}): {reason}")
        if report:
            self.problems.append(CorefileError(e.origin, f"{_short(e.directive)}: {reason}"))
        return replace(e, kind=REFUSED, effect=reason)

    def warn(self, e: Explanation, effect: str) -> Explanation:
        self.warnings.append(CorefileError(e.origin, f"{_short(e.directive)}: {effect}"))
        return replace(e, kind=WARNING, effect=effect)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def review(t: Translation, corefile: Corefile, *, ignore_unknown: bool = False) -> Review:
    notes = _Notes(t, ignore_unknown)
    where = _index(corefile)
    out: list[Explanation] = []
    refused_whole: set[Origin] = set()  # directives refused as a whole (their lines follow them)
    for e in t.explanations:
        found = where.get((e.origin, e.directive))
        if e.kind != DATA or found is None:
            out.append(_unknown(notes, e) if e.kind == DATA else e)
            continue
        d, parent = found
        if parent is not None and parent.origin in refused_whole:
            out.append(notes.refuse(e, f"part of the {parent.name} refused above", report=False))
            continue
        decided = _decide(notes, e, d, parent)
        if parent is None and decided.kind in (REFUSED, WARNING) and d.name in ("rewrite", "template"):
            refused_whole.add(d.origin)
        out.append(decided)
    out = _external(notes, out)
    _in_cluster(notes, out)
    hosts = tuple(_hosts_plan(t, h) for h in t.hosts)
    config = dict(t.config)
    config.update({name: tuple(v) if isinstance(v, list) else v for name, v in notes.options.items()})
    return Review(t, tuple(config.items()), tuple(notes.origins.items()), hosts, tuple(out),
                  t.problems + tuple(notes.problems), t.warnings + tuple(notes.warnings))


def _index(corefile: Corefile) -> dict[tuple[Origin, str], tuple[Directive, Directive | None]]:
    """(origin, shown text) -> (directive or line, the directive it belongs to), as the
    translator's explanations name them."""
    out: dict[tuple[Origin, str], tuple[Directive, Directive | None]] = {}
    for block in corefile.blocks:
        for d in block.directives:
            out.setdefault((d.origin, head(d) if d.block is not None else str(d)), (d, None))
            for line in d.block or ():
                out.setdefault((line.origin, head(line) if line.block is not None else str(line)), (line, d))
    return out


def _unknown(notes: _Notes, e: Explanation) -> Explanation:
    return notes.refuse(e, f"kdns does not implement this ({e.effect})")


def _decide(notes: _Notes, e: Explanation, d: Directive, parent: Directive | None) -> Explanation:
    plugin = parent.name if parent is not None else d.name
    decide = _DECIDERS.get(plugin)
    if decide is None:
        return _unknown(notes, e)
    return decide(notes, e, d, parent)


# -- one function per plugin whose data kdns reviews ----------------------------------------


def _hosts(notes: _Notes, e: Explanation, d: Directive, parent: Directive | None) -> Explanation:
    if parent is not None:
        return e  # ttl, reload, no_reverse, fallthrough, inline lines: honoured as the directive is
    source = next((h for h in notes.t.hosts if h.origin == d.origin), None)
    if source is None:
        return _unknown(notes, e)
    path = _absolute(source.path, source.origin)
    what = f"{len(source.inline)} inline entr{'y' if len(source.inline) == 1 else 'ies'} and " if source.inline else ""
    cluster = notes.t.kubernetes.zones if notes.t.kubernetes else ()
    inside = [n for entry in source.inline for n in entry.names if any(within(n, z) for z in cluster)]
    if inside:  # CoreDNS's hosts runs before kubernetes and would answer these; kdns does not
        notes.warn(e, f"{', '.join(inside[:3])}{' ...' if len(inside) > 3 else ''}: under the cluster zone, where CoreDNS's "
                      "hosts answers first; kdns answers those names from Kubernetes alone and skips these entries")
    return replace(e, effect=f"kdns answers names under {', '.join(source.zones)} from {what}{path} (looked at every "
                             f"{source.reload:g} s{'' if source.reload else ': read once'}), ttl {source.ttl}"
                             f"{'' if source.reverse else ', no PTR records'}, ahead of forwarding; names under the "
                             "cluster zones come from Kubernetes alone")


def _rewrite_or_template(notes: _Notes, e: Explanation, d: Directive, parent: Directive | None) -> Explanation:
    """Served by kdns.rewrite and kdns.templates (compiled into DnsConfig.rules by
    kdns.corefile.wiring from the directives accepted here)."""
    if parent is not None:
        return e  # the lines of a rule or template kdns serves as a whole
    if d.name == "rewrite":
        rule = next((r for r in notes.t.rewrites if r.origin == d.origin), None)
        if rule is None:
            return _unknown(notes, e)
        back = ("the answer's names mapped back" if rule.auto and not rule.answers else
                f"the answer's names mapped back by {len(rule.answers) + rule.auto} rule(s)" if rule.answers else
                "the answer's names left as they are (no answer auto)")
        return replace(e, effect=f"kdns rewrites query names ({rule.match} {rule.source} -> {rule.target}) before it looks "
                                 f"them up, {back}; then {rule.mode} (kdns.rewrite)")
    t = next((x for x in notes.t.templates if x.origin == d.origin), None)
    if t is None:
        return _unknown(notes, e)
    records = tuple(tuple(p if isinstance(p, str) else (p.name, p.key) for p in r.parts)
                    for r in t.answer + t.additional + t.authority)
    why = templates.problem(t.qclass, t.qtype, t.rcode, records)
    if why:
        return notes.refuse(e, f"template: {why}")
    what = e.effect.split(": kept as Translation.templates", 1)[0]
    return replace(e, effect=f"{what}: kdns answers from the template before its own tables, as CoreDNS asks templates "
                             "before hosts and kubernetes (kdns.templates)")


def _kubernetes(notes: _Notes, e: Explanation, d: Directive, parent: Directive | None) -> Explanation:
    if parent is None:
        return _unknown(notes, e)
    if d.name == "ignore":
        notes.option("ignore-empty-services", True, d.origin)
        return replace(e, kind=OPTION, effect="ignore-empty-services: a ClusterIP Service without ready endpoints is "
                                              "NXDOMAIN (its ClusterIP keeps its PTR record)")
    if d.name == "fallthrough":
        k8s = notes.t.kubernetes
        zones = [z for z in (k8s.fallthrough if k8s else ()) if not is_reverse(z)]
        if not zones:
            return replace(e, kind=NO_EFFECT, effect="kdns does this itself: reverse names it does not know go upstream")
        notes.option("cluster-fallthrough", zones, d.origin)
        return replace(e, kind=OPTION, effect=f"cluster-fallthrough {' '.join(zones)}: a name there that the cluster does "
                                              "not hold (NXDOMAIN, not NODATA) goes upstream, as CoreDNS passes it to "
                                              "forward; without an upstream the NXDOMAIN stands")
    if d.name == "noendpoints":
        notes.option("endpoints", False, d.origin)
        return replace(e, kind=OPTION, effect="no-endpoints: EndpointSlices are not watched; headless Services, endpoint "
                                              "names and their PTR records are NXDOMAIN")
    if d.name == "endpoint_pod_names":
        notes.option("endpoint-pod-names", True, d.origin)
        return replace(e, kind=OPTION, effect="endpoint-pod-names: an endpoint without a hostname is named after its "
                                              "Pod (when that name is a DNS label) rather than its address")
    return _unknown(notes, e)


def _forward(notes: _Notes, e: Explanation, d: Directive, parent: Directive | None) -> Explanation:
    if parent is None:
        return _unknown(notes, e)
    rule = next((r for r in notes.t.forwards if r.origin == parent.origin), None)
    if d.name == "max_concurrent" and rule is not None:
        first = notes.options.get("upstream-max-concurrent")
        if first is not None and first != rule.max_concurrent:
            return notes.refuse(e, f"kdns has one limit for every forwarded question; it is already {first} "
                                   f"(at {notes.origins['upstream-max-concurrent']})")
        notes.option("upstream-max-concurrent", rule.max_concurrent, d.origin)
        return replace(e, kind=OPTION, effect=f"upstream-max-concurrent {rule.max_concurrent}: at most that many distinct "
                                              "questions in flight upstream, REFUSED beyond (one limit for every forward)")
    if d.name == "except" and rule is not None:
        return replace(e, kind=OPTION, effect="; ".join(_elsewhere(notes.t, rule, x) for x in rule.except_zones))
    return _unknown(notes, e)


def _elsewhere(t: Translation, rule: ForwardRule, zone: str) -> str:
    """Where the names of `rule`'s except `zone` go, as the translator routed them."""
    served = (*(t.kubernetes.zones if t.kubernetes else ()), *REVERSE)
    if any(within(zone, s) for s in served):
        return f"{zone}: kdns answers these names itself"
    block_zones = [z for block in t.blocks for z in block.zones]
    taker = except_outcome(list(t.forwards), rule, zone, block_zones)
    if isinstance(taker, ForwardRule) and zone in dict(t.config).get("upstream-default", ()):
        return (f"upstream-default {zone}: to the forward at {taker.origin} (kdns's default upstreams, asked as that "
                "forward says), as in CoreDNS")
    if isinstance(taker, ForwardRule):
        return f"{zone}: to the forward at {taker.origin}, as in CoreDNS"
    if taker is not None:
        return f"{zone}: to the server block for {taker}, as in CoreDNS"
    return (f"upstream-except {zone}: SERVFAIL, as CoreDNS (no plugin after forward takes these names; hosts "
            "entries for them still answer)")


def _cache(notes: _Notes, e: Explanation, d: Directive, parent: Directive | None) -> Explanation:
    rule = next((r for r in notes.t.caches if r.origin == (parent or d).origin), None)
    if rule is None:
        return _unknown(notes, e)
    primary = notes.t.origin_of("cache-ttl") == rule.origin  # the rule that sets kdns's one cache
    if parent is None:  # "CoreDNS caches only under ZONES"
        if not primary:
            return _unknown(notes, e)
        # (the names of another block with a cache of its own stay cached, as there)
        zones = list(dict.fromkeys([*rule.zones, *(z for r in notes.t.caches if r is not rule for z in r.zones)]))
        notes.option("cache-zone", zones, d.origin)
        return replace(e, kind=OPTION, effect=f"cache-zone {' '.join(zones)}: only forwarded answers for names "
                                              "there are cached; others are forwarded every time")
    if d.name == "prefetch":
        return notes.warn(e, "kdns refreshes an entry asked for twice when less than 10% of its life is left; "
                             "this prefetch's numbers are not used")
    if d.name == "disable":
        # Names under the rule's block only (a narrower block's cache speaks for its own names).
        asked = [z.lower().rstrip(".") or "." for z in d.args[1:]] or ["."]
        zones = asked if primary else [b if within(b, z) else z for z in asked for b in rule.block_zones if within(z, b) or within(b, z)]
        option = f"cache-disable-{d.args[0]}"
        notes.option(option, list(dict.fromkeys([*notes.options.get(option, []), *zones])), d.origin)
        return replace(e, kind=OPTION, effect=f"{option} {' '.join(zones)}: {d.args[0]} answers for names there are "
                                              "never cached")
    if d.name in ("success", "denial"):
        if not primary:
            return notes.refuse(e, f"{d.name} with a minimum TTL in a block other than the one forwarding every other "
                                   "name: kdns has one minimum for its one cache")
        option, low = ("cache-min-ttl", rule.success_min_ttl) if d.name == "success" else ("cache-denial-min-ttl", rule.denial_min_ttl)
        notes.option(option, low, d.origin)
        return replace(e, kind=OPTION, effect=f"{option} {low}: {'positive' if d.name == 'success' else 'negative'} "
                                              f"answers are kept at least {low} s (at most cache-ttl), their TTLs raised to it")
    return _unknown(notes, e)


def _loadbalance(notes: _Notes, e: Explanation, d: Directive, parent: Directive | None) -> Explanation:
    lb = notes.t.loadbalance
    if parent is not None or lb is None:
        return _unknown(notes, e)
    if lb.prefer:
        return notes.refuse(e, f"loadbalance prefer {' '.join(lb.prefer)} is not supported by kdns")
    return notes.warn(e, "kdns returns the A, AAAA and MX records of an answer in the same order every time; CoreDNS "
                         "shuffles them (clients that take the first address all pick the same one)")


def _log(notes: _Notes, e: Explanation, d: Directive, parent: Directive | None) -> Explanation:
    if parent is not None and d.name == "class":
        return replace(e, kind=NO_EFFECT, effect="kdns logs every query: see the log line")
    return _unknown(notes, e)


def _bufsize(notes: _Notes, e: Explanation, d: Directive, parent: Directive | None) -> Explanation:
    if parent is not None or notes.t.bufsize is None:
        return _unknown(notes, e)
    notes.option("udp-max-size", notes.t.bufsize, d.origin)
    return replace(e, kind=OPTION, effect=f"udp-max-size {notes.t.bufsize}: a client offering more gets UDP replies of at "
                                          "most this size, larger ones truncated (TC) for TCP")


def _k8s_external(notes: _Notes, e: Explanation, d: Directive, parent: Directive | None) -> Explanation:
    return e  # decided with the others in _external, once every explanation is read


_DECIDERS = {
    "hosts": _hosts, "rewrite": _rewrite_or_template, "template": _rewrite_or_template, "kubernetes": _kubernetes,
    "forward": _forward, "proxy": _forward, "cache": _cache, "loadbalance": _loadbalance, "log": _log,
    "bufsize": _bufsize, "k8s_external": _k8s_external,
}


# -- what follows from the whole Corefile ---------------------------------------------------


def _external(notes: _Notes, out: list[Explanation]) -> list[Explanation]:
    """k8s_external -> external-zone, external-apex, external-ttl, external-headless."""
    t = notes.t
    result = []
    for e in out:
        ext = next((x for x in t.externals if x.origin == e.origin), None)
        if ext is None or not e.directive.startswith("k8s_external") or e.kind != DATA:
            result.append(e)
            continue
        cluster = t.kubernetes.zones if t.kubernetes else ()
        bad = next((why for why in (
            "." in ext.zones and "the root zone: kdns serves an external zone under a domain of its own",
            next((f"{z} is a reverse zone: kdns answers PTR records for external addresses there itself"
                  for z in ext.zones if is_reverse(z)), None),
            next((f"{z} overlaps the cluster zone {c}: the zones must not overlap" for z in ext.zones for c in cluster
                  if within(z, c) or within(c, z)), None),
        ) if why), None)
        if bad:
            result.append(notes.refuse(e, f"k8s_external: {bad}"))
            continue
        notes.option("external-zone", list(ext.zones), ext.origin)
        notes.option("external-apex", ext.apex, ext.origin)
        notes.option("external-ttl", ext.ttl, ext.origin)
        notes.option("external-headless", ext.headless, ext.origin)
        if ext.fallthrough:
            notes.option("external-fallthrough", list(ext.fallthrough), ext.origin)
        result.append(replace(e, kind=OPTION, effect=f"external-zone {', '.join(ext.zones)}, external-apex {ext.apex}, "
                                                      f"external-ttl {ext.ttl}"
                                                      f"{', external-headless' if ext.headless else ''}"
                                                      f"{', external-fallthrough ' + ' '.join(ext.fallthrough) if ext.fallthrough else ''}"
                                                      ": Services' "
                                                      "external addresses by name, authoritatively"))
    return result


def _in_cluster(notes: _Notes, out: list[Explanation]) -> None:
    """The kubernetes directive without endpoint or kubeconfig: the pod's own cluster."""
    k8s = notes.t.kubernetes
    options = dict(notes.t.config)
    if k8s is None or "apiserver" in options or "kubeconfig" in options:
        return
    notes.option("in-cluster", True, k8s.origin)
    at = next((i for i, e in enumerate(out) if e.origin == k8s.origin and e.directive.startswith("kubernetes")), len(out) - 1)
    out.insert(at + 1, Explanation(k8s.origin, "(no endpoint, no kubeconfig)", OPTION,
                                   "in-cluster: the API server of the cluster kdns runs in, with its pod's service account"))


def _hosts_plan(t: Translation, h: HostsSource) -> HostsPlan:
    assert h.origin is not None  # the translator gives every hosts directive its origin
    deeper = tuple(dict.fromkeys(z for block in t.blocks for z in block.zones
                                 if z not in h.block_zones and any(within(z, b) for b in h.block_zones)))
    inline = tuple((entry.address, entry.names) for entry in h.inline)
    return HostsPlan(_absolute(h.path, h.origin), inline, h.zones, deeper, h.ttl, h.reverse, h.reload, h.origin)


def _absolute(path: str, origin: Origin | None) -> str:
    """A relative hosts path, against the directory of the file holding the directive."""
    if posixpath.isabs(path) or origin is None:
        return path
    return posixpath.normpath(posixpath.join(posixpath.dirname(origin.file) or ".", path))


__all__ = ["IGNORE_FLAG", "NOT_YET", "REVERSE", "UNDERSTOOD", "HostsPlan", "Review", "review"]
