"""The `kdns` command as a user runs it: a subprocess, its exit status, stderr, and `dig`.

Every process is started with a time limit and killed in a `finally`; only loopback
addresses are used.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

import kdns as kdns_package
from testkit.process import start
from testkit.repo import DEMO, ROOT, needs, write

KDNS = [sys.executable, "-m", "kdns"]
RUN_TIMEOUT = 20.0  # a kdns that should exit at once
START_TIMEOUT = 15.0  # until kdns prints the address it answers on
STOP_TIMEOUT = 5.0  # after SIGTERM/SIGINT
RELOAD_TIMEOUT = 5.0


# -- helpers ---------------------------------------------------------------------------------


def run_kdns(*args: str) -> subprocess.CompletedProcess:
    """Run kdns to completion (it is killed if it outlives RUN_TIMEOUT)."""
    return subprocess.run([*KDNS, *map(str, args)], check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one stderr line of a kdns that refused to start (exit status 1)."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert lines[0].startswith("kdns: error: "), lines[0]
    return lines[0]


@contextlib.contextmanager
def serving(*args: str):
    """`kdns serve ARGS --listen 127.0.0.1:0 --print-address`; yields (KdnsProcess, port) once it answers."""
    process = start([*KDNS, "serve", "--listen", "127.0.0.1:0", *map(str, args), "--print-address"], timeout=START_TIMEOUT)
    try:
        yield process, process.port
    finally:
        process.close()


def ask(port: int, name: str, rdtype: str = "A") -> tuple[str, set[str]]:
    """(rcode, answer rdata) from kdns on 127.0.0.1:port, with dnspython's sync UDP client."""
    response = dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=2.0)
    return dns.rcode.to_text(response.rcode()), {rd.to_text() for rrset in response.answer for rd in rrset}


def ask_until(port: int, name: str, expected: tuple[str, set[str]], rdtype: str = "A") -> None:
    got = None
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while time.monotonic() < deadline:
        got = ask(port, name, rdtype)
        if got == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} {rdtype}: {got} after {RELOAD_TIMEOUT}s, expected {expected}")


def replace(path: Path, text: str) -> None:
    """Rewrite a manifest atomically (temp file + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(textwrap.dedent(text).lstrip())
    os.replace(tmp, path)


def dig(port: int, command: str) -> str:
    """Run a documented `dig @127.0.0.1 -p 5353 ...` line against `port`; its output."""
    argv = shlex.split(command.replace("-p 5353", f"-p {port}")) + ["+time=2", "+tries=1"]
    assert argv[0] == "dig" and f"-p {port}" in " ".join(argv), command
    result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=15)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def answer_count(dig_output: str) -> int:
    m = re.search(r"ANSWER: (\d+),", dig_output)
    assert m, dig_output
    return int(m.group(1))


def documented_digs() -> list[tuple[str, str]]:
    """Every query `make run` tells users to try, as (where, command): config/demo-queries.txt
    (tests/test_docs.py runs the `dig` lines of README.md and docs/)."""
    found = []
    for n, line in enumerate((ROOT / "config" / "demo-queries.txt").read_text().splitlines(), 1):
        if line.strip():
            found.append((f"demo-queries.txt:{n}", line.strip()))
    return found


def service(ip: str, name: str = "web") -> str:
    return f"""
    apiVersion: v1
    kind: Service
    metadata: {{name: {name}, namespace: shop}}
    spec:
      clusterIP: {ip}
      ports: [{{name: http, port: 80}}]
    """


# -- refusing to start: exit status 1, one line naming file, object and field -----------------

ENDPOINT_SLICE = """
    apiVersion: discovery.k8s.io/v1
    kind: EndpointSlice
    metadata:
      name: web-abc
      namespace: shop
      labels: {{kubernetes.io/service-name: web}}
    addressType: IPv4
    endpoints:
      - addresses: ["{address}"]
        conditions: {{ready: {ready}}}
