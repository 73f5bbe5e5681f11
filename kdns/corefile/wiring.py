"""Serving a Corefile: from the file (or a ConfigMap manifest) to the ServeConfig kdns runs
with, and reloading it.

`load_corefile` reads the Corefile with its imports (kdns.corefile, through the disk), translates
it (kdns.corefile.translate), reviews what kdns honours (kdns.corefile.review), reads the hosts
data held in a ConfigMap manifest beside it (k3s's NodeHosts key), and runs the options through
the checks `kdns serve --config` runs (kdns.settings), flags given on the command line
overriding them. A value those checks reject is reported at the directive that set it
(`file:line: kdns's OPTION from here: REASON`); the source flags (--manifests, --kubeconfig,
--apiserver, --in-cluster) replace the Corefile's source as a whole.

The `rewrite name` rules and `template`s the review accepts are compiled into the
DnsConfig's `rules` (kdns.rewrite): a Corefile-only setting, with no kdns option of its own.

`CorefileReloader` is what `kdns.app.Server` reloads from: the same steps again, on SIGHUP or
when the Corefile, one of its imports or what an import pattern matches changes (every
`reload` interval, only when the Corefile has a `reload` directive, as CoreDNS). A broken new
version raises CorefileError and the server keeps the running configuration.
"""

from __future__ import annotations

import argparse
import glob as _glob
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from kdns import corefile as cf
from kdns import hosts as hostsfile
from kdns import settings
from kdns.config import ConfigError, HostsFile, ServeConfig
from kdns.corefile.keys import DNS_PORT
from kdns.corefile.model import CorefileError, Origin
from kdns.corefile.reader import MemoryReader, NotFound, Reader, ReadError
from kdns.corefile.review import HostsPlan, Review, review
from kdns.corefile.translate import translate
from kdns.corefile.translate.values import DATA
from kdns.options import BY_NAME, OPTIONS, SOURCE
from kdns.rewrite import Rules, from_translation

log = logging.getLogger("kdns.corefile")

SOURCE_OPTIONS = tuple(o.name for o in OPTIONS if o.group == SOURCE and o.name != "manifest-max-bytes")


@dataclass(frozen=True)
class Loaded:
    """What reading a Corefile gave: the review (None when the Corefile could not be
    translated at all), the ServeConfig (None when there is any problem), every problem and
    warning with its file:line, and what a reload watches."""

    review: Review | None
    config: ServeConfig | None
    problems: tuple[CorefileError, ...]
    warnings: tuple[CorefileError, ...]
    files: tuple[str, ...]
    globs: tuple[str, ...]

    def check(self) -> Loaded:
        if self.problems:
            first = CorefileError(self.problems[0].origin, self.problems[0].message)
            first.problems = self.problems
            raise first
        return self


def load_corefile(path: str, *, flags: argparse.Namespace | None = None, dns_port: int = DNS_PORT,
                  ignore_unknown: bool = False, environ: Mapping[str, str] = os.environ,
                  every_problem: bool = False) -> Loaded:
    """Read, translate, review and check the Corefile at `path` (a ConfigMap manifest when it
    ends in .yaml, .yml or .json). `every_problem`: go on past the first value kdns's checks
    reject, to report them all (`kdns corefile check`)."""
    corefile = cf.load(path, cf.DiskReader(), env=dict(environ), default_port=dns_port)
    t = translate(corefile, dns_port=dns_port, ignore_unknown=ignore_unknown)
    r = review(t, corefile, ignore_unknown=ignore_unknown)
    if not r.ok:
        return Loaded(r, None, r.problems, r.warnings, corefile.files, corefile.globs)
    warnings = list(r.warnings)
    problems: list[CorefileError] = []
    hosts = tuple(_hosts_file(plan, corefile.reader, problems, warnings) for plan in r.hosts)
    config = _config(r, flags, environ, problems, every_problem)
    if problems or config is None:
        return Loaded(r, None, tuple(problems), tuple(warnings), corefile.files, corefile.globs)
    rules = _rules(r)
    dns = replace(config.dns, rules=rules) if rules is not None else config.dns
    dns = replace(dns, except_zones=_except_lines(r, dns.except_zones))
    return Loaded(r, replace(config, corefile_hosts=hosts, dns=dns), (), tuple(warnings), corefile.files, corefile.globs)


