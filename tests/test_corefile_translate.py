"""kdns.corefile.translate: what each distribution's Corefile becomes in kdns (options in the
config-file form `kdns serve --config` reads, and structured data for what options cannot
say), what single directives become, what is refused with file:line, and ignore_unknown."""

from __future__ import annotations

import argparse
import ast
import dataclasses
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from kdns import settings
from kdns.corefile import DiskReader, load, parse_text
from kdns.corefile.model import CorefileError
from kdns.corefile.translate import translate
from kdns.corefile.translate.values import (
    AnswerRewrite,
    CacheRule,
    ForwardRule,
    ForwardTarget,
    HostsEntry,
    HostsSource,
    Kubernetes,
    LogRule,
    RewriteRule,
    Template,
)

FIXTURES = Path(__file__).parent / "corefiles"
DISTRIBUTIONS = ["kubeadm.Corefile", "kubeadm-legacy.Corefile", "kind-configmap.yaml", "k3s.yaml", "minikube.Corefile",
                 "eks.Corefile", "aks/Corefile", "gardener/Corefile", "kube-dns.yaml"]
EVERYONE = ["0.0.0.0/0", "::/0"]
BOTH_53 = [":53"]
REVERSE = ("in-addr.arpa", "ip6.arpa")

# kubeadm's Corefile (and kind's, which is the same) as kdns options.
KUBEADM = {
    "listen": BOTH_53, "health": ":8080", "lameduck": 5.0, "ready": ":8181", "zone": ["cluster.local"], "pods": "insecure",
    "ttl": 30, "metrics": ":9153", "resolv-conf": "/etc/resolv.conf", "allow-recursion": EVERYONE, "cache-ttl": 30,
    "cache-size": 20_000, "serve-stale": 0, "reload-interval": 30.0, "log-queries": False, "autopath": False,
    "upstream-transport": "client",  # CoreDNS asks upstreams over the transport the client used
    "cache-min-ttl": 5, "cache-denial-min-ttl": 5,  # CoreDNS's cache keeps an answer at least 5 s
}


@pytest.fixture
def at_fixtures(monkeypatch):
    monkeypatch.chdir(FIXTURES)  # so origins read as the paths a user would type


