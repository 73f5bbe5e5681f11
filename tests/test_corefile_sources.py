"""kdns.corefile on what clusters ship: the Corefiles of kubeadm (current and legacy), kind, k3s,
minikube, EKS, AKS and Gardener (tests/corefiles/, each naming where its shape comes from), the
kube-dns ConfigMap shape, ConfigMap manifests, and the disk reader's limits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdns.corefile import DiskReader, MemoryReader, from_kube_dns, load, read_corefile, read_manifest
from kdns.corefile.reader import ReadError

FIXTURES = Path(__file__).parent / "corefiles"


def summary(corefile) -> list[tuple[list[str], list[str]]]:
    """[(keys, ["origin  directive"])], the origin with its import chain."""
    assert not corefile.errors, [str(e) for e in corefile.errors]
    return [([str(k) for k in b.keys], [f"{d.origin}  {d}" for d in b.directives]) for b in corefile.blocks]


@pytest.fixture
def at_fixtures(monkeypatch):
    monkeypatch.chdir(FIXTURES)  # so origins read as the paths a user would type


KUBEADM = [
    "kubeadm.Corefile:5  errors",
    "kubeadm.Corefile:6  health { lameduck 5s }",
    "kubeadm.Corefile:9  ready",
    "kubeadm.Corefile:10  kubernetes cluster.local in-addr.arpa ip6.arpa { pods insecure; fallthrough in-addr.arpa ip6.arpa; ttl 30 }",
    "kubeadm.Corefile:15  prometheus :9153",
    "kubeadm.Corefile:16  forward . /etc/resolv.conf { max_concurrent 1000 }",
    "kubeadm.Corefile:19  cache 30 { disable success cluster.local; disable denial cluster.local }",
    "kubeadm.Corefile:23  loop",
    "kubeadm.Corefile:24  reload",
    "kubeadm.Corefile:25  loadbalance",
]


def test_kubeadm(at_fixtures):
    corefile = load("kubeadm.Corefile", DiskReader())
    assert summary(corefile) == [(["dns://.:53"], KUBEADM)]
    assert not corefile.warnings and corefile.files == ("kubeadm.Corefile",)
    kubernetes = corefile.blocks[0].directive("kubernetes")[0]
    assert [str(line.origin) for line in kubernetes.block] == ["kubeadm.Corefile:11", "kubeadm.Corefile:12", "kubeadm.Corefile:13"]
    cache = corefile.blocks[0].directive("cache")[0]
    assert [line.args for line in cache.lines("disable")] == [("success", "cluster.local"), ("denial", "cluster.local")]


def test_kubeadm_legacy_upstream_and_proxy(at_fixtures):
    assert summary(load("kubeadm-legacy.Corefile", DiskReader())) == [(["dns://.:53"], [
        "kubeadm-legacy.Corefile:5  errors",
        "kubeadm-legacy.Corefile:6  health",
        "kubeadm-legacy.Corefile:7  kubernetes cluster.local in-addr.arpa ip6.arpa { pods insecure; upstream; fallthrough in-addr.arpa ip6.arpa }",
        "kubeadm-legacy.Corefile:12  prometheus :9153",
        "kubeadm-legacy.Corefile:13  proxy . /etc/resolv.conf",
        "kubeadm-legacy.Corefile:14  cache 30",
        "kubeadm-legacy.Corefile:15  loop",
        "kubeadm-legacy.Corefile:16  reload",
        "kubeadm-legacy.Corefile:17  loadbalance",
    ])]


def test_kind_configmap_as_kubectl_prints_it(at_fixtures):
    """kind's ConfigMap holds kubeadm's Corefile; origins name the manifest, ConfigMap and key."""
    corefile = load("kind-configmap.yaml", DiskReader())
    label = "kind-configmap.yaml[coredns/Corefile]"
    expected = [line.replace("kubeadm.Corefile", label) for line in KUBEADM]
    shifted = [f"{label}:{int(e.split('  ')[0].rsplit(':', 1)[1]) - 3}  {e.split('  ', 1)[1]}" for e in expected]
    assert summary(corefile) == [(["dns://.:53"], shifted)]
    assert str(corefile.blocks[0].origin) == f"{label}:1"


def test_k3s_nodehosts_and_coredns_custom(at_fixtures):
    corefile = load("k3s.yaml", DiskReader())
    cm = "k3s.yaml[coredns/Corefile]"
    assert summary(corefile) == [
        (["dns://.:53"], [
            f"{cm}:2  errors",
            f"{cm}:3  health",
            f"{cm}:4  ready",
            f"{cm}:5  kubernetes cluster.local in-addr.arpa ip6.arpa {{ pods insecure; fallthrough in-addr.arpa ip6.arpa }}",
            f"{cm}:9  hosts /etc/coredns/NodeHosts {{ ttl 60; reload 15s; fallthrough }}",
            f"{cm}:14  prometheus :9153",
            f"{cm}:15  forward . /etc/resolv.conf",
            f"{cm}:16  cache 30",
            f"{cm}:17  loop",
            f"{cm}:18  reload",
            f"{cm}:19  loadbalance",
            f"k3s.yaml[coredns-custom/log.override]:1 (imported from {cm}:20)  log",
            (f"k3s.yaml[coredns-custom/rewrite.override]:1 (imported from {cm}:20)  "
            "rewrite name exact api.example.com ingress-nginx-controller.ingress-nginx.svc.cluster.local"),
        ]),
        (["dns://corp.example:53"], [
            f"k3s.yaml[coredns-custom/corp.server]:2 (imported from {cm}:22)  errors",
            f"k3s.yaml[coredns-custom/corp.server]:3 (imported from {cm}:22)  cache 30",
            f"k3s.yaml[coredns-custom/corp.server]:4 (imported from {cm}:22)  forward . 10.10.0.53",
        ]),
    ]
    # the hosts directive's file is the NodeHosts key of the same ConfigMap, read through the same reader
    hosts = corefile.blocks[0].directive("hosts")[0]
    assert corefile.reader.read(hosts.args[0]).decode().splitlines() == [
        "172.18.0.2 k3d-demo-server-0", "172.18.0.3 k3d-demo-agent-0", "172.18.0.1 host.k3d.internal"]
    assert corefile.reader.describe("/etc/coredns/NodeHosts") == "k3s.yaml[coredns/NodeHosts]"
    assert corefile.globs == ("/etc/coredns/custom/*.override", "/etc/coredns/custom/*.server")


def test_k3s_without_coredns_custom_imports_nothing(at_fixtures):
    text = (FIXTURES / "k3s.yaml").read_text().split("\n---\n")[0]
    corefile = read_manifest("k3s.yaml", MemoryReader({"k3s.yaml": text}))
    assert [[d.name for d in b.directives] for b in corefile.blocks] == [
        ["errors", "health", "ready", "kubernetes", "hosts", "prometheus", "forward", "cache", "loop", "reload", "loadbalance"]]
    assert [str(w) for w in corefile.warnings] == [
        "k3s.yaml[coredns/Corefile]:20: no file matches import pattern '/etc/coredns/custom/*.override' (/etc/coredns/custom/*.override)",
        "k3s.yaml[coredns/Corefile]:22: no file matches import pattern '/etc/coredns/custom/*.server' (/etc/coredns/custom/*.server)",
    ]


def test_minikube_hosts_block(at_fixtures):
    corefile = load("minikube.Corefile", DiskReader())
    assert [str(d) for d in corefile.blocks[0].directives][:2] == ["log", "errors"]
    hosts = corefile.blocks[0].directive("hosts")[0]
    assert (str(hosts.origin), hosts.args) == ("minikube.Corefile:17", ())
    assert [(str(line.origin), line.name, line.args) for line in hosts.block] == [
        ("minikube.Corefile:18", "192.168.49.1", ("host.minikube.internal",)),
        ("minikube.Corefile:19", "fallthrough", ()),
    ]


def test_eks_stub_domain_block(at_fixtures):
    corefile = load("eks.Corefile", DiskReader())
    assert summary(corefile)[1] == (["dns://consul.local:53"], [
        "eks.Corefile:22  errors", "eks.Corefile:23  cache 30", "eks.Corefile:24  forward . 10.150.0.1"])
    assert corefile.server_for("web.service.consul.local", 53).origin.line == 21
    assert corefile.server_for("web.default.svc.cluster.local", 53).origin.line == 4


def test_aks_imports_and_template_blocks(at_fixtures):
    corefile = load("aks/Corefile", DiskReader())
    main, extra = summary(corefile)
    assert main[1][-3:] == [
        "aks/custom/log.override:2 (imported from aks/Corefile:23)  log",
        (r"aks/Corefile:24  template ANY ANY internal.cloudapp.net { match ^(?:[^.]+\.){4,}internal\.cloudapp\.net\.$; "
        "rcode NXDOMAIN; fallthrough }"),
        "aks/Corefile:29  template ANY ANY reddog.microsoft.com { rcode NXDOMAIN }",
    ]
    template = corefile.blocks[0].directive("template")[0]
    assert template.lines("match")[0].args == (r"^(?:[^.]+\.){4,}internal\.cloudapp\.net\.$",)
    assert str(template.lines("match")[0].origin) == "aks/Corefile:25"
    assert extra == (["dns://puglife.local:53"], [
        "aks/custom/puglife.server:3 (imported from aks/Corefile:33)  errors",
        "aks/custom/puglife.server:4 (imported from aks/Corefile:33)  cache 30",
        "aks/custom/puglife.server:5 (imported from aks/Corefile:33)  forward . 192.11.0.1",
    ])
    assert corefile.files == ("aks/Corefile", "aks/custom/log.override", "aks/custom/puglife.server")


def test_gardener_port_8053_rewrites_and_placeholder_imports(at_fixtures):
    corefile = load("gardener/Corefile", DiskReader())
    assert not corefile.warnings  # the placeholder keys hold only comments
    block = corefile.blocks[0]
    assert [str(k) for k in block.keys] == ["dns://.:8053"]
    assert [d.name for d in block.directives] == [
        "errors", "log", "health", "ready", "rewrite", "kubernetes", "prometheus", "forward", "cache", "loop", "reload", "loadbalance"]
    rewrite = block.directive("rewrite")[0]
    assert rewrite.args == ("stop",)
    assert rewrite.lines("name")[0].args == ("regex", r"(^(?:[^\.]+\.)+)svc\.cluster\.local\.svc\.cluster\.local", "{1}svc.cluster.local")
    assert [str(line.origin) for line in rewrite.block] == ["gardener/Corefile:16", "gardener/Corefile:17", "gardener/Corefile:18"]
    assert str(block.directive("log")[0]) == "log . { class error }"
    assert corefile.server_for("example.com", 8053) is block and corefile.server_for("example.com", 53) is None


def test_kube_dns_configmap(at_fixtures):
    corefile = load("kube-dns.yaml", DiskReader())
    assert summary(corefile) == [
        (["dns://.:53"], [
            "kube-dns.yaml[kube-dns]  errors",
            "kube-dns.yaml[kube-dns]  kubernetes cluster.local in-addr.arpa ip6.arpa { pods insecure; fallthrough in-addr.arpa ip6.arpa }",
            "kube-dns.yaml[kube-dns/upstreamNameservers]:1  forward . 8.8.8.8 8.8.4.4",
            "kube-dns.yaml[kube-dns]  cache 30",
            "kube-dns.yaml[kube-dns]  loop",
        ]),
        (["dns://acme.local:53"], [f"kube-dns.yaml[kube-dns/stubDomains]:2  {d}" for d in ("errors", "cache 30", "loop", "forward . 1.2.3.4")]),
        (["dns://corp.example:53"], [f"kube-dns.yaml[kube-dns/stubDomains]:3  {d}"
                                     for d in ("errors", "cache 30", "loop", "forward . 10.0.0.53:5353 10.0.0.54")]),
    ]


def test_kube_dns_defaults_and_cluster_domain():
    corefile = from_kube_dns({}, cluster_domain="example.internal.")
    assert [str(d) for d in corefile.blocks[0].directives] == [
        "errors", "kubernetes example.internal in-addr.arpa ip6.arpa { pods insecure; fallthrough in-addr.arpa ip6.arpa }",
        "forward . /etc/resolv.conf", "cache 30", "loop"]
    assert str(corefile.blocks[0].directives[2].origin) == "kube-dns ConfigMap"


@pytest.mark.parametrize("data, expected", [
    ({"stubDomains": '{"a.local": ["1.2.3.4"'}, ["kube-dns ConfigMap data.stubDomains:1: invalid JSON: Expecting ',' delimiter"]),
    ({"stubDomains": '["a.local"]'}, ['kube-dns ConfigMap data.stubDomains:1: expected a JSON object: {"domain": ["nameserver IP", ...]}']),
    ({"stubDomains": '{\n"a.local": ["ns.a.local"]\n}'},
     [("kube-dns ConfigMap data.stubDomains:2: stub domain 'a.local': nameserver 'ns.a.local' is not an IP address "
      "(with an optional :port); kube-dns accepts no host names")]),
    ({"stubDomains": '{"a.local": ["1.2.3.4"], "A.local.": ["1.2.3.5"]}'},
     ["kube-dns ConfigMap data.stubDomains:1: stub domain 'A.local.' is given twice"]),
    ({"stubDomains": '{"a..local": ["1.2.3.4"]}'}, ["kube-dns ConfigMap data.stubDomains:1: stub domain 'a..local' has an empty label"]),
    ({"stubDomains": '{"a.local": []}'},
     ["kube-dns ConfigMap data.stubDomains:1: stub domain 'a.local': expected a non-empty list of nameserver addresses"]),
    ({"stubDomains": '{"a.local": ["1.2.3.4:70000"]}'},
     ["kube-dns ConfigMap data.stubDomains:1: stub domain 'a.local': nameserver '1.2.3.4:70000': port 70000 is not between 1 and 65535"]),
    ({"stubDomains": '{".": ["1.2.3.4"]}'}, ["kube-dns ConfigMap data.stubDomains:1: .:53 is already served by the server block at kube-dns ConfigMap"]),
    ({"upstreamNameservers": '["1.1.1.1", "8.8.8.8", "9.9.9.9", "1.0.0.1"]'},
     ["kube-dns ConfigMap data.upstreamNameservers:1: 4 upstream nameservers: kube-dns allows at most 3"]),
    ({"upstreamNameservers": '"8.8.8.8"'}, ["kube-dns ConfigMap data.upstreamNameservers:1: expected a JSON list of nameserver addresses"]),
    ({"federations": '{"myfed": "example.com"}'},
     ["kube-dns ConfigMap data.federations:1: kube-dns federations have no CoreDNS equivalent (the federation plugin was removed)"]),
])
def test_kube_dns_errors(data, expected):
    assert [str(e) for e in from_kube_dns(data).errors] == expected


def test_kube_dns_accepts_ports_and_ipv6():
    corefile = from_kube_dns({"stubDomains": '{"a.local": ["[fd00::53]:5353", "fd00::54"]}', "upstreamNameservers": '["1.1.1.1:53"]'})
    assert not corefile.errors
    assert str(corefile.blocks[1].directives[-1]) == "forward . [fd00::53]:5353 fd00::54"
    assert str(corefile.blocks[0].directive("forward")[0]) == "forward . 1.1.1.1:53"


def test_kube_dns_ignores_other_keys_with_a_warning():
    assert [str(w) for w in from_kube_dns({"other": "x"}).warnings] == [
        "kube-dns ConfigMap data.other: ignored: kube-dns reads only stubDomains and upstreamNameservers"]


CM = """apiVersion: v1
kind: ConfigMap
metadata: {name: %s, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        forward . 1.1.1.1
    }