"""

BAD_MANIFESTS = {
    "invalid-cluster-ip": (service("10.96.0.x"), ["Service shop/web: ", "spec.clusterIP: ", "'10.96.0.x'"]),
    "port-out-of-range": (
        service("10.96.0.50").replace("port: 80", "port: 70000"),
        ["Service shop/web: ", "spec.ports[0].port: ", "70000"],
    ),
    "uppercase-port-name": (
        service("10.96.0.50").replace("name: http", "name: HTTP"),
        ["Service shop/web: ", "spec.ports[0].name: ", "'HTTP'"],
    ),
    "ipv6-in-ipv4-slice": (
        ENDPOINT_SLICE.format(address="fd00::5", ready="true"),
        ["EndpointSlice shop/web-abc: ", "endpoints[0].addresses[0]: ", "fd00::5"],
    ),
    "ready-not-boolean": (
        ENDPOINT_SLICE.format(address="10.244.0.5", ready='"yes"'),
        ["EndpointSlice shop/web-abc: ", "endpoints[0].conditions.ready: ", "'yes'"],
    ),
    "invalid-yaml": (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n   namespace: shop\nspec: {}\n",
        ["line 5: invalid YAML"],
    ),
    "document-not-a-mapping": (
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n- just\n- a list\n",
        ["document 2: not a Kubernetes object"],
    ),
    "service-twice-in-one-file": (
        textwrap.dedent(service("10.96.0.50")) + "---\n" + textwrap.dedent(service("10.96.0.51")),
        ["Service shop/web: defined twice"],
    ),
}


@pytest.mark.parametrize("text, fragments", BAD_MANIFESTS.values(), ids=BAD_MANIFESTS.keys())
def test_bad_manifest_at_start_exits_1_with_one_line(tmp_path, text, fragments):
    """A manifest kdns cannot use stops it before serving: status 1, one line with file, object, field."""
    path = write(tmp_path / "web.yaml", textwrap.dedent(text))
    line = error_line(run_kdns("serve", "--manifests", path, "--listen", "127.0.0.1:0"))
    assert line.startswith(f"kdns: error: {path}: ")
    for fragment in fragments:
        assert fragment in line


def test_same_service_in_two_files_names_both(tmp_path):
    """A Service defined in two files: the message names both files and the Service."""
    d = tmp_path / "cluster"
    first = write(d / "a.yaml", textwrap.dedent(service("10.96.0.50")))
    second = write(d / "b.yaml", textwrap.dedent(service("10.96.0.51")))
    line = error_line(run_kdns("serve", "--manifests", d, "--listen", "127.0.0.1:0"))
    assert str(first) in line and str(second) in line
    assert "Service shop/web" in line


def test_missing_manifests_path_exits_1(tmp_path):
    """--manifests naming nothing: status 1 and the path in the message."""
    missing = tmp_path / "nope.yaml"
    line = error_line(run_kdns("serve", "--manifests", missing, "--listen", "127.0.0.1:0"))
    assert str(missing) in line
    assert "no such file" in line


def test_port_in_use_exits_1():
    """A taken UDP port: status 1 and `kdns: error: cannot listen on udp 127.0.0.1:<port>: ...`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        line = error_line(run_kdns("serve", "--manifests", DEMO, "--listen", f"127.0.0.1:{port}"))
    assert re.fullmatch(rf"kdns: error: cannot listen on udp 127\.0\.0\.1:{port}: \S.*", line), line


# -- command-line mistakes: exit status 2 ------------------------------------------------------

BAD_OPTIONS = {
    "unknown-option": (["--bogus"], ["--bogus"]),
    "ttl-too-large": (["--ttl", "5000"], ["--ttl", "5000"]),
    "listen-not-an-address": (["--listen", "nonsense"], ["--listen", "nonsense"]),
    "reverse-zone": (["--zone", "in-addr.arpa"], ["--zone", "in-addr.arpa"]),
    "overlapping-zones": (["--zone", "cluster.local", "--zone", "svc.cluster.local"], ["--zone", "svc.cluster.local"]),
}


