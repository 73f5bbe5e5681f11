"""`cache`: read into a CacheRule with CoreDNS's defaults, then mapped onto kdns's one cache.

CoreDNS (plugin/cache): `cache [TTL] [ZONES...]`, TTL > 0 caps both kinds of answer; without
it success answers are kept at most 3600 s and denials 1800 s, at least 5 s; each kind has
10,000 entries. No `cache` directive means nothing is cached. `serve_stale` without a
duration means 1 h; without `serve_stale` nothing stale is served. `prefetch` is off unless
given.

kdns has one cache, for forwarded answers only (cluster names are answered live from the
index), holding both kinds: the main block's `cache` sets `cache-ttl` (the success TTL),
`cache-size` (success + denial capacity), `cache-denial-ttl` (when below the success TTL),
`cache-min-ttl` and `cache-denial-min-ttl` (CoreDNS's 5 s floors unless `success`/`denial` set
MINTTL: a TTL 0 answer is kept, and served, 5 s) and `serve-stale`; kdns.corefile.review maps
the zones and `disable`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kdns.corefile.model import Directive, Origin
from kdns.corefile.translate.context import DATA, NO_EFFECT, OPTION, WARNING, Block, Context
from kdns.corefile.translate.values import CacheRule, Explanation, Kubernetes, Prefetch

UNSUPPORTED = {
    "keepttl": "kdns counts the TTLs of cached answers down",
    "servfail": "kdns does not cache SERVFAIL answers",
    "serve_stale_policy": "kdns has no stale-answer policies",
}


def cache(ctx: Context, d: Directive, block: Block) -> CacheRule | None:
    args = list(d.args)
    rule = CacheRule(block.zones, block_zones=block.zones, origin=d.origin)
    if args and args[0].lstrip("+-").isdigit():
        ttl = ctx.integer(d, args.pop(0), 1, None, "cache TTL")
        if ttl is None:
            return None
        rule = replace(rule, success_ttl=ttl, denial_ttl=ttl)
    if args:
        zones = ctx.zones(d, args)
        if zones is None:
            return None
        rule = replace(rule, zones=zones)
    for line in d.block or ():
        changed = _line(ctx, line, rule)
        if changed is None:
            return None
        rule = changed
    return rule


def _line(ctx: Context, line: Directive, rule: CacheRule) -> CacheRule | None:
    name, args = line.name, line.args
    if name in ("success", "denial"):
        if not ctx.arity(line, 1, 3):
            return None
        cap = ctx.integer(line, args[0], 1, None, f"{name} capacity")
        ttl = ctx.integer(line, args[1], 1, None, f"{name} TTL") if len(args) > 1 else None
        low = ctx.integer(line, args[2], 0, None, f"{name} minimum TTL") if len(args) > 2 else None
        if cap is None or (len(args) > 1 and ttl is None) or (len(args) > 2 and low is None):
            return None
        prefix = "success" if name == "success" else "denial"
        changes: dict[str, Any] = {f"{prefix}_capacity": cap}
        if ttl is not None:
            changes[f"{prefix}_ttl"] = ttl
        if low is not None:
            changes[f"{prefix}_min_ttl"] = low
        ctx.explain(line, OPTION if low is None else DATA, f"{name} answers: {cap} entries" + (f", at most {ttl} s" if ttl else "")
                    + (f", at least {low} s (kept as CacheRule.{prefix}_min_ttl)" if low is not None else "")
                    + " (see the cache line for kdns's one cache)")
        return replace(rule, **changes)
    if name == "disable":
        if not ctx.arity(line, 1) or args[0] not in ("success", "denial"):
            if args:
                ctx.refuse(line, "disable takes success or denial, then zones")
            return None
        zones = ctx.zones(line, args[1:]) if len(args) > 1 else (".",)
        if zones is None:
            return None
        field = f"disable_{args[0]}"
        ctx.explain(line, DATA, "see the cache line")  # replaced once the cluster zones are known
        return replace(rule, **{field: getattr(rule, field) + zones})
    if name == "prefetch":
        if not ctx.arity(line, 1, 3):
            return None
        amount = ctx.integer(line, args[0], 0, None, "prefetch amount")
        duration = ctx.duration(line, args[1], "prefetch duration") if len(args) > 1 else 60.0
        pct: int | None = 10
        if len(args) > 2:
            if not args[2].endswith("%"):
                ctx.refuse(line, f"prefetch percentage must end in %: {args[2]!r}")
                return None
            pct = ctx.integer(line, args[2][:-1], 10, 90, "prefetch percentage")
        if amount is None or duration is None or pct is None:
            return None
        ctx.explain(line, DATA, "kdns refreshes an entry asked for twice when less than 10% of its life is left, always; "
                                "kept as CacheRule.prefetch")
        return replace(rule, prefetch=Prefetch(amount, duration, pct))
    if name == "serve_stale":
        if not ctx.arity(line, 0, 2):
            return None
        stale = ctx.duration(line, args[0], "serve_stale") if args else 3600.0
        if stale is None:
            return None
        mode = args[1].lower() if len(args) > 1 else "immediate"
        if mode not in ("immediate", "verify"):
            ctx.refuse(line, f"serve_stale refresh mode is immediate or verify, got {args[1]!r}")
            return None
        if mode == "verify":
            ctx.explain(line, OPTION, f"serve-stale {stale:g}: served only when every upstream fails, as verify says")
        else:
            ctx.explain(line, WARNING, f"serve-stale {stale:g}: kdns serves a stale answer only once every upstream failed "
                                       "(CoreDNS's verify mode); immediate mode would serve it at once and refresh behind")
        return replace(rule, serve_stale=stale, serve_stale_verify=mode == "verify")
    if name in UNSUPPORTED:
        ctx.refuse(line, f"{name}: {UNSUPPORTED[name]}")
        return None
    ctx.refuse(line, f"unknown cache property {name!r} (CoreDNS refuses it too)")
    return None


def settle(ctx: Context, rules: list[tuple[CacheRule, Directive, list[Explanation]]], main: tuple[str, ...], k8s: Kubernetes | None,
           main_origin: Origin) -> None:
    """Set kdns's cache options from the rule of the block that forwards names by default (the
    `.` block: the main block, or the one beside a main block for a narrower zone), and explain
    every rule."""
    served = (*(k8s.zones if k8s else ()), "in-addr.arpa", "ip6.arpa")
    primary = next((r for r, _, _ in rules if r.block_zones == main), None)
    if primary is None:
        ctx.option("cache-ttl", 0, None, main_origin)
        ctx.option("serve-stale", 0.0, None, main_origin)
        ctx.note(main_origin, "(no cache in the . block)", OPTION,
                 "cache-ttl 0, serve-stale 0: CoreDNS caches nothing here, nor does kdns")
    for rule, d, slot in rules:
        ctx.current = (d, slot)
        _explain_disable(ctx, d, rule, served)
        if rule is primary:
            size = rule.success_capacity + rule.denial_capacity
            stale = rule.serve_stale or 0.0
            ok = ctx.option("cache-ttl", rule.success_ttl, d) & ctx.option("cache-size", size, d) \
                & ctx.option("serve-stale", stale, d)
            if ok:
                ctx.fill(slot, d, OPTION, f"cache-ttl {rule.success_ttl}, cache-size {size} (success + denial entries in one "
                                          f"cache), serve-stale {stale:g}: kdns caches forwarded answers only; cluster names are "
                                          "answered live (CoreDNS would cache them too, up to the kubernetes ttl)")
            # CoreDNS keeps every answer at least its MINTTL (5 s unless a success or denial line
            # says otherwise; plugin/cache's minTTL and minNTTL), at most its TTL cap.
            floors = ctx.option("cache-min-ttl", rule.success_min_ttl, d) & ctx.option("cache-denial-min-ttl", rule.denial_min_ttl, d)
            if floors:
                ctx.fill(slot, d, OPTION, f"cache-min-ttl {rule.success_min_ttl}, cache-denial-min-ttl {rule.denial_min_ttl}: "
                                          "a forwarded answer is kept (and its TTLs say) at least that long, at most the cap, "
                                          "as CoreDNS's cache")
            if rule.denial_ttl < rule.success_ttl and ctx.option("cache-denial-ttl", rule.denial_ttl, d):
                ctx.fill(slot, d, OPTION, f"cache-denial-ttl {rule.denial_ttl}: negative answers are kept at most that long")
            elif rule.denial_ttl > rule.success_ttl:
                ctx.fill(slot, d, WARNING, f"denials are kept at most {rule.denial_ttl} s by CoreDNS; kdns caps them at "
                                           f"cache-ttl ({rule.success_ttl} s), as every cached answer")
            if not set(main) <= set(rule.zones) and "." not in rule.zones:
                ctx.fill(slot, d, DATA, f"CoreDNS caches only under {', '.join(rule.zones)}; kdns caches every forwarded "
                                        "answer today (kept as CacheRule.zones)")
        elif primary is not None and _same(rule, primary):
            ctx.fill(slot, d, NO_EFFECT, "the same as the . block's cache: kdns has one cache for every forwarded name")
        else:
            ctx.fill(slot, d, WARNING, "kdns has one cache, set by the . block's cache (or its absence); this block's "
                                       "settings are kept in Translation.caches")
    ctx.current = None


def _same(a: CacheRule, b: CacheRule) -> bool:
    keys = ("success_ttl", "success_capacity", "denial_ttl", "denial_capacity", "serve_stale", "prefetch",
            "success_min_ttl", "denial_min_ttl")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def _explain_disable(ctx: Context, d: Directive, rule: CacheRule, served: tuple[str, ...]) -> None:
    """Re-explain each `disable` line now that the cluster zones are known."""
    for line in d.lines("disable"):
        zones = line.args[1:] or (".",)
        inside = all(any(z.lower().rstrip(".") == s or z.lower().rstrip(".").endswith("." + s) for s in served) for z in zones)
        for i, entry in enumerate(ctx.entries):
            if not isinstance(entry, list) and entry.origin == line.origin and entry.effect == "see the cache line":
                effect = ("kdns never caches cluster names: they are answered live from the index" if inside else
                          f"kdns caches {line.args[0]} answers under {' '.join(zones)} today; kept as CacheRule.disable_{line.args[0]}")
                ctx.entries[i] = replace(entry, kind=NO_EFFECT if inside else DATA, effect=effect)
