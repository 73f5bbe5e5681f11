"""The image swap, checked statically: CoreDNS's own Deployment as kubeadm generates it, with
only the image changed to kdns (tests/coredns/kubeadm.yaml), against what kdns needs: its
arguments are a command line kdns reads, the Corefile it mounts checks clean and makes kdns
listen where the container ports, probes and Service say, the ClusterRole grants what kdns
watches, and the security context (non-root, NET_BIND_SERVICE, no privilege escalation,
read-only root) lets the image bind port 53 and write nothing.

The capability part is also run for real where the test runs as root: a copy of an interpreter
given the image's file capability binds a port below 1024 as UID 65532 with no_new_privs and
NET_BIND_SERVICE as the only capability, as CRI runtimes start CoreDNS's container; and
without that capability in the container it still runs (and says why it cannot bind).
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from kdns import caps
from kdns.corefile.cli import from_coredns
from kdns.corefile.configmap import CONF
from kdns.corefile.wiring import load_corefile
from testkit.deploy import DOCKERFILE, deserialize, differences, dockerfile_instructions, exec_form, final_stage, only, resolve_port
from testkit.repo import ROOT

KUBEADM = ROOT / "tests" / "coredns" / "kubeadm.yaml"
MODELS = {"ServiceAccount": "V1ServiceAccount", "ClusterRole": "V1ClusterRole", "ClusterRoleBinding": "V1ClusterRoleBinding",
          "ConfigMap": "V1ConfigMap", "Deployment": "V1Deployment", "Service": "V1Service"}
IMAGE_USER = 65532


@pytest.fixture(scope="module")
def objects() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(KUBEADM.read_text()) if d]
    assert sorted(d["kind"] for d in docs) == sorted(MODELS)
    return {d["kind"]: d for d in docs}


@pytest.fixture(scope="module")
def container(objects) -> dict:
    (only_container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only_container


@pytest.fixture(scope="module")
def loaded():
    """What kdns makes of the ConfigMap as the Deployment mounts it (no cluster needed)."""
    result = load_corefile(str(KUBEADM), environ={})
    assert result.problems == (), [str(p) for p in result.problems]
    return result


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_documents_load_into_the_client_models(objects, kind):
    obj = objects[kind]
    back = client.ApiClient().sanitize_for_serialization(deserialize(obj, MODELS[kind]))
    assert differences(obj, back) == []


def test_the_arguments_are_coredns_command_line_which_kdns_reads(container, objects):
    assert "command" not in container, "the image's entrypoint (kdns) runs"
    assert from_coredns(container["args"]) == ["serve", "--corefile", CONF]
    (mount,) = container["volumeMounts"]
    volume = next(v for v in objects["Deployment"]["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    items = {item["key"]: item["path"] for item in volume["configMap"]["items"]}
    assert f"{mount['mountPath']}/{items['Corefile']}" == CONF == container["args"][1]
    assert volume["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]


def test_the_corefile_listens_where_the_ports_and_probes_point(container, loaded):
    config = loaded.config
    assert [(a.host, a.port) for a in config.listen] == [("", 53)], "every address of both families, port 53"
    for protocol in ("UDP", "TCP"):
        assert resolve_port(53, protocol, container) == 53
    names = {p["name"]: (p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert names["dns"] == (53, "UDP") and names["dns-tcp"] == (53, "TCP")
    assert names["metrics"] == (config.http.metrics.port, "TCP")
    for probe, address, path in (("livenessProbe", config.http.health, "/health"), ("readinessProbe", config.http.ready, "/ready")):
        get = container[probe]["httpGet"]
        assert (get["path"], resolve_port(get["port"], "TCP", container)) == (path, address.port)
        assert address.host == "", "probes come from the kubelet, on the pod's address"


def test_the_cluster_comes_from_the_pods_service_account(loaded, objects):
    assert loaded.config.api is not None and loaded.config.api.in_cluster
    assert objects["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == objects["ServiceAccount"]["metadata"]["name"]


def test_the_cluster_role_grants_what_kdns_watches(objects):
    granted = {(g, r, v) for rule in objects["ClusterRole"]["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    kdns_role = next(d for d in yaml.safe_load_all((ROOT / "config" / "rbac.yaml").read_text()) if d["kind"] == "ClusterRole")
    needed = {(g, r, v) for rule in kdns_role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    # Ingresses and Gateway API routes are read only with --ingress-hosts / --gateway-hosts,
    # which no Corefile directive turns on: CoreDNS's role need not grant them.
    needed = {(g, r, v) for g, r, v in needed if g not in ("networking.k8s.io", "gateway.networking.k8s.io")}
    assert needed <= granted, sorted(needed - granted)
    binding = objects["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == objects["ClusterRole"]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]


def test_forwarding_is_the_nodes_resolver(objects, loaded):
    """`forward . /etc/resolv.conf` with dnsPolicy Default: the node's resolver, as CoreDNS."""
    assert objects["Deployment"]["spec"]["template"]["spec"]["dnsPolicy"] == "Default"
    assert loaded.review.options["resolv-conf"] == "/etc/resolv.conf"


