"""The operational directives: health, ready, prometheus, log, errors, debug, bufsize,
loadbalance, loop, reload; and what kdns says about every plugin it does not read.

CoreDNS's defaults: `health` on :8080 with no lameduck (so no lameduck when there is no
`health` either), `ready` on :8181, `prometheus` on localhost:9153, `bufsize` 1232 (512..4096),
`reload` every 30 s (at least 2 s) with 15 s jitter (0, or at least 1 s).
"""

from __future__ import annotations

import ipaddress

from kdns.corefile.model import Directive
from kdns.corefile.translate.context import DATA, NO_EFFECT, OPTION, WARNING, Block, Context
from kdns.corefile.translate.values import LoadBalance, LogRule, Reload

KDNS_UDP = 1232  # what kdns advertises and sends over UDP at most (kdns/wire.py MAX_UDP)
LOG_CLASSES = ("all", "success", "denial", "error")

# Plugins kdns does not read, with why. Anything else unknown gets the generic reason.
NOT_SUPPORTED = {
    "etcd": "kdns serves names from the Kubernetes API only, not from etcd",
    "file": "kdns serves no zone files", "auto": "kdns serves no zone files",
    "secondary": "kdns takes no zone transfers", "transfer": "kdns serves no zone transfers",
    "federation": "federation was removed from CoreDNS and kdns has none",
    "dnssec": "kdns does not sign answers (DNSSEC)", "sign": "kdns does not sign zones (DNSSEC)",
    "grpc": "kdns forwards over plain DNS only", "grpc_server": "kdns serves plain DNS only",
    "tls": "kdns serves plain DNS only (no DNS over TLS)", "https": "kdns serves no DNS over HTTPS",
    "https3": "kdns serves no DNS over HTTP/3", "quic": "kdns serves no DNS over QUIC",
    "view": "kdns has no per-client views", "acl": "kdns limits forwarding with its allow-recursion option only",
    "route53": "kdns serves no cloud DNS zones", "azure": "kdns serves no cloud DNS zones",
    "clouddns": "kdns serves no cloud DNS zones", "dns64": "kdns does not synthesise AAAA records (DNS64)",
    "dnstap": "kdns has no dnstap output", "trace": "kdns has no tracing", "tsig": "kdns does not check TSIG",
    "whoami": "kdns has no whoami answers", "chaos": "kdns answers no CH-class queries",
    "any": "kdns does not special-case ANY queries (RFC 8482)", "minimal": "kdns's replies are shaped by kdns",
    "nsid": "kdns sends no NSID", "header": "kdns does not rewrite header flags", "local": "kdns has no local plugin",
    "root": "kdns resolves relative paths itself", "timeouts": "kdns has its own TCP timeouts (tcp-idle-timeout)",
    "geoip": "kdns has no GeoIP data", "erratic": "kdns has no fault injection here", "nomad": "kdns serves Kubernetes only",
    "proxyproto": "kdns does not read PROXY protocol headers", "shed": "kdns does not shed load",
    "multisocket": "kdns uses its workers option for more sockets", "on": "kdns runs no external commands",
    "dnssd": "kdns has no DNS-SD", "alternate": "kdns does not pass answers on to alternates",
}
HARMLESS = {
    "cancel": "kdns bounds every upstream try with upstream-timeout itself",
    "metadata": "kdns has no plugin metadata to publish (nothing reads it)",
    "pprof": "kdns has no Go profiling endpoint",
}


def health(ctx: Context, d: Directive, block: Block) -> None:
    if not ctx.arity(d, 0, 1):
        return
    addr = ctx.http_address(d, d.args[0]) if d.args else ":8080"
    lameduck = 0.0
    for line in d.block or ():
        if line.name != "lameduck":
            ctx.refuse(line, f"unknown health property {line.name!r}")
            return
        if not ctx.arity(line, 1, 1) or (value := ctx.duration(line, line.args[0], "lameduck")) is None:
            return
        lameduck = value
        ctx.explain(line, OPTION, f"lameduck {value:g}: after SIGTERM kdns answers {value:g} s more (with /ready at 503), "
                                  "then drains TCP and exits")
    if addr is None:
        return
    if ctx.option("health", addr, d) and ctx.option("lameduck", lameduck, d):
        ctx.explain(d, OPTION, f"health {addr}: GET /health answers 200 OK while kdns serves"
                               + ("" if d.block else "; lameduck 0 (CoreDNS waits for nothing on SIGTERM without it)"))


