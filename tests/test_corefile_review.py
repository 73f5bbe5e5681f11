"""kdns.corefile.review on its own (pure, no sockets): what kdns honours of the data the
translator keeps, what it refuses with file:line and why, what --corefile-ignore-unknown turns
into warnings, and what follows from a Corefile as a whole (in-cluster, hosts plans)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kdns.corefile import DiskReader, load, parse_text
from kdns.corefile.review import IGNORE_FLAG, UNDERSTOOD, review
from kdns.corefile.translate import translate
from kdns.corefile.translate.values import Explanation

FIXTURES = Path(__file__).parent / "corefiles"
BASE = ".:53 {\n    kubernetes cluster.local {\n        endpoint http://127.0.0.1:6443\n    }\n    %s\n}\n"


def reviewed(body: str, *, ignore_unknown: bool = False, text: str | None = None):
    corefile = parse_text(text if text is not None else BASE % body)
    t = translate(corefile, ignore_unknown=ignore_unknown)
    assert t.ok, [str(p) for p in t.problems]
    return review(t, corefile, ignore_unknown=ignore_unknown)


def entries(r, line: int) -> list[tuple[str, str]]:
    return [(e.kind, e.effect) for e in r.explanations if e.origin.line == line]


# (body, the line refused, the start of the problem's message)
REFUSED = [
    ("template CH TXT version.bind {\n answer \"{{ .Name }} 60 CH TXT kdns\"\n }", 5,
     "template CH TXT version.bind { ... }: template: kdns answers class IN only"),
    ("template IN A example.org {\n answer \"{{ .Name }} 60 IN HINFO a b\"\n }", 5,
     "template IN A example.org { ... }: template: kdns serves template records of types A, AAAA, CNAME, PTR, NS, TXT, SRV, MX"),
    ("template IN A example.org {\n rcode BADCOOKIE\n }", 5, "template IN A example.org { ... }: template: rcode BADCOOKIE does not"),
    ("loadbalance round_robin {\n prefer 10.0.0.0/8\n }", 5, "loadbalance round_robin { ... }: loadbalance prefer 10.0.0.0/8"),
    ("k8s_external .", 5, "k8s_external .: k8s_external: the root zone"),
    ("k8s_external in-addr.arpa", 5, "k8s_external in-addr.arpa: k8s_external: in-addr.arpa is a reverse zone"),
    ("k8s_external svc.cluster.local", 5, "k8s_external svc.cluster.local: k8s_external: svc.cluster.local overlaps the cluster"),
    ("cache 30 {\n denial 1000 300\n }\n}\nexample.org:53 {\n cache 30 {\n  success 1000 300 10\n }\n forward . 10.0.0.2", 11,
     "success 1000 300 10: success with a minimum TTL in a block other than the one forwarding every other name"),
]
# A kubernetes property (line 3) -> the options it sets.
KUBERNETES_OPTIONS = [
    ("fallthrough", {"cluster-fallthrough": ["."]}),
    ("fallthrough cluster.local in-addr.arpa", {"cluster-fallthrough": ["cluster.local"]}),
    ("noendpoints", {"endpoints": False}),
    ("endpoint_pod_names", {"endpoint-pod-names": True}),
]


@pytest.mark.parametrize(("body", "line", "message"), REFUSED, ids=[r[0].split("\n")[0] for r in REFUSED])
def test_refused_with_file_and_line(body, line, message):
    r = reviewed(body)
    assert not r.ok
    assert [(p.origin.line, p.message[: len(message)]) for p in r.problems] == [(line, message)]
    assert "refused" in [kind for kind, _ in entries(r, line)]
    ignored = reviewed(body, ignore_unknown=True)
    assert ignored.ok and ("warning", True) in [(k, e.startswith(f"ignored ({IGNORE_FLAG}): ")) for k, e in entries(ignored, line)]
    assert any(w.origin.line == line and "ignored" in w.message for w in ignored.warnings)


@pytest.mark.parametrize(("line", "options"), KUBERNETES_OPTIONS, ids=[k[0] for k in KUBERNETES_OPTIONS])
def test_kubernetes_properties_become_options(line, options):
    text = f".:53 {{\n    kubernetes cluster.local {{\n        {line}\n    }}\n}}\n"
    r = reviewed("", text=text)
    assert r.ok, [str(p) for p in r.problems]
    assert {k: r.options[k] for k in options} == options
    assert entries(r, 3)[0][0] == "option" and all(r.origin_of(k).line == 3 for k in options)
    assert not any("fallthrough" in w.message for w in r.warnings)  # (no "kdns answers them NXDOMAIN itself" any more)


def test_reverse_fallthrough_alone_sets_nothing():
    r = reviewed("", text=".:53 {\n kubernetes cluster.local in-addr.arpa {\n  fallthrough in-addr.arpa\n }\n}\n")
    assert r.ok and "cluster-fallthrough" not in r.options and entries(r, 3)[0][0] == "no effect"


def test_a_refused_directive_is_one_problem_and_its_lines_say_so():
    r = reviewed('template IN A example.org {\n match "^a[.]"\n answer "{{ .Name }} 60 IN HINFO a b"\n rcode NOERROR\n }')
    assert len(r.problems) == 1
    assert [e.effect for e in r.explanations if e.origin.line in (6, 7, 8)] == ["part of the template refused above"] * 3


HONOURED = [
    ("forward . 10.0.0.1 {\n max_concurrent 100\n }", 6, "option", {"upstream-max-concurrent": 100}),
    ("forward . 10.0.0.1 {\n policy sequential\n }", 6, "option", {"upstream-policy": "sequential"}),
    ("forward . 10.0.0.1 {\n policy round_robin\n }", 6, "option", {"upstream-policy": "round_robin"}),
    ("forward . 10.0.0.1 {\n force_tcp\n }", 6, "option", {"upstream-transport": "tcp"}),
    ("forward . 10.0.0.1 {\n prefer_udp\n }", 6, "option", {}),  # transport udp: kdns's default (below)
    ("forward . 10.0.0.1 {\n max_fails 5\n }", 6, "option", {"upstream-max-fails": 5}),
    ("forward . 10.0.0.1 {\n health_check 5s no_rec\n }", 6, "option",
     {"upstream-health-check": 5.0, "upstream-health-recursion": False}),
    ("forward . 10.0.0.1 {\n except example.org\n }", 6, "option", {"upstream-except": ["example.org"]}),
    ("hosts {\n 10.0.0.9 db.example.org\n ttl 60\n fallthrough\n }", 5, "data", {}),
    ("k8s_external example.org {\n apex ns\n ttl 40\n headless\n }", 5, "option",
     {"external-zone": ["example.org"], "external-apex": "ns", "external-ttl": 40, "external-headless": True}),
    ("cache 30 {\n disable success cluster.local\n disable denial cluster.local\n }", 6, "no effect", {}),
    ("cache 30 {\n prefetch 10 1m 10%\n }", 6, "warning", {}),
    ("cache 30 example.org example.net", 5, "option", {"cache-zone": ["example.org", "example.net"], "cache-ttl": 30}),
    ("cache 30 {\n disable success example.org\n disable success example.net\n disable denial .\n }", 6, "option",
     {"cache-disable-success": ["example.org", "example.net"], "cache-disable-denial": ["."]}),
    ("cache 30 {\n success 1000 300 10\n denial 500 60 3\n }", 6, "option", {"cache-min-ttl": 10, "cache-denial-min-ttl": 3,
                                                                                       "cache-ttl": 300, "cache-denial-ttl": 60}),
    ("bufsize 1000", 5, "option", {"udp-max-size": 1000}),
    ("k8s_external example.org {\n fallthrough\n }", 5, "option", {"external-zone": ["example.org"], "external-fallthrough": ["."]}),
    ("k8s_external example.org {\n fallthrough example.org\n }", 5, "option", {"external-fallthrough": ["example.org"]}),
    ("loadbalance", 5, "warning", {}),
    ("rewrite name exact a.example.org b.example.org", 5, "data", {}),
    ("rewrite stop {\n name regex (.*)\\.x {1}.y\n answer name (.*)\\.y {1}.x\n }", 5, "data", {}),
    ("template IN A example.org {\n match \"^a[.]\"\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n fallthrough\n }", 5, "data", {}),
    ("template ANY ANY reddog.microsoft.com {\n rcode NXDOMAIN\n }", 5, "data", {}),
    ("template IN ANY example.org {\n rcode NXDOMAIN\n authority \"example.org. 60 IN SOA ns.example.org. h.example.org. (1 60 60 60 60)\"\n }",
     5, "data", {}),
    ("log . {\n class denial error\n }", 6, "no effect", {"log-queries": True}),
]


@pytest.mark.parametrize(("body", "line", "kind", "options"), HONOURED, ids=[h[0].split("\n")[0] for h in HONOURED])
def test_honoured(body, line, kind, options):
    r = reviewed(body)
    assert r.ok, [str(p) for p in r.problems]
    assert entries(r, line)[0][0] == kind
    assert {k: r.options[k] for k in options} == options


def test_cache_zones_keep_the_names_of_blocks_with_a_cache_of_their_own():
    text = (".:53 {\n kubernetes cluster.local {\n  endpoint http://127.0.0.1:1\n }\n forward . 10.0.0.1\n cache 30 example.com\n}\n"
            "corp.example:53 {\n forward . 10.0.0.2\n cache 30\n}\nlab.example:53 {\n forward . 10.0.0.3\n}\n")
    r = reviewed("", text=text)
    assert r.ok and r.options["cache-zone"] == ["example.com", "corp.example"]


def test_a_narrower_blocks_disable_covers_its_own_names():
    """`disable denial` in a stub block's cache: CoreDNS leaves denials of that block's names
    out; kdns's one cache does the same for those names (and those alone)."""
    text = (".:53 {\n kubernetes cluster.local {\n  endpoint http://127.0.0.1:1\n }\n forward . 10.0.0.1\n cache 30\n}\n"
            "corp.example:53 {\n forward . 10.0.0.2\n cache 30 {\n  disable denial\n }\n}\n")
    r = reviewed("", text=text)
    assert r.ok, [str(p) for p in r.problems]
    assert r.options["cache-disable-denial"] == ["corp.example"] and "cache-zone" not in r.options