def test_the_service_reaches_the_pods(objects, container):
    service, deployment = objects["Service"], objects["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    for port in service["spec"]["ports"]:
        assert resolve_port(port["targetPort"], port["protocol"], container) == port["targetPort"]
    assert {p["name"] for p in service["spec"]["ports"]} == {"dns", "dns-tcp", "metrics"}


def test_shutdown_fits_the_grace_period(objects, loaded):
    from kdns.app import DRAIN_DEADLINE

    grace = objects["Deployment"]["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    assert loaded.config.lameduck == 5.0 and loaded.config.lameduck + DRAIN_DEADLINE < grace


def test_the_security_context_is_one_the_image_runs_under(container):
    """Non-root (the image's user, as CoreDNS's image), port 53 through NET_BIND_SERVICE (the
    image's interpreter holds it as a permitted file capability, which no_new_privs lets
    through), a read-only root (kdns writes nothing; no pidfile is asked for)."""
    sc = container["securityContext"]
    assert sc["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert "-pidfile" not in container["args"]
    stage = final_stage(dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8")))
    assert only(stage, "USER") == f"{IMAGE_USER}:{IMAGE_USER}"
    assert exec_form(only(stage, "ENTRYPOINT")) == ["kdns"]
    assert "PYTHONDONTWRITEBYTECODE=1" in only(stage, "ENV")
    run = exec_form(only(stage, "RUN"))
    assert run == ["/opt/kdns/bin/python", "-m", "kdns.caps", "grant", "/opt/kdns/bin/python"]
    assert stage.index(("RUN", only(stage, "RUN"))) < stage.index(("USER", only(stage, "USER"))), "granted as root"


# -- the file capability ------------------------------------------------------------------------


def test_the_file_capability_is_permitted_not_effective():
    """`cap_net_bind_service=+p`: with the effective bit, the kernel would refuse to run the
    interpreter at all in a container without the capability (kdns's own manifests)."""
    magic, permitted, inheritable, permitted_high, inheritable_high = struct.unpack("<5I", caps.file_capability())
    assert magic == 0x02000000 and not magic & 1
    assert (permitted, inheritable, permitted_high, inheritable_high) == (1 << caps.CAP_NET_BIND_SERVICE, 0, 0, 0)


def test_raise_makes_a_permitted_capability_effective():
    """In a child process: drop CAP_NET_BIND_SERVICE from the effective set, then raise it."""
    code = ("from kdns import caps; c = caps.CAP_NET_BIND_SERVICE; permitted = caps.has(c, 'permitted'); "
            "caps.set_effective(c, False); before = caps.has(c); raised = caps.raise_bind_service(); "
            "print(permitted, before, raised, caps.has(c))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=ROOT, check=False)
    permitted, before, raised, after = result.stdout.split()
    assert before == "False" and raised == after == permitted, result.stdout + result.stderr


SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
needs_root_and_setpriv = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not SYSTEM_PYTHON.is_file(),
    reason=f"needs root, setpriv (util-linux) and {SYSTEM_PYTHON} (CI runs as root)")


def free_low_port() -> int:
    for port in range(1000, 700, -7):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024 on 127.0.0.1")


@pytest.fixture
def capable_python():
    """A copy of the system interpreter with the image's file capability, where UID 65532 can run it."""
    directory = Path(tempfile.mkdtemp(prefix="kdns-caps-"))
    try:
        directory.chmod(0o755)
        python = directory / "python"
        shutil.copy2(SYSTEM_PYTHON, python)
        result = subprocess.run([sys.executable, "-m", "kdns.caps", "grant", str(python)], capture_output=True, text=True,
                                timeout=30, cwd=ROOT, check=False)
        if result.returncode != 0:
            pytest.skip(f"this file system keeps no file capabilities: {result.stderr.strip()}")
        yield python
    finally:
        shutil.rmtree(directory)


def as_container_user(python: Path, code: str, *, with_capability: bool) -> subprocess.CompletedProcess:
    """Run `code` as a CRI runtime starts a non-root container: UID/GID 65532, no_new_privs,
    the bounding set `capabilities.add` gives (NET_BIND_SERVICE, or nothing), and that set
    permitted before the exec (runc sets it; here an outer setpriv, through the ambient set)."""
    caps_ = "-all,+net_bind_service" if with_capability else "-all"
    outer = ["setpriv", f"--reuid={IMAGE_USER}", f"--regid={IMAGE_USER}", "--clear-groups", f"--bounding-set={caps_}"]
    if with_capability:
        outer += ["--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service"]
    inner = ["setpriv", "--no-new-privs", "--ambient-caps=-all", "--inh-caps=-all"] if with_capability else ["setpriv", "--no-new-privs"]
    return subprocess.run([*outer, *inner, str(python), "-c", code], capture_output=True, text=True, timeout=30, check=False,
                          env={"PYTHONPATH": str(ROOT)}, cwd="/")


@needs_root_and_setpriv
def test_a_non_root_container_binds_a_low_port_with_the_file_capability(capable_python):
    port = free_low_port()
    code = ("import os, socket; from kdns import caps; raised = caps.raise_bind_service(); s = socket.socket(); "
            f"s.bind(('127.0.0.1', {port})); print(os.getuid(), raised, s.getsockname()[1])")
    result = as_container_user(capable_python, code, with_capability=True)
    assert result.stdout.split() == [str(IMAGE_USER), "True", str(port)], result.stdout + result.stderr


@needs_root_and_setpriv
def test_without_the_capability_the_interpreter_still_runs(capable_python):
    """kdns's own Deployment drops every capability: the +p file capability must not stop the
    interpreter from starting (a +ep one would: EPERM at exec); a low port is then refused."""
    port = free_low_port()
    code = ("import socket; from kdns import caps; print(caps.raise_bind_service()); s = socket.socket(); "
            f"s.bind(('127.0.0.1', {port}))")
    result = as_container_user(capable_python, code, with_capability=False)
    assert result.stdout.split() == ["False"], result.stdout + result.stderr
    assert result.stderr.strip().endswith("PermissionError: [Errno 13] Permission denied"), result.stderr
