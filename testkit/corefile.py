"""Support for the tests that serve Corefiles (tests/test_corefile_serve.py and friends).

* `api_objects()`: the objects of the answer table (config/demo-cluster.yaml and
  tests/manifests/e2e.yaml, Lists expanded) for the fake API server (tests/kubeapi.py).
* `localize(text, ...)`: a distribution's Corefile (or ConfigMap manifest) made safe to run
  here, changing only addresses: the kubernetes directive gets `endpoint` (the fake API
  server), forward targets and resolv.conf become loopback stub servers, the HTTP endpoints
  and server keys get loopback addresses and free ports (`bind 127.0.0.1` in every block).
  Nothing else in the file changes.
* `serve_corefile` / `serve_flags`: kdns in this trio loop, from a Corefile (through
  `kdns serve --corefile`'s own code path) or from plain `kdns serve` flags.
* `CorefileProcess`: `python -m kdns ARGS` as a process (CoreDNS's command line included),
  with its DNS and HTTP ports read from its start-up log.
* `shape(reply)`: what must be equal between two answers to one question (SOA serials aside).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import dns.flags
import dns.message
import dns.rdatatype
import trio
import yaml

from kdns.app import Server
from kdns.cli import _parser
from kdns.corefile import cli as corefile_cli
from kdns.settings import build_config
from testkit.dnswire import rrs
from testkit.inprocess import Running
from testkit.kubeapi import KINDS
from testkit.process import KdnsProcess
from testkit.repo import DEMO, ROOT

FIXTURES = ROOT / "tests" / "corefiles"
E2E = ROOT / "tests" / "manifests" / "e2e.yaml"
KDNS = [sys.executable, "-m", "kdns"]
START_TIMEOUT = 20.0


def api_objects() -> list[dict]:
    """Every Namespace, Service, EndpointSlice and Pod of the answer table's manifests."""
    out = []
    for path in (DEMO, E2E):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            for obj in doc["items"] if str(doc.get("kind", "")).endswith("List") else [doc]:
                if obj.get("kind") in KINDS:
                    out.append(obj)
    return out


_HTTP = re.compile(r"^(\s*)(health|ready|prometheus)\b(?:\s+(?!\{)\S+)?(\s*\{)?\s*$")
_KEY = re.compile(r"^(\s*)([^\s{}#]+):(\d+)(\s*\{)\s*$")
_KUBERNETES = re.compile(r"^(\s*)kubernetes\b.*\{\s*$")


def localize(text: str, *, api: str | None, upstream: str, replace: dict[str, str] | None = None, http: str = "127.0.0.1:0",
             port: int = 0, bind: bool = True) -> str:
    """`text` with only its addresses changed (see the module docstring). `replace` maps other
    addresses (a stub domain's nameserver) to loopback ones."""
    lines = []
    for line in text.splitlines():
        if m := _HTTP.match(line):
            line = f"{m[1]}{m[2]} {http}{m[3] or ''}"
        line = line.replace("/etc/resolv.conf", upstream)
        for old, new in (replace or {}).items():
            line = line.replace(old, new)
        if m := _KEY.match(line):
            line = f"{m[1]}{m[2]}:{port}{m[4]}"
            lines.append(line)
            if bind:
                lines.append(f"{m[1]}    bind 127.0.0.1")
            continue
        lines.append(line)
        if api is not None and (m := _KUBERNETES.match(line)):
            lines.append(f"{m[1]}    endpoint {api}")
    return "\n".join(lines) + "\n"


def copy_localized(name: str, into: Path, **kw) -> Path:
    """The fixture `name` (a file, or the Corefile of a directory with its custom/ imports)
    copied into `into`, every file localized; the path of its Corefile or manifest."""
    src = FIXTURES / name
    top = src.parent if src.parent != FIXTURES else src
    if top.is_dir():
        dst_top = into / top.name
        shutil.copytree(top, dst_top, dirs_exist_ok=True)
        for path in dst_top.rglob("*"):
            if path.is_file():
                path.write_text(localize(path.read_text(), **kw))
        return dst_top / src.relative_to(top)
    dst = into / src.name
    dst.write_text(localize(src.read_text(), **kw))
    return dst