def bare(value):
    """A value with every origin blanked, to compare what it says rather than where."""
    if isinstance(value, tuple):
        return tuple(bare(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: bare(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "origin"}
        if any(f.name == "origin" for f in dataclasses.fields(value)):
            changes["origin"] = None
        return dataclasses.replace(value, **changes)
    return value


def translated(path: str, **kw):
    corefile = load(path, DiskReader())
    t = translate(corefile, **kw)
    assert t.ok, [str(p) for p in t.problems]
    return corefile, t


def kinds_at(t, line: int, file: str = "Corefile") -> list[str]:
    return [e.kind for e in t.explanations if e.origin.line == line and e.origin.where.startswith(file)]


# -- the distributions ------------------------------------------------------------------------


def test_kubeadm(at_fixtures):
    _, t = translated("kubeadm.Corefile")
    assert t.options == KUBEADM
    assert bare(t.kubernetes) == Kubernetes(("cluster.local",), REVERSE, "insecure", 30, (), None, REVERSE, False, False,
                                            False, 5.0, None)
    assert bare(t.forwards) == (ForwardRule(".", (ForwardTarget("/etc/resolv.conf", None, 53, "/etc/resolv.conf", None),),
                                            max_concurrent=1000, block_zones=(".",)),)
    assert bare(t.caches) == (CacheRule((".",), success_ttl=30, denial_ttl=30, disable_success=("cluster.local",),
                                        disable_denial=("cluster.local",), block_zones=(".",)),)
    assert (t.reload.interval, t.reload.jitter) == (30.0, 15.0) and t.loadbalance.policy == "round_robin"
    assert not (t.hosts or t.rewrites or t.templates or t.externals or t.logs) and t.bufsize is None
    assert t.origin_of("ttl").where == "kubeadm.Corefile:10" and t.origin_of("cache-ttl").where == "kubeadm.Corefile:19"
    # kubeadm disables caching the cluster zone: kdns never caches cluster names anyway.
    assert kinds_at(t, 20, "kubeadm") == ["no effect"] and kinds_at(t, 23, "kubeadm") == ["no effect"]  # disable, loop


def test_kubeadm_legacy_upstream_and_proxy(at_fixtures):
    _, t = translated("kubeadm-legacy.Corefile")
    expected = {k: v for k, v in KUBEADM.items() if k != "ready"} | {"ttl": 5, "lameduck": 0.0}
    assert t.options == expected
    assert t.forwards[0].legacy_proxy and t.forwards[0].targets[0].resolv_conf == "/etc/resolv.conf"
    assert [str(w) for w in t.warnings] == [
        ("kubeadm-legacy.Corefile:9: upstream: accepted and ignored: removed in CoreDNS 1.7: ExternalName targets are "
        "resolved through kdns's upstreams"),
        "kubeadm-legacy.Corefile:13: proxy: the proxy plugin was removed in CoreDNS 1.6: read as forward",
    ]


def test_kind_configmap_is_kubeadms_corefile(at_fixtures):
    _, t = translated("kind-configmap.yaml")
    assert t.options == KUBEADM
    assert t.origin_of("ttl").where == "kind-configmap.yaml[coredns/Corefile]:7"


def test_k3s_nodehosts_and_coredns_custom(at_fixtures):
    corefile, t = translated("k3s.yaml")
    assert t.options == {k: v for k, v in KUBEADM.items() if k not in ("lameduck",)} | {
        "ttl": 5, "lameduck": 0.0, "log-queries": True, "stub-domain": ["corp.example=10.10.0.53:53"]}
    assert bare(t.hosts) == (HostsSource("/etc/coredns/NodeHosts", (), (".",), ttl=60, reload=15.0, fallthrough=(".",),
                                         block_zones=(".",)),)
    # The NodeHosts key of the same ConfigMap is where the hosts path points, in the Corefile's reader.
    assert b"172.18.0.1 host.k3d.internal" in corefile.reader.read(t.hosts[0].path)
    assert bare(t.rewrites) == (RewriteRule("stop", "exact", "api.example.com.",
                                            "ingress-nginx-controller.ingress-nginx.svc.cluster.local.", True, (), (".",), None),)
    assert str(t.rewrites[0].origin) == ("k3s.yaml[coredns-custom/rewrite.override]:1 "
                                         "(imported from k3s.yaml[coredns/Corefile]:20)")
    assert [r.block_zones for r in t.forwards] == [(".",), ("corp.example",)]
    assert bare(t.logs) == (LogRule((".",), ("all",), None, (".",), None),)


def test_minikube_hosts_block(at_fixtures):
    _, t = translated("minikube.Corefile")
    assert t.options == KUBEADM | {"log-queries": True}
    assert bare(t.hosts) == (HostsSource("/etc/hosts", (HostsEntry("192.168.49.1", ("host.minikube.internal",), None),),
                                         (".",), fallthrough=(".",), block_zones=(".",)),)
    assert t.hosts[0].inline[0].origin.where == "minikube.Corefile:18"
    assert kinds_at(t, 18, "minikube") == ["data"]


def test_eks_stub_domain_block(at_fixtures):
    _, t = translated("eks.Corefile")
    assert t.options == {k: v for k, v in KUBEADM.items()} | {"ttl": 5, "stub-domain": ["consul.local=10.150.0.1:53"]}
    assert [(r.from_zone, r.block_zones, [x.address for x in r.targets]) for r in t.forwards] == [
        (".", (".",), ["None:53"]), (".", ("consul.local",), ["10.150.0.1:53"])]
    assert [c.block_zones for c in t.caches] == [(".",), ("consul.local",)]
    assert [(b.zones, b.main, str(b.origin)) for b in t.blocks] == [((".",), True, "eks.Corefile:4"),
                                                                     (("consul.local",), False, "eks.Corefile:21")]
    # The stub block's cache 30 is the main block's: kdns's one cache covers it.
    assert kinds_at(t, 23, "eks") == ["no effect"]


def test_aks_imports_and_templates(at_fixtures):
    _, t = translated("aks/Corefile")
    assert t.options == KUBEADM | {"log-queries": True, "stub-domain": ["puglife.local=192.11.0.1:53"]}
    assert bare(t.templates) == (
        Template("ANY", "ANY", ("internal.cloudapp.net",), (r"^(?:[^.]+\.){4,}internal\.cloudapp\.net\.$",), "NXDOMAIN",
                 fallthrough=(".",), block_zones=(".",)),
        Template("ANY", "ANY", ("reddog.microsoft.com",), (), "NXDOMAIN", block_zones=(".",)),
    )
    assert [str(t.origin) for t in t.templates] == ["aks/Corefile:24", "aks/Corefile:29"]


def test_gardener_port_8053_rewrite_and_error_log(at_fixtures):
    _, t = translated("gardener/Corefile")
    assert t.options == KUBEADM | {"listen": [":8053"], "lameduck": 15.0, "log-queries": True}
    pattern = r"(^(?:[^\.]+\.)+)svc\.cluster\.local"
    assert bare(t.rewrites) == (RewriteRule(
        "stop", "regex", pattern + r"\.svc\.cluster\.local", "{1}svc.cluster.local.", False,
        (AnswerRewrite("name", pattern, "{1}svc.cluster.local.svc.cluster.local."),
         AnswerRewrite("value", pattern, "{1}svc.cluster.local.svc.cluster.local.")), (".",), None),)
    assert bare(t.logs) == (LogRule((".",), ("error",), None, (".",), None),)
    # kdns logs every query: said as a warning, not hidden.
    assert [str(w) for w in t.warnings] == [("gardener/Corefile:8: log: log-queries: kdns logs every query in its own "
                                            "format; CoreDNS would log only error answers (kept as Translation.logs)")]


def test_kube_dns_configmap(at_fixtures):
    _, t = translated("kube-dns.yaml")
    assert t.options == {
        "listen": BOTH_53, "zone": ["cluster.local"], "pods": "insecure", "ttl": 5, "allow-recursion": EVERYONE,
        "upstream": ["8.8.8.8:53", "8.8.4.4:53"],
        "stub-domain": ["acme.local=1.2.3.4:53", "corp.example=10.0.0.53:5353", "corp.example=10.0.0.54:53"],
        "cache-ttl": 30, "cache-size": 20_000, "serve-stale": 0, "lameduck": 0.0, "log-queries": False, "autopath": False,
        "upstream-transport": "client", "cache-min-ttl": 5, "cache-denial-min-ttl": 5,
    }
    assert t.origin_of("stub-domain").where == "kube-dns.yaml[kube-dns/stubDomains]:2"


@pytest.mark.parametrize("path", DISTRIBUTIONS)
def test_every_directive_is_explained_and_kdns_accepts_the_options(path, at_fixtures, tmp_path):
    corefile, t = translated(path)
    explained = {(e.origin.where, e.directive.split(" ")[0]) for e in t.explanations}
    for block in corefile.blocks:
        for d in block.directives:
            assert (d.origin.where, d.name) in explained, f"{d.origin}: {d} has no explanation"
            for line in d.block or ():
                assert (line.origin.where, line.name) in explained, f"{line.origin}: {line} has no explanation"
    assert all(e.kind != "refused" for e in t.explanations)
    # Fed to kdns's own config checks (`kdns check-config`), with a resolv.conf that exists here.
    options = t.options
    if "resolv-conf" in options:
        resolv = tmp_path / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.53\n")
        options["resolv-conf"] = str(resolv)
    config = tmp_path / "kdns.yaml"
    config.write_text(yaml.safe_dump(options))
    assert settings.check_config_file(str(config), {}) == []


# -- single directives ------------------------------------------------------------------------

BASE = ".:53 {\n    kubernetes cluster.local\n    %s\n}\n"
BASE_OPTIONS = translate(parse_text(BASE % "errors")).options


@pytest.mark.parametrize(("line", "options", "kind"), [
    ("errors", {}, "no effect"),
    ("loop", {}, "no effect"),
    ("metadata", {}, "no effect"),
    ("bufsize", {}, "no effect"),
    ("bufsize 1000", {}, "data"),
    ("loadbalance", {}, "data"),
    ("health", {"health": ":8080"}, "option"),
    ("health [::1]:9090 {\n lameduck 10s\n }", {"health": "[::1]:9090", "lameduck": 10.0}, "option"),
    ("ready", {"ready": ":8181"}, "option"),
    ("ready localhost:8282", {"ready": "127.0.0.1:8282"}, "option"),
    ("prometheus", {"metrics": "127.0.0.1:9153"}, "option"),
    ("prometheus :9153", {"metrics": ":9153"}, "option"),
    ("log", {"log-queries": True}, "option"),
    ("log . {\n class denial error\n }", {"log-queries": True}, "warning"),
    ("debug", {"log-level": "debug"}, "option"),
    ("autopath @kubernetes", {"autopath": True}, "option"),
    ("reload 10s 2s", {"reload-interval": 10.0}, "option"),
    ("bind 127.0.0.1 ::1", {"listen": ["127.0.0.1:53", "[::1]:53"]}, "option"),
    ("bind 0.0.0.0 10.0.0.1 {\n except 10.0.0.1\n }", {"listen": ["0.0.0.0:53"]}, "option"),
    ("forward . 1.1.1.1 dns://9.9.9.9:5353 [2001:db8::1]:53 2001:db8::2",
     {"upstream": ["1.1.1.1:53", "9.9.9.9:5353", "[2001:db8::1]:53", "[2001:db8::2]:53"], "allow-recursion": EVERYONE,
      "upstream-transport": "client"},
     "option"),
    ("forward . /etc/resolv.conf 10.0.0.1", {"resolv-conf": "/etc/resolv.conf", "upstream": ["10.0.0.1:53"],
                                             "allow-recursion": EVERYONE, "upstream-transport": "client"}, "option"),
    ("forward . 1.1.1.1 {\n read_timeout 3s\n }", {"upstream": ["1.1.1.1:53"], "upstream-timeout": 3.0,
                                                    "allow-recursion": EVERYONE, "upstream-transport": "client"}, "option"),
    ("forward corp.example 10.0.0.1 10.0.0.2:5353", {"stub-domain": ["corp.example=10.0.0.1:53", "corp.example=10.0.0.2:5353"],
                                                     "allow-recursion": EVERYONE, "upstream-transport": "client"}, "option"),
    ("forward . 10.0.0.1 10.0.0.2 {\n policy sequential\n max_fails 1\n force_tcp\n health_check 2s no_rec domain example.org\n }",
     {"upstream": ["10.0.0.1:53", "10.0.0.2:53"], "allow-recursion": EVERYONE, "upstream-policy": "sequential",
      "upstream-max-fails": 1, "upstream-transport": "tcp", "upstream-health-check": 2.0,
      "upstream-health-domain": "example.org", "upstream-health-recursion": False}, "option"),
    ("forward . 10.0.0.1 {\n prefer_udp\n max_fails 0\n policy round_robin\n }",
     {"upstream": ["10.0.0.1:53"], "allow-recursion": EVERYONE, "upstream-policy": "round_robin", "upstream-max-fails": 0},
     "option"),
    ("cache", {"cache-ttl": 3600, "cache-size": 20_000, "cache-denial-ttl": 1800, "cache-min-ttl": 5, "cache-denial-min-ttl": 5}, "option"),  # (CoreDNS's denial default)
    ("cache 30", {"cache-ttl": 30, "cache-size": 20_000, "cache-min-ttl": 5, "cache-denial-min-ttl": 5}, "option"),
    ("cache {\n success 5000\n denial 1000\n serve_stale\n }", {"cache-ttl": 3600, "cache-size": 6000, "serve-stale": 3600.0,
                                                           "cache-denial-ttl": 1800, "cache-min-ttl": 5, "cache-denial-min-ttl": 5},
     "option"),
    ("cache 10 {\n serve_stale 10m verify\n }", {"cache-ttl": 10, "cache-size": 20_000, "serve-stale": 600.0, "cache-min-ttl": 5, "cache-denial-min-ttl": 5},
     "option"),
])
def test_single_directive(line, options, kind):
    t = translate(parse_text(BASE % line))
    assert t.ok, [str(p) for p in t.problems]
    changed = {k: v for k, v in t.options.items() if BASE_OPTIONS.get(k) != v}
    assert changed == options
    assert kind in kinds_at(t, 3)


@pytest.mark.parametrize(("line", "options", "kind"), [
    ("pods verified", {"pods": "verified"}, "option"),
    ("ttl 0", {"ttl": 0}, "option"),
    ("ttl 3600", {"ttl": 3600}, "option"),
    ("namespaces default kube-system", {"namespaces": ["default", "kube-system"]}, "option"),
    ("labels app in (web, api),tier=front", {"labels": "app in (web, api),tier=front"}, "option"),
    ("kubeconfig /etc/kubeconfig", {"kubeconfig": "/etc/kubeconfig"}, "option"),
    ("endpoint http://127.0.0.1:8001", {"apiserver": "http://127.0.0.1:8001"}, "option"),
    ("startup_timeout 10s", {"startup-timeout": 10.0}, "option"),
    ("fallthrough in-addr.arpa ip6.arpa", {}, "no effect"),
    ("fallthrough", {}, "data"),
    ("noendpoints", {}, "data"),
    ("ignore empty_service", {}, "data"),
    ("endpoint_pod_names", {}, "data"),
    ("apiserver_qps 50", {}, "no effect"),
    ("upstream", {}, "warning"),
    ("resyncperiod 30s", {}, "warning"),
])
def test_kubernetes_option(line, options, kind):
    t = translate(parse_text(f".:53 {{\n    kubernetes cluster.local {{\n        {line}\n    }}\n}}\n"))
    assert t.ok, [str(p) for p in t.problems]
    changed = {k: v for k, v in t.options.items() if BASE_OPTIONS.get(k) != v}
    assert changed == options
    assert kind in kinds_at(t, 3)


def test_kubernetes_defaults_are_coredns_defaults_not_kdns_ones():
    t = translate(parse_text("cluster.local {\n kubernetes\n}\n"))
    assert (t.options["pods"], t.options["ttl"], t.options["zone"]) == ("disabled", 5, ["cluster.local"])
    assert (t.options["cache-ttl"], t.options["serve-stale"], t.options["lameduck"]) == (0, 0, 0.0)
    assert "upstream" not in t.options and t.options["resolv-conf"] == "none"  # nothing forwards, not even in a pod
    assert t.kubernetes.reverse_zones == () and t.kubernetes.fallthrough == ()


def test_cidr_zones_and_dns_port():
    t = translate(parse_text(". {\n kubernetes cluster.local 10.0.0.0/15 fd00::/64\n forward . 10.0.0.53\n}\n"), dns_port=1053)
    assert t.options["listen"] == [":1053"]
    assert t.kubernetes.reverse_zones == ("0.10.in-addr.arpa", "1.10.in-addr.arpa", "0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa")
    explicit = translate(parse_text(".:53 {\n kubernetes cluster.local\n}\n"), dns_port=1053)
    assert explicit.options["listen"] == BOTH_53


def test_dns_port_can_make_two_blocks_one():
    t = translate(parse_text(".:1053 {\n kubernetes cluster.local\n}\n. {\n forward . 1.1.1.1\n}\n"), dns_port=1053)
    assert [str(p) for p in t.problems] == ["Corefile:4: .:1053 is already served by the server block at Corefile:1"]


def test_a_dot_block_beside_a_cluster_block_gives_the_default_upstreams():
    t = translate(parse_text("cluster.local:53 {\n kubernetes\n}\n.:53 {\n forward . 8.8.8.8\n cache 60\n}\n"))
    assert t.ok, [str(p) for p in t.problems]
    assert (t.options["upstream"], t.options["cache-ttl"]) == (["8.8.8.8:53"], 60)


def test_hosts_and_template_blocks_are_data_for_their_zone():
    t = translate(parse_text('.:53 {\n kubernetes cluster.local\n forward . 10.0.0.53\n}\n'
                             'example.internal:53 {\n hosts {\n  10.1.2.3 db.example.internal\n  fallthrough\n }\n'
                             ' forward . 10.0.0.54\n}\n'
                             'blocked.example:53 {\n template IN A {\n  answer "{{ .Name }} 60 IN A 0.0.0.0"\n }\n}\n'))
    assert t.ok, [str(p) for p in t.problems]
    assert t.options["stub-domain"] == ["example.internal=10.0.0.54:53"]
    assert (t.hosts[0].zones, t.hosts[0].block_zones) == (("example.internal",), ("example.internal",))
    record = t.templates[0].answer[0]
    assert (t.templates[0].zones, record.parts[0].name, record.parts[1]) == (("blocked.example",), "Name", " 60 IN A 0.0.0.0")


def test_a_later_forward_for_the_same_names_is_never_used():
    t = translate(parse_text(".:53 {\n kubernetes cluster.local\n forward . 1.1.1.1\n forward corp.example 10.0.0.1\n}\n"))
    assert t.ok and "stub-domain" not in t.options
    assert [str(w) for w in t.warnings if w.line == 4] == [("Corefile:4: forward: never used for corp.example: the forward at "
                                                           "Corefile:3 takes these names first")]


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "problems"), [
    (BASE % "etcd example.org", [("Corefile:3: etcd example.org: the etcd plugin is not supported: kdns serves names from "
                                 "the Kubernetes API only, not from etcd")]),
    (BASE % "file db.example.org example.org", [("Corefile:3: file db.example.org example.org: the file plugin is not "
                                                "supported: kdns serves no zone files")]),
    (BASE % "federation cluster.local {\n  prod prod.example.com\n }",
     [("Corefile:3: federation cluster.local { ... }: the federation plugin is not supported: federation was removed "
      "from CoreDNS and kdns has none")]),
    (BASE % "dnssec", ["Corefile:3: dnssec: the dnssec plugin is not supported: kdns does not sign answers (DNSSEC)"]),
    (BASE % "frobnicate 1", ["Corefile:3: frobnicate 1: unknown directive 'frobnicate': not a plugin kdns knows"]),
    (BASE % "forward . tls://9.9.9.9", [("Corefile:3: forward . tls://9.9.9.9: tls://9.9.9.9: DNS over TLS upstreams are "
                                       "not supported by kdns")]),
    (BASE % "forward . dns.example.com", [("Corefile:3: forward . dns.example.com: dns.example.com: not an IP address; "
                                         "CoreDNS resolves host name upstreams once at start, kdns takes addresses")]),
    (BASE % "forward corp.example /etc/resolv.conf", [("Corefile:3: forward corp.example /etc/resolv.conf: "
                                                     "/etc/resolv.conf: kdns's stub domains take addresses, not a resolv.conf "
                                                     "file")]),
    (BASE % "forward svc.cluster.local 10.0.0.1", [("Corefile:3: forward svc.cluster.local 10.0.0.1: names under "
                                                  "svc.cluster.local are answered by kdns itself (cluster.local); kdns cannot "
                                                  "forward part of the cluster or reverse zones elsewhere")]),
    (BASE % ("forward . " + " ".join(f"10.0.0.{i}" for i in range(16))), [
        ("Corefile:3: forward . 10.0.0.0 10.0.0.1 10.0.0.2 10.0.0.3 10.0.0.4 10...: 16 upstreams: CoreDNS allows at most "
        "15")]),
    (BASE % "forward . 1.1.1.1 {\n  next NXDOMAIN\n }", [("Corefile:4: next NXDOMAIN: kdns does not pass upstream answers "
                                                         "on to another forward")]),
    (BASE % "rewrite type ANY HINFO", [("Corefile:3: rewrite type ANY HINFO: kdns rewrites query names only; rewriting the "
                                       "query type is not supported")]),
    (BASE % "rewrite name regex (a)(?=b) x", [("Corefile:3: rewrite name regex (a)(?=b) x: regex '(a)(?=b)' uses lookaround, "
                                              "which Go's RE2 rejects")]),
    (BASE % "rewrite name regex (a).example {2}.example", [("Corefile:3: rewrite name regex (a).example {2}.example: "
                                                           "'{2}.example' uses more groups than '(a).example' has")]),
    (BASE % "template IN A example.org {\n  answer \"{{ .Message }} 60 IN A 1.2.3.4\"\n }",
     [("Corefile:4: answer \"{{ .Message }} 60 IN A 1.2.3.4\": template action {{ .Message }}: kdns fills in only .Name, "
      ".Zone, .Class, .Type, .Remote, index .Match N and .Group.NAME")]),
    (BASE % "template IN A example.org {\n  expr incidr(client_ip(), 10.0.0.0/8)\n }",
     ["Corefile:4: expr incidr(client_ip(), 10.0.0.0/8): template expr is not supported by kdns"]),
    (BASE % "cache 30 {\n  keepttl\n }", ["Corefile:4: keepttl: keepttl: kdns counts the TTLs of cached answers down"]),
    (BASE % "cache 0", ["Corefile:3: cache 0: cache TTL must be at least 1, got 0"]),
    (BASE % "reload 1s", ["Corefile:3: reload 1s: the interval must be at least 2s (CoreDNS's minimum)"]),
    (BASE % "bufsize 100", ["Corefile:3: bufsize 100: bufsize must be between 512 and 4096, got 100"]),
    (BASE % "bind eth0", [("Corefile:3: bind eth0: 'eth0' is not an IP address: kdns binds addresses, not interface names "
                          "(give the interface's addresses)")]),
    (BASE % "autopath /etc/resolv.conf", [("Corefile:3: autopath /etc/resolv.conf: kdns's autopath uses each Pod's search "
                                          "path as the kubernetes plugin knows it (autopath @kubernetes); a resolv.conf "
                                          "search list is not supported")]),
    (BASE % "loadbalance weighted /etc/weights", [("Corefile:3: loadbalance weighted /etc/weights: weighted load balancing "
                                                  "(a weights file) is not supported by kdns")]),
    (BASE % "health :8080 {\n  lameduck soon\n }", [("Corefile:4: lameduck soon: lameduck: not a duration (like 5s, 1m30s, "
                                                    "300ms): 'soon'")]),
    (BASE % "hosts\n    hosts /etc/other", [("Corefile:4: hosts /etc/other: hosts may be used once per server block "
                                            "(first at Corefile:3)")]),
    (".:53 {\n kubernetes cluster.local {\n  ttl 3601\n }\n}\n", [("Corefile:3: ttl 3601: ttl must be between 0 and 3600, "
                                                                  "got 3601")]),
    (".:53 {\n kubernetes cluster.local {\n  pods sometimes\n }\n}\n", [("Corefile:3: pods sometimes: pods takes one of "
                                                                        "disabled, insecure, verified")]),
    (".:53 {\n kubernetes cluster.local {\n  wibble\n }\n}\n", [("Corefile:3: wibble: unknown kubernetes property 'wibble' "
                                                                "(CoreDNS refuses it too)")]),
    (".:53 {\n kubernetes cluster.local {\n  tls cert key ca\n }\n}\n", [
        ("Corefile:3: tls cert key ca: kdns reaches a remote API server through a kubeconfig (kubeconfig PATH), not client "
        "certificate files")]),
    (".:53 {\n kubernetes\n}\n", [("Corefile:2: kubernetes: serves the root zone: kdns needs a cluster domain (like "
                                  "cluster.local) to put Services under")]),
    (".:53 {\n forward . 8.8.8.8\n}\n", [("Corefile:1: kubernetes: no server block has a kubernetes directive: kdns serves a "
                                         "Kubernetes cluster's names and needs one")]),
    (BASE % "errors" + ".:5353 {\n forward . 8.8.8.8\n}\n", [("Corefile:5: .:5353: listens on port 5353 while the kubernetes "
                                                            "block listens on 53: kdns serves every zone on the same addresses")]),
    (BASE % "errors" + "tls://.:853 {\n forward . 8.8.8.8\n}\n", [("Corefile:5: tls://.:853: DNS over TLS server blocks are "
                                                                 "not supported: kdns serves plain DNS over UDP and TCP")]),
    (BASE % "errors" + "example.org {\n errors\n}\n", [("Corefile:5: example.org: answers no names itself (no forward, "
                                                      "hosts or template): CoreDNS would answer SERVFAIL for them, which kdns "
                                                      "cannot express")]),
    (BASE % "errors" + "svc.cluster.local {\n forward . 10.0.0.1\n}\n", [
        ("Corefile:5: svc.cluster.local: takes the names under svc.cluster.local from the kubernetes block (cluster.local): "
        "kdns answers every name in the cluster and reverse zones itself")]),
    (BASE % "errors" + "example.org {\n kubernetes example.org\n}\n", [
        "Corefile:6: kubernetes example.org: kdns serves one cluster: the kubernetes directive at Corefile:2 is the main one"]),
    (BASE % "health :8080" + "example.org {\n health :9090\n forward . 10.0.0.1\n}\n", [
        ("Corefile:6: health :9090: kdns has one health for the whole server; it is already ':8080' by 'health :8080' at "
        "Corefile:3")]),
    ("foo://. {\n}\n", [("Corefile:1: unknown scheme 'foo://' in server key 'foo://.': CoreDNS knows dns://, tls://, "
                        "quic://, grpc://, https://, https3://, unix://")]),
])
def test_refusals(text, problems):
    t = translate(parse_text(text))
    assert [str(p) for p in t.problems] == problems
    assert not t.ok
    with pytest.raises(CorefileError) as caught:
        t.check()
    assert len(caught.value.problems) == len(problems) and caught.value.line == t.problems[0].line
    for p in t.problems[len(parse_text(text).errors):]:
        assert any(e.kind == "refused" and e.origin == p.origin for e in t.explanations)


