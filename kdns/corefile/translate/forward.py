"""`forward` (and the legacy `proxy`): read each line into a ForwardRule, then route them.

Reading (`forward`) happens as the blocks are walked; routing (`route`) once every block is
known, because what a rule becomes depends on the kubernetes zones and on the other blocks:

- a rule whose names are the whole root (`forward . X` in the `.` block) sets the default
  upstreams: `upstream` for addresses, `resolv-conf` for a resolv.conf path (one file);
- a rule for another zone, in the main block or in a block of its own, becomes `stub-domain`
  entries (addresses only);
- names inside the cluster or reverse zones cannot be forwarded elsewhere by kdns: refused;
- a rule that an earlier rule of its block (or a more specific block) always takes first is
  never used: a warning;
- its options (policy, force_tcp, prefer_udp, max_fails, health_check) become the default
  upstreams' `upstream-*` options, or `KEY=VALUE` items of a stub domain's entries where they
  differ from those (kdns.pool); CoreDNS's transport is the client's (`client`), kdns's `udp`;
- an `except` zone goes to the rule that CoreDNS would hand its names to next: the `.`
  forward of the `.` block (`upstream-default`: the default upstreams, a resolv.conf's
  included), another later forward of the block (a `stub-domain` for the zone with that
  rule's upstreams), a deeper server block, or nowhere: `upstream-except` (SERVFAIL, as
  CoreDNS's NextOrFailure when no plugin follows forward).

CoreDNS's defaults: policy random, max_fails 2, expire 10s, health_check 0.5s, read_timeout 2s,
no max_concurrent, at most 15 TOs; TOs are IPs with an optional port, `dns://` addresses,
resolv.conf files, or host names (resolved once at start; kdns refuses those).
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from kdns.corefile.keys import normalise_zone, parse_key
from kdns.corefile.model import Directive
from kdns.corefile.translate.context import DATA, NO_EFFECT, OPTION, WARNING, Block, Context, parse_duration, split_host_port
from kdns.corefile.translate.values import Explanation, ForwardRule, ForwardTarget, Kubernetes

MAX_TO = 15
POLICIES = ("random", "round_robin", "sequential")
UNSUPPORTED = {
    "tls": "TLS upstreams (DNS over TLS) are not supported by kdns",
    "tls_servername": "TLS upstreams (DNS over TLS) are not supported by kdns",
    "doh_method": "DNS over HTTPS upstreams are not supported by kdns",
    "next": "kdns does not pass upstream answers on to another forward",
    "next_on_nodata": "kdns does not pass upstream answers on to another forward",
    "failover": "kdns tries the next upstream only on timeouts, network errors, SERVFAIL and REFUSED",
    "failfast_all_unhealthy_upstreams": "kdns still asks an upstream when every one is down",
    "resolver": "kdns takes addresses, not host names to resolve",
    "source_address": "kdns does not choose the source address of upstream queries",
}
NOT_NEEDED = {
    "max_idle_conns": "kdns keeps no idle upstream connections",
    "max_age": "kdns keeps no upstream connections to age",
    "expire": "kdns keeps no upstream connections to expire (each TCP exchange has a connection of its own)",
    "max_connect_attempts": "kdns asks at most 3 upstreams for one question",
}


def within(name: str, zone: str) -> bool:
    return zone == "." or name == zone or name.endswith("." + zone)


def meet(a: str, b: str) -> str | None:
    """The names under both zones: the deeper zone, or None."""
    return a if within(a, b) else b if within(b, a) else None


def forward(ctx: Context, d: Directive, block: Block) -> ForwardRule | None:
    legacy = d.name == "proxy"
    if not ctx.arity(d, 2):
        return None
    keys, problem = parse_key(d.args[0], d.origin_of(0))
    if problem or "://" in d.args[0]:
        ctx.refuse(d, problem or f"FROM {d.args[0]!r} is not a zone")
        return None
    if len(keys) > 1:
        ctx.explain(d, WARNING, f"{d.args[0]} stands for {len(keys)} reverse zones; CoreDNS uses only the first, {keys[0].zone}")
    if len(d.args) - 1 > MAX_TO:
        ctx.refuse(d, f"{len(d.args) - 1} upstreams: CoreDNS allows at most {MAX_TO}")
        return None
    found = [_target(ctx, d, text, i) for i, text in enumerate(d.args[1:], 1)]
    if any(t is False for t in found):
        return None
    targets = [t for t in found if isinstance(t, ForwardTarget)]
    if not targets:
        return None  # every TO was ignored (ignore_unknown)
    rule = ForwardRule(keys[0].zone, tuple(targets), block_zones=block.zones, legacy_proxy=legacy, origin=d.origin)
    for line in d.block or ():
        changed = _line(ctx, line, rule, legacy)
        if changed is None:
            return None
        rule = changed
    if legacy:
        ctx.explain(d, WARNING, "the proxy plugin was removed in CoreDNS 1.6: read as forward")
    return rule


def _target(ctx: Context, d: Directive, text: str, i: int) -> ForwardTarget | None | bool:
    """A TO, None when ignored, False when refused."""
    origin = d.origin_of(i)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "dns", text
    if scheme in ("tls", "https"):
        what = "DNS over TLS" if scheme == "tls" else "DNS over HTTPS"
        return None if ctx.unsupported(d, f"{text}: {what} upstreams are not supported by kdns", origin) else False
    if scheme != "dns":
        ctx.refuse(d, f"{text}: CoreDNS forwards only over dns://, tls:// and https://", origin)
        return False
    host, port = split_host_port(rest)
    if port is None:
        host, port = rest.strip("[]"), "53"
    if "%" in host:
        ctx.refuse(d, f"{text}: kdns does not take zone-scoped addresses (%interface)", origin)
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not sep and ("/" in text or text.endswith(".conf")):
            return ForwardTarget(text, None, 53, text, origin)
        ctx.refuse(d, f"{text}: not an IP address; CoreDNS resolves host name upstreams once at start, kdns takes addresses",
                   origin)
        return False
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        ctx.refuse(d, f"{text}: not a port number: {port!r}", origin)
        return False
    return ForwardTarget(text, str(ip), int(port), None, origin)


def _line(ctx: Context, line: Directive, rule: ForwardRule, legacy: bool) -> ForwardRule | None:
    name, args = line.name, line.args
    if name == "except":
        if not ctx.arity(line, 1):
            return None
        zones = []
        for i, text in enumerate(args):
            keys, problem = parse_key(text, line.origin_of(i))
            if problem:
                ctx.refuse(line, problem)
                return None
            zones += [k.zone for k in keys]
        ctx.explain(line, DATA, "kept as ForwardRule.except_zones (see the forward line for what kdns does with them)")
        return replace(rule, except_zones=rule.except_zones + tuple(zones),
                       except_origins=rule.except_origins + (line.origin,) * len(zones))
    if name in ("force_tcp", "prefer_udp"):
        if not ctx.arity(line, 0, 0):
            return None
        if name == "prefer_udp":
            ctx.explain(line, OPTION, "transport udp: upstreams are asked over UDP even for a client over TCP, then over "
                                      "TCP when the reply is truncated" + (" (force_tcp wins)" if rule.force_tcp else ""))
            return replace(rule, prefer_udp=True)
        ctx.explain(line, OPTION, "transport tcp: upstreams are asked over TCP only")
        return replace(rule, force_tcp=True)
    if name == "policy":
        allowed = POLICIES + (("least_conn", "first") if legacy else ())
        if len(args) != 1 or args[0] not in allowed:
            ctx.refuse(line, f"policy takes one of {', '.join(allowed)}")
            return None
        policy = {"first": "sequential", "least_conn": "random"}.get(args[0], args[0])
        ctx.explain(line, OPTION, f"policy {policy}: " + {
            "random": "healthy upstreams are tried in a random order",
            "round_robin": "each question starts at the next upstream",
            "sequential": "the first healthy upstream takes every question"}[policy])
        return replace(rule, policy=policy)
    if name in ("max_fails", "max_concurrent"):
        if not ctx.arity(line, 1, 1):
            return None
        value = ctx.integer(line, args[0], 0, 2**32 - 1 if name == "max_fails" else None, name)
        if value is None:
            return None
        if name == "max_fails":
            ctx.explain(line, OPTION, f"max-fails {value}: " + (f"an upstream is down after {value} failures in a row "
                                      "(questions or probes; CoreDNS counts probes only)" if value else "never down"))
            return replace(rule, max_fails=value)
        ctx.explain(line, DATA, f"at most {value} questions in flight (REFUSED beyond): kdns has no such cap yet (identical "
                                "questions share one exchange); kept as ForwardRule.max_concurrent")
        return replace(rule, max_concurrent=value)
    if name == "health_check":
        if not ctx.arity(line, 1):
            return None
        every = ctx.duration(line, args[0], "health_check")
        if every is None:
            return None
        rec, domain, rest = True, ".", list(args[1:])
        while rest:
            word = rest.pop(0)
            if word == "no_rec":
                rec = False
            elif word == "domain" and rest and not normalise_zone(rest[0])[1]:
                domain = normalise_zone(rest.pop(0))[0] or "."
            else:
                ctx.refuse(line, "health_check takes DURATION [no_rec] [domain FQDN]")
                return None
        if every > 3600:
            ctx.refuse(line, "health_check: kdns probes at least once an hour (3600s)")
            return None
        ctx.explain(line, OPTION, f"health-check {every:g}: a down upstream is asked '{domain} NS' "
                                  f"({'with' if rec else 'without'} recursion) every {every:g} s until it answers")
        return replace(rule, health_check=every, health_domain=domain, health_recursion=rec)
    if name == "read_timeout":
        if not ctx.arity(line, 1, 1):
            return None
        seconds = ctx.duration(line, args[0], "read_timeout", positive=True)
        if seconds is None:
            return None
        if ctx.option("upstream-timeout", seconds, line):
            ctx.explain(line, OPTION, f"upstream-timeout {seconds:g}")
        return replace(rule, read_timeout=seconds)
    if name in NOT_NEEDED:
        if not ctx.arity(line, 1, 1):
            return None
        if name in ("expire", "max_age"):
            if ctx.duration(line, args[0], name) is None:
                return None
        elif ctx.integer(line, args[0], 0, None, name) is None:
            return None
        ctx.explain(line, NO_EFFECT, NOT_NEEDED[name])
        return replace(rule, expire=parse_duration(args[0]) or 0.0) if name == "expire" else rule
    if name in UNSUPPORTED:
        ctx.refuse(line, UNSUPPORTED[name])
        return None
    if legacy:
        ctx.refuse(line, f"proxy option {name!r} has no forward equivalent in kdns")
        return None
    ctx.refuse(line, f"unknown forward property {name!r} (CoreDNS refuses it too)")
    return None


# -- routing ------------------------------------------------------------------------------


def route(ctx: Context, rules: list[tuple[ForwardRule, Directive, list[Explanation]]], k8s: Kubernetes | None, block_zones: list[str]) -> None:
    """Turn the rules into upstream / resolv-conf / stub-domain / upstream-* options, in file order.

    `rules` holds each rule with its directive and its explanation slot; `block_zones` are
    the zones of every server block (a block for a zone takes its names before any rule of
    a less specific block sees them)."""
    served = (*(k8s.zones if k8s else ()), "in-addr.arpa", "ip6.arpa")
    taken: list[tuple[tuple[str, ...], str, ForwardRule]] = []  # (block zones, zone, rule): names a rule forwards
    if rules:
        ctx.option("allow-recursion", ["0.0.0.0/0", "::/0"], rules[0][1])
    # The upstream-* options: the `.` rule's (CoreDNS's defaults without one); stub domains
    # say where they differ.
    default = next(((r, d) for r, d, _ in rules if r.from_zone == "." and "." in r.block_zones), None)
    base = pool_options(default[0] if default is not None else ForwardRule(".", ()))
    for (_, option, value), (_, _, kdns_default) in zip(base, KDNS_DEFAULTS, strict=True):
        if value != kdns_default and rules:
            ctx.option(option, value, default[1] if default is not None else rules[0][1])
    all_rules = [r for r, _, _ in rules]
    pending: list[tuple[ForwardRule, Directive, list[Explanation], str, str]] = []  # except zones, routed last
    for rule, d, slot in rules:
        ctx.current = (d, slot)  # a refusal of d (a second resolv-conf, say) goes with its other entries
        effects: list[str] = []
        ok = True
        zones = [z for z in (meet(b, rule.from_zone) for b in rule.block_zones) if z is not None]
        if not zones:
            ctx.fill(slot, d, WARNING, f"never used: {rule.from_zone} lies outside this block's zones ({', '.join(rule.block_zones)})")
            continue
        used: list[str] = []
        for zone in zones:
            first = next((r for bz, z, r in taken if bz == rule.block_zones and within(zone, z)
                          and not any(within(zone, x) for x in r.except_zones)), None)
            owner = next((b for b in block_zones if within(zone, b) and _deeper_block(b, rule)), None)
            if first is not None or owner is not None:
                by = f"the forward at {first.origin}" if first is not None else f"the server block for {owner}"
                ctx.fill(slot, d, WARNING, f"never used for {zone}: {by} takes these names first")
                continue
            inside = next((s for s in served if within(zone, s)), None)
            if inside is not None:
                ctx.refuse(d, f"names under {zone} are answered by kdns itself ({inside}); kdns cannot forward part of "
                              "the cluster or reverse zones elsewhere", slot=slot)
                ok = False
                continue
            taken.append((rule.block_zones, zone, rule))
            used.append(zone)
            if zone == ".":
                ok = _default(ctx, d, rule, effects) and ok
            else:
                ok = _stub(ctx, d, rule, zone, slot, effects, pool_options(rule), base) and ok
            deeper = [b for b in block_zones if within(b, zone) and b != zone and _deeper_block(b, rule)]
            if deeper:
                effects.append(f"names under {', '.join(deeper)} go to their own server blocks")
        if effects and ok:
            timeout = f"upstream-timeout {rule.read_timeout:g} s" if rule.read_timeout != 2.0 else "1.5 s (CoreDNS: 2 s)"
            ctx.fill(slot, d, OPTION, "; ".join(effects) + f"; {_describe(pool_options(rule))}, {timeout} per try")
        pending += [(rule, d, slot, x, outer) for x in rule.except_zones
                    if (outer := next((z for z in used if within(x, z)), None)) is not None
                    and not any(within(x, s) for s in served)]  # (not names this rule never sees, nor kdns's own)
    # Every rule routed: an except zone's taker is known to get its names itself, or not.
    for rule, d, slot, x, outer in pending:
        ctx.current = (d, slot)
        outcome = except_outcome(all_rules, rule, x, block_zones)
        if default is not None and outcome is default[0]:
            ctx.append("upstream-default", x, d)  # the `.` forward's own group, resolv.conf or not
        elif isinstance(outcome, ForwardRule):
            if any(r is outcome and within(x, z) for bz, z, r in taken if z != outer):
                continue  # a rule routed for a zone holding these names (its stub domain) takes them
            if any(t.resolv_conf is not None for t in outcome.targets):
                ctx.refuse(d, f"except {x}: CoreDNS hands these names to the forward at {outcome.origin}, whose upstreams "
                              "come from a resolv.conf file; kdns sends them there as a stub domain, which takes "
                              "addresses only", slot=slot)
                continue
            _stub(ctx, d, outcome, x, slot, [], pool_options(outcome), base)
        elif outcome is None:
            ctx.append("upstream-except", x, d)
    ctx.current = None


def except_outcome(rules: list[ForwardRule], rule: ForwardRule, zone: str, block_zones: list[str]) -> ForwardRule | str | None:
    """Who takes the names of `rule`'s except `zone` in CoreDNS: the first other forward of
    the rule's block that matches them, else a deeper server block (its zone), else nobody
    (None: SERVFAIL)."""
    for other in rules:
        if other is not rule and other.block_zones == rule.block_zones and within(zone, other.from_zone) \
                and not any(within(zone, x) for x in other.except_zones):
            return other
    return next((b for b in block_zones if within(zone, b) and _deeper_block(b, rule)), None)


# An upstream group's options (kdns.pool.PoolOptions) as (the KEY of a --stub-domain item,
# its upstream-* option, value): kdns's defaults, and those of a rule.
Options = tuple[tuple[str, str, object], ...]
KDNS_DEFAULTS: Options = (("policy", "upstream-policy", "random"), ("transport", "upstream-transport", "udp"),
                          ("max-fails", "upstream-max-fails", 2), ("health-check", "upstream-health-check", 0.5),
                          ("health-domain", "upstream-health-domain", "."),
                          ("health-recursion", "upstream-health-recursion", True))


def pool_options(rule: ForwardRule) -> Options:
    """A rule's options as kdns names them (CoreDNS asks over the client's transport by default)."""
    transport = "tcp" if rule.force_tcp else "udp" if rule.prefer_udp else "client"
    values = (rule.policy, transport, rule.max_fails, rule.health_check, rule.health_domain, rule.health_recursion)
    return tuple((key, option, value) for (key, option, _), value in zip(KDNS_DEFAULTS, values, strict=True))


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)


def _items(options: Options, base: Options) -> str:
    """The ,KEY=VALUE items of a stub-domain entry that turn `base` into `options`."""
    return "".join(f",{key}={_text(value)}" for (key, _, value), (_, _, old) in zip(options, base, strict=True) if value != old)


def _describe(options: Options) -> str:
    policy, transport, max_fails = (value for _, _, value in options[:3])
    how = {"udp": "over UDP (TCP on truncation)", "client": "over the client's transport (UDP then TCP on truncation "
           "for a client over UDP)", "tcp": "over TCP only"}[str(transport)]
    down = f"down after {max_fails} failures in a row" if max_fails else "never marked down"
    return f"policy {policy}, asked {how}, {down}"


def _deeper_block(zone: str, rule: ForwardRule) -> bool:
    """A server block for `zone` sits below one of the rule's block zones (so it takes those names)."""
    return zone not in rule.block_zones and any(within(zone, b) and zone != b for b in rule.block_zones)


def _default(ctx: Context, d: Directive, rule: ForwardRule, effects: list[str]) -> bool:
    ok = True
    for t in rule.targets:
        if t.resolv_conf is not None:
            if ctx.option("resolv-conf", t.resolv_conf, d):
                effects.append(f"resolv-conf {t.resolv_conf} (its nameserver lines are the upstreams)")
            else:
                ok = False
        else:
            ctx.append("upstream", t.address, d)
            effects.append(f"upstream {t.address}")
    for (_, option, value), (_, _, default) in zip(pool_options(rule), KDNS_DEFAULTS, strict=True):
        if value != default:
            effects.append(f"{option} {_text(value)}")
    return ok


def _stub(ctx: Context, d: Directive, rule: ForwardRule, zone: str, slot: list[Explanation], effects: list[str],
          options: Options, base: Options) -> bool:
    files = [t for t in rule.targets if t.resolv_conf is not None]
    if files:
        ctx.refuse(d, f"{files[0].text}: kdns's stub domains take addresses, not a resolv.conf file", slot=slot)
        return False
    items = _items(options, base)
    for t in rule.targets:
        ctx.append("stub-domain", f"{zone}={t.address}{items}", d)
        effects.append(f"stub-domain {zone}={t.address}{items}")
    return True