def test_ignore_empty_service_is_an_option():
    r = reviewed("", text=".:53 {\n kubernetes cluster.local {\n  endpoint http://127.0.0.1:1\n  ignore empty_service\n }\n}\n")
    assert r.ok and r.options["ignore-empty-services"] is True and r.origin_of("ignore-empty-services").line == 4


def test_one_max_concurrent_for_every_forward():
    text = (".:53 {\n kubernetes cluster.local {\n  endpoint http://127.0.0.1:1\n }\n forward . 10.0.0.1 {\n  max_concurrent 10\n }\n}\n"
            "example.org:53 {\n forward . 10.0.0.2 {\n  max_concurrent 20\n }\n}\n")
    r = reviewed("", text=text)
    assert [(p.origin.line, p.message) for p in r.problems] == [
        (11, "max_concurrent 20: kdns has one limit for every forwarded question; it is already 10 (at Corefile:6)")]


def test_except_is_honoured_when_another_forward_takes_those_names():
    r = reviewed("forward . 10.0.0.1 {\n except example.org\n }\n    forward example.org 10.0.0.2")
    assert r.ok and entries(r, 6)[0][0] == "option"
    assert r.options["stub-domain"] == ["example.org=10.0.0.2:53"] and "upstream-except" not in r.options


def test_except_goes_to_the_next_forward_of_the_block_with_its_options():
    """CoreDNS hands an except zone's names to the next forward of the block: a later `forward .`
    (a stub domain with its upstreams and options) or a later forward of the same zone."""
    r = reviewed("forward example.org 10.0.0.1 {\n except a.example.org\n }\n    forward . 10.0.0.2 {\n policy sequential\n }")
    assert r.ok, [str(p) for p in r.problems]
    assert r.options["stub-domain"] == ["example.org=10.0.0.1:53,policy=random"]
    assert r.options["upstream-default"] == ["a.example.org"]  # the `.` forward's own group
    assert r.options["upstream-policy"] == "sequential" and "upstream-except" not in r.options
    assert "to the forward at Corefile:8" in entries(r, 6)[0][1]
    r = reviewed("forward . 10.0.0.2 {\n except a.example.org\n }\n    forward example.org 10.0.0.1")
    assert r.options["stub-domain"] == ["a.example.org=10.0.0.1:53"] and "upstream-default" not in r.options


