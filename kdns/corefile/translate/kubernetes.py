"""`kubernetes`, `k8s_external` and `autopath`: the cluster's own names.

CoreDNS's defaults where the Corefile says nothing: `pods disabled` (kdns's own default is
insecure, so the translation always sets `pods`), `ttl 5` (0..3600), no namespace or label
filter, `startup_timeout 5s`, in-cluster credentials; zones from the block's keys when the
directive names none.
"""

from __future__ import annotations

from typing import Any

from kdns.corefile.model import Directive
from kdns.corefile.translate.context import DATA, NO_EFFECT, OPTION, WARNING, Block, Context, zones_of
from kdns.corefile.translate.values import ExternalZone, Kubernetes

REVERSE = ("in-addr.arpa", "ip6.arpa")
MAX_TTL = 3600
PODS = ("disabled", "insecure", "verified")
API_RATE = ("apiserver_qps", "apiserver_burst", "apiserver_max_inflight")
NOT_IN_KDNS = {
    "namespace_labels": "kdns filters namespaces by name (namespaces), not by label",
    "multicluster": "kdns has no Multi-Cluster Services (ServiceImport) support",
    "zonal": "kdns has no zone-scoped (pin/prefer._zone) names",
    "tls": "kdns reaches a remote API server through a kubeconfig (kubeconfig PATH), not client certificate files",
}


def is_reverse(zone: str) -> bool:
    return any(zone == r or zone.endswith("." + r) for r in REVERSE)


def kubernetes(ctx: Context, d: Directive, block: Block) -> Kubernetes | None:
    zones = zones_of(ctx, d, d.args, block)
    if zones is None:
        return None
    forward = tuple(z for z in zones if not is_reverse(z))
    reverse = tuple(z for z in zones if is_reverse(z))
    if not forward:
        ctx.refuse(d, "names only reverse zones: the kubernetes plugin needs a cluster domain (CoreDNS refuses this too)")
        return None
    if "." in forward:
        ctx.refuse(d, "serves the root zone: kdns needs a cluster domain (like cluster.local) to put Services under")
        return None
    outside = [z for z in forward if not any(z == b or z.endswith("." + b) or b == "." for b in block.zones)]
    if outside:
        ctx.refuse(d, f"{', '.join(outside)} lies outside this server block's zones ({', '.join(block.zones)}): "
                      "CoreDNS would never hand it a query")
        return None
    values: dict[str, Any] = {"pods": "disabled", "ttl": 5, "namespaces": (), "labels": None, "fallthrough": (), "noendpoints": False,
              "ignore_empty_service": False, "endpoint_pod_names": False, "startup_timeout": 5.0}
    ok = True
    for line in d.block or ():
        ok = _line(ctx, d, line, values) and ok
    if not ok:
        return None
    ctx.option("zone", list(forward), d)
    ctx.option("pods", values["pods"], d)
    ctx.option("ttl", values["ttl"], d)
    if values["namespaces"]:
        ctx.option("namespaces", list(values["namespaces"]), d)
    if values["labels"] is not None:
        ctx.option("labels", values["labels"], d)
    if values["startup_timeout"] != 5.0:
        ctx.option("startup-timeout", values["startup_timeout"], d)
    k8s = Kubernetes(forward, reverse, values["pods"], values["ttl"], tuple(values["namespaces"]), values["labels"],
                     values["fallthrough"], values["noendpoints"], values["ignore_empty_service"], values["endpoint_pod_names"],
                     values["startup_timeout"], d.origin)
    effect = f"zone {', '.join(forward)}; pods {k8s.pods}; ttl {k8s.ttl}"
    if "pods" not in {line.name for line in d.block or ()}:
        effect += " (CoreDNS's default is pods disabled; kdns's own default, insecure, is overridden)"
    ctx.explain(d, OPTION, effect + "; cluster names are answered live from the index, never from the forward cache")
    missing = [r for r in REVERSE if not any(z == r for z in reverse)]
    if missing:
        ctx.explain(d, WARNING, f"CoreDNS would answer PTR only under {', '.join(reverse) or 'no reverse zone'}; "
                                f"kdns answers PTR for every cluster address under in-addr.arpa and ip6.arpa")
    _fallthrough(ctx, d, k8s)
    return k8s


def _fallthrough(ctx: Context, d: Directive, k8s: Kubernetes) -> None:
    ft = k8s.fallthrough
    reverse_ft = "." in ft or all(any(r == z or r.endswith("." + z) for z in ft) for r in REVERSE)
    if k8s.reverse_zones and not reverse_ft:
        ctx.explain(d, WARNING, "without fallthrough in-addr.arpa ip6.arpa CoreDNS answers NXDOMAIN for reverse names it "
                                "does not know; kdns forwards them upstream")


