"""The container image and the cluster manifests, checked statically: no cluster, no container engine.

* Every manifest in config/kubernetes/ parses, is listed in its kustomization.yaml and loads
  into the official client's model (V1Deployment and friends) without losing a field, so a
  misspelt or misplaced key fails here instead of at `kubectl apply`.
* The manifests agree with each other and with kdns: labels and selectors, the service
  account and its RBAC, the ConfigMap (config/kdns.yaml, byte for byte, valid for
  `kdns check-config`) and where it is mounted, the probes and the ports.
* The Dockerfile (read as text): two stages on one pinned base, the locked dependencies and
  kdns built in the first, nothing but that and the config file in the second; user, command,
  health check, exposed ports, and a .dockerignore that keeps what it copies.
  tests/test_image.py checks the lock; `make image-check` builds and runs the image.

`python -m testkit.deploy` rewrites config/kubernetes/configmap.yaml from config/kdns.yaml.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from testkit.deploy import (
    DOCKERFILE,
    deserialize,
    differences,
    dockerfile_instructions,
    exec_form,
    final_stage,
    only,
    port_number,
    resolve_port,
)

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "config" / "kubernetes"
CONFIG = ROOT / "config" / "kdns.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"
CONFIG_KEY = "kdns.yaml"

# (apiVersion, kind) -> the client's model
MODELS = {
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
}
NAMESPACED = {"ServiceAccount", "ConfigMap", "Deployment", "Service"}


# -- loading -----------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBE.glob("*.y*ml") if p.name != "kustomization.yaml")


def load_documents() -> list[tuple[str, dict]]:
    """(file name, object) for every document of every manifest."""
    docs = []
    for path in manifest_files():
        with path.open(encoding="utf-8") as f:
            docs += [(path.name, doc) for doc in yaml.safe_load_all(f) if doc is not None]
    return docs


DOCUMENTS = load_documents()


@pytest.fixture(scope="module")
def objects() -> dict[str, dict]:
    """kind -> the one object of that kind."""
    by_kind: dict[str, list[dict]] = {}
    for _, doc in DOCUMENTS:
        by_kind.setdefault(doc["kind"], []).append(doc)
    assert {kind: len(docs) for kind, docs in by_kind.items()} == {m[1]: 1 for m in MODELS}, "one object of each kind"
    return {kind: docs[0] for kind, docs in by_kind.items()}


@pytest.fixture(scope="module")
def kdns_config() -> dict:
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def container(objects) -> dict:
    containers = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["kdns"]
    return containers[0]


def config_path(argv: list[str]) -> str:
    assert "--config" in argv, argv
    return argv[argv.index("--config") + 1]


# -- the manifests, one by one -----------------------------------------------------------------


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    # Every object names its namespace: no kustomize `namespace:` rewriting (it would also
    # rewrite the ClusterRoleBinding's subject).
    assert "namespace" not in kustomization


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_builds_the_same_objects():
    # `kubectl apply -k` runs this same build (offline: no cluster needed).
    done = subprocess.run(["kubectl", "kustomize", str(KUBE)], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    built = [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]
    assert sorted(built, key=json.dumps) == sorted((doc for _, doc in DOCUMENTS), key=json.dumps)


@pytest.mark.parametrize(("name", "doc"), DOCUMENTS, ids=[f"{n}:{d.get('kind')}" for n, d in DOCUMENTS])
def test_manifest_loads_into_client_model(name, doc):
    model = MODELS.get((doc.get("apiVersion"), doc.get("kind")))
    assert model, f"{name}: unexpected {doc.get('apiVersion')} {doc.get('kind')}"
    obj = deserialize(doc, model)
    assert type(obj).__name__ == model
    cls = getattr(client, model)
    if hasattr(cls, "model_validate"):  # pydantic models: strict types, extra="forbid" (names the bad key)
        cls.model_validate(doc)
    back = client.ApiClient().sanitize_for_serialization(obj)
    assert differences(doc, back) == [], f"{name}: {doc['kind']} {doc['metadata']['name']}"
    if doc["kind"] in NAMESPACED:
        assert doc["metadata"]["namespace"] == "kube-system", name
    else:
        assert "namespace" not in doc["metadata"], name


def test_one_object_of_each_kind(objects):
    assert objects["ServiceAccount"]["metadata"]["name"] == "kdns"
    assert objects["ConfigMap"]["metadata"]["name"] == "kdns"
    assert objects["Deployment"]["metadata"]["name"] == "kdns"
    assert objects["Service"]["metadata"]["name"] == "kube-dns"  # the Service every kubelet's clusterDNS points at


# -- RBAC --------------------------------------------------------------------------------------


def test_rbac_is_config_rbac_yaml():
    # kustomize will not load files from outside config/kubernetes/, so it holds a copy.
    assert (KUBE / "rbac.yaml").read_bytes() == (ROOT / "config" / "rbac.yaml").read_bytes(), (
        "config/kubernetes/rbac.yaml must be a copy of config/rbac.yaml"
    )


def test_service_account_is_bound_to_the_cluster_role(objects):
    account = objects["ServiceAccount"]["metadata"]
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]
    assert pod.get("automountServiceAccountToken", True), "kdns needs the token to read the API"
    binding = objects["ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": objects["ClusterRole"]["metadata"]["name"],
    }


def test_cluster_role_grants_what_kdns_reads(objects):
    from kdns.sources.kubernetes import RESOURCES

    granted = {
        (group, resource, verb)
        for rule in objects["ClusterRole"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    needed = set()
    for resource in RESOURCES.values():  # every collection kdns may list and watch (pods: verified/autopath; ...)
        group = resource.api_version.rpartition("/")[0]
        needed |= {(group, resource.label, "list"), (group, resource.label, "watch")}
    assert {(g, r) for g, r, _ in needed} == {
        ("", "namespaces"), ("", "services"), ("", "pods"), ("discovery.k8s.io", "endpointslices"),
        ("networking.k8s.io", "ingresses"), ("networking.k8s.io", "ingressclasses"),
        ("gateway.networking.k8s.io", "gateways"), ("gateway.networking.k8s.io", "httproutes"),
        ("gateway.networking.k8s.io", "grpcroutes"), ("gateway.networking.k8s.io", "tlsroutes"),
    }
    assert needed <= granted, sorted(needed - granted)
    assert {verb for _, _, verb in granted} == {"list", "watch"}, "read-only: list and watch, nothing more"


# -- the configuration --------------------------------------------------------------------------


def test_configmap_is_config_kdns_yaml(objects):
    data = objects["ConfigMap"]["data"]
    assert list(data) == [CONFIG_KEY]
    assert data[CONFIG_KEY] == CONFIG.read_text(encoding="utf-8"), (
        "config/kubernetes/configmap.yaml is out of date: run `python -m testkit.deploy`"
    )


def test_configmap_passes_check_config(objects, tmp_path):
    path = tmp_path / CONFIG_KEY
    path.write_text(objects["ConfigMap"]["data"][CONFIG_KEY], encoding="utf-8")
    # As in the pod: in-cluster (KUBERNETES_SERVICE_HOST is set), no kubeconfig.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env |= {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    done = subprocess.run([sys.executable, "-m", "kdns", "check-config", str(path)], check=False, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_config_runs_in_a_pod(kdns_config):
    """What config/kdns.yaml must say for the Deployment to work."""
    assert not kdns_config.get("manifests") and not kdns_config.get("kubeconfig") and not kdns_config.get("apiserver"), (
        "no source: kdns follows the cluster with the in-cluster configuration"
    )
    for address in kdns_config["listen"]:  # the Service reaches the pod's IP, not its loopback
        assert address.rpartition(":")[0] in ("", "0.0.0.0", "[::]"), address
    for key in ("health", "ready", "metrics"):  # probes and scrapes come from outside the pod
        assert str(kdns_config[key]).startswith((":", "0.0.0.0:", "[::]:")), (key, kdns_config[key])
    # The kubeadm Corefile's equivalent: kubernetes cluster.local in-addr.arpa ip6.arpa { pods
    # insecure; ttl 30 }, forward . /etc/resolv.conf, cache 30 (kdns always serves the reverse zones).
    assert kdns_config["zone"] == ["cluster.local"]
    assert kdns_config["pods"] == "insecure"
    assert kdns_config["ttl"] == 30
    assert kdns_config["resolv-conf"] == "/etc/resolv.conf" and not kdns_config["upstream"]
    assert kdns_config["cache-ttl"] == 30


def test_shutdown_fits_the_grace_period(objects, kdns_config):
    from kdns.app import DRAIN_DEADLINE

    grace = objects["Deployment"]["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    assert kdns_config["lameduck"] + DRAIN_DEADLINE < grace, "SIGKILL would cut the lameduck period or the TCP drain"


def test_configmap_is_mounted_where_kdns_reads_it(objects, container):
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    volumes = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == objects["ConfigMap"]["metadata"]["name"]]
    assert len(volumes) == 1, pod["volumes"]
    volume = volumes[0]
    file_name = CONFIG_KEY
    for item in volume["configMap"].get("items", []):
        if item["key"] == CONFIG_KEY:
            file_name = item["path"]
    mounts = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert len(mounts) == 1, container["volumeMounts"]
    mount = mounts[0]
    # A subPath mount never sees ConfigMap updates; the directory mount does, and kdns reloads.
    assert "subPath" not in mount and "subPathExpr" not in mount
    assert mount.get("readOnly") is True
    argv = container.get("command", []) + container.get("args", [])
    assert config_path(argv) == f"{mount['mountPath'].rstrip('/')}/{file_name}"


# -- labels, selectors, scheduling --------------------------------------------------------------


def test_selectors_match_the_pods(objects):
    deployment, service = objects["Deployment"], objects["Service"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]
    assert set(selector) == {"matchLabels"}
    assert selector["matchLabels"].items() <= pod_labels.items()
    assert pod_labels["k8s-app"] == "kube-dns" and pod_labels["app.kubernetes.io/name"] == "kdns"
    # The kube-dns Service selects the pods of CoreDNS and kdns alike, as kubeadm's does.
    assert service["spec"]["selector"] == {"k8s-app": "kube-dns"}
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["metadata"]["labels"]["k8s-app"] == "kube-dns"
    assert service["metadata"]["labels"]["kubernetes.io/name"] == "CoreDNS"
    # Its ClusterIP is the kubelets' clusterDNS: applying this file must keep the one it has.
    assert "clusterIP" not in service["spec"] and "clusterIPs" not in service["spec"]


def test_pods_are_scheduled_like_coredns(objects, container):
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["dnsPolicy"] == "Default", "forward to the node's resolvers, not back to kube-dns"
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in pod["tolerations"]
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in pod["tolerations"]
    terms = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert any(
        t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        and t["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod_labels.items()
        for t in terms
    ), "replicas spread across nodes"
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "70Mi"}, "limits": {"memory": "170Mi"}}
    assert container["image"] == "kdns:latest"
    # A :latest image loaded with `kind load`/`k3d image import` must not be pulled.
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_security_context(objects, container):
    pod_context = objects["Deployment"]["spec"]["template"]["spec"].get("securityContext", {})
    context = pod_context | container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 65532
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not context.get("privileged")
    assert not objects["Deployment"]["spec"]["template"]["spec"].get("hostNetwork")


# -- ports and probes ---------------------------------------------------------------------------


def test_dns_ports(objects, container, kdns_config):
    listen_ports = {port_number(a) for a in kdns_config["listen"]}
    assert len(listen_ports) == 1, kdns_config["listen"]
    (listen_port,) = listen_ports
    assert listen_port >= 1024, "kdns runs without privilege: no port below 1024"
    assert resolve_port("dns", "UDP", container) == listen_port
    assert resolve_port("dns-tcp", "TCP", container) == listen_port
    ports = {(p["name"], p["port"], p.get("protocol", "TCP")): p["targetPort"] for p in objects["Service"]["spec"]["ports"]}
    assert set(ports) == {("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")}
    assert resolve_port(ports["dns", 53, "UDP"], "UDP", container) == listen_port
    assert resolve_port(ports["dns-tcp", 53, "TCP"], "TCP", container) == listen_port
    # Named target ports reach CoreDNS's pods (dns: 53) and kdns's (dns: 5353) alike while both run.
    assert ports["dns", 53, "UDP"] == "dns" and ports["dns-tcp", 53, "TCP"] == "dns-tcp"


def test_metrics_port(objects, container, kdns_config):
    metrics = port_number(kdns_config["metrics"])
    assert metrics == 9153
    assert resolve_port("metrics", "TCP", container) == metrics
    (service_port,) = [p for p in objects["Service"]["spec"]["ports"] if p["name"] == "metrics"]
    assert service_port["port"] == metrics
    assert resolve_port(service_port["targetPort"], "TCP", container) == metrics
    annotations = objects["Service"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/port") == str(metrics)


def test_probes(container, kdns_config):
    for probe, key, path in (("livenessProbe", "health", "/health"), ("readinessProbe", "ready", "/ready")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert get.get("scheme", "HTTP") == "HTTP"
        assert resolve_port(get["port"], "TCP", container) == port_number(kdns_config[key]), probe
    # Python imports take a while on a cold node; CoreDNS waits 60 s before the first liveness check.
    assert container["livenessProbe"]["initialDelaySeconds"] >= 10


# -- the Dockerfile -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))


def test_dockerfile_parser():
    text = "# c\nFROM a \\\n  # inside\n  b\nRUN x \\\n    && y\n\nCMD [\"z\"]\n"
    assert dockerfile_instructions(text) == [("FROM", "a b"), ("RUN", "x && y"), ("CMD", '["z"]')]


def stages(instructions) -> list[list[tuple[str, str]]]:
    """The instructions of each stage, FROM first."""
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    return [instructions[a:b] for a, b in zip(starts, starts[1:] + [len(instructions)])]


def test_dockerfile_base_image(dockerfile):
    image = only(final_stage(dockerfile), "FROM").split()[0]
    match = re.fullmatch(r"python:3\.(\d+)\.(\d+)-slim(-[a-z]+)?", image)
    assert match, f"a pinned official slim Python image (python:3.X.Y-slim...), got {image!r}"
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    minimum = int(re.search(r'requires-python\s*=\s*">=3\.(\d+)"', pyproject).group(1))
    assert int(match.group(1)) >= minimum
    # The virtual environment built in the first stage runs on the final stage's Python.
    assert [only(stage, "FROM").split()[0] for stage in stages(dockerfile)] == [image, image]


def test_dockerfile_installs_the_lock_and_the_working_tree(dockerfile):
    build = stages(dockerfile)[0]
    assert only(build, "FROM").split()[1:] == ["AS", "build"]
    runs = [args for word, args in build if word == "RUN"]
    copies = [args.split() for word, args in build if word == "COPY"]
    # The dependencies exactly as locked: pinned, hash-checked, nothing resolved at build time.
    assert ["requirements/image.lock", "/tmp/kdns/requirements/image.lock"] in copies
    (deps,) = [r for r in runs if "-r /tmp/kdns/requirements/image.lock" in r]
    assert "--require-hashes" in deps and "--no-deps" in deps and "--only-binary=:all:" in deps
    # kdns from the working tree, without its test extras, and its C part built.
    assert ["kdns", "/tmp/kdns/kdns"] in copies
    (install,) = [r for r in runs if re.search(r"pip --python /opt/kdns/bin/python install --no-deps .*/tmp/kdns(\s|$)", r)]
    assert 'python -c "import kdns._udpbatch"' in install
    assert not any(re.search(r"\[test\]|pip .*\s(-e|--editable)\s", r) for r in runs), "no editable install, no test extras"
    assert any("gcc" in r for r in runs)
    # What kdns never imports is removed (requirements/image-prune.txt, checked by tests/test_image.py).
    assert ["requirements/image-prune.txt", "/tmp/kdns/requirements/image-prune.txt"] in copies
    assert any("image-prune.txt" in r and "rm -rf" in r for r in runs)


def test_dockerfile_final_stage_is_the_base_plus_the_venv(dockerfile):
    """Nothing is installed in the final stage: no compiler, headers or caches reach it. Its one
    command gives the interpreter the file capability for port 53 (kdns/caps.py)."""
    final = final_stage(dockerfile)
    assert [args for word, args in final if word == "RUN"] == [
        '["/opt/kdns/bin/python", "-m", "kdns.caps", "grant", "/opt/kdns/bin/python"]']
    copies = [args.split() for word, args in final if word == "COPY"]
    assert copies == [["--from=build", "/opt/kdns", "/opt/kdns"], ["config/kdns.yaml", "/etc/kdns/kdns.yaml"]]
    env = only(final, "ENV")
    assert re.search(r"(^|\s)PATH=/opt/kdns/bin:\$PATH(\s|$)", env), env
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # a read-only root: nothing to write .pyc files to


def test_dockerfile_user_matches_the_pod(dockerfile, container):
    user = only(final_stage(dockerfile), "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"a numeric non-root user (runAsNonRoot can check only a number), got {user!r}"
    assert int(uid) == container["securityContext"]["runAsUser"]
    if gid:
        assert int(gid) == container["securityContext"].get("runAsGroup", int(gid))


def test_dockerfile_command_matches_the_pod(dockerfile, container, objects):
    stage = final_stage(dockerfile)
    argv = exec_form(only(stage, "ENTRYPOINT")) + exec_form(only(stage, "CMD"))
    assert argv == ["kdns", "serve", "--config", "/etc/kdns/kdns.yaml"]
    assert container.get("command", argv[:1]) + container.get("args", argv[1:]) == argv
    # The image's own config file is where the Deployment mounts the ConfigMap.
    copies = [args.split() for word, args in stage if word == "COPY"]
    assert ["config/kdns.yaml", config_path(argv)] in copies
    (mount,) = container["volumeMounts"]
    assert config_path(argv) == f"{mount['mountPath']}/{CONFIG_KEY}"


def test_dockerfile_healthcheck(dockerfile, kdns_config):
    check = only(final_stage(dockerfile), "HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    argv = exec_form(command.strip())
    assert argv[:2] == ["python", "-c"], "the slim image has no curl or wget"
    url = f"http://127.0.0.1:{port_number(kdns_config['health'])}/health"
    assert url in argv[2]
    compile(argv[2], "HEALTHCHECK", "exec")
    assert "--timeout=" in options


def test_dockerfile_exposes_the_ports(dockerfile, kdns_config):
    exposed = {p if "/" in p else f"{p}/tcp" for args in (a for w, a in dockerfile if w == "EXPOSE") for p in args.split()}
    dns = port_number(kdns_config["listen"][0])
    wanted = {f"{dns}/udp", f"{dns}/tcp"} | {f"{port_number(kdns_config[k])}/tcp" for k in ("health", "ready", "metrics")}
    assert exposed == wanted


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or a parent directory wins."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = "".join(
            ".*" if part == "**" else "[^/]*" if part == "*" else "[^/]" if part == "?" else re.escape(part)
            for part in re.split(r"(\*\*|\*|\?)", pattern)
        )
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_dockerfile_copies(dockerfile):
    patterns = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.strip().startswith("#")]
    sources = [args.split()[:-1] for word, args in dockerfile if word == "COPY" and not args.startswith("--from")]
    files = []
    for source in (s for group in sources for s in group):
        path = ROOT / source
        assert path.exists(), source
        files += [source] if path.is_file() else [
            str(p.relative_to(ROOT)) for p in path.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".so"  # (built in place by pip install -e)
        ]
    assert files and not [f for f in files if dockerignored(f, patterns)]
    assert "kdns/_udpbatch.c" in files and "setup.py" in files  # the image builds the C part
    for unwanted in (".git/HEAD", ".venv/bin/python", "tests/test_deploy.py", "kdns/__pycache__/app.cpython-311.pyc",
                     "kdns/_udpbatch.cpython-311-x86_64-linux-gnu.so"):
        assert dockerignored(unwanted, patterns), unwanted
