"""`hosts [FILE [ZONES...]] { INLINE; ttl; reload; no_reverse; fallthrough [ZONES] }` -> HostsSource.

CoreDNS (plugin/hosts): FILE defaults to /etc/hosts (read even when inline lines are given;
inline entries win), ZONES to the block's zones, ttl 3600 (1..65535), reload every 5 s (0: never),
PTR records for the addresses unless `no_reverse`. A block line that is not a property is an
inline hosts line ("IP NAME..."), but only before `fallthrough`. Lines whose address does not
parse, and names outside the zones, are skipped by CoreDNS; here they are skipped with a warning.
A name in the zones but not in the hosts data is SERVFAIL unless `fallthrough` covers it.
"""

from __future__ import annotations

import ipaddress

from kdns.corefile.keys import normalise_zone
from kdns.corefile.model import Directive
from kdns.corefile.translate.context import DATA, WARNING, Block, Context, zones_of
from kdns.corefile.translate.values import HostsEntry, HostsSource

DEFAULT_FILE = "/etc/hosts"


def hosts(ctx: Context, d: Directive, block: Block) -> HostsSource | None:
    path = d.args[0] if d.args else DEFAULT_FILE
    zones = zones_of(ctx, d, d.args[1:], block)
    if zones is None:
        return None
    fallthrough: tuple[str, ...] | None
    ttl, reload, reverse, fallthrough = 3600, 5.0, True, ()
    inline: list[HostsEntry] = []
    saw_fallthrough = False
    for line in d.block or ():
        name, args = line.name, line.args
        if name == "fallthrough":
            fallthrough = ctx.fallthrough(line)
            if fallthrough is None:
                return None
            saw_fallthrough = True
            ctx.explain(line, DATA, f"names the hosts data lacks under {' '.join(fallthrough)} go on down the chain")
        elif name == "no_reverse":
            reverse = False
            ctx.explain(line, DATA, "no PTR records for the hosts' addresses")
        elif name == "ttl":
            if not ctx.arity(line, 1, 1) or (value := ctx.integer(line, args[0], 1, 65535, "ttl")) is None:
                return None
            ttl = value
            ctx.explain(line, DATA, f"the hosts records have TTL {ttl}")
        elif name == "reload":
            if not ctx.arity(line, 1, 1) or (every := ctx.duration(line, args[0], "reload")) is None:
                return None
            reload = every
            ctx.explain(line, DATA, f"the file is re-read every {every:g} s" if every else "the file is read once")
        elif name == "fallthrough_unsupported":
            ctx.refuse(line, "not supported: kdns's hosts data answers NODATA for other types of a name it holds")
            return None
        elif saw_fallthrough:
            ctx.refuse(line, f"unknown hosts property {name!r} (inline lines must come before fallthrough)")
            return None
        else:
            entry = _entry(ctx, line, zones)
            if entry is not None:
                inline.append(entry)
    source = HostsSource(path, tuple(inline), zones, ttl, reload, reverse, fallthrough, block.zones, d.origin)
    what = f"{len(inline)} inline entr{'y' if len(inline) == 1 else 'ies'}, " if inline else ""
    ctx.explain(d, DATA, f"hosts data for {', '.join(zones)}: {what}the file {path} (re-read every {reload:g} s"
                         f"{'' if reload else ': never'}), ttl {ttl}{'' if reverse else ', no PTR records'}, "
                         f"fallthrough {' '.join(fallthrough) if fallthrough else 'none'}: kept as Translation.hosts "
                         "(CoreDNS asks hosts before kubernetes)")
    bare = [z for z in zones if not any(z == f or z.endswith("." + f) or f == "." for f in fallthrough)]
    if bare:
        but = f" (fallthrough covers only {' '.join(fallthrough)})" if fallthrough else ""
        ctx.explain(d, WARNING, f"names under {', '.join(bare)} that the hosts data lacks get SERVFAIL{but}"
                                + (", cluster names included: hosts comes before kubernetes" if "." in bare else ""))
    return source


def _entry(ctx: Context, line: Directive, zones: tuple[str, ...]) -> HostsEntry | None:
    text = line.name.split("%", 1)[0]
    try:
        address = str(ipaddress.ip_address(text))
    except ValueError:
        ctx.explain(line, WARNING, f"skipped, as CoreDNS skips it: {line.name!r} is not an IP address")
        return None
    if not line.args:
        ctx.explain(line, WARNING, "skipped, as CoreDNS skips it: no name after the address")
        return None
    names: list[str] = []
    skipped: list[str] = []
    for raw in line.args:
        name, problem = normalise_zone(raw)
        inside = not problem and any(z == "." or name == z or name.endswith("." + z) for z in zones)
        (names if inside else skipped).append(name if inside else raw)
    if skipped:
        ctx.explain(line, WARNING, f"skipped, as CoreDNS skips them: {', '.join(skipped)} (not names under "
                                   f"{', '.join(zones)})")
    if not names:
        return None
    ctx.explain(line, DATA, f"{', '.join(names)} -> {address}")
    return HostsEntry(address, tuple(names), line.origin)