def _line(ctx: Context, d: Directive, line: Directive, v: dict[str, Any]) -> bool:
    name, args = line.name, line.args
    if name == "pods":
        if len(args) != 1 or args[0] not in PODS:
            ctx.refuse(line, f"pods takes one of {', '.join(PODS)}")
            return False
        v["pods"] = args[0]
        ctx.explain(line, OPTION, f"pods {args[0]}" + (" (kdns watches Pods for this)" if args[0] == "verified" else ""))
    elif name == "ttl":
        if not ctx.arity(line, 1, 1):
            return False
        ttl = ctx.integer(line, args[0], 0, MAX_TTL, "ttl")
        if ttl is None:
            return False
        v["ttl"] = ttl
        ctx.explain(line, OPTION, f"ttl {ttl}")
    elif name == "namespaces":
        if not ctx.arity(line, 1):
            return False
        v["namespaces"] = tuple(dict.fromkeys((*v["namespaces"], *args)))
        ctx.explain(line, OPTION, f"namespaces {','.join(v['namespaces'])}")
    elif name == "labels":
        if not ctx.arity(line, 1):
            return False
        v["labels"] = " ".join(args)
        ctx.explain(line, OPTION, f"labels {v['labels']!r}")
    elif name == "fallthrough":
        zones = ctx.fallthrough(line)
        if zones is None:
            return False
        v["fallthrough"] = zones
        plain = set(zones) == set(REVERSE)
        ctx.explain(line, NO_EFFECT if plain else DATA,
                    "kdns does this itself: reverse names it does not know go upstream" if plain
                    else "kept as Translation.kubernetes.fallthrough")
    elif name in ("noendpoints", "endpoint_pod_names"):
        if not ctx.arity(line, 0, 0):
            return False
        v[name] = True
        what = {"noendpoints": "no endpoint names and NXDOMAIN for headless Services (no EndpointSlice watch)",
                "endpoint_pod_names": "endpoints without a hostname named after their Pod"}[name]
        ctx.explain(line, DATA, f"{what}: kdns does not do this yet; kept as Translation.kubernetes.{name}")
    elif name == "ignore":
        if args != ("empty_service",):
            ctx.refuse(line, "ignore takes empty_service")
            return False
        v["ignore_empty_service"] = True
        ctx.explain(line, DATA, "NXDOMAIN for Services without ready endpoints: kdns does not do this yet; "
                                "kept as Translation.kubernetes.ignore_empty_service")
    elif name == "startup_timeout":
        if not ctx.arity(line, 1, 1):
            return False
        value = ctx.duration(line, args[0], "startup_timeout")
        if value is None:
            return False
        v["startup_timeout"] = value
        ctx.explain(line, OPTION, f"startup-timeout {value:g}: kdns serves at once and answers SERVFAIL for cluster names "
                                  "until synced; CoreDNS waits up to this long before serving")
    elif name == "kubeconfig":
        if not ctx.arity(line, 1, 2):
            return False
        if len(args) == 2:
            ctx.refuse(line, "kdns uses the kubeconfig's current context; a CONTEXT argument is not supported "
                             "(make it current in the file)")
            return False
        if ctx.option("kubeconfig", args[0], line):
            ctx.explain(line, OPTION, f"kubeconfig {args[0]}")
    elif name == "endpoint":
        if not ctx.arity(line, 1):
            return False
        if any(other.name == "kubeconfig" for other in d.block or ()):
            ctx.explain(line, NO_EFFECT, "CoreDNS ignores endpoint when kubeconfig is given")
        elif ctx.option("apiserver", args[0], line):
            more = "; CoreDNS uses only the first endpoint" if len(args) > 1 else ""
            ctx.explain(line, OPTION, f"apiserver {args[0]} (no authentication, as CoreDNS without tls){more}")
    elif name in API_RATE:
        if not ctx.arity(line, 1, 1):
            return False
        ctx.explain(line, NO_EFFECT, "kdns lists once and then watches; it makes no other API requests to rate-limit")
    elif name in ("upstream", "resyncperiod"):
        why = {"upstream": "removed in CoreDNS 1.7: ExternalName targets are resolved through kdns's upstreams",
               "resyncperiod": "removed in CoreDNS 1.7: kdns watches the API and never resyncs on a timer"}[name]
        ctx.explain(line, WARNING, f"accepted and ignored: {why}")
    elif name in NOT_IN_KDNS:
        ctx.refuse(line, NOT_IN_KDNS[name])
        return False
    else:
        ctx.refuse(line, f"unknown kubernetes property {name!r} (CoreDNS refuses it too)")
        return False
    return True


def k8s_external(ctx: Context, d: Directive, block: Block) -> ExternalZone | None:
    if not block.main:
        ctx.refuse(d, "k8s_external answers from the kubernetes plugin of its own block; this block has none")
        return None
    zones = zones_of(ctx, d, d.args, block)
    if zones is None:
        return None
    fallthrough: tuple[str, ...] | None
    apex, ttl, headless, fallthrough = "dns", 5, False, ()
    for line in d.block or ():
        if line.name == "ttl" and ctx.arity(line, 1, 1):
            value = ctx.integer(line, line.args[0], 0, MAX_TTL, "ttl")
            if value is None:
                return None
            ttl = value
        elif line.name == "apex" and ctx.arity(line, 1):
            apex = line.args[0]
        elif line.name == "headless":
            headless = True
        elif line.name == "fallthrough":
            fallthrough = ctx.fallthrough(line)
            if fallthrough is None:
                return None
        else:
            if line.name in ("ttl", "apex"):
                return None
            ctx.refuse(line, f"unknown k8s_external property {line.name!r}")
            return None
    ctx.explain(d, DATA, f"external zone {', '.join(zones)} (apex {apex}, ttl {ttl}{', headless' if headless else ''}): "
                         "kept as Translation.externals for kdns's external zone")
    return ExternalZone(zones, apex, ttl, headless, fallthrough, d.origin)


def autopath(ctx: Context, d: Directive, block: Block) -> bool:
    if not ctx.arity(d, 1) or not ctx.no_block(d):
        return False
    if not block.main:
        ctx.refuse(d, "autopath @kubernetes needs the kubernetes plugin in its own block")
        return False
    if d.args[-1] != "@kubernetes":
        ctx.refuse(d, "kdns's autopath uses each Pod's search path as the kubernetes plugin knows it "
                      "(autopath @kubernetes); a resolv.conf search list is not supported")
        return False
    if ctx.option("autopath", True, d):
        ctx.explain(d, OPTION, "autopath: kdns watches Pods to know who asks (CoreDNS needs pods verified for that)")
    return True