"""


@pytest.mark.parametrize("text, expected", [
    ("kind: ConfigMap\ndata: {}\n", ["cm.yaml: document 1: a ConfigMap without metadata.name"]),
    ("kind: ConfigMap\nmetadata: {name: x}\ndata: [a]\n", ["cm.yaml: ConfigMap default/x: data: expected a mapping of key to text"]),
    ("kind: ConfigMap\nmetadata: {name: x}\ndata: {Corefile: 5}\n", ["cm.yaml: ConfigMap default/x: data.Corefile: expected text (quote it)"]),
    ("kind: Service\nmetadata: {name: kube-dns}\n",
     ["cm.yaml: no ConfigMap with a Corefile key (CoreDNS) or stubDomains/upstreamNameservers keys (kube-dns)"]),
    ("kind: ConfigMap\nmetadata: {name: kube-dns}\n---\nkind: ConfigMap\nmetadata: {name: x}\ndata: {stubDomains: '{}'}\n",
     ["cm.yaml: several kube-dns ConfigMaps; give one"]),
    (CM % "a" + "---\n" + CM % "b", ["cm.yaml: several ConfigMaps hold a Corefile key (kube-system/a, kube-system/b); give one"]),
    ("kind: ConfigMap\nmetadata: {name: coredns}\ndata:\n  Corefile: |\n    .:53 {\n        log }\n",
     ["cm.yaml[coredns/Corefile]:2: '}' must start its own line: CoreDNS reads a '}' after a directive on the same line as an error"]),
    ("x: !!float 5z\n", ["cm.yaml: invalid YAML value: could not convert string to float: '5z'"]),
])
def test_manifest_errors(text, expected):
    assert [str(e) for e in read_manifest("cm.yaml", MemoryReader({"cm.yaml": text})).errors] == expected


def test_manifest_that_is_not_yaml():
    """Unfinished YAML: one error naming the file and a line (libyaml and PyYAML's own parser
    place the end of an unclosed flow sequence on different lines)."""
    errors = [str(e) for e in read_manifest("cm.yaml", MemoryReader({"cm.yaml": "a: ["})).errors]
    assert len(errors) == 1 and re.match(r"cm\.yaml:[12]: invalid YAML: ", errors[0]), errors


def test_manifest_alias_bomb_is_refused():
    """A ConfigMap manifest of nested aliases is refused by the node limit, not expanded."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    errors = [str(e) for e in read_manifest("cm.yaml", MemoryReader({"cm.yaml": bomb}, limit=4096)).errors]
    assert len(errors) == 1 and "too big" in errors[0], errors


