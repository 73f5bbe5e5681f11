"""The `kdns` command: argv (and a config file) → ServeConfig → a running server.

Commands: `kdns serve [options]`, `kdns check-config PATH`, `kdns exec [options] -- COMMAND`
(kdns/exec.py), `kdns corefile check|explain PATH` (kdns/corefile/cli.py), `kdns explain NAME
[TYPE]` (kdns/explain/command.py) and `kdns lint PATH...` (kdns/lint/command.py). CoreDNS's own
command line (`kdns -conf /etc/coredns/Corefile`) is read as `kdns serve --corefile ...`.

Exit status of `serve`: 0 after a clean shutdown (SIGTERM after its lameduck period, or
SIGINT), 1 when kdns cannot start because of its input (a manifest, a config file, a port in
use), 2 for a command-line mistake. `check-config` exits 1 when the file has any problem.
`exec` exits with COMMAND's status (kdns/exec.py lists its own).

`serve --print-address` starts kdns for a test: its lameduck period is 0 (SIGTERM stops it at
once) unless --lameduck or the config file says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys

import trio

from kdns import __version__, caps, observe, settings
from kdns import exec as kdns_exec
from kdns.app import Server, StartupError
from kdns.config import ConfigError
from kdns.corefile import cli as corefile_cli
from kdns.corefile.model import CorefileError
from kdns.explain import command as explain_command
from kdns.lint import command as lint_command
from kdns.workers import Workers, worker_argv

log = logging.getLogger("kdns")
PRIVILEGED_HINT = (" (a port below 1024 needs root or the NET_BIND_SERVICE capability: CoreDNS's manifests add it with "
                   "securityContext.capabilities.add)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdns", description="Kubernetes cluster DNS, in Python.")
    parser.add_argument("--version", action="version", version=f"kdns {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="answer DNS queries for a cluster (live, from manifests, or the demo)",
        description=(
            "Serve the Kubernetes DNS schema (services, endpoints, pods, reverse names) for a live "
            "cluster or the objects in manifests, over UDP and TCP. Names outside the zones are "
            "forwarded to upstreams if there are any, else REFUSED."
        ),
        epilog=(
            "Environment: KDNS_PURE_PYTHON=1 answers UDP in the Python loop even where the C part "
            "(kdns._udpbatch) is built; the start-up log says which loop runs."
        ),
    )
    settings.add_arguments(serve)
    corefile_cli.add_serve_arguments(serve)
    serve.add_argument(
        "--print-address",
        action="store_true",
        help="once ready to answer, print HOST:PORT of the first listen address on stdout (for tests in other "
        "languages: start kdns with --listen 127.0.0.1:0 and read the port); also makes the lameduck period 0 "
        "unless --lameduck or the config file sets it, so that SIGTERM stops it at once",
    )
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # started by --workers (kdns.workers)
    run = commands.add_parser(
        "exec",
        help="run a command whose name lookups go to kdns as a pod's would (Linux namespaces; no root needed "
        "where unprivileged user namespaces are allowed)",
        description=(
            "Run COMMAND in network and mount namespaces of its own, where /etc/resolv.conf is a pod's in NS "
            "and kdns answers on 127.0.0.1:53 with the objects of --manifests (default: the demo cluster). "
            "The exit status is COMMAND's; 125 when kdns exec cannot run, 126/127 when COMMAND cannot be "
            "executed or found. See docs/configuration.md (kdns exec) for what COMMAND can reach."
        ),
    )
    kdns_exec.add_arguments(run)
    check = commands.add_parser(
        "check-config", help="check a config file; print each problem with its key", description="Check a kdns config file."
    )
    check.add_argument("path", metavar="PATH")
    corefile_cli.add_commands(commands)
    explain_command.add_parser(commands)
    lint_command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    coredns = corefile_cli.from_coredns(sys.argv[1:] if argv is None else argv)
    if isinstance(coredns, int):
        return coredns  # -version, -plugins, -help, or a mistake
    parser = _parser()
    args = parser.parse_args(coredns if coredns is not None else argv)
    if args.command == "check-config":
        problems = settings.check_config_file(args.path, os.environ)
        for problem in problems:
            print(problem)
        if not problems:
            print(f"{args.path}: OK")
        return 1 if problems else 0
    if args.command == "exec":
        return kdns_exec.main(args)
    if args.command == "corefile":
        return corefile_cli.main(args)
    if args.command == "explain":
        return explain_command.main(args)
    if args.command == "lint":
        return lint_command.main(args)
    if args.print_address and not hasattr(args, "lameduck") and not _file_sets(args, "lameduck"):
        args.lameduck = 0.0  # a server started for tests stops at once on SIGTERM
    reloader: corefile_cli.CorefileReloader | None = None
    warnings: list[str] = []
    try:
        if args.corefile and args.config:
            parser.error("--corefile and --config cannot be combined: give one")
        if args.corefile:
            cfg, reloader, warnings = corefile_cli.serve_config(args)
        else:
            cfg = settings.build_config(args)
    except ConfigError as exc:
        print(f"kdns: error: {exc}", file=sys.stderr)
        return 2 if exc.flag is not None else 1  # a flag is a command-line mistake; the file is input
    except CorefileError as refused:
        for each in refused.problems:
            print(f"kdns: error: {each}", file=sys.stderr)
        return 1
    observe.setup_logging(cfg.log_level, cfg.log_format)
    for warning in warnings:
        log.warning("%s", warning)
    caps.raise_bind_service()  # port 53 as a non-root user, where the container allows it (kdns/caps.py)
    try:
        server = Server(cfg, config_path=getattr(args, "config", None), flags=args, reuse_port=cfg.workers > 1 or args.worker,
                        reloader=reloader)
    except StartupError as exc:
        hint = PRIVILEGED_HINT if "Permission denied" in str(exc) else ""
        print(f"kdns: error: {exc}{hint}", file=sys.stderr)
        return 1
    with _pidfile(args.pidfile):
        trio.run(_run, server, args.print_address and not args.worker, args)
    server.join()
    return 0


@contextlib.contextmanager
def _pidfile(path: str | None):
    """CoreDNS's -pidfile: this process's ID in `path` while it runs."""
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)


async def _run(server: Server, print_address: bool = False, args: argparse.Namespace | None = None) -> None:
    workers = None
    if server.config.workers > 1 and args is not None:
        workers = Workers(server.config.workers - 1, server.config.lameduck)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_signals, server, nursery.cancel_scope, workers)
        bound = await nursery.start(server.serve)
        if workers is not None and args is not None:
            await nursery.start(workers.run, worker_argv(args, bound))
        if print_address:
            print(bound[0].address, flush=True)


async def _signals(server: Server, scope: trio.CancelScope, workers: Workers | None = None) -> None:
    """SIGTERM: lameduck, drain, exit. SIGINT (or a second signal): exit now. SIGHUP (and
    SIGUSR1, CoreDNS's): reload. Each is passed on to the worker processes of --workers."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1) as signals:
        async with trio.open_nursery() as nursery:
            async for signum in signals:
                if workers is not None:
                    workers.signal(signum)
                if signum in (signal.SIGHUP, signal.SIGUSR1):
                    log.info("%s received, reloading the configuration", signal.Signals(signum).name)
                    server.reload()
                elif signum == signal.SIGTERM and not server.stopping:
                    log.info("SIGTERM received, shutting down after a %gs lameduck period", server.config.lameduck)
                    nursery.start_soon(_shutdown, server, scope)
                else:
                    log.info("%s received, shutting down now", signal.Signals(signum).name)
                    scope.cancel()
                    return


async def _shutdown(server: Server, scope: trio.CancelScope) -> None:
    await server.shutdown()
    scope.cancel()


def _file_sets(args: argparse.Namespace, name: str) -> bool:
    """Whether the --config file gives option `name` (False when there is none, or when it
    cannot be read: building the configuration reports that)."""
    path = getattr(args, "config", None)
    if not path:
        return False
    try:
        return settings.load_file(path).get(name) is not None
    except ConfigError:
        return False
