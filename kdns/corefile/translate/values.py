"""What a Corefile became: frozen values the serving path reads, each with the origin it came from.

Zones are written as the rest of kdns/corefile writes them: lowercase, no trailing dot, "."
for the root. A `fallthrough` is a tuple of zones: () for none, (".",) for every zone (what
CoreDNS's bare `fallthrough` means). Durations are seconds (float), TTLs whole seconds.

Where in CoreDNS's plugin chain each value sits matters to whoever serves it: inside one
server block a query passes rewrite -> autopath -> cache -> template -> hosts -> k8s_external
-> kubernetes -> forward (CoreDNS's plugin.cfg order, whatever the order in the file), and
each value says which block it belongs to (`block_zones`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kdns.corefile.model import CorefileError, Origin

# The order in which CoreDNS's plugins see a query inside one server block (plugin.cfg),
# restricted to the plugins the translator reads.
CHAIN = ("bufsize", "bind", "debug", "ready", "health", "prometheus", "errors", "log", "loadbalance", "rewrite",
         "autopath", "cache", "template", "hosts", "k8s_external", "kubernetes", "loop", "forward")

OPTION, DATA, NO_EFFECT, WARNING, REFUSED = "option", "data", "no effect", "warning", "refused"
KINDS = (OPTION, DATA, NO_EFFECT, WARNING, REFUSED)


@dataclass(frozen=True, slots=True)
class Explanation:
    """One line of `kdns corefile explain`: what a directive (or a line of its block) became.

    `kind` is one of KINDS: OPTION (it set the kdns options named in `effect`), DATA (it became a
    value of the Translation that the serving path implements), NO_EFFECT (kdns does this
    anyway, or it does not apply; `effect` says why), WARNING (accepted, but kdns behaves
    differently; `effect` says how), REFUSED (kdns will not serve this Corefile; `effect` says why).
    """

    origin: Origin
    directive: str
    kind: str
    effect: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.directive}  [{self.kind}] {self.effect}"


@dataclass(frozen=True, slots=True)
class Kubernetes:
    """The `kubernetes` directive. `zones` are the cluster domains (the `zone` option);
    `reverse_zones` the in-addr.arpa/ip6.arpa zones it was given (kdns serves both whole)."""

    zones: tuple[str, ...]
    reverse_zones: tuple[str, ...]
    pods: str  # disabled | insecure | verified (CoreDNS's default: disabled)
    ttl: int  # 0..3600, default 5
    namespaces: tuple[str, ...]
    labels: str | None
    fallthrough: tuple[str, ...]
    noendpoints: bool
    ignore_empty_service: bool
    endpoint_pod_names: bool
    startup_timeout: float  # default 5
    origin: Origin


@dataclass(frozen=True, slots=True)
class ExternalZone:
    """`k8s_external`: Services' external addresses under other zones (CoreDNS's defaults:
    apex "dns", ttl 5)."""

    zones: tuple[str, ...]
    apex: str
    ttl: int
    headless: bool
    fallthrough: tuple[str, ...]
    origin: Origin


@dataclass(frozen=True, slots=True)
class ForwardTarget:
    """One TO of a forward: an address (`host`, `port`) or a resolv.conf file (`resolv_conf`)."""

    text: str
    host: str | None
    port: int
    resolv_conf: str | None
    origin: Origin

    @property
    def address(self) -> str:
        """`1.2.3.4:53` or `[2001:db8::1]:53`, the form kdns's upstream option takes."""
        return f"[{self.host}]:{self.port}" if self.host and ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ForwardRule:
    """A `forward FROM TO...` (or legacy `proxy`) line, CoreDNS's defaults filled in.

    It handles names under `from_zone` (and under the block's zones) except those under
    `except_zones`; rules of one block are tried in file order."""

    from_zone: str
    targets: tuple[ForwardTarget, ...]
    except_zones: tuple[str, ...] = ()
    except_origins: tuple[Origin | None, ...] = ()  # the except line of each except zone
    policy: str = "random"  # random | round_robin | sequential
    force_tcp: bool = False
    prefer_udp: bool = False
    max_fails: int = 2
    expire: float = 10.0
    health_check: float = 0.5
    health_domain: str = "."  # health_check ... domain NAME (absolute)
    health_recursion: bool = True  # health_check ... no_rec turns it off
    max_concurrent: int = 0  # 0: no limit
    read_timeout: float = 2.0
    block_zones: tuple[str, ...] = ()
    legacy_proxy: bool = False
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class Prefetch:
    amount: int
    duration: float = 60.0
    percentage: int = 10


