"""Every option of `kdns serve`, described once: the table the flags, the config file, the
reload rules, `--workers` and the defaults of the configuration values all come from.

An option's name is its long flag without `--` and its key in the config file. Beside its
type, default, help and group (in `--help`), the table says whether a reload can change it
(`reload`; the others take effect at start only), whether each `--workers` worker gets its
own value rather than the first process's (`per_worker`), and which `ServeConfig` fields it
decides (`fields`, dotted paths; by default the field of the same name). Pure: no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

MAX_TTL = 3600  # --ttl, --external-ttl
MAX_HOSTS_TTL = 65535  # --hosts-ttl (CoreDNS's hosts plugin takes 1-65535)
MAX_WORKERS = 256  # --workers
# The longest zone: 196 characters of Kubernetes names (three 63-character labels, "svc",
# four dots) before it leave 57 of the 253 a DNS name may have.
MAX_ZONE = 253 - (3 * 63 + 3 + 4)
# The upstream-* options of an upstream group (kdns.pool): the default group's, and the
# stub domains' that do not set their own.
POOL_POLICIES = ("random", "round_robin", "sequential")
POOL_TRANSPORTS = ("udp", "client", "tcp")
POOL_FIELDS = ("upstream_options", "stub_options")

SOURCE, ANSWERS, EXTERNAL, OUTSIDE, WEB, FORWARDING, OPERATION = (
    "source", "answers", "external", "outside", "web", "forwarding", "operation")
GROUPS = {
    SOURCE: "source (one of them; with none, KUBECONFIG, then in-cluster config, then the bundled demo cluster)",
    ANSWERS: "answers",
    EXTERNAL: "external zone (Services' external and load-balancer addresses by name, as CoreDNS's k8s_external)",
    OUTSIDE: "names outside the zones: records kdns holds for them, and what the others get without an upstream",
    WEB: "Ingress and Gateway hosts (the names an ingress controller or a Gateway routes, resolved inside the cluster)",
    FORWARDING: "forwarding (names outside the zones; without an upstream see --outside-names)",
    OPERATION: "operation",
}


class PodsMode(str, enum.Enum):
    """--pods, CoreDNS's `pods` option: how `a-b-c-d.<ns>.pod.<zone>` names are answered."""

    DISABLED = "disabled"
    INSECURE = "insecure"
    VERIFIED = "verified"  # only for addresses of Pods that exist in that namespace


class OutsideNames(str, enum.Enum):
    """--outside-names: what a name outside every zone gets when no upstream takes it and
    kdns holds no record for it."""

    REFUSED = "refused"  # "not my business": a resolver tries elsewhere (the default of `kdns serve`)
    NXDOMAIN = "nxdomain"  # a closed world: the name does not exist (the default of kdns.testing)


@dataclass(frozen=True)
class Option:
    name: str
    kind: type  # str, int, float or bool
    default: Any
    help: str
    group: str
    repeat: bool = False
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    reload: bool = True  # a reload (SIGHUP, the config file changing) can change it
    per_worker: bool = False  # each --workers worker gets a value of its own (kdns.workers)
    fields: tuple[str, ...] = ()  # the ServeConfig fields it decides; () means its own name

    @property
    def paths(self) -> tuple[str, ...]:
        """The dotted ServeConfig paths this option decides ("dns.ttl")."""
        return self.fields or (self.name.replace("-", "_"),)