def ready(ctx: Context, d: Directive, block: Block) -> None:
    if not ctx.arity(d, 0, 1):
        return
    addr = ctx.http_address(d, d.args[0]) if d.args else ":8181"
    for line in d.block or ():
        if line.name != "monitor" or line.args not in (("until-ready",), ("continuously",)):
            ctx.refuse(line, "ready takes monitor until-ready|continuously")
            return
        if line.args == ("until-ready",):
            ctx.explain(line, NO_EFFECT, "kdns's /ready stays 200 once synced, until shutdown")
        else:
            ctx.explain(line, WARNING, "kdns's /ready stays 200 once synced, until shutdown; it does not go back to 503 "
                                       "while the API is unreachable (kdns serves what it knew)")
    if addr is not None and ctx.option("ready", addr, d):
        ctx.explain(d, OPTION, f"ready {addr}: GET /ready is 503 until the cluster is synced and while shutting down")


def prometheus(ctx: Context, d: Directive, block: Block) -> None:
    if not ctx.arity(d, 0, 1):
        return
    addr = ctx.http_address(d, d.args[0]) if d.args else "127.0.0.1:9153"
    for line in d.block or ():
        if line.name == "runtime_metrics":
            ctx.explain(line, NO_EFFECT, "kdns exports no Go runtime metrics")
        else:
            ctx.refuse(line, f"prometheus {line.name} is not supported by kdns")
            return
    if addr is not None and ctx.option("metrics", addr, d):
        default = " (CoreDNS's default, localhost:9153)" if not d.args else ""
        ctx.explain(d, OPTION, f"metrics {addr}{default}: GET /metrics with CoreDNS's metric names, for every block")


def log(ctx: Context, d: Directive, block: Block) -> LogRule | None:
    args, fmt = list(d.args), None
    if len(args) >= 2 and "{" in args[-1]:
        fmt = args.pop()
    names = ctx.zones(d, args) if args else (".",)
    if names is None:
        return None
    classes: list[str] = []
    for line in d.block or ():
        if line.name != "class" or not line.args or any(c not in LOG_CLASSES for c in line.args):
            ctx.refuse(line, f"log takes class {'|'.join(LOG_CLASSES)}...")
            return None
        classes += [c for c in line.args if c not in classes]
        ctx.explain(line, DATA, "kept as LogRule.classes (see the log line)")
    rule = LogRule(names, tuple(classes) or ("all",), fmt, block.zones, d.origin)
    ctx.option("log-queries", True, d)
    everything = rule.classes == ("all",) or "all" in rule.classes
    if everything and "." in names and fmt is None and (block.main or "." in block.zones):
        ctx.explain(d, OPTION, "log-queries: one line per query (client, protocol, name, type, rcode, size), in kdns's format")
    else:
        narrow = [f"only {'/'.join(rule.classes)} answers" if not everything else "",
                  f"only names under {', '.join(names)}" if "." not in names else "",
                  f"in the format {fmt!r}" if fmt else "",
                  f"only queries of the block for {', '.join(block.zones)}" if not block.main and "." not in block.zones else ""]
        ctx.explain(d, WARNING, "log-queries: kdns logs every query in its own format; CoreDNS would log "
                                + ", ".join(n for n in narrow if n) + " (kept as Translation.logs)")
    return rule


def errors(ctx: Context, d: Directive, block: Block) -> None:
    if d.args not in ((), ("stdout",)):
        ctx.refuse(d, "errors takes no argument but stdout")
        return
    for line in d.block or ():
        if line.name not in ("stacktrace", "consolidate"):
            ctx.refuse(line, f"unknown errors property {line.name!r}")
            return
        ctx.explain(line, NO_EFFECT, "kdns logs each error once, with its own wording")
    ctx.explain(d, NO_EFFECT, "kdns always logs the errors it meets (upstream failures, broken input) at log-level warning")