def test_a_manifest_list_with_other_kinds_and_the_kube_dns_configmap_beside_coredns():
    text = ("apiVersion: v1\nkind: List\nitems:\n- kind: Deployment\n  metadata: {name: coredns}\n"
            "- kind: ConfigMap\n  metadata: {name: kube-dns, namespace: kube-system}\n  data: {upstreamNameservers: '[\"8.8.8.8\"]'}\n"
            "- kind: ConfigMap\n  metadata: {name: rke2-coredns, namespace: kube-system}\n"
            "  data:\n    Corefile: \".:53 {\\n    forward . 9.9.9.9\\n}\\n\"\n")
    corefile = read_manifest("list.yaml", MemoryReader({"list.yaml": text}))
    assert summary(corefile) == [(["dns://.:53"], ["list.yaml[rke2-coredns/Corefile]:2  forward . 9.9.9.9"])]
    assert [str(w) for w in corefile.warnings] == ["list.yaml[kube-dns]: ignored: CoreDNS does not read the kube-dns ConfigMap"]


def test_manifest_options_env_port_and_mounts():
    text = ("kind: ConfigMap\nmetadata: {name: dns}\ndata:\n  Corefile: |\n    .:{$PORT} {\n        import /config/extra/*.conf\n    }\n"
            "---\nkind: ConfigMap\nmetadata: {name: extra}\ndata:\n  a.conf: log\n")
    corefile = read_manifest("m.yaml", MemoryReader({"m.yaml": text}), env={"PORT": "1053"}, conf="/config/Corefile",
                             mounts={"extra": "/config/extra"})
    assert summary(corefile) == [(["dns://.:1053"], ["m.yaml[extra/a.conf]:1 (imported from m.yaml[dns/Corefile]:2)  log"])]


def test_the_manifest_is_read_through_the_readers_limit():
    corefile = read_manifest("big.yaml", MemoryReader({"big.yaml": "#" * 5000}, limit=4096))
    assert [str(e) for e in corefile.errors] == ["big.yaml: larger than 4096 bytes"]


def test_disk_reader(tmp_path):
    (tmp_path / "Corefile").write_text(".:53 {\n    import conf.d/*.conf\n    import big\n    import conf.d\n}\n")
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.conf").write_text("errors\n")
    (tmp_path / "conf.d" / "a.conf").write_text("log\n")
    (tmp_path / "big").write_text("#" * 3000)
    corefile = read_corefile(str(tmp_path / "Corefile"), DiskReader(limit=2048))
    assert [d.name for d in corefile.blocks[0].directives] == ["log", "errors"]
    assert [str(e).replace(str(tmp_path), "T") for e in corefile.errors] == [
        "T/Corefile:3: cannot import T/big: larger than 2048 bytes",
        "T/Corefile:4: cannot import T/conf.d: is a directory",
    ]
    with pytest.raises(ReadError, match="no such file"):
        DiskReader().read(str(tmp_path / "missing"))