def test_ignore_unknown_warns_instead_of_refusing_unknown_plugins_and_schemes():
    text = ("tls://.:853 {\n forward . 8.8.8.8\n}\n"
            ".:53 {\n kubernetes cluster.local\n whoami\n frobnicate\n etcd example.org\n"
            " forward . tls://9.9.9.9 8.8.8.8\n}\n")
    strict = translate(parse_text(text))
    assert [p.line for p in strict.problems] == [1, 6, 7, 8, 9]
    lenient = translate(parse_text(text), ignore_unknown=True)
    assert lenient.ok and lenient.options["upstream"] == ["8.8.8.8:53"]
    assert [(w.line, w.message.split(": ignored: ")[0]) for w in lenient.warnings if "ignored" in w.message] == [
        (1, "tls://.:853"), (6, "whoami"), (7, "frobnicate"), (8, "etcd example.org"), (9, "forward . tls://9.9.9.9 8.8.8.8")]
    assert [e.kind for e in lenient.explanations if e.origin.line == 6] == ["warning"]


def test_ignore_unknown_does_not_ignore_what_a_known_directive_cannot_do():
    text = BASE % "rewrite type ANY HINFO\n    kubernetes example.org"
    t = translate(parse_text(text), ignore_unknown=True)
    assert [p.line for p in t.problems] == [3, 4]


