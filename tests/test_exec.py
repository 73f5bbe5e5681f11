"""`kdns exec`: any program resolves names as a pod would, through kdns (issue 16, problem 6).

The real command, run as a user runs it: glibc's `getent`, static glibc and musl clients
compiled here, a pytest suite, and the curl example of docs/testing.md, each inside the
namespaces kdns exec makes (their traffic never leaves them: loopback and the private ranges
made local inside). As root (CI) it runs without a user namespace; the same checks run as
uid 65534 through an unprivileged user namespace where the kernel allows one; a machine that
allows neither is shown to get a one-line refusal.

Needs Linux namespaces: as root, or with unprivileged user namespaces; skipped otherwise,
saying why (CI runs as root).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from testkit.repo import ROOT, needs

KDNS = [sys.executable, "-m", "kdns"]
TIMEOUT = 60  # seconds any one kdns exec run may take
NOBODY = 65534
CLIENT = r"""
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

/* Resolve argv[1] with getaddrinfo (IPv4); print each address, or the error's name. */
int main(int argc, char **argv) {
    struct addrinfo hints, *res, *p;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(argv[1], NULL, &hints, &res);
    if (rc != 0) {
        printf("error %s\n", rc == EAI_NONAME ? "EAI_NONAME" : rc == EAI_AGAIN ? "EAI_AGAIN" : gai_strerror(rc));
        return 2;
    }
    for (p = res; p != NULL; p = p->ai_next) {
        char text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &((struct sockaddr_in *)p->ai_addr)->sin_addr, text, sizeof text);
        printf("%s\n", text);
    }
    freeaddrinfo(res);
    return 0;
}
"""


def kdns_exec(*args: str, cwd: Path = ROOT, prefix: list[str] | None = None, env: dict | None = None,
              timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([*(prefix or []), *KDNS, "exec", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL, env=env)


@pytest.fixture(scope="module", autouse=True)
def namespaces_allowed():
    """Skip where kdns exec cannot make namespaces and this is not root (as root it must)."""
    result = kdns_exec("--", "true")
    if result.returncode == 125 and os.geteuid() != 0:
        pytest.skip(f"no namespaces for kdns exec here (not root): {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def clients(tmp_path_factory) -> dict[str, Path]:
    """The getaddrinfo client, compiled statically against glibc (gcc) and musl (musl-gcc)."""
    out = tmp_path_factory.mktemp("clients")
    source = out / "gai.c"
    source.write_text(CLIENT)
    built = {}
    for libc, compiler in (("glibc", "gcc"), ("musl", "musl-gcc")):
        if shutil.which(compiler):
            binary = out / f"gai-{libc}"
            subprocess.run([compiler, "-static", "-O", "-o", str(binary), str(source)], check=True, capture_output=True,
                           timeout=120)
            built[libc] = binary
    return built


# -- resolving as a pod ---------------------------------------------------------------------------------


@needs("getent")
def test_getent_resolves_a_service_by_its_short_name():
    """glibc's getent, in a pod of namespace `shop` of the demo cluster: `web` is
    web.shop.svc.cluster.local; `kubernetes.default` its Service; the resolv.conf is a pod's."""
    result = kdns_exec("--namespace", "shop", "--", "sh", "-c",
                       "getent ahostsv4 web; getent ahostsv4 kubernetes.default; cat /etc/resolv.conf")
    assert result.returncode == 0, result.stderr
    assert "10.96.100.10    STREAM web.shop.svc.cluster.local" in result.stdout
    assert "10.96.0.1       STREAM kubernetes.default.svc.cluster.local" in result.stdout
    assert "nameserver 127.0.0.1\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n" \
        in result.stdout


@needs("getent")
def test_getent_hosts_web():
    """`getent hosts web` (the issue's example): found in `shop`, not in `default`."""
    found = kdns_exec("--namespace", "shop", "--", "getent", "hosts", "web")
    assert found.returncode == 0 and found.stdout.split()[1] == "web.shop.svc.cluster.local", found
    missing = kdns_exec("--", "getent", "hosts", "web")
    assert missing.returncode == 2 and missing.stdout == "", missing