def debug(ctx: Context, d: Directive, block: Block) -> None:
    if ctx.arity(d, 0, 0) and ctx.no_block(d) and ctx.option("log-level", "debug", d):
        ctx.explain(d, OPTION, "log-level debug")


def bufsize(ctx: Context, d: Directive, block: Block) -> int | None:
    if not ctx.arity(d, 0, 1) or not ctx.no_block(d):
        return None
    size = ctx.integer(d, d.args[0], 512, 4096, "bufsize") if d.args else 1232
    if size is None:
        return None
    if size == KDNS_UDP:
        ctx.explain(d, NO_EFFECT, f"kdns already advertises and sends at most {KDNS_UDP} bytes over UDP")
    elif size < KDNS_UDP:
        ctx.explain(d, DATA, f"kdns sends up to {KDNS_UDP} bytes over UDP today; kept as Translation.bufsize ({size})")
    else:
        ctx.explain(d, WARNING, f"kdns never sends more than {KDNS_UDP} bytes over UDP: larger answers are truncated "
                                "and go over TCP")
    return size


def loadbalance(ctx: Context, d: Directive, block: Block) -> LoadBalance | None:
    if d.args and d.args[0] == "weighted":
        ctx.refuse(d, "weighted load balancing (a weights file) is not supported by kdns")
        return None
    if d.args not in ((), ("round_robin",)):
        ctx.refuse(d, f"unknown loadbalance policy {' '.join(d.args)!r}")
        return None
    prefer: list[str] = []
    for line in d.block or ():
        if line.name != "prefer":
            ctx.refuse(line, f"unknown loadbalance property {line.name!r}")
            return None
        for text in line.args:
            try:
                prefer.append(str(ipaddress.ip_network(text, strict=False)))
            except ValueError:
                ctx.refuse(line, f"invalid CIDR {text!r}")
                return None
    ctx.explain(d, DATA, "CoreDNS shuffles the A, AAAA and MX records of each answer; kdns returns them in the same order "
                         "every time today: kept as Translation.loadbalance")
    return LoadBalance("round_robin", tuple(prefer), d.origin)


def loop(ctx: Context, d: Directive, block: Block) -> None:
    if ctx.arity(d, 0, 0) and ctx.no_block(d):
        ctx.explain(d, NO_EFFECT, "kdns detects forwarding loops itself at start: it refuses to start when an upstream "
                                  "is its own address or sends its probe query back to it")


def reload(ctx: Context, d: Directive, block: Block) -> Reload | None:
    if not ctx.arity(d, 0, 2) or not ctx.no_block(d):
        return None
    interval = ctx.duration(d, d.args[0], "reload interval") if d.args else 30.0
    jitter = ctx.duration(d, d.args[1], "reload jitter") if len(d.args) > 1 else 15.0
    if interval is None or jitter is None:
        return None
    if interval < 2:
        ctx.refuse(d, "the interval must be at least 2s (CoreDNS's minimum)")
        return None
    if jitter and jitter < 1:
        ctx.refuse(d, "the jitter must be 0 or at least 1s (CoreDNS's minimum)")
        return None
    jitter = min(jitter, interval / 2)
    if not ctx.option("reload-interval", interval, d):
        return None
    ctx.explain(d, OPTION, f"reload-interval {interval:g}: the Corefile and its imports are checked this often (CoreDNS "
                           f"adds up to ±{jitter / 2:g} s of jitter); a broken new version leaves the old one serving")
    return Reload(interval, jitter, d.origin)


def not_supported(ctx: Context, d: Directive, block: Block) -> None:
    if d.name in HARMLESS:
        ctx.explain(d, NO_EFFECT, HARMLESS[d.name])
        return
    reason = NOT_SUPPORTED.get(d.name)
    ctx.unsupported(d, f"the {d.name} plugin is not supported: {reason}" if reason
                    else f"unknown directive {d.name!r}: not a plugin kdns knows")