OPTIONS: tuple[Option, ...] = (
    Option("manifests", str, [], "a .yaml/.yml/.json file, or a directory of them (read one level deep); repeatable. "
           "Namespaces, Services, EndpointSlices and Pods are used; changes are picked up while serving", SOURCE, True, "PATH",
           reload=False),
    Option("manifest-max-bytes", int, 16 << 20, "the largest manifest file read, in bytes; a YAML file may also hold at most "
           "one node per 16 bytes of it, counting each alias as a copy of what it names. A file over either is reported "
           "and keeps its previous objects", SOURCE, metavar="BYTES"),
    Option("kubeconfig", str, None, "follow the cluster of this kubeconfig file", SOURCE, metavar="PATH", reload=False,
           fields=("api",)),
    Option("apiserver", str, None, "follow the API server at URL, unauthenticated (test servers)", SOURCE, metavar="URL",
           reload=False, fields=("api",)),
    Option("in-cluster", bool, False, "follow the cluster kdns runs in, with its pod's service account, whatever "
           "KUBECONFIG says (a Corefile's kubernetes directive without endpoint or kubeconfig means this)", SOURCE,
           reload=False, fields=("api",)),
    Option("listen", str, ["127.0.0.1:5353"], "address to serve UDP and TCP on; repeatable; [::1]:5353 for IPv6, :5353 for every address of both families; "
           "port 0 picks a free port", ANSWERS, True, "HOST:PORT", reload=False, per_worker=True,
           fields=("listen", "dns.ns_addresses")),  # ns.dns.<zone> resolves to the addresses listened on,
    Option("zone", str, ["cluster.local"], "cluster domain; repeatable, the first is used in PTR answers. "
           "in-addr.arpa and ip6.arpa are always served", ANSWERS, True, "ZONE", fields=("dns.zones",)),
    Option("ttl", int, 5, f"TTL of the records, 0-{MAX_TTL}", ANSWERS, metavar="SECONDS", fields=("dns.ttl",)),
    Option("pods", str, PodsMode.INSECURE.value, "answer a-b-c-d.<ns>.pod.<zone> for any address in an existing namespace "
           "(insecure), only for addresses of Pods that exist there (verified: watches Pods), or never (disabled)",
           ANSWERS, choices=tuple(m.value for m in PodsMode), reload=False, fields=("dns.pods",)),
    Option("namespaces", str, [], "expose only these namespaces (comma-separated or repeated); names elsewhere are NXDOMAIN",
           ANSWERS, True, "NS[,NS...]", reload=False),
    Option("labels", str, None, "serve only Services (and their EndpointSlices) matching this label selector, "
           "e.g. 'dns!=off,tier in (web,api)'", ANSWERS, metavar="SELECTOR", reload=False),
    Option("external-zone", str, [], "serve the external addresses of Services (spec.externalIPs, then "
           "status.loadBalancer.ingress) as <svc>.<ns>.ZONE, authoritatively, to every client; repeatable, the first "
           "is used in PTR answers", EXTERNAL, True, "ZONE", fields=("dns.external_zones",)),
    Option("external-apex", str, "dns", "the label under each external zone that holds its name server: "
           "<zone> NS ns1.APEX.<zone>", EXTERNAL, metavar="LABEL", fields=("dns.external_apex",)),
    Option("external-ttl", int, 5, f"TTL of every record of the external zones, 0-{MAX_TTL}", EXTERNAL,
           metavar="SECONDS", fields=("dns.external_ttl",)),
    Option("external-headless", bool, False, "a headless Service without external addresses serves its ready "
           "endpoints in the external zones (<svc>.<ns>.<zone>, <hostname>.<svc>.<ns>.<zone>)", EXTERNAL,
           fields=("dns.external_headless",)),
    Option("external-fallthrough", str, [], "a name under ZONE (inside an external zone; '.' for every one) that kdns "
           "does not hold goes upstream instead of NXDOMAIN, as CoreDNS's k8s_external `fallthrough ZONE`; repeatable",
           EXTERNAL, True, "ZONE", fields=("dns.external_fallthrough",)),
    Option("hosts", str, [], "answer the names of this hosts file (IP NAME... lines, as /etc/hosts) ahead of "
           "forwarding, with PTR records for its addresses; repeatable (the first file naming a name wins); "
           "re-read when it changes", OUTSIDE, True, "PATH", reload=False),
    Option("hosts-ttl", int, 3600, f"TTL of the records of --hosts files, 1-{MAX_HOSTS_TTL} (CoreDNS's hosts plugin: "
           "3600)", OUTSIDE, metavar="SECONDS", reload=False),
    Option("hosts-reverse", bool, True, "PTR records for the addresses of --hosts files (--no-hosts-reverse: "
           "CoreDNS's no_reverse)", OUTSIDE, reload=False),
    Option("outside-names", str, OutsideNames.REFUSED.value, "what a name outside the zones gets when no upstream "
           "takes it and kdns holds no record for it: REFUSED (refused: not kdns's business), or NXDOMAIN "
           "(nxdomain: a closed world, as a test cluster with no way out; applications then see "
           "'not found', EAI_NONAME)", OUTSIDE, choices=tuple(m.value for m in OutsideNames),
           fields=("dns.outside_names",)),
    Option("ingress-hosts", bool, False, "answer every host of every Ingress (rules, TLS hosts, external-dns's hostname "
           "annotation) ahead of forwarding, with its target: external-dns's target annotation, else its load balancer's "
           "status (not a loopback address or localhost), else the ClusterIP of its class's controller Service; watches "
           "Ingresses and IngressClasses", WEB, reload=False, fields=("dns.ingress_hosts",)),
    Option("ingress-controller", str, [], "the Service of the ingress controller of CLASS ('*': every class), whose "
           "ClusterIP an Ingress of that class resolves to when it has no other target; repeatable. Without it, a "
           "class's controller is found when exactly one Service serving port 80 shares the IngressClass's "
           "app.kubernetes.io/instance (else app.kubernetes.io/name) label", WEB, True, "CLASS=NAMESPACE/SERVICE",
           fields=("dns.ingress_controllers",)),
    Option("ingress-class", str, [], "only Ingresses of this class count (spec.ingressClassName, the "
           "kubernetes.io/ingress.class annotation, or the default IngressClass); repeatable; none: every Ingress",
           WEB, True, "NAME", fields=("dns.ingress_classes",)),
    Option("gateway-hosts", bool, False, "answer the hostnames of HTTPRoutes, GRPCRoutes and TLSRoutes (Gateway API "
           "v1) that a Gateway accepted, as intersected with its listeners' hostnames, ahead of forwarding, with the "
           "Gateway's addresses, else the ClusterIP of the Service made for it; watches them when their CRDs are "
           "installed (looking again for them every 10 s)", WEB, reload=False, fields=("dns.gateway_hosts",)),
    Option("ignore-empty-services", bool, False, "a ClusterIP Service without ready endpoints has no names: NXDOMAIN, "
           "as CoreDNS's `ignore empty_service` (its ClusterIP keeps its PTR record)", ANSWERS,
           fields=("dns.ignore_empty_services",)),
    Option("cluster-fallthrough", str, [], "a name under ZONE (inside a cluster zone; '.' for every one) that the cluster "
           "does not hold goes upstream instead of NXDOMAIN, as CoreDNS's kubernetes `fallthrough ZONE`; repeatable. "
           "Names that exist without the asked type stay NODATA; without an upstream they stay NXDOMAIN", ANSWERS, True,
           "ZONE", fields=("dns.cluster_fallthrough",)),
    Option("endpoints", bool, True, "watch EndpointSlices (--no-endpoints: CoreDNS's noendpoints: headless Services, "
           "endpoint names and endpoint PTR records are NXDOMAIN, ignore-empty-services hides every ClusterIP Service)",
           ANSWERS, reload=False),
    Option("endpoint-pod-names", bool, False, "an endpoint without a hostname is named after its Pod (targetRef) "
           "rather than its dashed address, when the Pod's name is a DNS label (CoreDNS's endpoint_pod_names)", ANSWERS,
           reload=False),
    Option("udp-max-size", int, 1232, "the largest reply sent over UDP, 512-1232: a client that offers more (EDNS) gets "
           "at most this, larger answers are truncated (TC) and go over TCP (CoreDNS's bufsize)", ANSWERS,
           metavar="BYTES", fields=("dns.udp_max",)),
    Option("startup-timeout", float, 5.0, "warn when the first sync with the API takes longer; cluster names that kdns "
           "does not know yet get SERVFAIL until it completes", ANSWERS, metavar="SECONDS"),
    Option("upstream", str, [], "resolver for names outside the zones and unknown reverse names; repeatable",
           FORWARDING, True, "HOST[:PORT]", fields=("upstreams", "dns.forwarding")),
    Option("resolv-conf", str, None, "use the nameservers of this resolv.conf as upstreams (in a pod: /etc/resolv.conf, "
           "the default when kdns runs in-cluster and no --upstream is given; `none`: no resolv.conf, even there)",
           FORWARDING, metavar="PATH", fields=("upstreams", "dns.forwarding")),
    Option("stub-domain", str, [], "send names under DOMAIN to this resolver only (kube-dns stubDomains); repeatable. "
           "KEY=VALUE items after it set that domain's own upstream options (else the --upstream-* ones): policy, "
           "transport, max-fails, health-check, health-domain, health-recursion, e.g. "
           "corp.example=10.0.0.53,policy=sequential,max-fails=1", FORWARDING, True, "DOMAIN=HOST[:PORT][,KEY=VALUE...]",
           fields=("stub_domains", "dns.stub_domains", "stub_options")),
    Option("upstream-except", str, [], "forward no name under ZONE (SERVFAIL, as CoreDNS's forward `except` with no "
           "plugin after it); a deeper --stub-domain still takes its names; repeatable", FORWARDING, True, "ZONE",
           fields=("stub_domains", "dns.stub_domains", "dns.except_zones")),
    Option("upstream-default", str, [], "names under ZONE go to the default upstreams (--upstream, --resolv-conf, as "
           "they are read at start and at each reload) even inside a --stub-domain or --upstream-except zone: CoreDNS's "
           "forward `except ZONE` handing its names on to a later `forward .`; a deeper --stub-domain still takes its "
           "names; repeatable", FORWARDING, True, "ZONE", fields=("default_domains", "dns.default_domains")),
    Option("upstream-policy", str, "random", "the order upstreams are tried in for each question: a random order "
           "(random), each question starting at the next one (round_robin), or always the list's order, so the first "
           "healthy one takes every question (sequential); CoreDNS's forward policy", FORWARDING,
           choices=POOL_POLICIES, fields=POOL_FIELDS),
    Option("upstream-transport", str, "udp", "how upstreams are asked: UDP, then TCP when the reply is truncated (udp: "
           "CoreDNS's prefer_udp); over TCP when the client asked over TCP, else as udp (client: CoreDNS's default); "
           "over TCP only (tcp: CoreDNS's force_tcp)", FORWARDING, choices=POOL_TRANSPORTS, fields=POOL_FIELDS),
    Option("upstream-max-fails", int, 2, "failures in a row (questions or health probes) after which an upstream is "
           "down: asked only when no other is left, and probed until it answers; 0: never down (CoreDNS's max_fails)",
           FORWARDING, metavar="N", fields=POOL_FIELDS),
    Option("upstream-health-check", float, 0.5, "seconds between health probes of a down upstream (CoreDNS's "
           "health_check)", FORWARDING, metavar="SECONDS", fields=POOL_FIELDS),
    Option("upstream-health-domain", str, ".", "the health probe asks for DOMAIN IN NS (CoreDNS's health_check "
           "domain)", FORWARDING, metavar="DOMAIN", fields=POOL_FIELDS),
    Option("upstream-health-recursion", bool, True, "the health probe asks for recursion (RD); "
           "--no-upstream-health-recursion: CoreDNS's health_check no_rec", FORWARDING, fields=POOL_FIELDS),
    Option("upstream-timeout", float, 1.5, "timeout of one try", FORWARDING, metavar="SECONDS"),
    Option("upstream-max-concurrent", int, 0, "questions asked upstream at once at most (identical ones count once); "
           "beyond, REFUSED, as CoreDNS's forward max_concurrent; 0: no limit", FORWARDING, metavar="N"),
    Option("cache-ttl", int, 30, "cache forwarded answers at most this long", FORWARDING, metavar="SECONDS"),
    Option("cache-size", int, 10_000, "forwarded answers kept in the cache", FORWARDING, metavar="N"),
    Option("cache-max-bytes", int, 32 << 20, "the most the cache of forwarded answers may take, in bytes; beyond it "
           "(or --cache-size), the least recently used answers go first", FORWARDING, metavar="BYTES"),
    Option("cache-zone", str, [], "cache only forwarded answers for names under ZONE (CoreDNS's `cache TTL ZONE`); "
           "repeatable; none: every name. Other names are forwarded every time", FORWARDING, True, "ZONE", fields=("cache_policy",)),
    Option("cache-disable-success", str, [], "never cache positive answers for names under ZONE ('.' for every name), "
           "as CoreDNS's cache `disable success ZONE`; repeatable", FORWARDING, True, "ZONE", fields=("cache_policy",)),
    Option("cache-disable-denial", str, [], "never cache negative answers (NXDOMAIN, NODATA) for names under ZONE ('.' "
           "for every name), as CoreDNS's cache `disable denial ZONE`; repeatable", FORWARDING, True, "ZONE", fields=("cache_policy",)),
    Option("cache-denial-ttl", int, 0, "keep a negative answer at most this long, when less than --cache-ttl (CoreDNS's "
           "cache `denial CAPACITY TTL`); 0: --cache-ttl", FORWARDING, metavar="SECONDS", fields=("cache_policy",)),
    Option("cache-min-ttl", int, 0, "keep a positive answer at least this long (its records then say this TTL, counted "
           "down), at most --cache-ttl: CoreDNS's cache `success N TTL MINTTL`", FORWARDING, metavar="SECONDS", fields=("cache_policy",)),
    Option("cache-denial-min-ttl", int, 0, "keep a negative answer at least this long, at most --cache-ttl: CoreDNS's "
           "cache `denial N TTL MINTTL`", FORWARDING, metavar="SECONDS",
           fields=("cache_policy",)),
    Option("serve-stale", float, 3600.0, "when every upstream fails, serve answers expired for up to this long, "
           "with a 30 s TTL; 0 disables", FORWARDING, metavar="SECONDS"),
    Option("autopath", bool, False, "answer a pod's whole search path in one round trip (watches Pods to know who asks)",
           FORWARDING, reload=False, fields=("dns.autopath",)),
    Option("health", str, None, "serve liveness on http://ADDRESS/health (CoreDNS: :8080)", OPERATION, metavar="[HOST]:PORT",
           reload=False, per_worker=True, fields=("http.health",)),
    Option("ready", str, None, "serve readiness on http://ADDRESS/ready: 503 until synced and while shutting down "
           "(CoreDNS: :8181)", OPERATION, metavar="[HOST]:PORT", reload=False, per_worker=True, fields=("http.ready",)),
    Option("metrics", str, None, "serve Prometheus metrics on http://ADDRESS/metrics (CoreDNS: :9153)", OPERATION,
           metavar="[HOST]:PORT", reload=False, per_worker=True, fields=("http.metrics",)),
    Option("explain", str, None, "serve http://ADDRESS/explain?name=NAME&type=TYPE&namespace=NS: why a name gets its "
           "answer and which objects made it, for `kdns explain --server` (JSON; it names objects and files, so keep it "
           "on loopback or a private address)", OPERATION, metavar="[HOST]:PORT", reload=False, per_worker=True,
           fields=("http.explain",)),
    Option("allow-transfer", str, ["127.0.0.0/8", "::1/128"], "clients that may transfer the zones kdns serves (AXFR, "
           "IXFR; over TCP; CIDR, repeatable); others get REFUSED. Default: loopback; an empty list in the config file "
           "allows nobody", ANSWERS, True, "CIDR"),
    Option("allow-recursion", str, ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
           "100.64.0.0/10", "169.254.0.0/16", "fc00::/7", "fe80::/10"],
           "clients that may have names forwarded (CIDR, repeatable); others get REFUSED for them. Default: loopback, "
           "private, shared and link-local ranges", FORWARDING, True, "CIDR"),
    Option("rrl-rate", float, 0.0, "answer each client (IPv4 /24, IPv6 /56) at most this many times a second over "
           "UDP, in the spirit of BIND's response rate limiting; 0 disables", OPERATION, metavar="PER_SECOND"),
    Option("rrl-slip", int, 2, "of the answers held back by --rrl-rate, send every Nth truncated (TC), so that real "
           "clients retry over TCP; 0: send none", OPERATION, metavar="N"),
    Option("tcp-max-connections", int, 1000, "open TCP connections at most; beyond, the longest idle one is closed, "
           "or the new one if none is idle", OPERATION, metavar="N"),
    Option("tcp-message-timeout", float, 5.0, "a TCP query must arrive whole within this long once it has begun",
           OPERATION, metavar="SECONDS"),
    Option("tcp-max-queries", int, 10_000, "queries answered on one TCP connection before kdns closes it", OPERATION,
           metavar="N"),
    Option("tcp-max-per-client", int, 100, "open TCP connections from one client address at most; beyond, that "
           "client's longest idle one is closed, or the new one", OPERATION, metavar="N"),
    Option("tcp-send-timeout", float, 2.0, "close a TCP connection whose client does not take a reply within this long "
           "(it sends queries but does not read the answers)", OPERATION, metavar="SECONDS"),
    Option("workers", int, 1, "answer with this many processes (one per core), sharing the listen ports "
           "(SO_REUSEPORT); each keeps its own copy of the cluster; health, readiness and metrics are the first's",
           OPERATION, metavar="N", reload=False, per_worker=True),
    Option("lameduck", float, 5.0, "after SIGTERM, go on answering for this long (readiness 503), then drain TCP and exit",
           OPERATION, metavar="SECONDS"),
    Option("tcp-idle-timeout", float, 10.0, "close TCP connections idle for this long", OPERATION, metavar="SECONDS"),
    Option("reload-interval", float, 1.0, "how often to look for changed manifest and config files", OPERATION,
           metavar="SECONDS"),
    Option("log-level", str, "info", "least severe log messages shown", OPERATION, choices=("debug", "info", "warning", "error")),
    Option("log-format", str, "text", "text lines, or one JSON object per line", OPERATION, choices=("text", "json")),
    Option("log-queries", bool, False, "log every query (client, name, type, rcode)", OPERATION),
)
BY_NAME = {option.name: option for option in OPTIONS}

# Options that take effect only at start: a reload that changes them keeps the old values.
RESTART_ONLY = tuple(option.name for option in OPTIONS if not option.reload)


def default(name: str) -> Any:
    """An option's default value (lists as tuples: defaults are shared, never changed)."""
    value = BY_NAME[name].default
    return tuple(value) if isinstance(value, list) else value
