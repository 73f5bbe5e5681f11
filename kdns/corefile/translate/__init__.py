"""A parsed Corefile -> what kdns needs to serve it, refusing what kdns cannot honour.

    corefile = load("/etc/coredns/Corefile", DiskReader())
    t = translate(corefile, dns_port=53, ignore_unknown=False)
    t.check()                  # raises CorefileError (every refusal in .problems) unless t.ok
    t.options                  # {"zone": ["cluster.local"], "ttl": 30, "listen": [...], ...}
    for e in t.explanations:   # one or more per directive, in file order: `kdns corefile explain`
        print(e)

Pure: no I/O (hosts files are named, not read; the Corefile's reader holds ConfigMap keys).

The Translation (kdns/corefile/translate/values.py):

- `options` (a fresh dict each time; `config` holds it as pairs, tuples for lists): kdns's
  config-file form, keys from settings.OPTIONS, ready for the checks `kdns serve --config`
  runs. Set explicitly where CoreDNS's behaviour differs from kdns's own default: `pods`
  (CoreDNS: disabled), `ttl` (5), `cache-ttl`/`serve-stale` (0 with no cache / no serve_stale),
  `lameduck` (0 without health lameduck), `log-queries`, `autopath`, `allow-recursion`
  (0.0.0.0/0 and ::/0 when anything forwards: CoreDNS forwards for every client), `listen`.
  `origin_of(option)` names the directive that set it, for messages when kdns rejects a value.
- `blocks` (ServerZones): the server blocks kdns expresses, in file order: their zones, for
  routing a query to the block with the longest matching zone as CoreDNS does.
- Structured data for what options cannot say, each value frozen with its origin and, where
  it matters, its server block's zones: `kubernetes` (Kubernetes), `forwards` (ForwardRule,
  file order), `caches` (CacheRule, every block's), `hosts` (HostsSource), `rewrites`
  (RewriteRule, file order), `templates` (Template, file order), `externals` (ExternalZone),
  `logs` (LogRule), `reload` (Reload), `loadbalance` (LoadBalance), `bufsize` (int).
- `explanations`: Explanation(origin, directive, kind, effect), kind one of option, data,
  no effect, warning, refused (values.KINDS). Entries not tied to a line (a server block's
  keys, "(no cache)") explain what a block means or what a missing directive implies.
- `problems`: the Corefile's own errors, then every refusal, as CorefileError (file:line and
  message); `ok` is True when there are none. `warnings`: the Corefile's warnings, then each
  warning entry. `files` and `globs`: what a reload must watch (from the Corefile).

`ignore_unknown=True` turns refusals of unknown and unsupported plugins, of DoT/DoH/gRPC
server blocks and of tls:// or https:// forward targets into warnings ("ignored"); every other
refusal stands. `dns_port` is CoreDNS's -dns.port: the port of keys that name none.
"""

from __future__ import annotations

from typing import Any

from kdns.corefile.keys import DNS_PORT
from kdns.corefile.model import Corefile
from kdns.corefile.translate.blocks import walk
from kdns.corefile.translate.context import Context
from kdns.corefile.translate.values import KINDS, Explanation, Translation

__all__ = ["KINDS", "Explanation", "Translation", "translate"]  # the other values: kdns.corefile.translate.values


def translate(corefile: Corefile, *, dns_port: int = DNS_PORT, ignore_unknown: bool = False) -> Translation:
    ctx = Context(ignore_unknown)
    found = walk(ctx, corefile, dns_port) if corefile.blocks else {}
    config = tuple((name, tuple(value) if isinstance(value, list) else value) for name, value in ctx.options.items())

    def first(field: str) -> Any:
        values = found.get(field) or [None]
        return values[0]

    return Translation(
        config=config,
        option_origins=tuple(ctx.origins.items()),
        blocks=tuple(found.get("blocks", ())),
        kubernetes=first("kubernetes"),
        forwards=tuple(rule for rule, _, _ in found.get("forwards", ())),
        caches=tuple(rule for rule, _, _ in found.get("caches", ())),
        hosts=tuple(found.get("hosts", ())),
        rewrites=tuple(found.get("rewrites", ())),
        templates=tuple(found.get("templates", ())),
        externals=tuple(found.get("externals", ())),
        logs=tuple(found.get("logs", ())),
        reload=first("reload"),
        loadbalance=first("loadbalance"),
        bufsize=first("bufsize"),
        explanations=ctx.explanations(),
        problems=tuple(corefile.errors) + tuple(ctx.problems),
        warnings=tuple(corefile.warnings) + tuple(ctx.warnings),
        files=corefile.files,
        globs=corefile.globs,
    )
