"""`kdns explain NAME [TYPE]`: what kdns answers for a name, why, and which objects made it.

Two ways to look:

* with the source options of `kdns serve` (`--manifests`, `--kubeconfig`, `--apiserver`,
  a `--config` file or a `--corefile`, the answer options): kdns reads the source as `kdns
  serve` would (an API server is listed until synced, at most `--sync-timeout` seconds),
  explains, and exits; a Corefile's rewrites, templates, hosts and fallthrough show as
  they would when served. It asks no upstream: a forwarded name is explained as far as where
  it would go;
* with `--server URL`: it asks the `/explain` endpoint of a running kdns (`kdns serve
  --explain ADDRESS`), which explains from what that server holds now, its forwarding cache
  included.

The explanation is printed as text, or with `--json` as the JSON `/explain` sends. Exit
status: 0 when explained (whatever the answer), 1 when the source or the server cannot be
read, 2 for a command-line mistake.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import trio

from kdns import observe, settings
from kdns.config import ConfigError, ServeConfig
from kdns.corefile import cli as corefile_cli
from kdns.corefile.model import CorefileError
from kdns.explain import View, explain, from_json, text
from kdns.sources.source import Source, SourceError
from kdns.state import DnsState

SYNC_TIMEOUT = 30.0  # seconds to wait for an API server's first list
HTTP_TIMEOUT = 10.0
MAX_REPLY = 4 << 20  # bytes of an /explain reply read at most


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "explain",
        help="say why a name gets its answer, and which Kubernetes objects made each record",
        description=(
            "Explain the answer kdns gives to NAME (and TYPE, default A): which zone or table answered and why, each "
            "record with the objects that made it (file:line or resourceVersion), why a negative answer is NXDOMAIN, "
            "NODATA or SERVFAIL and which names look alike, and with --namespace the search-path walk of a pod there. "
            "It reads the source the options of kdns serve name (see kdns serve --help), a --corefile included, or asks a running kdns (--server)."
        ),
    )
    parser.add_argument("name", metavar="NAME", help="a name; without a final dot and with --namespace, as a pod writes it")
    parser.add_argument("type", metavar="TYPE", nargs="?", default="A", help="the record type asked for (default A)")
    parser.add_argument("--namespace", metavar="NS", help="also walk the search path of a pod in namespace NS (ndots:5, "
                        "A and AAAA), as glibc's resolver does, for a NAME without a final dot")
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON (what /explain sends)")
    parser.add_argument("--server", metavar="URL", help="ask the /explain endpoint of a running kdns (kdns serve --explain "
                        "ADDRESS), e.g. http://127.0.0.1:8053, instead of reading a source")
    parser.add_argument("--sync-timeout", type=float, default=SYNC_TIMEOUT, metavar="SECONDS",
                        help=f"how long to wait for an API server's first list (default {SYNC_TIMEOUT:g})")
    settings.add_arguments(parser)
    corefile_cli.add_source_arguments(parser)


def main(args: argparse.Namespace) -> int:
    if args.server:
        return _ask(args)
    if args.corefile and args.config:
        print("kdns explain: error: --corefile and --config cannot be combined: give one", file=sys.stderr)
        return 2
    try:
        cfg = corefile_cli.serve_config(args)[0] if args.corefile else settings.build_config(args)
    except ConfigError as exc:
        print(f"kdns explain: error: {exc}", file=sys.stderr)
        return 2 if exc.flag is not None else 1
    except CorefileError as refused:
        for each in refused.problems:
            print(f"kdns explain: error: {each}", file=sys.stderr)
        return 1
    observe.setup_logging("warning", cfg.log_format)  # what the source warns about (kdns lint's findings) shows
    try:
        source = Source(cfg)
        dns = DnsState(cfg.dns, sources=source.names, now=time.time())
        dns.apply(source.initial(), time.time())
    except SourceError as exc:
        print(f"kdns explain: error: {exc}", file=sys.stderr)
        return 1
    if not dns.snapshot.synced:
        trio.run(_sync, source, dns, args.sync_timeout)
        if not dns.snapshot.synced:
            print(f"kdns explain: not synced with {source.describe()} after {args.sync_timeout:g}s: explaining what is known",
                  file=sys.stderr)
    view = View(dns.snapshot, dns.index, source.locate, _forward_info(cfg), source.describe())
    try:
        found = explain(view, args.name, args.type, args.namespace)
    except ValueError as exc:
        print(f"kdns explain: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(found.to_json(), indent=1) if args.json else text(found), end="\n" if args.json else "")
    return 0


async def _sync(source: Source, dns: DnsState, at_most: float) -> None:
    """Apply the source's batches until the snapshot is synced, or `at_most` seconds."""
    send, receive = trio.open_memory_channel(64)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(source.run, send, 3600.0)
        with trio.move_on_after(at_most):
            async for batch in receive:
                dns.apply(batch, time.time())
                if dns.snapshot.synced:
                    break
        nursery.cancel_scope.cancel()
    source.join(2.0)


def _forward_info(cfg: ServeConfig):
    def info(name: str, qtype: int) -> dict[str, Any]:
        best = None
        for domain, servers in (*cfg.stub_domains, *((d, cfg.upstreams) for d in cfg.default_domains)):
            if (name == domain or name.endswith("." + domain)) and (best is None or len(domain) > len(best[0])):
                best = (domain, servers)
        servers = best[1] if best is not None else cfg.upstreams
        return {"name": f"{name}.", "upstreams": [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in servers], "cache": None,
                "note": "kdns explain asks no upstream and has no cache (--server asks a running kdns, and shows its cache)"}

    return info


def _ask(args: argparse.Namespace) -> int:
    """`--server URL`: GET URL/explain?name=...&type=...[&namespace=...]."""
    base = args.server.rstrip("/")
    if not base.startswith(("http://", "https://")):
        base = "http://" + base
    url = base if base.endswith("/explain") else base + "/explain"
    params = {"name": args.name, "type": args.type, **({"namespace": args.namespace} if args.namespace else {})}
    try:
        with urllib.request.urlopen(f"{url}?{urllib.parse.urlencode(params)}", timeout=HTTP_TIMEOUT) as response:
            body = response.read(MAX_REPLY)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            print(f"kdns explain: error: {url}: not found (kdns serve --explain ADDRESS serves /explain)", file=sys.stderr)
            return 1
        detail = exc.read(4096).decode("utf-8", "replace").strip()
        print(f"kdns explain: error: {url}: HTTP {exc.code}: {detail}", file=sys.stderr)
        return 2 if exc.code == 400 else 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"kdns explain: error: cannot ask {url}: {reason}", file=sys.stderr)
        return 1
    try:
        data = json.loads(body)
        found = from_json(data)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"kdns explain: error: {url}: not an explanation: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(data, indent=1) if args.json else text(found), end="\n" if args.json else "")
    return 0