def test_the_corefiles_own_errors_come_first():
    t = translate(parse_text(".:53 {\n kubernetes cluster.local\n}\n.:53 {\n forward . 1.1.1.1\n}\n"))
    assert next(str(p) for p in t.problems) == "Corefile:4: .:53 is already served by the server block at Corefile:1"


# -- any Corefile -----------------------------------------------------------------------------

KEYS = [".:53", ".", "cluster.local", "corp.example:53", ".:5353", "tls://.", "10.0.0.0/8", "example.org", "a.corp.example"]
LINES = [
    "kubernetes cluster.local", "kubernetes", "kubernetes cluster.local {\n pods verified\n ttl 9999\n fallthrough\n}",
    "kubernetes cluster.local in-addr.arpa {\n namespaces a b\n labels x=y\n endpoint http://127.0.0.1:8001\n}",
    "forward . 1.1.1.1", "forward . /etc/resolv.conf [::1]:5353", "forward . tls://9.9.9.9 8.8.8.8", "proxy . 8.8.8.8",
    "forward corp.example 10.0.0.1 {\n except a.corp.example\n policy round_robin\n max_fails 0\n}", "forward . x.example",
    "cache", "cache 30 {\n disable success cluster.local\n serve_stale 1h\n success 10 20 30\n}", "cache x", "cache 0",
    "hosts {\n 1.2.3.4 a.example.org\n fallthrough\n}", "hosts /etc/hosts example.org {\n ttl 0\n}",
    "rewrite name exact a.example b.example", "rewrite stop {\n name regex (.*)\\.x {1}.y\n answer name (.*)\\.y {1}.x\n}",
    "rewrite ttl x 5", "rewrite name suffix .a .b answer auto answer name x y",
    "template IN A example.org {\n rcode NXDOMAIN\n answer \"{{ .Name }} 5 IN A 1.2.3.4\"\n}", "template IN XX",
    "log", "log . {\n class error\n}", "errors", "health :8080 {\n lameduck 5s\n}", "health bogus", "health :9090", "ready",
    "prometheus :9153", "bind 127.0.0.1", "bind eth0", "bufsize 2000", "loadbalance", "loop", "reload 10s", "reload 1s",
    "autopath @kubernetes", "k8s_external example.org", "etcd", "whoami", "frob nicate", "debug", "metadata",
]


