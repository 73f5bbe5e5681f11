"""`kdns lint PATH...`: each mistake that DNS would otherwise keep quiet about, in a manifest file,
with the line and message it gets and the exit status; and `kdns serve --manifests` logging
the same findings as warnings when a file is (re)loaded.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from kdns import cli
from testkit.process import KdnsProcess
from testkit.repo import DEMO, ROOT

WEB = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {clusterIP: 10.96.0.5, ports: [{name: http, port: 80}]}\n"


def doc(text: str) -> str:
    return textwrap.dedent(text).lstrip()


@dataclass(frozen=True)
class Mistake:
    id: str
    manifest: str
    line: int  # where the finding points
    message: str  # the finding's text after FILE:LINE: ...
    status: int = 1
    args: tuple[str, ...] = ()


MISTAKES = [
    Mistake("misspelt kind", doc("""
        apiVersion: v1
        kind: Servce
        metadata: {name: web, namespace: shop}
    """), 2, "error: Servce shop/web: kind: unknown kind 'Servce' (did you mean Service?): kdns skips it"),
    Mistake("plural kind", doc("""
        apiVersion: v1
        kind: Services
        metadata: {name: web, namespace: shop}
    """), 2, "error: Services shop/web: kind: unknown kind 'Services' (did you mean Service?): kdns skips it"),
    Mistake("clusterIp", doc("""
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: shop}
        spec:
          clusterIp: 10.96.0.5
    """), 5, "error: Service shop/web: spec.clusterIp: unknown field (did you mean clusterIP?): kdns ignores it"),
    Mistake("port Name", doc("""
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: shop}
        spec:
          clusterIP: 10.96.0.5
          ports:
            - Name: http
              port: 80
    """), 7, "error: Service shop/web: spec.ports[0].Name: unknown field (did you mean name?): kdns ignores it"),
    Mistake("misplaced clusterIP", doc("""
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: shop}
        clusterIP: 10.96.0.5
    """), 4, "error: Service shop/web: clusterIP: misplaced (it belongs at spec.clusterIP): kdns ignores it"),
    Mistake("misplaced hostname", doc("""
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
        addressType: IPv4
        hostname: web-0
        endpoints: [{addresses: [10.244.0.1]}]
        ---
    """) + WEB, 5, "error: EndpointSlice shop/web-1: hostname: misplaced (it belongs at endpoints[].hostname): kdns ignores it"),
    Mistake("old apiVersion", doc("""
        apiVersion: discovery.k8s.io/v1beta1
        kind: EndpointSlice
        metadata: {name: web-1, namespace: shop}
    """), 1, "error: EndpointSlice shop/web-1: apiVersion: kdns reads EndpointSlice discovery.k8s.io/v1, not "
            "'discovery.k8s.io/v1beta1': it skips this object"),
    Mistake("Endpoints", doc("""
        apiVersion: v1
        kind: Endpoints
        metadata: {name: web, namespace: shop}
    """), 2, "warning: Endpoints shop/web: kind: kdns reads EndpointSlices, not Endpoints: these addresses are not served from files "
            "(in a cluster the EndpointSlice mirroring controller copies them)", 0),
    Mistake("bad value", doc("""
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: shop}
        spec:
          clusterIP: 10.96.0.x
    """), 5, "error: Service shop/web: spec.clusterIP: not an IP address: '10.96.0.x': kdns serve refuses the file"),
    Mistake("slice of no Service", doc("""
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: web-1
          namespace: shop
          labels: {kubernetes.io/service-name: wbe}
        addressType: IPv4
        endpoints: [{addresses: [10.244.0.1]}]
        ---
    """) + WEB, 6, "warning: EndpointSlice shop/web-1: metadata.labels[kubernetes.io/service-name]: belongs to no Service of these "
                  "files: no Service shop/wbe (did you mean web?)", 0),
    Mistake("headless without slices", doc("""
        apiVersion: v1
        kind: Service
        metadata: {name: db, namespace: shop}
        spec: {clusterIP: None}
    """), 1, "warning: Service shop/db: headless, and no EndpointSlice of these files belongs to it (label "
            "kubernetes.io/service-name: db): its names are NXDOMAIN", 0),
    Mistake("headless, nothing ready", doc("""
        apiVersion: v1
        kind: Service
        metadata: {name: db, namespace: shop}
        spec: {clusterIP: None}
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: db-1, namespace: shop, labels: {kubernetes.io/service-name: db}}
        addressType: IPv4
        endpoints: [{addresses: [10.244.0.1], conditions: {ready: false}}]
    """), 1, "warning: Service shop/db: headless, and none of its endpoints is ready: its names are NXDOMAIN", 0),
    Mistake("selector matches no Pod", doc("""
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: shop}
        spec:
          clusterIP: 10.96.0.5
          selector: {app: web}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: web-0, namespace: shop, labels: {app: wbe}}
    """), 6, "warning: Service shop/web: spec.selector: selects no Pod of these files (app=web)", 0),
    Mistake("shared hostname", doc("""
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
        addressType: IPv4
        endpoints:
          - {addresses: [10.244.0.1], hostname: web-0}
          - {addresses: [10.244.0.2], hostname: web-0}
        ---
    """) + WEB, 5, "warning: EndpointSlice shop/web-1: endpoints: hostname web-0 is on 2 ready endpoints of Service shop/web: "
                  "10.244.0.1 (shop/web-1), 10.244.0.2 (shop/web-1); web-0.web.shop.svc answers with all of them", 0),
    Mistake("port name too long", doc("""
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: shop}
        spec:
          clusterIP: 10.96.0.5
          ports:
            - name: http-for-the-browsers
              port: 80
    """), 7, "error: Service shop/web: spec.ports[0].name: 21 characters, over the 15 a port name may have"),
    Mistake("Service name too long", doc(f"""
        apiVersion: v1
        kind: Service
        metadata:
          name: {"w" * 64}
          namespace: shop
    """), 4, f"error: Service shop/{'w' * 64}: metadata.name: not a DNS label (lowercase letters, digits and '-', at most 63): "
            f"'{'w' * 64}': kdns serve refuses the file"),
    Mistake("endpoint name too long for DNS", doc(f"""
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {{name: s-1, namespace: {"n" * 63}, labels: {{kubernetes.io/service-name: {"s" * 63}}}}}
        addressType: IPv4
        endpoints: [{{addresses: [10.244.0.1], hostname: {"h" * 63}}}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: {"s" * 63}, namespace: {"n" * 63}}}
        spec: {{clusterIP: 10.96.0.5}}
    """), 5, "warning: EndpointSlice " + "n" * 63 + "/s-1: endpoints[0].hostname: " + ".".join(("h" * 63, "s" * 63, "n" * 63, "svc",
            "a" * 50 + ".example")) + " is 254 characters, over DNS's 253: no query can ask for it", 0, ("--zone", "a" * 50 + ".example")),
    Mistake("broken YAML", doc("""
        apiVersion: v1
        kind: Service
        metadata: {name: web
    """), 0, "error: line 4: invalid YAML"),
]


def lint(capsys, *argv: str) -> tuple[int, list[str]]:
    status = cli.main(["lint", *argv])
    return status, capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.id)
def test_each_mistake(capsys, tmp_path, mistake: Mistake):
    path = tmp_path / "shop.yaml"
    path.write_text(mistake.manifest)
    status, out = lint(capsys, str(path), *mistake.args)
    where = f"{path}:{mistake.line}: " if mistake.line else f"{path}: "
    assert any(line.startswith(where + mistake.message) for line in out), out
    assert status == mistake.status, out
    assert out[-1].endswith("warning(s)")


def test_line_numbers_in_lists_and_json(capsys, tmp_path):
    listed = tmp_path / "list.yaml"
    listed.write_text("apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Service\n    metadata: {name: a}\n"
                      "  - apiVersion: v1\n    kind: Servce\n    metadata: {name: b}\n")
    _, out = lint(capsys, str(listed))
    assert out[0] == f"{listed}:8: error: Servce default/b: kind: unknown kind 'Servce' (did you mean Service?): kdns skips it"
    js = tmp_path / "one.json"
    js.write_text('{"apiVersion": "v1", "kind": "Service",\n "metadata": {"name": "a"},\n "spec": {"clusterIp": "10.96.0.5"}}\n')
    _status, out = lint(capsys, str(js))
    assert out[0].startswith(f"{js}:3: error: Service default/a: spec.clusterIp: unknown field (did you mean clusterIP?)")


def test_a_clean_cluster_has_no_errors(capsys):
    status, out = lint(capsys, str(DEMO))
    assert (status, out) == (0, ["0 error(s), 0 warning(s)"])


def test_object_defined_twice_and_missing_paths(capsys, tmp_path):
    (tmp_path / "a.yaml").write_text(WEB)
    (tmp_path / "b.yaml").write_text(WEB)
    status, out = lint(capsys, str(tmp_path), str(tmp_path / "nope.yaml"))
    assert status == 1
    assert f"{tmp_path / 'b.yaml'}:1: error: Service shop/web: already defined at {tmp_path / 'a.yaml'}:1: kdns serve refuses the " \
           "second file" in out
    assert f"{tmp_path / 'nope.yaml'}: error: no such file or directory" in out


def test_the_command_exits_1_on_errors(tmp_path):
    path = tmp_path / "shop.yaml"
    path.write_text("apiVersion: v1\nkind: Servce\nmetadata: {name: web}\n")
    result = subprocess.run([sys.executable, "-m", "kdns", "lint", str(path)], capture_output=True, text=True, timeout=20, cwd=ROOT,
                            check=False)
    assert result.returncode == 1
    assert result.stdout == (f"{path}:2: error: Servce default/web: kind: unknown kind 'Servce' (did you mean Service?): kdns skips "
                             "it\n1 error(s), 0 warning(s)\n")


def test_serve_logs_the_findings_when_a_file_is_loaded_and_reloaded(tmp_path):
    """Each file's findings once when it is read; a file that did not change is not reported again."""
    shop, other = tmp_path / "shop.yaml", tmp_path / "other.yaml"
    shop.write_text(WEB.replace("clusterIP:", "clusterIp:"))
    other.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n")
    proc = subprocess.Popen([sys.executable, "-m", "kdns", "serve", "--manifests", str(tmp_path), "--listen", "127.0.0.1:0",
                             "--reload-interval", "0.1", "--lameduck", "0"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    process = KdnsProcess(proc)
    finding = f"WARNING kdns.manifests: {shop}:4: error: Service shop/web: spec.clusterIp: unknown field (did you mean clusterIP?)"
    try:
        process.wait_for(r"listening on udp", 15)
        assert len(process.matching(re.escape(finding))) == 1, process.lines
        mark = process.mark()
        other.write_text("apiVersion: v1\nkind: Servce\nmetadata: {name: x, namespace: other}\n")
        process.wait_for(rf"{other}:2: error: Servce other/x: kind: unknown kind", 10, since=mark)
        process.wait_for(r"manifests changed", 10, since=mark)
        assert not [line for line in process.lines[mark:] if "clusterIp" in line], "shop.yaml did not change: not reported again"
        mark = process.mark()
        shop.write_text(WEB.replace("clusterIP:", "clusterIp:") + "# touched\n")
        process.wait_for(r"spec\.clusterIp: unknown field", 10, since=mark)
    finally:
        process.close()


def test_findings_point_at_real_lines(capsys):
    """tests/manifests/e2e.yaml's deliberate edge cases are found where they are written."""
    e2e = Path(__file__).parent / "manifests" / "e2e.yaml"
    _status, out = lint(capsys, str(e2e))
    text = e2e.read_text().splitlines()
    for line in out[:-1]:
        number = int(line.split(":", 2)[1])
        assert text[number - 1].strip(), line
