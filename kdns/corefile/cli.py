"""The Corefile on the command line: `kdns serve --corefile PATH`, `kdns corefile check|explain
PATH`, and CoreDNS's own command line (`kdns -conf PATH -dns.port N`), so that an image swap
keeps CoreDNS's Deployment as it is.

kdns/cli.py calls in here at three places: `add_serve_arguments` (the serve flags),
`add_commands` (the `corefile` command) and `from_coredns` (argv that is CoreDNS's command
line becomes the `kdns serve` one, or is answered at once: -version, -plugins, -help).

CoreDNS's flags (Go's flag package: `-name value`, `-name=value`, one or two dashes):
`-conf PATH` (default `Corefile` in the working directory), `-dns.port`/`-p PORT`, `-pidfile
PATH`, `-quiet` (CoreDNS's start-up banner; kdns prints none, so it changes nothing), `-version`,
`-plugins` (the directives kdns reads, in CoreDNS's layout), `-help`. `kdns --version` and
`kdns -h` stay kdns's own. kdns's own
`-corefile-ignore-unknown` may be added there too, as can the environment variable
KDNS_COREFILE_IGNORE_UNKNOWN=1 (for `kubectl set env`, which leaves the Deployment's args alone).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Mapping

from kdns import __version__
from kdns.config import ServeConfig
from kdns.corefile.keys import DNS_PORT
from kdns.corefile.model import CorefileError
from kdns.corefile.review import UNDERSTOOD
from kdns.corefile.wiring import CorefileReloader, load_corefile

IGNORE_ENV = "KDNS_COREFILE_IGNORE_UNKNOWN"
DEFAULT_CONF = "Corefile"  # CoreDNS's -conf default: the working directory's Corefile
# CoreDNS's flags: name -> whether it takes a value
COREDNS_FLAGS = {"conf": True, "dns.port": True, "p": True, "pidfile": True, "quiet": False, "version": False,
                 "plugins": False, "help": False, "corefile-ignore-unknown": False}


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    group = add_source_arguments(serve)
    group.add_argument("--pidfile", metavar="PATH", help="write kdns's process ID to this file at start and remove it "
                       "at exit (CoreDNS's -pidfile)")


def add_source_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """--corefile and the flags that go with it (kdns serve's, and kdns explain's)."""
    group = parser.add_argument_group("a Corefile instead of a config file (CoreDNS's configuration; docs/deploying.md)")
    group.add_argument("--corefile", metavar="PATH", help="serve what this Corefile says, or the Corefile of this "
                       "ConfigMap manifest (.yaml, .yml, .json; its other keys are files beside it, as when mounted). "
                       "Flags given here override it; reloaded on SIGHUP, and when it or an import changes if it "
                       "says `reload`. Not with --config")
    group.add_argument("--corefile-dns-port", type=int, metavar="PORT", help="the port of the Corefile's server keys "
                       f"that name none (CoreDNS's -dns.port; default {DNS_PORT})")
    group.add_argument("--corefile-ignore-unknown", action="store_true", help="serve a Corefile with directives kdns "
                       "does not support (unknown plugins, rewrite, template...), warning about each and leaving it out, "
                       "instead of refusing to start; also KDNS_COREFILE_IGNORE_UNKNOWN=1")
    return group


def add_commands(commands) -> None:
    corefile = commands.add_parser(
        "corefile", help="check a Corefile, or explain what kdns does with each of its directives",
        description="Read a Corefile (or a CoreDNS ConfigMap manifest, or a kube-dns ConfigMap) as `kdns serve "
                    "--corefile` would, without serving it.")
    sub = corefile.add_subparsers(dest="corefile_command", metavar="COMMAND", required=True)
    for name, what in (("check", "every problem with file:line; exit 1 if there is any"),
                       ("explain", ("each directive and what it became in kdns: an option, data kdns serves, no "
                                    "effect (and why), a warning, or the refusal; exit 1 if anything is refused"))):
        command = sub.add_parser(name, help=what, description=f"{name}: {what}.")
        command.add_argument("path", metavar="PATH", help="a Corefile, or a ConfigMap manifest (.yaml, .yml, .json)")
        command.add_argument("--dns-port", type=int, default=DNS_PORT, metavar="PORT",
                             help=f"the port of server keys that name none (CoreDNS's -dns.port; default {DNS_PORT})")
        command.add_argument("--ignore-unknown", action="store_true",
                             help="as kdns serve --corefile-ignore-unknown: what kdns does not support is a warning")


def main(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    """`kdns corefile check|explain PATH`."""
    ignore = args.ignore_unknown or _env_ignore(environ)
    loaded = load_corefile(args.path, dns_port=args.dns_port, ignore_unknown=ignore, environ=environ, every_problem=True)
    if args.corefile_command == "explain" and loaded.review is not None:
        for e in loaded.review.explanations:
            print(e)
        extra = [p for p in loaded.problems if p not in loaded.review.problems]
        for problem in extra:
            print(f"{problem}  [refused]")
        return 1 if loaded.problems else 0
    for problem in loaded.problems:
        print(problem)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not loaded.problems:
        print(f"{args.path}: OK")
    return 1 if loaded.problems else 0


def serve_config(args: argparse.Namespace,
                 environ: Mapping[str, str] = os.environ) -> tuple[ServeConfig, CorefileReloader, list[str]]:
    """The ServeConfig of `kdns serve --corefile PATH`, the reloader that re-reads it, and the
    Corefile's warnings (to log once logging is set up); CorefileError (all problems in
    `.problems`), or ConfigError for a bad flag."""
    ignore = args.corefile_ignore_unknown or _env_ignore(environ)
    port = args.corefile_dns_port if args.corefile_dns_port is not None else DNS_PORT
    loaded = load_corefile(args.corefile, flags=args, dns_port=port, ignore_unknown=ignore, environ=environ).check()
    assert loaded.config is not None
    reloader = CorefileReloader(args.corefile, loaded, flags=args, dns_port=port, ignore_unknown=ignore, environ=environ)
    return loaded.config, reloader, [str(w) for w in loaded.warnings]


def _env_ignore(environ: Mapping[str, str]) -> bool:
    return environ.get(IGNORE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


# -- CoreDNS's command line --------------------------------------------------------------------


KDNS_OWN = ("--version", "--help", "-h")  # kdns's own flags, even where CoreDNS has the same


def is_coredns(argv: list[str]) -> bool:
    """Whether argv is CoreDNS's command line (the first word is one of its flags, and not
    one of kdns's own: `kdns --version` and `kdns -h` stay kdns's)."""
    return bool(argv) and argv[0].startswith("-") and argv[0] not in KDNS_OWN and _flag_name(argv[0]) in COREDNS_FLAGS


def from_coredns(argv: list[str]) -> list[str] | int | None:
    """CoreDNS's command line as kdns's: None when argv is not CoreDNS's; an exit status when
    it is answered here (-version, -plugins, -help, a mistake); else the `kdns serve` argv."""
    if not is_coredns(argv):
        return None
    given: dict[str, str | None] = {}
    words = list(argv)
    while words:
        word = words.pop(0)
        name, eq, value = _flag_name(word), "=" in word, word.partition("=")[2]
        if not word.startswith("-") or name not in COREDNS_FLAGS:
            print(f"kdns: CoreDNS's command line: unknown flag or argument {word!r} (kdns takes -conf, -dns.port, -p, "
                  "-pidfile, -quiet, -version, -plugins, -corefile-ignore-unknown)", file=sys.stderr)
            return 2
        if COREDNS_FLAGS[name] and not eq:
            if not words:
                print(f"kdns: flag needs an argument: {word}", file=sys.stderr)
                return 2
            value = words.pop(0)
        given[name] = value if COREDNS_FLAGS[name] else None
    if "help" in given:
        print(coredns_usage())
        return 0
    if "version" in given:
        print(f"kdns-{__version__}\n{platform.system().lower()}/{platform.machine()}, python{platform.python_version()}")
        return 0
    if "plugins" in given:
        print(plugins_text())
        return 0
    out = ["serve", "--corefile", given.get("conf") or DEFAULT_CONF]
    port = given.get("dns.port") or given.get("p")
    if port is not None:
        out += ["--corefile-dns-port", port]
    if given.get("pidfile"):
        out += ["--pidfile", str(given["pidfile"])]
    if "corefile-ignore-unknown" in given:
        out.append("--corefile-ignore-unknown")
    return out


def _flag_name(word: str) -> str:
    return word.lstrip("-").partition("=")[0]


def plugins_text() -> str:
    """`-plugins`, in CoreDNS's layout: the directives kdns reads."""
    lines = ["Server types:", "  dns", "", "Caddyfile loaders:", "  flag", "  default", "", "Other plugins:"]
    lines += [f"  dns.{name}" for name in sorted(UNDERSTOOD)]
    return "\n".join(lines)


def coredns_usage() -> str:
    return "\n".join([
        "Usage of kdns (CoreDNS's command line):",
        "  -conf string       Corefile to load (default \"Corefile\"); a ConfigMap manifest also works",
        f"  -dns.port string   Default port (default \"{DNS_PORT}\"); -p is the same",
        "  -pidfile string    File path to write pid file",
        "  -plugins           List installed plugins (the directives kdns reads)",
        "  -quiet             Quiet mode (no start-up banner; kdns prints none anyway)",
        "  -version           Show version",
        "  -corefile-ignore-unknown",
        "                     kdns's own: leave out what kdns does not support, with a warning, instead of refusing",
        "kdns's own command line: kdns --help",
    ])


__all__ = ["COREDNS_FLAGS", "CorefileError", "CorefileReloader", "add_commands", "add_serve_arguments", "from_coredns", "main", "serve_config"]