@hyp_settings(max_examples=250, derandomize=True, database=None, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KEYS), st.lists(st.sampled_from(LINES), max_size=8)), min_size=1, max_size=4),
       st.booleans(), st.booleans())
def test_any_corefile_translates_or_is_refused_with_lines(blocks, ignore_unknown, with_cluster):
    """Never an exception; every refusal has a line and an explanation; a clean translation is
    accepted by kdns's own config checks."""
    if with_cluster:  # most Corefiles have a main block; without one everything is refused
        blocks = [(".:53", ["kubernetes cluster.local", *blocks[0][1]]), *blocks[1:]]
    text = "".join(f"{key} {{\n" + "".join(f"{line}\n" for line in lines) + "}\n" for key, lines in blocks)
    corefile = parse_text(text)
    t = translate(corefile, ignore_unknown=ignore_unknown)
    lines = text.count("\n") + 1
    for problem in t.problems + t.warnings:
        assert problem.origin is not None and 0 <= problem.line <= lines, str(problem)
    refused = {e.origin for e in t.explanations if e.kind == "refused"}
    assert all(p.origin in refused for p in t.problems[len(corefile.errors):])
    if t.ok:
        options = t.options
        options.pop("resolv-conf", None)
        assert set(options) <= set(settings.BY_NAME) and settings.file_problems(options) == []
        settings.build(settings.merge(argparse.Namespace(), options), {})


ALLOWED = {"__future__", "dataclasses", "typing", "collections", "ipaddress", "re", "dnslib", "kdns"}


def test_the_translator_is_pure():
    """No I/O: the translator imports no trio, sockets, clock or file access of its own."""
    for path in sorted((Path(__file__).parent.parent / "kdns" / "corefile" / "translate").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= ALLOWED, f"{path.name} imports {roots - ALLOWED}"
            assert not roots & {"kdns"} or all(n.startswith("kdns.corefile") for n in _names(node)), path.name


def _names(node) -> list[str]:
    return [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
