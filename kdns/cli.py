"""The `kdns` command: argv → ServeConfig → a running server; exit codes and messages.

Exit status: 0 after a clean shutdown (SIGINT/SIGTERM), 1 when kdns cannot start because of
its input (a manifest, a port in use), 2 for a command-line mistake.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Mapping

import trio

from kdns import __version__, config, names, upstream
from kdns.app import Server, StartupError
from kdns.config import ApiSource, ConfigError, DnsConfig, PodsMode, ServeConfig

log = logging.getLogger("kdns")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdns", description="Kubernetes cluster DNS, in Python.")
    parser.add_argument("--version", action="version", version=f"kdns {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="answer DNS queries for a cluster (live, from manifests, or the demo)",
        description=(
            "Serve the Kubernetes DNS schema (services, endpoints, pods, reverse names) for a live "
            "cluster or the objects in manifests, over UDP and TCP. Names outside the zones get REFUSED."
        ),
    )
    source = serve.add_argument_group(
        "source (one of them; with none, KUBECONFIG, then in-cluster config, then the bundled demo cluster)"
    )
    source.add_argument(
        "--manifests",
        action="append",
        metavar="PATH",
        help="a .yaml/.yml/.json file, or a directory of them (read one level deep); repeatable. "
        "Namespaces, Services, EndpointSlices and Pods are used; changes are picked up while serving",
    )
    source.add_argument("--kubeconfig", metavar="PATH", help="follow the cluster of this kubeconfig file")
    source.add_argument("--apiserver", metavar="URL", help="follow the API server at URL, unauthenticated (test servers)")
    serve.add_argument(
        "--listen",
        action="append",
        metavar="HOST:PORT",
        help=f"address to serve UDP and TCP on; repeatable; [::1]:5353 for IPv6; port 0 picks a free port "
        f"(default {config.DEFAULT_LISTEN})",
    )
    serve.add_argument(
        "--zone",
        action="append",
        metavar="ZONE",
        help=f"cluster domain; repeatable, the first is used in PTR answers (default {config.DEFAULT_ZONE}). "
        "in-addr.arpa and ip6.arpa are always served",
    )
    serve.add_argument(
        "--ttl",
        type=int,
        default=config.DEFAULT_TTL,
        metavar="SECONDS",
        help=f"TTL of the records, 0-{config.MAX_TTL} (default {config.DEFAULT_TTL})",
    )
    serve.add_argument(
        "--pods",
        choices=[m.value for m in PodsMode],
        default=PodsMode.INSECURE.value,
        help="answer a-b-c-d.<ns>.pod.<zone> for any address in an existing namespace (insecure), "
        "only for addresses of Pods that exist there (verified: watches Pods), or never (disabled) (default insecure)",
    )
    serve.add_argument(
        "--namespaces",
        metavar="NS[,NS...]",
        help="expose only these namespaces; names elsewhere are NXDOMAIN (default: all)",
    )
    serve.add_argument(
        "--labels",
        metavar="SELECTOR",
        help="serve only Services (and their EndpointSlices) matching this label selector, e.g. 'dns!=off,tier in (web,api)'",
    )
    serve.add_argument(
        "--startup-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="warn when the first sync with the API takes longer; cluster names that kdns does not know yet "
        "get SERVFAIL until it completes (default 5)",
    )
    forwarding = serve.add_argument_group("forwarding (names outside the zones; without an upstream they get REFUSED)")
    forwarding.add_argument(
        "--upstream",
        action="append",
        metavar="HOST[:PORT]",
        help="resolver for names outside the zones and unknown reverse names; repeatable",
    )
    forwarding.add_argument(
        "--resolv-conf",
        metavar="PATH",
        help="use the nameservers of this resolv.conf as upstreams (in a pod: /etc/resolv.conf, "
        "the default when kdns runs in-cluster)",
    )
    forwarding.add_argument(
        "--stub-domain",
        action="append",
        metavar="DOMAIN=HOST[:PORT]",
        help="send names under DOMAIN to this resolver only (kube-dns stubDomains); repeatable",
    )
    forwarding.add_argument(
        "--upstream-timeout", type=float, default=1.5, metavar="SECONDS", help="timeout of one try (default 1.5)"
    )
    forwarding.add_argument(
        "--cache-ttl", type=int, default=30, metavar="SECONDS", help="cache forwarded answers at most this long (default 30)"
    )
    forwarding.add_argument(
        "--cache-size", type=int, default=10_000, metavar="N", help="forwarded answers kept in the cache (default 10000)"
    )
    forwarding.add_argument(
        "--serve-stale",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="when every upstream fails, serve answers expired for up to this long, with a 30 s TTL; 0 disables (default 3600)",
    )
    forwarding.add_argument(
        "--autopath",
        action="store_true",
        help="answer a pod's whole search path in one round trip (watches Pods to know who asks)",
    )
    serve.add_argument(
        "--tcp-idle-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="close TCP connections idle for this long (default 10)",
    )
    serve.add_argument(
        "--reload-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often to look for changed manifest files (default 1)",
    )
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="least severe log messages shown (default info)",
    )
    return parser


def build_config(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> ServeConfig:
    listen = tuple(config.parse_listen(text) for text in args.listen or [str(config.DEFAULT_LISTEN)])
    zones = config.check_zones([config.parse_zone(z) for z in args.zone or []])
    if args.tcp_idle_timeout <= 0:
        raise ConfigError("--tcp-idle-timeout: must be more than 0 seconds")
    if args.reload_interval <= 0:
        raise ConfigError("--reload-interval: must be more than 0 seconds")
    api = api_source(args, environ)
    upstreams, stubs = forwarding(args, zones, in_cluster=api is not None and api.in_cluster)
    for name, value in (("--cache-ttl", args.cache_ttl), ("--cache-size", args.cache_size)):
        if value < 0 or (name == "--cache-size" and value < 1):
            raise ConfigError(f"{name}: must be positive, got {value}")
    if args.upstream_timeout <= 0 or args.serve_stale < 0:
        raise ConfigError("--upstream-timeout must be positive and --serve-stale not negative")
    dns = DnsConfig(
        zones=zones,
        ttl=config.check_ttl(args.ttl),
        pods=PodsMode(args.pods),
        ns_addresses=config.ns_addresses(listen),
        forwarding=bool(upstreams),
        stub_domains=tuple(domain for domain, _ in stubs),
        autopath=args.autopath,
    )
    namespaces = None
    if args.namespaces is not None:
        namespaces = frozenset(ns.strip() for ns in args.namespaces.split(",") if ns.strip())
        bad = sorted(ns for ns in namespaces if not names.is_label(ns))
        if not namespaces or bad:
            raise ConfigError(f"--namespaces: not namespace names: {', '.join(bad) or repr(args.namespaces)}")
    if args.startup_timeout < 0:
        raise ConfigError("--startup-timeout: must not be negative")
    return ServeConfig(
        manifests=tuple(args.manifests or ()),
        api=api,
        upstreams=upstreams,
        stub_domains=stubs,
        upstream_timeout=args.upstream_timeout,
        cache_ttl=args.cache_ttl,
        cache_size=args.cache_size,
        serve_stale=args.serve_stale,
        listen=listen,
        dns=dns,
        namespaces=namespaces,
        labels=args.labels,
        tcp_idle_timeout=args.tcp_idle_timeout,
        reload_interval=args.reload_interval,
        startup_timeout=args.startup_timeout,
    )


def forwarding(args: argparse.Namespace, zones: tuple[str, ...], *, in_cluster: bool):
    """(default upstreams, stub domains) from --upstream, --resolv-conf and --stub-domain."""
    upstreams: list[tuple[str, int]] = []
    for i, text in enumerate(args.upstream or []):
        try:
            upstreams.append(upstream.parse_upstream(text, what=f"--upstream[{i}]"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    resolv_conf = args.resolv_conf or ("/etc/resolv.conf" if in_cluster and not upstreams else None)
    if resolv_conf:
        try:
            with open(resolv_conf, encoding="utf-8") as f:
                servers = upstream.parse_resolv_conf(f.read())
        except OSError as exc:
            raise ConfigError(f"--resolv-conf: {resolv_conf}: {exc.strerror}") from None
        if not servers:
            raise ConfigError(f"--resolv-conf: {resolv_conf}: no nameserver lines")
        upstreams += [(ip, upstream.DEFAULT_PORT) for ip in servers]
    stubs: dict[str, list[tuple[str, int]]] = {}
    for text in args.stub_domain or []:
        domain, sep, server = text.partition("=")
        domain = domain.strip().rstrip(".").lower()
        if not sep or not names.is_subdomain(domain):
            raise ConfigError(f"--stub-domain: expected DOMAIN=HOST[:PORT], got {text!r}")
        if any(domain == z or domain.endswith("." + z) for z in zones + names.REVERSE_ZONES):
            raise ConfigError(f"--stub-domain: {domain!r} lies inside a zone kdns serves itself")
        try:
            stubs.setdefault(domain, []).append(upstream.parse_upstream(server, what="--stub-domain"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return tuple(dict.fromkeys(upstreams)), tuple((d, tuple(s)) for d, s in stubs.items())


def api_source(args: argparse.Namespace, environ: Mapping[str, str]) -> ApiSource | None:
    """The API source the options and environment ask for; None means manifests (or the demo)."""
    if args.manifests and (args.kubeconfig or args.apiserver):
        raise ConfigError("--manifests: cannot be combined with --kubeconfig or --apiserver")
    if args.kubeconfig and args.apiserver:
        raise ConfigError("--apiserver: cannot be combined with --kubeconfig")
    if args.apiserver:
        if not args.apiserver.startswith(("http://", "https://")):
            raise ConfigError(f"--apiserver: expected an http:// or https:// URL, got {args.apiserver!r}")
        return ApiSource(apiserver=args.apiserver)
    if args.kubeconfig:
        return ApiSource(kubeconfig=args.kubeconfig)
    if args.manifests:
        return None
    if environ.get("KUBECONFIG"):
        return ApiSource(kubeconfig=environ["KUBECONFIG"])
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return ApiSource(in_cluster=True)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        cfg = build_config(args)
    except ConfigError as exc:
        parser.exit(2, f"kdns: error: {exc}\n")
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        server = Server(cfg)
    except StartupError as exc:
        print(f"kdns: error: {exc}", file=sys.stderr)
        return 1
    trio.run(_run, server)
    server.join()
    return 0


async def _run(server: Server) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
        await nursery.start(server.serve)


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("%s received, shutting down", signal.Signals(signum).name)
            scope.cancel()
            return