@dataclass(frozen=True, slots=True)
class CacheRule:
    """A `cache` directive with CoreDNS's defaults (3600 s success, 1800 s denial, 5 s minimum,
    10,000 entries each). `serve_stale` is None when off, else how long (seconds)."""

    zones: tuple[str, ...]
    success_ttl: int = 3600
    success_min_ttl: int = 5
    success_capacity: int = 10_000
    denial_ttl: int = 1800
    denial_min_ttl: int = 5
    denial_capacity: int = 10_000
    disable_success: tuple[str, ...] = ()
    disable_denial: tuple[str, ...] = ()
    prefetch: Prefetch | None = None
    serve_stale: float | None = None
    serve_stale_verify: bool = False
    block_zones: tuple[str, ...] = ()
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class HostsEntry:
    address: str  # canonical IP
    names: tuple[str, ...]  # lowercase, no trailing dot
    origin: Origin


@dataclass(frozen=True, slots=True)
class HostsSource:
    """A `hosts` directive. `path` is the file CoreDNS reads (/etc/hosts when none is named),
    as written, to be read through the Corefile's reader (a ConfigMap key such as k3s's
    NodeHosts lives there); `inline` the lines written in the block, which win over the file.
    `zones` are the zones it answers for (its arguments, else its block's zones)."""

    path: str
    inline: tuple[HostsEntry, ...]
    zones: tuple[str, ...]
    ttl: int = 3600
    reload: float = 5.0  # 0: never re-read
    reverse: bool = True  # PTR records for the addresses (off with no_reverse)
    fallthrough: tuple[str, ...] = ()
    block_zones: tuple[str, ...] = ()
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class AnswerRewrite:
    """`answer name FROM TO` (the owner names of the reply) or `answer value FROM TO` (names
    inside records: CNAME, SRV, MX, PTR...). FROM is a regex, TO may use {0}..{n}."""

    field: str  # name | value
    pattern: str
    replacement: str


@dataclass(frozen=True, slots=True)
class RewriteRule:
    """`rewrite [continue|stop] name [exact|prefix|suffix|substring|regex] FROM TO [answer ...]`.

    `source`/`target` as CoreDNS normalises them: lowercase; exact and suffix ones end in a dot;
    a regex `source` is matched (unanchored, Go RE2 syntax) against the lowercased query name
    with its trailing dot, and its `target` may use {0}..{n}. `auto` maps reply names back
    (always on for exact). Rules apply in file order; `stop` ends the list when it matched."""

    mode: str  # stop | continue
    match: str  # exact | prefix | suffix | substring | regex
    source: str
    target: str
    auto: bool
    answers: tuple[AnswerRewrite, ...]
    block_zones: tuple[str, ...]
    origin: Origin


@dataclass(frozen=True, slots=True)
class RecordTemplate:
    """An `answer`/`additional`/`authority` line of a template: zone-file text with
    `{{ .Name }}`, `{{ .Zone }}`, `{{ .Class }}`, `{{ .Type }}`, `{{ .Remote }}`,
    `{{ index .Match N }}` and `{{ .Group.NAME }}` only. `parts` is the text split into
    literal strings and `TemplateField`s, in order."""

    text: str
    parts: tuple[str | TemplateField, ...]