def test_prefer_udp_is_kdns_default_transport_and_coredns_default_is_the_clients():
    assert "upstream-transport" not in reviewed("forward . 10.0.0.1 {\n prefer_udp\n }").options
    assert reviewed("forward . 10.0.0.1").options["upstream-transport"] == "client"
    assert reviewed("forward . 10.0.0.1 {\n prefer_udp\n force_tcp\n }").options["upstream-transport"] == "tcp"


def test_except_without_a_taker_is_servfail_as_in_coredns():
    r = reviewed("forward . 10.0.0.1 {\n except internal.example cluster.local\n }")
    assert r.ok and r.options["upstream-except"] == ["internal.example"]  # cluster names: kdns's own
    effect = entries(r, 6)[0][1]
    assert "upstream-except internal.example: SERVFAIL" in effect and "cluster.local: kdns answers these names itself" in effect


def test_stub_forwards_keep_their_own_options():
    """Several forward lines with different options: each group keeps its own (the `.` rule's
    are the upstream-* options, a stub domain's differences ride on its entries)."""
    r = reviewed("forward corp.example 10.0.0.5 10.0.0.6 {\n force_tcp\n max_fails 0\n }\n"
                 "    forward . 10.0.0.1 {\n policy round_robin\n health_check 1s domain example.org\n }")
    assert r.ok, [str(p) for p in r.problems]
    items = ",policy=random,transport=tcp,max-fails=0,health-check=0.5,health-domain=."
    assert r.options["stub-domain"] == [f"corp.example=10.0.0.5:53{items}", f"corp.example=10.0.0.6:53{items}"]
    assert (r.options["upstream-policy"], r.options["upstream-transport"], r.options["upstream-health-check"],
            r.options["upstream-health-domain"]) == ("round_robin", "client", 1.0, "example.org")