@pytest.mark.parametrize("libc", ["glibc", "musl"])
def test_static_clients_of_each_libc(clients, libc):
    """A static binary (no NSS module, no dnspython: its libc's own resolver reading
    /etc/resolv.conf) resolves short, partial and full names as a pod in `shop` would."""
    if libc not in clients:
        pytest.skip(f"no compiler for a static {libc} client ({'musl-tools' if libc == 'musl' else 'gcc'}; CI installs it)")
    binary = clients[libc]
    script = f"for n in web web.shop web.shop.svc.cluster.local kubernetes.default; do {binary} $n; done; {binary} nothere"
    result = kdns_exec("--namespace", "shop", "--", "sh", "-c", script)
    assert result.returncode == 2, result  # the last lookup's status
    lines = result.stdout.splitlines()
    assert lines[:4] == ["10.96.100.10", "10.96.100.10", "10.96.100.10", "10.96.0.1"], result
    assert lines[4] == "error EAI_NONAME", result  # not found, as in a pod: not a temporary failure


def test_a_pytest_suite_under_kdns_exec(tmp_path):
    """`kdns exec --manifests k8s/ -- pytest`: a whole suite runs as if in a pod; its code
    reaches, by the Service's name, the stand-in server it starts itself (the ClusterIP is
    local inside), and an outside address is unreachable."""
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "api.yaml").write_text(textwrap.dedent("""
        apiVersion: v1
        kind: Service
        metadata: {name: api, namespace: app}
        spec: {clusterIP: 10.96.7.7, ports: [{name: http, port: 8080}]}
    """))
    (tmp_path / "test_in_a_pod.py").write_text(textwrap.dedent('''
        import errno
        import http.server
        import socket
        import threading
        import urllib.request

        import pytest


        class Hello(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"hello from api"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass


        def test_the_service_name_reaches_the_stand_in():
            assert socket.gethostbyname("api") == "10.96.7.7"
            server = http.server.HTTPServer(("0.0.0.0", 8080), Hello)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open("http://api:8080/", timeout=5) as response:
                assert response.read() == b"hello from api"
            server.shutdown()


        def test_nothing_leaves_the_namespace():
            with pytest.raises(OSError) as caught:
                socket.create_connection(("192.0.2.1", 80), timeout=2)
            assert caught.value.errno == errno.ENETUNREACH
            with pytest.raises(socket.gaierror):
                socket.getaddrinfo("example.org", 80)
    '''))
    result = kdns_exec("--namespace", "app", "--manifests", "k8s/", "--", sys.executable, "-m", "pytest", "-q",
                       "-p", "no:cacheprovider", "test_in_a_pod.py", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


# -- the command's exit status, signals, mistakes --------------------------------------------------------


def test_exit_status_is_the_commands():
    """kdns exec exits with COMMAND's status; 128+N when signal N ended it; 127 for a command
    that does not exist; 2 with no command."""
    assert kdns_exec("--", "sh", "-c", "exit 7").returncode == 7
    assert kdns_exec("--", "sh", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM
    missing = kdns_exec("--", "no-such-command-here")
    assert missing.returncode == 127 and missing.stderr.strip() == "kdns exec: no-such-command-here: command not found"
    empty = kdns_exec()
    assert empty.returncode == 2 and "no command given" in empty.stderr
    refused = kdns_exec("--listen", "127.0.0.1:5353", "--", "true")
    assert refused.returncode == 2 and "--listen is not for kdns exec" in refused.stderr


def test_sigterm_is_passed_on_to_the_command():
    """SIGTERM to kdns exec reaches COMMAND, which may handle it; its exit status is kdns exec's."""
    script = "trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.1; done"
    proc = subprocess.Popen([*KDNS, "exec", "--", "sh", "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 42
        assert proc.stdout.read() == "got TERM\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


# -- with and without root ---------------------------------------------------------------------------------


def _as_nobody() -> tuple[list[str], dict[str, str]]:
    """The command prefix and environment that run kdns as uid 65534 (skip if impossible)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("running as another user needs root and setpriv (util-linux)")
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    site = next(p for p in sys.path if p.endswith("site-packages"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "PYTHONPATH": f"{ROOT}:{site}"}
    python = next((p for p in (sys.executable, shutil.which(f"python3.{sys.version_info.minor}") or "")
                   if p and subprocess.run([*prefix, p, "-c", "import kdns.cli"], env=env, capture_output=True,
                                           timeout=TIMEOUT, check=False).returncode == 0), None)
    if python is None:
        pytest.skip(f"no Python {sys.version_info.major}.{sys.version_info.minor} that uid {NOBODY} can run with kdns "
                    "importable (the checkout or the interpreter is not readable by others)")
    global KDNS_AS_NOBODY
    KDNS_AS_NOBODY = [*prefix, python, "-m", "kdns"]
    return prefix, env


KDNS_AS_NOBODY: list[str] = []


@needs("getent")
def test_without_root_through_a_user_namespace():
    """As an ordinary user (uid 65534), kdns exec works through an unprivileged user
    namespace, and COMMAND runs as that same user."""
    _, env = _as_nobody()
    result = subprocess.run([*KDNS_AS_NOBODY, "exec", "--namespace", "shop", "--", "sh", "-c", "id -u; getent hosts web"],
                            cwd="/", capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False)
    if result.returncode == 125:
        pytest.skip(f"unprivileged user namespaces are off on this machine: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    uid, address, name = result.stdout.split()[:3]
    assert (uid, name) == (str(NOBODY), "web.shop.svc.cluster.local"), result.stdout
    assert address in ("10.96.100.10", "fd00:10:96::100:a")


def test_where_namespaces_are_refused_it_says_so_in_one_line():
    """Where kdns exec can make no namespace at all (here: root inside a user namespace that
    allows no more of them, with every capability dropped), it prints one line saying so
    and exits 125 without running COMMAND."""
    if shutil.which("unshare") is None or shutil.which("setpriv") is None:
        pytest.skip("needs unshare and setpriv (util-linux)")
    inner = " ".join([
        "echo 0 > /proc/sys/user/max_user_namespaces &&",
        "exec setpriv --bounding-set=-all --inh-caps=-all --securebits=+noroot,+noroot_locked",
        *KDNS, "exec", "--", "sh", "-c", "'echo ran'",
    ])
    result = subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c", inner], cwd=ROOT, capture_output=True,
                            text=True, timeout=TIMEOUT, check=False)
    if "max_user_namespaces" in result.stderr and "kdns exec" not in result.stderr:
        pytest.skip(f"cannot set up the refusing namespace here: {result.stderr.strip()}")
    assert result.returncode == 125, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and re.match(r"kdns exec: cannot make the namespaces COMMAND runs in: unshare\(", lines[0]), lines


# -- the example of docs/testing.md ----------------------------------------------------------------------


@needs("curl")
def test_the_curl_example_of_the_docs_runs_as_written(tmp_path):
    """The `kdns exec` example of docs/testing.md, run as written (with the installed `kdns`
    command first on PATH): curl reaches the stand-in for `web` by its Service name."""
    result = run_docs_example("curl", tmp_path)
    assert (result.returncode, result.stdout) == (0, "hello from web\n"), result.stderr


@needs("node")
def test_the_node_example_of_the_docs_runs_as_written(tmp_path):
    """The Node example of docs/testing.md, run as written: a Service's short name resolves to
    its ClusterIP through getaddrinfo, a missing one is ENOTFOUND (NXDOMAIN), as in a pod."""
    result = run_docs_example("node -e", tmp_path)
    assert (result.returncode, result.stdout) == (0, "web 10.96.100.10\nno-such-service ENOTFOUND\n"), result.stderr


def run_docs_example(marker: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """The one `kdns exec` block of docs/testing.md holding `marker`, run by sh with the
    installed `kdns` command first on PATH."""
    text = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"^```sh\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE) if "kdns exec" in b and marker in b]
    assert len(blocks) == 1
    script = tmp_path / "example.sh"
    script.write_text(blocks[0])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    assert shutil.which("kdns", path=env["PATH"]), "the kdns command is not installed beside this Python"
    return subprocess.run(["sh", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
                          env=env, check=False, stdin=subprocess.DEVNULL)