def _except_lines(r: Review, zones: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Each except zone kdns forwards nowhere, with the Corefile line that made it (for kdns
    explain): the first except line naming it; a zone given as a flag keeps the flag."""
    lines: dict[str, str] = {}
    for rule in r.translation.forwards:
        for zone, origin in zip(rule.except_zones, rule.except_origins, strict=False):
            if origin is not None:
                lines.setdefault(zone.rstrip(".").lower(), f"the except line at {origin}")
    return tuple((zone, lines.get(zone, where)) for zone, where in zones)


def _rules(r: Review) -> Rules | None:
    """The rewrite rules and templates the review accepted (not those ignored with
    --corefile-ignore-unknown), compiled once for the answer path (kdns.rewrite)."""
    t = r.translation
    served = {e.origin for e in r.explanations if e.kind == DATA and e.directive.split(" ", 1)[0] in ("rewrite", "template")}
    return from_translation(replace(t, rewrites=tuple(x for x in t.rewrites if x.origin in served),
                                    templates=tuple(x for x in t.templates if x.origin in served)))


def _config(r: Review, flags: argparse.Namespace | None, environ: Mapping[str, str], problems: list[CorefileError],
            every_problem: bool) -> ServeConfig | None:
    given = {k: v for k, v in vars(flags or argparse.Namespace()).items() if k.replace("_", "-") in BY_NAME}
    values = r.options
    if any(name.replace("_", "-") in SOURCE_OPTIONS for name in given):
        values = {k: v for k, v in values.items() if k not in SOURCE_OPTIONS}
    for _ in range(len(OPTIONS)):
        try:
            return settings.build(settings.merge(argparse.Namespace(**given), values), environ)
        except ConfigError as exc:
            if exc.flag is not None:
                raise  # a command-line mistake: kdns serve reports it as such
            origin = r.origin_of(exc.option) if exc.option else None
            key = exc.key or exc.option
            problems.append(CorefileError(origin, f"kdns's {key} from here: {exc.reason}"))
            if not every_problem or exc.option is None or values.pop(exc.option, None) is None:
                return None
    return None


def _hosts_file(plan: HostsPlan, reader: Reader | None, problems: list[CorefileError],
                warnings: list[CorefileError]) -> HostsFile:
    """A hosts directive as kdns's hosts data: a file the hosts source reads and watches, or,
    when the Corefile came from a ConfigMap manifest that holds the file (k3s's NodeHosts), its
    lines now (a reload of the manifest brings new ones)."""
    def hosts(path: str, inline: tuple[tuple[str, tuple[str, ...]], ...], reload: float | None = None) -> HostsFile:
        return HostsFile(path, plan.ttl, plan.reverse, inline=inline, label=f"{plan.origin.where}: hosts {plan.path}",
                         zones=plan.zones, excluded=plan.excluded, reload=reload, required=False)

    if isinstance(reader, MemoryReader):
        try:
            text = reader.read(plan.path).decode("utf-8", errors="replace")
        except NotFound:
            text = None
        except ReadError as exc:
            problems.append(CorefileError(plan.origin, f"hosts {reader.describe(plan.path)}: {exc}"))
            text = None
        if text is not None:
            try:
                parsed = hostsfile.parse_hosts(text, reader.describe(plan.path))
            except hostsfile.TooManyNames as exc:
                problems.append(CorefileError(plan.origin, str(exc)))
                return hosts("", plan.inline)
            warnings += [CorefileError(None, problem) for problem in parsed.problems]
            return hosts("", tuple(parsed.pairs()) + plan.inline)
    return hosts(plan.path, plan.inline, plan.reload)


class CorefileReloader:
    """The Corefile a server runs from, for `kdns.app.Server.reload`."""

    def __init__(self, path: str, loaded: Loaded, *, flags: argparse.Namespace | None = None, dns_port: int = DNS_PORT,
                 ignore_unknown: bool = False, environ: Mapping[str, str] = os.environ) -> None:
        self.path = path
        self.flags = flags
        self.dns_port = dns_port
        self.ignore_unknown = ignore_unknown
        self.environ = environ
        self._take(loaded)

    def _take(self, loaded: Loaded) -> None:
        self.files, self.globs = loaded.files, loaded.globs
        reload = loaded.review.translation.reload if loaded.review is not None else None
        self.interval: float | None = reload.interval if reload is not None else None

    def describe(self) -> str:
        return self.path

    def signature(self) -> tuple:
        """What a change to the Corefile, an import or an import pattern's matches changes."""
        return tuple(_stat(path) for path in self.files) + tuple(tuple(sorted(_glob.glob(p))) for p in self.globs)

    def load(self) -> ServeConfig:
        """The Corefile read again; CorefileError (every problem in `.problems`) when it is broken."""
        loaded = load_corefile(self.path, flags=self.flags, dns_port=self.dns_port, ignore_unknown=self.ignore_unknown,
                               environ=self.environ).check()
        for warning in loaded.warnings:
            log.warning("%s", warning)
        self._take(loaded)
        assert loaded.config is not None
        return loaded.config


def _stat(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


__all__ = ["CorefileReloader", "Loaded", "Origin", "load_corefile"]