def test_no_endpoint_and_no_kubeconfig_means_in_cluster():
    r = reviewed("", text=".:53 {\n kubernetes cluster.local\n forward . 10.0.0.1\n}\n")
    assert r.options["in-cluster"] is True and r.origin_of("in-cluster").line == 2
    assert ("option", "in-cluster: the API server of the cluster kdns runs in, with its pod's service account") in entries(r, 2)
    assert "in-cluster" not in reviewed("errors").options  # endpoint given
    kubeconfig = reviewed("", text=".:53 {\n kubernetes cluster.local {\n  kubeconfig /k.yaml\n }\n}\n")
    assert "in-cluster" not in kubeconfig.options and kubeconfig.options["kubeconfig"] == "/k.yaml"


def test_hosts_plans():
    """The file against the directory of the file holding the directive; names under deeper
    blocks left to those blocks; the directive's settings."""
    text = (".:53 {\n kubernetes cluster.local {\n  endpoint http://127.0.0.1:1\n }\n hosts extra.hosts {\n  10.0.0.1 a.example\n"
            "  ttl 60\n  reload 0\n  no_reverse\n  fallthrough\n }\n}\ncorp.example:53 {\n forward . 10.0.0.2\n}\n")
    corefile = parse_text(text, "/etc/coredns/Corefile")
    (plan,) = review(translate(corefile), corefile).hosts
    assert (plan.path, plan.inline, plan.zones, plan.excluded) == ("/etc/coredns/extra.hosts", (("10.0.0.1", ("a.example",)),),
                                                                  (".",), ("corp.example",))
    assert (plan.ttl, plan.reverse, plan.reload, plan.origin.line) == (60, False, 0.0, 5)