async def serve_corefile(nursery: trio.Nursery, path: Path | str, *flags: str) -> Running:
    """kdns serving the Corefile at `path`, the way `kdns serve --corefile PATH FLAGS` builds it."""
    args = _parser().parse_args(["serve", "--corefile", str(path), *flags])
    config, reloader, _ = corefile_cli.serve_config(args)
    server = await trio.to_thread.run_sync(functools.partial(Server, config, flags=args, reloader=reloader))
    bound = await nursery.start(server.serve)
    return Running(server, bound[0].address.host, bound[0].address.port)


async def serve_flags(nursery: trio.Nursery, *flags: str) -> Running:
    """kdns serving with plain `kdns serve FLAGS` (the equivalent kdns configuration)."""
    config = build_config(_parser().parse_args(["serve", "--listen", "127.0.0.1:0", *flags]))
    server = await trio.to_thread.run_sync(Server, config)
    bound = await nursery.start(server.serve)
    return Running(server, bound[0].address.host, bound[0].address.port)


async def synced(running: Running, timeout: float = 10.0) -> Running:
    with trio.fail_after(timeout):
        while not running.server.synced:
            await trio.sleep(0.02)
    return running


def shape(reply: dns.message.Message) -> tuple:
    """rcode, AA, and the sections as zone-file lines (an SOA's serial blanked: it is the time
    of the last change, which two servers need not share)."""
    authority = {re.sub(r"^(\S+ \d+ IN SOA \S+ \S+) \d+", r"\1 SERIAL", line) for line in rrs(reply.authority)}
    answer = {re.sub(r"^(\S+ \d+ IN SOA \S+ \S+) \d+", r"\1 SERIAL", line) for line in rrs(reply.answer)}
    return reply.rcode(), bool(reply.flags & dns.flags.AA), answer, authority, rrs(reply.additional)


class CorefileProcess(KdnsProcess):
    """`python -m kdns ARGS` (CoreDNS's command line or kdns serve), its ports read from its log."""

    def __init__(self, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None):
        proc = subprocess.Popen([*KDNS, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=cwd, env=env)
        super().__init__(proc)
        self.argv = args

    def started(self, http: tuple[str, ...] = ("/health", "/ready", "/metrics")) -> CorefileProcess:
        """Wait for the start-up log (the DNS port and the HTTP endpoints `http`); fill `port`
        and `http` (path -> port)."""
        m = self.wait_for(r"listening on udp 127\.0\.0\.1:(\d+)", timeout=START_TIMEOUT)
        self.port = int(m[1])
        since = 0
        while not set(http) <= set(self.http):
            h = self.wait_for(r"listening on http \S+:(\d+) for (.*)$", timeout=START_TIMEOUT, since=since)
            since = self.lines.index(h.string) + 1
            for path in h[2].split():
                self.http[path] = int(h[1])
        return self

    def close(self) -> None:
        super().close()
        self.proc.stdout.close()

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http[path]}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def query(self, name: str, rdtype: str = "A", tcp: bool = False) -> dns.message.Message:
        import dns.query

        q = dns.message.make_query(name, rdtype)
        if tcp:
            return dns.query.tcp(q, "127.0.0.1", port=self.port, timeout=3)
        return dns.query.udp(q, "127.0.0.1", port=self.port, timeout=3)


def run_kdns(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*KDNS, *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env, check=False)


def a_lines(name: str, *ips: str, ttl: int) -> set[str]:
    return {f"{name} {ttl} IN {dns.rdatatype.to_text(dns.rdatatype.AAAA if ':' in ip else dns.rdatatype.A)} {ip}" for ip in ips}
