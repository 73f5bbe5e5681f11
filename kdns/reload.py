"""What a reload changes: the plan for going from one ServeConfig to the next. Pure.

`plan(old, new)` compares two configurations and says what each difference requires, for
`app.Server.reconfigure` to carry out between two queries:

* the options that take effect only at start (`reload=False` in kdns.options) keep their
  old values, and are named so that the server can say they were not applied;
* a new index (and responder) when anything the answers depend on differs (`DnsConfig`);
* a new forwarder, with an empty cache, when the upstreams or the cache settings differ;
* logging set up again when its level or format differs;
* a new rate limiter when --rrl-rate or --rrl-slip differ (with the same settings, the
  running one keeps its buckets).

The rest (TCP limits, the recursion ACL, the query log) costs nothing to rebuild and is
simply taken from the planned configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from kdns.config import ServeConfig
from kdns.options import OPTIONS

# What the forwarder (kdns.serve.forward.Forwarder) and its cache are built from.
FORWARDER_FIELDS = ("upstreams", "stub_domains", "upstream_timeout", "cache_ttl", "cache_size", "cache_max_bytes", "serve_stale",
                    "upstream_max_concurrent", "upstream_options", "stub_options", "cache_policy", "default_domains")


@dataclass(frozen=True)
class ReloadPlan:
    config: ServeConfig  # what to run with: the new one, restart-only options as they were
    kept: tuple[str, ...]  # restart-only options the new configuration would change (not applied)
    new_index: bool
    new_forwarder: bool
    new_logging: bool
    new_rate_limiter: bool


def plan(old: ServeConfig, new: ServeConfig) -> ReloadPlan:
    """What going from `old` to `new` requires."""
    kept = []
    config = new
    for option in OPTIONS:
        if option.reload:
            continue
        if any(get(old, path) != get(new, path) for path in option.paths):
            kept.append(option.name)
        for path in option.paths:
            config = _set(config, path, get(old, path))
    return ReloadPlan(
        config=config,
        kept=tuple(kept),
        new_index=config.dns != old.dns,
        new_forwarder=any(getattr(config, name) != getattr(old, name) for name in FORWARDER_FIELDS),
        new_logging=(config.log_level, config.log_format) != (old.log_level, old.log_format),
        new_rate_limiter=(config.rrl_rate, config.rrl_slip) != (old.rrl_rate, old.rrl_slip),
    )


def get(config: Any, path: str) -> Any:
    """The value at a dotted path of a configuration ("dns.ttl")."""
    for part in path.split("."):
        config = getattr(config, part)
    return config


def _set(config: Any, path: str, value: Any) -> Any:
    head, _, rest = path.partition(".")
    return replace(config, **{head: _set(getattr(config, head), rest, value) if rest else value})


class Reloader(Protocol):
    """Where `app.Server` reloads its configuration from instead of a config file (a Corefile:
    kdns.corefile.wiring.CorefileReloader). `load` raises CorefileError or ConfigError when the
    new configuration is broken."""

    interval: float | None  # how often to look for changes; None: only on SIGHUP

    def describe(self) -> str: ...

    def signature(self) -> object: ...

    def load(self) -> ServeConfig: ...
