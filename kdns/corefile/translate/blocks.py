"""Server blocks: which one is the main one, where kdns listens, and the walk over directives.

CoreDNS hands a query to the block with the longest zone that is the query name or one of its
parents, among the blocks on the port and address the query came in on. kdns has one set of
zones served on every listen address, so:

- the block holding `kubernetes` is the main one; its keys' ports and its `bind` addresses
  are where kdns listens (no `bind`: every address of both families, kdns's `:PORT`);
- every other block must listen on the same ports and addresses, and must not take names
  from the cluster or reverse zones; it may forward (a stub domain, or the default upstreams
  for a `.` block beside a main block for a narrower zone), and carry hosts, template and
  rewrite data, cache, log and the operational directives. Anything else is refused;
- server keys on other schemes (tls://, https://, grpc://, quic://) are refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from kdns.corefile.keys import check_overlaps, parse_key
from kdns.corefile.model import Corefile, CorefileError, Directive, ServerBlock, ServerKey
from kdns.corefile.translate import cache as cache_mod
from kdns.corefile.translate import forward as forward_mod
from kdns.corefile.translate import hosts, kubernetes, rewrite, server
from kdns.corefile.translate.context import NO_EFFECT, OPTION, REFUSED, WARNING, Block, Context, head
from kdns.corefile.translate.values import Explanation, ServerZones

Handler = Callable[[Context, Directive, Block], object]
HANDLERS: dict[str, tuple[str | None, Handler]] = {  # name -> (Translation field it feeds, handler)
    "kubernetes": ("kubernetes", kubernetes.kubernetes), "k8s_external": ("externals", kubernetes.k8s_external),
    "autopath": (None, kubernetes.autopath), "hosts": ("hosts", hosts.hosts), "rewrite": ("rewrites", rewrite.rewrite),
    "template": ("templates", rewrite.template), "health": (None, server.health), "ready": (None, server.ready),
    "prometheus": (None, server.prometheus), "log": ("logs", server.log), "errors": (None, server.errors),
    "debug": (None, server.debug), "bufsize": ("bufsize", server.bufsize), "loadbalance": ("loadbalance", server.loadbalance),
    "loop": (None, server.loop), "reload": ("reload", server.reload),
}
ONCE = {"kubernetes", "k8s_external", "autopath", "cache", "hosts", "errors", "loop", "ready", "prometheus", "bufsize",
        "loadbalance", "reload", "health", "debug"}
ANSWERING = {"forward", "proxy", "hosts", "template"}


def walk(ctx: Context, corefile: Corefile, dns_port: int) -> dict[str, Any]:
    """Translate every block into ctx; returns {"kubernetes": ..., "forwards": [...], ...} for the Translation."""
    blocks = [b for b in (_rekey(ctx, b, dns_port) for b in corefile.blocks) if b is not None]
    overlaps: list[CorefileError] = []
    check_overlaps(blocks, overlaps)  # again: -dns.port may make two keys the same
    known = {(e.origin, e.message) for e in corefile.errors}
    ctx.problems += [e for e in overlaps if (e.origin, e.message) not in known]
    main = next((b for b in blocks if b.directive("kubernetes")), None)
    if main is None:
        where = corefile.blocks[0].origin if corefile.blocks else None
        if where is not None:
            ctx.refuse(Directive("kubernetes", (), where), "no server block has a kubernetes directive: kdns serves a "
                                                          "Kubernetes cluster's names and needs one")
        return {}
    ports = sorted({k.port for k in main.keys})
    hosts_ = _bind(ctx, main)
    listen = [addr for port in ports for addr in _listen(hosts_, port)]
    ctx.option("listen", listen, None, main.origin)
    zones = tuple(dict.fromkeys(k.zone for k in main.keys))
    k8s_zones = _cluster_zones(main, zones)
    notes = {id(main): f"the main server block: listen {', '.join(listen)}"
                       + (" (every address, both families)" if hosts_ == [""] else "")}
    for block in blocks:
        if block is not main and (note := _other_block(ctx, block, main, ports, hosts_, k8s_zones)):
            notes[id(block)] = note
    found: dict[str, Any] = {"forwards": [], "caches": []}
    all_zones = [k.zone for b in blocks if id(b) in notes for k in b.keys]
    found["blocks"] = [ServerZones(tuple(dict.fromkeys(k.zone for k in b.keys)), b is main, b.origin)
                       for b in blocks if id(b) in notes]
    for block in blocks:
        if id(block) in notes:
            ctx.note(block.origin, " ".join(dict.fromkeys(k.text for k in block.keys)), OPTION, notes[id(block)])
            _walk_block(ctx, block, block is main, found)
    k8s = found.get("kubernetes", [None])[0]
    forward_mod.route(ctx, found["forwards"], k8s, all_zones)
    root = next((b for b in blocks if id(b) in notes and any(k.zone == "." for k in b.keys)), main)
    cache_mod.settle(ctx, found["caches"], tuple(dict.fromkeys(k.zone for k in root.keys)), k8s, root.origin)
    _absent(ctx, main, found)
    return found


def _cluster_zones(main: ServerBlock, zones: tuple[str, ...]) -> tuple[str, ...]:
    """The non-reverse zones of the main block's kubernetes directive (its block's zones when it names none)."""
    d = main.directive("kubernetes")[0]
    named = [k.zone for i, text in enumerate(d.args) for k in parse_key(text, d.origin_of(i))[0]] or list(zones)
    return tuple(z for z in named if z != "." and not kubernetes.is_reverse(z))


def _rekey(ctx: Context, block: ServerBlock, dns_port: int) -> ServerBlock | None:
    """The block with its keys read again with -dns.port as the default; non-DNS schemes refused."""
    keys: list[ServerKey] = []
    for key in block.keys:
        again = [k for k in parse_key(key.text, key.origin, dns_port)[0] if k.zone == key.zone] or [key]
        if key.transport != "dns":
            what = {"tls": "DNS over TLS", "https": "DNS over HTTPS", "https3": "DNS over HTTP/3", "quic": "DNS over QUIC",
                    "grpc": "DNS over gRPC", "unix": "DNS on a unix socket"}.get(key.transport, key.transport)
            ctx.unsupported(Directive(key.text, (), key.origin), f"{what} server blocks are not supported: kdns serves plain "
                                                                 "DNS over UDP and TCP")
            continue
        keys += again
    if not keys:
        return None
    return ServerBlock(tuple(keys), block.directives, block.origin) if keys != list(block.keys) else block


def _bind(ctx: Context, block: ServerBlock) -> list[str]:
    """The addresses the block's `bind` lines give ("" for every address), explained."""
    out: list[str] = []
    for d in block.directive("bind"):
        addrs = list(d.args)
        excepts: list[str] = []
        for line in d.block or ():
            if line.name != "except" or not line.args:
                ctx.refuse(line, "bind takes except ADDRESS... in its block")
                return [""]
            excepts += line.args
        if not addrs:
            ctx.refuse(d, "at least one address is expected")
            continue
        good = []
        for text in addrs + excepts:
            try:
                good.append(str(ipaddress.ip_address(text)))
            except ValueError:
                ctx.refuse(d, f"{text!r} is not an IP address: kdns binds addresses, not interface names "
                              "(give the interface's addresses)")
                return [""]
        chosen = [a for a in good[: len(addrs)] if a not in good[len(addrs):]]
        out += [a for a in chosen if a not in out]
    return out or [""]