def test_data_the_review_does_not_know_is_refused():
    """A translator newer than the review (data of a plugin it has no rule for) never serves."""
    corefile = parse_text(BASE % "errors")
    t = translate(corefile)
    made_up = Explanation(t.explanations[0].origin, "newplugin", "data", "kept as Translation.newplugin")
    r = review(dataclasses.replace(t, explanations=(*t.explanations, made_up)), corefile)
    assert [p.message for p in r.problems] == ["newplugin: kdns does not implement this (kept as Translation.newplugin)"]


@pytest.mark.parametrize("path", ["kubeadm.Corefile", "kubeadm-legacy.Corefile", "kind-configmap.yaml", "minikube.Corefile",
                                  "eks.Corefile", "kube-dns.yaml", "k3s.yaml", "aks/Corefile", "gardener/Corefile"])
def test_every_data_entry_of_the_distributions_is_decided(path, monkeypatch):
    """After the review, "data" is only what kdns serves (hosts, rewrite, template and their lines),
    everything else an option, no effect, a warning or a refusal."""
    monkeypatch.chdir(FIXTURES)
    corefile = load(path, DiskReader())
    r = review(translate(corefile), corefile)
    assert {e.directive.split()[0] for e in r.explanations if e.kind == "data"} <= {"hosts", "ttl", "reload", "fallthrough",
                                                                                   "192.168.49.1", "rewrite", "template",
                                                                                   "name", "answer", "match", "rcode"}


@pytest.mark.parametrize("name", sorted(UNDERSTOOD))
def test_what_plugins_lists_is_understood(name):
    """`kdns -plugins` lists a directive only if a plain use of it is served."""
    uses = {"autopath": "autopath @kubernetes", "bind": "bind 127.0.0.1", "forward": "forward . 10.0.0.1",
            "proxy": "proxy . 10.0.0.1", "hosts": "hosts {\n fallthrough\n }", "k8s_external": "k8s_external example.org",
            "kubernetes": None, "bufsize": "bufsize 1232", "rewrite": "rewrite name a.example.org b.example.org",
            "template": "template IN A example.org"}
    use = uses.get(name, name)
    r = reviewed(use) if use is not None else reviewed("errors")
    assert r.ok, [str(p) for p in r.problems]
    assert "rewrite" in UNDERSTOOD and "template" in UNDERSTOOD


def test_except_handed_to_a_resolv_conf_forward_goes_to_the_default_upstreams():
    """CoreDNS hands a.example.org to the `.` forward, whose upstreams come from resolv.conf:
    kdns sends its names to the default upstreams (upstream-default), whatever they are."""
    r = reviewed("forward example.org 10.0.0.1 {\n except a.example.org\n }\n    forward . /etc/resolv.conf")
    assert r.ok, [str(p) for p in r.problems]
    assert r.options["upstream-default"] == ["a.example.org"] and r.options["resolv-conf"] == "/etc/resolv.conf"
    assert r.options["stub-domain"] == ["example.org=10.0.0.1:53"] and "upstream-except" not in r.options
    assert entries(r, 6) == [("option", ("upstream-default a.example.org: to the forward at Corefile:8 (kdns's default "
                                        "upstreams, asked as that forward says), as in CoreDNS"))]


def test_inline_hosts_names_under_the_cluster_zone_are_a_warning():
    """CoreDNS's hosts runs before kubernetes and answers a cluster name it holds; kdns answers
    cluster names from Kubernetes alone: a warning at the hosts line, the rest of it served."""
    r = reviewed("hosts {\n 192.0.2.9 web.shop.svc.cluster.local gw.example.net\n fallthrough\n }")
    assert r.ok
    assert [(w.origin.line, w.message) for w in r.warnings if "cluster zone" in w.message] == [
        (5, ("hosts { ... }: web.shop.svc.cluster.local: under the cluster zone, where CoreDNS's hosts answers first; kdns "
            "answers those names from Kubernetes alone and skips these entries"))]