@pytest.mark.parametrize("args, fragments", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_command_line_mistake_exits_2_naming_the_option(args, fragments):
    """A bad option or value: status 2 and a `kdns: error:` message naming the option."""
    result = run_kdns("serve", "--manifests", DEMO, *args)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("kdns: error: ")
    for fragment in fragments:
        assert fragment in last
    assert "listening" not in result.stderr


def test_version():
    """`kdns --version` prints the installed version."""
    result = run_kdns("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"kdns {kdns_package.__version__}"
    assert kdns_package.__version__ == importlib.metadata.version("kdns")


# -- serving the demo cluster, as the README shows it -----------------------------------------


@pytest.fixture(scope="module")
def demo_port():
    """`kdns serve --manifests config/demo-cluster.yaml --listen 127.0.0.1:0`, shared by the dig tests."""
    with serving("--manifests", "config/demo-cluster.yaml") as (_, port):
        yield port


def test_docs_have_dig_commands():
    """The dig tests below have something to run: every demo query."""
    found = documented_digs()
    sources = [where.split(":")[0] for where, _ in found]
    assert sources.count("demo-queries.txt") >= 12
    assert all("-p 5353" in command for _, command in found)


@needs("dig")
@pytest.mark.parametrize(
    "command",
    [pytest.param(command, id=f"{where} {command.removeprefix('dig @127.0.0.1 -p 5353 ')}") for where, command in documented_digs()],
)
def test_documented_dig_command_gets_an_answer(demo_port, command):
    """Each documented dig command answers NOERROR with at least one answer record."""
    output = dig(demo_port, command)
    assert "status: NOERROR" in output
    assert answer_count(output) >= 1
    assert ";; ANSWER SECTION:" in output


@needs("dig")
def test_dig_over_tcp(demo_port):
    """`dig +tcp` gets the same answer over TCP as over UDP."""
    tcp = dig(demo_port, "dig @127.0.0.1 -p 5353 +tcp +short web.shop.svc.cluster.local A")
    udp = dig(demo_port, "dig @127.0.0.1 -p 5353 +notcp +short web.shop.svc.cluster.local A")
    assert tcp.split() == udp.split() == ["10.96.100.10"]
    full = dig(demo_port, "dig @127.0.0.1 -p 5353 +tcp web.shop.svc.cluster.local A")
    assert re.search(rf"SERVER: 127\.0\.0\.1#{demo_port}\(127\.0\.0\.1\) \(TCP\)", full), full


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_kdns_with_status_0(signum):
    """SIGTERM or SIGINT while serving: kdns says so and exits 0 within a few seconds
    (SIGTERM after its lameduck period, shortened here; tests/test_lifecycle.py has more)."""
    with serving("--manifests", DEMO, "--lameduck", "0.2") as (process, port):
        assert ask(port, "web.shop.svc.cluster.local") == ("NOERROR", {"10.96.100.10"})
        process.proc.send_signal(signum)
        assert process.proc.wait(timeout=STOP_TIMEOUT) == 0
        process.wait_for(rf"{signum.name} received, shutting down", STOP_TIMEOUT)
        assert process.errors() == []


# -- a manifest broken while serving ----------------------------------------------------------


def test_broken_manifest_during_reload_is_reported_once_and_old_answer_kept(tmp_path):
    """A manifest that breaks while serving: one ERROR line (file, object, field), old answer kept."""
    d = tmp_path / "cluster"
    web = write(d / "web.yaml", textwrap.dedent(service("10.96.0.50")))
    api = write(d / "api.yaml", textwrap.dedent(service("10.96.0.60", "api")))
    with serving("--manifests", d, "--reload-interval", "0.1") as (process, port):
        assert ask(port, "web.shop.svc.cluster.local") == ("NOERROR", {"10.96.0.50"})

        replace(web, service("10.96.0.x"))
        process.wait_for(r" ERROR ", RELOAD_TIMEOUT)
        for ip in ("10.96.0.61", "10.96.0.62", "10.96.0.63"):  # other files still update, rescan after
            replace(api, service(ip, "api"))                 # rescan: the problem is not reported again
            ask_until(port, "api.shop.svc.cluster.local", ("NOERROR", {ip}))

        errors = process.errors()
        assert len(errors) == 1, errors
        assert f"{web}: Service shop/web: spec.clusterIP: not an IP address: '10.96.0.x'" in errors[0]
        assert ask(port, "web.shop.svc.cluster.local") == ("NOERROR", {"10.96.0.50"})

        replace(web, service("10.96.0.51"))
        ask_until(port, "web.shop.svc.cluster.local", ("NOERROR", {"10.96.0.51"}))
        assert process.proc.poll() is None