def _listen(hosts: list[str], port: int) -> list[str]:
    if hosts == [""]:
        return [f":{port}"]  # kdns's every-address form: 0.0.0.0 and [::] (IPv4 alone where the host has no IPv6)
    return [f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in hosts]


def _other_block(ctx: Context, block: ServerBlock, main: ServerBlock, ports: list[int], hosts_: list[str],
                 k8s_zones: tuple[str, ...]) -> str | None:
    """What this block is beside the main one, or None (refused) when kdns cannot express it."""
    head = Directive(" ".join(dict.fromkeys(k.text for k in block.keys)), (), block.origin)
    if block.directive("kubernetes"):
        first = main.directive("kubernetes")[0]
        for d in block.directive("kubernetes"):
            ctx.refuse(d, f"kdns serves one cluster: the kubernetes directive at {first.origin} is the main one")
        return None
    other_ports = sorted({k.port for k in block.keys})
    if other_ports != ports:
        ctx.refuse(head, f"listens on port {', '.join(map(str, other_ports))} while the kubernetes block listens on "
                         f"{', '.join(map(str, ports))}: kdns serves every zone on the same addresses")
        return None
    if _bind(Context(), block) != hosts_:
        ctx.refuse(head, "binds other addresses than the kubernetes block: kdns serves every zone on the same addresses")
        return None
    for key in block.keys:
        inside = next((s for s in (*k8s_zones, *kubernetes.REVERSE) if key.zone == s or key.zone.endswith("." + s)), None)
        if inside is not None:
            ctx.refuse(head, f"takes the names under {key.zone} from the kubernetes block ({inside}): kdns answers "
                             "every name in the cluster and reverse zones itself")
            return None
    if not any(d.name in ANSWERING for d in block.directives):
        ctx.refuse(head, "answers no names itself (no forward, hosts or template): CoreDNS would answer SERVFAIL for "
                         "them, which kdns cannot express")
        return None
    return (f"server block for {', '.join(dict.fromkeys(k.zone for k in block.keys))}: its names go to this block's "
            "hosts, templates and forwards, not the main block's")