@dataclass(frozen=True, slots=True)
class TemplateField:
    name: str  # Name | Zone | Class | Type | Remote | Match | Group
    key: int | str | None = None  # the Match index or the Group name


@dataclass(frozen=True, slots=True)
class Template:
    """`template CLASS TYPE [ZONES] { match REGEX...; answer ...; rcode CODE; fallthrough [ZONES] }`.

    A query of that class and type under `zones` whose name (lowercase, trailing dot) matches
    one of `patterns` (Go RE2 syntax, unanchored; () means everything) gets `rcode` and the
    records; when no pattern matches it goes on down the chain if `fallthrough` covers it,
    else it gets SERVFAIL."""

    qclass: str
    qtype: str
    zones: tuple[str, ...]
    patterns: tuple[str, ...]
    rcode: str = "NOERROR"
    answer: tuple[RecordTemplate, ...] = ()
    additional: tuple[RecordTemplate, ...] = ()
    authority: tuple[RecordTemplate, ...] = ()
    fallthrough: tuple[str, ...] = ()
    block_zones: tuple[str, ...] = ()
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class LogRule:
    """`log [NAMES...] [FORMAT] { class CLASSES }`: which queries CoreDNS logs."""

    names: tuple[str, ...]
    classes: tuple[str, ...]  # all | success | denial | error
    format: str | None  # None: CoreDNS's default (common) format
    block_zones: tuple[str, ...]
    origin: Origin


@dataclass(frozen=True, slots=True)
class Reload:
    """`reload [INTERVAL [JITTER]]`: re-read the Corefile and its imports every INTERVAL
    (default 30 s, at least 2 s), give or take JITTER/2 (default 15 s)."""

    interval: float
    jitter: float
    origin: Origin


@dataclass(frozen=True, slots=True)
class LoadBalance:
    """`loadbalance [round_robin] { prefer CIDR... }`: shuffle A, AAAA and MX records of each
    answer; addresses in `prefer` networks go first."""

    policy: str
    prefer: tuple[str, ...]
    origin: Origin


@dataclass(frozen=True, slots=True)
class ServerZones:
    """A server block kdns expresses: its zones (a query goes to the block with the longest
    zone that contains it), whether it is the main (kubernetes) block, and where it starts."""

    zones: tuple[str, ...]
    main: bool
    origin: Origin


@dataclass(frozen=True)
class Translation:
    """What `translate` made of a Corefile. See kdns/corefile/translate/__init__.py."""

    config: tuple[tuple[str, Any], ...]
    option_origins: tuple[tuple[str, Origin], ...]
    blocks: tuple[ServerZones, ...]
    kubernetes: Kubernetes | None
    forwards: tuple[ForwardRule, ...]
    caches: tuple[CacheRule, ...]
    hosts: tuple[HostsSource, ...]
    rewrites: tuple[RewriteRule, ...]
    templates: tuple[Template, ...]
    externals: tuple[ExternalZone, ...]
    logs: tuple[LogRule, ...]
    reload: Reload | None
    loadbalance: LoadBalance | None
    bufsize: int | None
    explanations: tuple[Explanation, ...]
    problems: tuple[CorefileError, ...]
    warnings: tuple[CorefileError, ...]
    files: tuple[str, ...] = ()
    globs: tuple[str, ...] = ()

    @property
    def options(self) -> dict[str, Any]:
        """A fresh dict in kdns's config-file form (lists for the repeatable options)."""
        return {name: list(value) if isinstance(value, tuple) else value for name, value in self.config}

    def origin_of(self, option: str) -> Origin | None:
        """The directive that set `option` (to name file:line when kdns's checks reject a value)."""
        return dict(self.option_origins).get(option)

    @property
    def ok(self) -> bool:
        return not self.problems

    def check(self) -> Translation:
        """Raise the first problem (carrying all of them in `problems`), else return self."""
        if self.problems:
            first = CorefileError(self.problems[0].origin, self.problems[0].message)
            first.problems = self.problems
            raise first
        return self
