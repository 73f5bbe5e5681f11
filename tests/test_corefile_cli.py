"""The Corefile commands as a user types them: `kdns corefile check|explain`, CoreDNS's command
line (`kdns -conf`, `-dns.port`, `-pidfile`, `-version`, `-plugins`, `-help`), `kdns serve
--corefile` with flags over it, and the ignore option (flag and environment variable)."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import dns.message
import dns.query
import pytest

from kdns.corefile.review import UNDERSTOOD
from testkit.corefile import FIXTURES, CorefileProcess, run_kdns
from testkit.kubeapi import KubeAPI

BROKEN = textwrap.dedent("""\
    .:53 {
        kubernetes cluster.local
        k8s_external svc.cluster.local
        loadbalance round_robin {
            prefer 10.0.0.0/8
        }
        errors
        template CH TXT version.bind
        etcd example.org
    }
    """)


@pytest.fixture
def api():
    server = KubeAPI().start()
    server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    server.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
                  "spec": {"clusterIP": "10.96.100.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
    yield server
    server.stop()


def test_check_lists_every_problem_with_file_and_line(tmp_path):
    (tmp_path / "Corefile").write_text(BROKEN)
    result = run_kdns("corefile", "check", "Corefile", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        ("Corefile:9: etcd example.org: the etcd plugin is not supported: kdns serves names from the Kubernetes API only, not "
        "from etcd"),
        "Corefile:4: loadbalance round_robin { ... }: loadbalance prefer 10.0.0.0/8 is not supported by kdns",
        "Corefile:8: template CH TXT version.bind: template: kdns answers class IN only; a template of class CH would never be asked",
        ("Corefile:3: k8s_external svc.cluster.local: k8s_external: svc.cluster.local overlaps the cluster zone cluster.local: "
         "the zones must not overlap"),
    ]


def test_check_ignore_unknown_and_its_environment_variable(tmp_path):
    (tmp_path / "Corefile").write_text(BROKEN.replace("        etcd example.org\n", ""))
    for args, env in ((["--ignore-unknown"], None), ([], {**os.environ, "KDNS_COREFILE_IGNORE_UNKNOWN": "1"})):
        result = run_kdns("corefile", "check", *args, "Corefile", cwd=tmp_path, env=env)
        assert (result.returncode, result.stdout) == (0, "Corefile: OK\n"), result.stdout + result.stderr
        assert result.stderr.count("ignored (--corefile-ignore-unknown)") == 3, result.stderr


def test_check_reports_what_kdns_settings_reject_at_the_directive(tmp_path):
    (tmp_path / "Corefile").write_text(".:53 {\n    kubernetes cluster.local\n    forward . /no/such/resolv.conf\n"
                                       "    health 10.0.0.1:8080\n}\n")
    result = run_kdns("corefile", "check", "Corefile", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["Corefile:3: kdns's resolv-conf from here: /no/such/resolv.conf: No such file or directory"]


def test_check_a_configmap_manifest_and_a_missing_file(tmp_path):
    result = run_kdns("corefile", "check", "kind-configmap.yaml", cwd=FIXTURES)
    assert (result.returncode, result.stdout) == (0, "kind-configmap.yaml: OK\n")
    missing = run_kdns("corefile", "check", "nope.Corefile", cwd=tmp_path)
    assert (missing.returncode, missing.stdout) == (1, "nope.Corefile: no such file\n")


def test_explain_says_what_each_directive_became():
    result = run_kdns("corefile", "explain", "kubeadm.Corefile", cwd=FIXTURES)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    text = (FIXTURES / "kubeadm.Corefile").read_text().splitlines()
    written = {n for n, line in enumerate(text, 1) if line.strip() not in ("", "}") and not line.lstrip().startswith("#")}
    explained = {int(line.split(":")[1].split()[0]) for line in lines}
    assert written <= explained, sorted(written - explained)
    assert "kubeadm.Corefile:17: max_concurrent 1000  [option] upstream-max-concurrent 1000" in result.stdout
    assert "kubeadm.Corefile:20: disable success cluster.local  [no effect] kdns never caches cluster names" in result.stdout
    assert "kubeadm.Corefile:10: (no endpoint, no kubeconfig)  [option] in-cluster" in result.stdout


def test_explain_shows_refusals_and_exits_1(tmp_path):
    (tmp_path / "Corefile").write_text(BROKEN)
    result = run_kdns("corefile", "explain", "Corefile", cwd=tmp_path)
    assert result.returncode == 1
    assert ("Corefile:8: template CH TXT version.bind  [refused] template: kdns answers class IN only; a template of class CH "
            "would never be asked") in result.stdout.splitlines()


def test_explain_says_templates_are_served():
    result = run_kdns("corefile", "explain", "aks/Corefile", cwd=FIXTURES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("aks/Corefile:29: template ANY ANY reddog.microsoft.com { ... }  [data] ANY ANY queries under reddog.microsoft.com: "
            "NXDOMAIN: kdns answers from the template before its own tables, as CoreDNS asks templates before hosts and "
            "kubernetes (kdns.templates)") in result.stdout.splitlines()
    assert "aks/custom/puglife.server:2 (imported from aks/Corefile:33): puglife.local:53  [option]" in result.stdout


# -- CoreDNS's command line -----------------------------------------------------------------------


def test_version_plugins_and_help():
    version = run_kdns("-version")
    assert version.returncode == 0 and version.stdout.startswith("kdns-0.")
    plugins = run_kdns("-plugins")
    assert plugins.returncode == 0
    assert plugins.stdout.splitlines()[:8] == ["Server types:", "  dns", "", "Caddyfile loaders:", "  flag", "  default", "",
                                               "Other plugins:"]
    assert plugins.stdout.splitlines()[8:] == [f"  dns.{name}" for name in sorted(UNDERSTOOD)]
    usage = run_kdns("-help")
    assert usage.returncode == 0 and "-conf string" in usage.stdout
    for own in ("--version", "-h", "--help"):  # kdns's own flags stay kdns's
        assert "-conf string" not in run_kdns(own).stdout, own


def test_coredns_command_line_mistakes():
    assert run_kdns("-conf").stderr.strip() == "kdns: flag needs an argument: -conf"
    result = run_kdns("-conf", "x", "-frobnicate")
    assert result.returncode == 2 and "unknown flag or argument '-frobnicate'" in result.stderr


def test_serve_with_corefile_and_config_is_a_mistake(tmp_path):
    result = run_kdns("serve", "--corefile", "Corefile", "--config", "kdns.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "--corefile and --config cannot be combined" in result.stderr


def corefile_at(tmp_path: Path, api: KubeAPI, key: str = ".") -> Path:
    path = tmp_path / "Corefile"
    path.write_text(f"{key} {{\n    bind 127.0.0.1\n    kubernetes cluster.local {{\n        endpoint {api.url}\n    }}\n}}\n")
    return path


def test_default_conf_dns_port_and_pidfile(api, tmp_path):
    """No -conf: `Corefile` in the working directory (CoreDNS's default); `-dns.port=0` is the
    port of a key that names none; `-pidfile` holds the process ID while it runs."""
    corefile_at(tmp_path, api)
    pidfile = tmp_path / "kdns.pid"
    process = CorefileProcess("-dns.port=0", "-pidfile", str(pidfile), "-quiet", cwd=tmp_path)
    try:
        process.started(http=())
        process.wait_for("synced with")
        assert pidfile.read_text() == f"{process.proc.pid}\n"
        reply = process.query("web.shop.svc.cluster.local")
        assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.96.100.10"]
    finally:
        process.proc.send_signal(signal.SIGTERM)  # no health: lameduck 0, as CoreDNS without health
        status = process.wait_exit()
        process.close()
    assert status == 0 and not pidfile.exists(), process.lines


def test_serve_corefile_flags_override_it(api, tmp_path):
    """`kdns serve --corefile` with kdns flags over the Corefile (here --listen and --ttl), and
    `--print-address` as for any kdns serve."""
    path = corefile_at(tmp_path, api, ".:53")
    process = CorefileProcess("serve", "--corefile", str(path), "--listen", "127.0.0.1:0", "--ttl", "17", cwd=tmp_path)
    try:
        process.started(http=())
        process.wait_for("synced with")
        reply = dns.query.udp(dns.message.make_query("web.shop.svc.cluster.local", "A"), "127.0.0.1", port=process.port, timeout=3)
        assert [rrset.ttl for rrset in reply.answer] == [17]
    finally:
        process.proc.send_signal(signal.SIGINT)
        process.wait_exit()
        process.close()