def _walk_block(ctx: Context, block: ServerBlock, main: bool, found: dict[str, Any]) -> None:
    info = Block(tuple(dict.fromkeys(k.zone for k in block.keys)), main, block.origin)
    for d in block.directives:
        if d.name in ONCE and d.name in info.seen:
            ctx.refuse(d, f"{d.name} may be used once per server block (first at {info.seen[d.name].origin})")
            continue
        info.seen.setdefault(d.name, d)
        slot, problems = ctx.start(d), len(ctx.problems)
        if d.name in ("forward", "proxy"):
            rule = forward_mod.forward(ctx, d, info)
            if rule is not None:
                found["forwards"].append((rule, d, slot))
        elif d.name == "cache":
            cache_rule = cache_mod.cache(ctx, d, info)
            if cache_rule is not None:
                found["caches"].append((cache_rule, d, slot))
        elif d.name == "bind":
            ctx.explain(d, OPTION if main else NO_EFFECT, "listen: see the server block's line" if main
                        else "the same addresses as the main block")
        elif d.name in HANDLERS:
            field, handler = HANDLERS[d.name]
            value = handler(ctx, d, info)
            if field is not None and value is not None:
                found.setdefault(field, []).append(value)
        else:
            server.not_supported(ctx, d, info)
        if len(ctx.problems) > problems and not slot:
            slot.append(Explanation(d.origin, head(d), REFUSED, "not translated: see the problems of its lines"))
    ctx.current = None


def _absent(ctx: Context, main: ServerBlock, found: dict[str, Any]) -> None:
    """What CoreDNS does when a directive is missing, set explicitly where kdns's default differs."""
    names = {d.name for d in main.directives}
    if "health" not in names and ctx.option("lameduck", 0.0, None, main.origin):
        ctx.note(main.origin, "(no health)", OPTION, "lameduck 0: without health CoreDNS exits at once on SIGTERM")
    if not found.get("logs"):
        ctx.option("log-queries", False, None, main.origin)
    if "autopath" not in names:
        ctx.option("autopath", False, None, main.origin)
    if "upstream" not in ctx.options and "resolv-conf" not in ctx.options:
        ctx.option("resolv-conf", "none", None, main.origin)
        what = "names outside the zones" if not found["forwards"] else "names outside the zones and the stub domains"
        ctx.note(main.origin, "(no forward)" if not found["forwards"] else "(no forward for .)", WARNING,
                 f"resolv-conf none: {what} have no upstream, not even the pod's /etc/resolv.conf; CoreDNS answers them "
                 "SERVFAIL, kdns REFUSED")
