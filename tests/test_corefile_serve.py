"""The distributions' Corefiles (tests/corefiles/), served: each checks clean (k3s's rewrite,
AKS's templates and Gardener's rewrite included: tests/test_corefile_rewrite.py asks their
names), starts from CoreDNS's
own command line, and answers the core answer table (tests/test_answers.py) exactly as the
equivalent kdns configuration, written here by hand from reading the Corefile, does.

Everything runs on loopback: the cluster is the fake API server (tests/kubeapi.py) holding the
answer table's objects, upstreams and stub-domain nameservers are stub servers
(tests/stubdns.py). The fixtures are copied and localized (tests/corefile_kit.py): only their
addresses change.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import pytest
import trio

from testkit.answers import CASES, Case, check
from testkit.corefile import (
    FIXTURES,
    CorefileProcess,
    a_lines,
    copy_localized,
    run_kdns,
    serve_corefile,
    serve_flags,
    shape,
    synced,
)
from testkit.kubeapi import KubeAPI
from testkit.stubdns import StubDNS

UPSTREAM_RECORDS = ("example.com. 300 IN A 192.0.2.10", "www.example.net. 300 IN A 192.0.2.11")
STUB_RECORDS = ("db.consul.local. 300 IN A 192.0.2.20", "db.corp.example. 300 IN A 192.0.2.21",
                "db.puglife.local. 300 IN A 192.0.2.22", "db.acme.local. 300 IN A 192.0.2.23")
EVERYONE = ["--allow-recursion", "0.0.0.0/0", "--allow-recursion", "::/0"]
NODE_HOSTS = "172.18.0.2 k3d-demo-server-0\n172.18.0.3 k3d-demo-agent-0\n172.18.0.1 host.k3d.internal\n"


class Distro:
    """A fixture, what its Corefile is in kdns flags (UPSTREAM and STUB stand for the stub
    servers' addresses), the other addresses it names, and the names its rewrite rules change
    (a regex: kdns flags cannot say that; tests/test_corefile_rewrite.py asks those)."""

    def __init__(self, name: str, ttl: int, flags: list[str], *, replace: dict[str, str] | None = None,
                 conf: bool = True, http: tuple[str, ...] = ("/health", "/ready", "/metrics"), rewritten: str = "$^"):
        self.name, self.ttl, self.flags, self.conf, self.http = name, ttl, flags, conf, http
        self.rewritten = re.compile(rewritten)
        self.replace = replace or {}  # address in the fixture -> UPSTREAM or STUB

    def __str__(self) -> str:
        return self.name


KUBEADM = ["--ttl", "30", "--pods", "insecure", "--upstream", "UPSTREAM", *EVERYONE, "--cache-ttl", "30", "--cache-size", "20000",
           "--serve-stale", "0", "--upstream-max-concurrent", "1000"]
DISTROS = [
    Distro("kubeadm.Corefile", 30, KUBEADM),
    Distro("kind-configmap.yaml", 30, KUBEADM),
    Distro("kubeadm-legacy.Corefile", 5, ["--pods", "insecure", "--upstream", "UPSTREAM", *EVERYONE, "--cache-ttl", "30",
                                          "--cache-size", "20000", "--serve-stale", "0"], http=("/health", "/metrics")),
    Distro("minikube.Corefile", 30, [*KUBEADM, "--log-queries", "--hosts", "/etc/hosts", "--hosts", "MINIKUBE_HOSTS"]),
    Distro("eks.Corefile", 5, ["--pods", "insecure", "--upstream", "UPSTREAM", *EVERYONE, "--cache-ttl", "30",
                               "--cache-size", "20000", "--serve-stale", "0", "--stub-domain", "consul.local=STUB"],
           replace={"10.150.0.1": "STUB"}),
    Distro("k3s.yaml", 5, ["--pods", "insecure", "--upstream", "UPSTREAM", *EVERYONE, "--cache-ttl", "30", "--cache-size", "20000",
                           "--serve-stale", "0", "--stub-domain", "corp.example=STUB", "--log-queries", "--hosts", "NODE_HOSTS",
                           "--hosts-ttl", "60"],
           replace={"10.10.0.53": "STUB"}),
    Distro("aks/Corefile", 30, [*KUBEADM[:-2], "--stub-domain", "puglife.local=STUB", "--log-queries"], replace={"192.11.0.1": "STUB"}),
    Distro("gardener/Corefile", 30, [*KUBEADM[:-2], "--log-queries"], rewritten=r"\.svc\.cluster\.local\.svc\.cluster\.local\.$"),
    Distro("kube-dns.yaml", 5, ["--pods", "insecure", "--upstream", "UPSTREAM", *EVERYONE, "--cache-ttl", "30", "--cache-size",
                                "20000", "--serve-stale", "0", "--stub-domain", "acme.local=STUB",
                                "--stub-domain", "corp.example=STUB"],
           replace={"1.2.3.4": "STUB", "10.0.0.53:5353": "STUB", "10.0.0.54": "STUB", "8.8.8.8": "UPSTREAM",
                    "8.8.4.4": "UPSTREAM"}, conf=False),
]


@pytest.fixture
async def stubs(nursery):
    upstream, stub = StubDNS(*UPSTREAM_RECORDS), StubDNS(*STUB_RECORDS)
    await nursery.start(upstream.serve)
    await nursery.start(stub.serve)
    return upstream, stub


def localized(distro: Distro, tmp_path: Path, api: KubeAPI, upstream: StubDNS, stub: StubDNS) -> Path:
    addresses = {"UPSTREAM": upstream.address, "STUB": stub.address}
    return copy_localized(distro.name, tmp_path, api=api.url, upstream=upstream.address,
                          replace={old: addresses[new] for old, new in distro.replace.items()})


def equivalent(distro: Distro, tmp_path: Path, api: KubeAPI, upstream: StubDNS, stub: StubDNS) -> list[str]:
    files = {"MINIKUBE_HOSTS": "192.168.49.1 host.minikube.internal\n", "NODE_HOSTS": NODE_HOSTS}
    out = ["--apiserver", api.url]
    for word in distro.flags:
        if word in files:
            path = tmp_path / word.lower()
            path.write_text(files[word])
            word = str(path)
        out.append(word.replace("UPSTREAM", upstream.address).replace("STUB", stub.address))
    return out


def addresses(reply: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in reply.answer for rd in rrset if rrset.rdtype in (1, 28)}


def forwarded(case: Case) -> bool:
    """A case the table's kdns answers alone for want of an upstream, which the Corefile's
    sends upstream: a name outside the zones (REFUSED there), a reverse name kdns does not
    know (NXDOMAIN there; CoreDNS's `fallthrough in-addr.arpa ip6.arpa`), an ExternalName
    whose target lies outside the cluster (kdns follows it)."""
    return (case.rcode == "REFUSED" or (case.rcode == "NXDOMAIN" and case.soa in ("in-addr.arpa.", "ip6.arpa."))
            or any(" IN CNAME " in line and not line.endswith(".cluster.local.") for line in case.answer))


def retimed(case: Case, ttl: int) -> Case:
    """A case of the answer table with the records' TTL the Corefile's (the table's is 5)."""
    def fix(lines):
        return None if lines is None else tuple(line.replace(" 5 IN ", f" {ttl} IN ") for line in lines)
    return Case(case.name, case.qtype, case.rcode, fix(case.answer), fix(case.additional), case.soa, case.note)


@pytest.mark.parametrize("distro", DISTROS, ids=str)
def test_checks_clean(distro: Distro):
    """`kdns corefile check` on the fixture as the distribution ships it."""
    result = run_kdns("corefile", "check", distro.name, cwd=FIXTURES)
    assert (result.returncode, result.stdout) == (0, f"{distro.name}: OK\n"), result.stdout + result.stderr


@pytest.mark.parametrize("distro", DISTROS, ids=str)
async def test_answers_as_the_equivalent_kdns_configuration(distro: Distro, api, stubs, nursery, tmp_path):
    upstream, stub = stubs
    path = localized(distro, tmp_path, api, upstream, stub)
    extra = []
    if distro.name == "kube-dns.yaml":  # kube-dns has no endpoint to give: the source comes from the flags
        extra += ["--apiserver", api.url, "--listen", "127.0.0.1:0"]
    corefile = await synced(await serve_corefile(nursery, path, *extra))
    plain = await synced(await serve_flags(nursery, *equivalent(distro, tmp_path, api, upstream, stub)))
    for case in CASES:
        if distro.rewritten.search(case.name):
            continue
        got = await corefile.query(case.name, case.qtype)
        assert shape(got) == shape(await plain.query(case.name, case.qtype)), case
        if not forwarded(case):
            check(retimed(case, distro.ttl), got)
    # Names outside the zones go to the Corefile's upstream.
    assert addresses(await corefile.query("example.com", "A")) == {"192.0.2.10"}


@pytest.mark.parametrize("distro", [d for d in DISTROS if d.conf], ids=str)
async def test_serves_from_coredns_command_line(distro: Distro, api, stubs, tmp_path):
    """`kdns -conf PATH` as CoreDNS's Deployment runs it: ready once synced, healthy, answering."""
    upstream, stub = stubs
    path = localized(distro, tmp_path, api, upstream, stub)
    args = ["-conf", str(path.relative_to(tmp_path))]
    process = CorefileProcess(*args, cwd=tmp_path)
    try:
        await trio.to_thread.run_sync(process.started, distro.http)
        assert set(process.http) == set(distro.http), process.lines
        if "/ready" in distro.http:
            with trio.fail_after(10):
                while (await trio.to_thread.run_sync(process.get, "/ready"))[0] != 200:
                    await trio.sleep(0.05)
        else:
            await trio.to_thread.run_sync(process.wait_for, "synced with")
        assert (await trio.to_thread.run_sync(process.get, "/health"))[0] == 200
        web = "web.shop.svc.cluster.local."
        for tcp in (False, True):
            q = dns.message.make_query(web, "A")
            ask = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
            reply = await ask(q, "127.0.0.1", port=process.port, timeout=3)
            assert shape(reply)[2] == a_lines(web, "10.96.100.10", ttl=distro.ttl)
        reply = await dns.asyncquery.udp(dns.message.make_query("www.example.net", "A"), "127.0.0.1", port=process.port, timeout=3)
        assert addresses(reply) == {"192.0.2.11"}
        assert not process.errors(), process.lines
    finally:
        process.proc.send_signal(2)  # SIGINT: at once (SIGTERM would wait for the Corefile's lameduck)
        status = await trio.to_thread.run_sync(process.wait_exit)
        process.close()
    assert status == 0, process.lines


REFUSED_TEMPLATE = '    template IN A reddog.microsoft.com {\n      answer "{{ .Name }} 60 IN HINFO a b"\n    }\n'


def test_a_refused_corefile_does_not_serve_unless_told_to_ignore(tmp_path):
    """AKS's Corefile with one more template, one kdns cannot serve: without the ignore option
    kdns does not start (the refusal on stderr with file:line); with it, a warning."""
    shutil.copytree(FIXTURES / "aks", tmp_path / "aks")
    path = tmp_path / "aks" / "Corefile"
    path.write_text(path.read_text().replace("    import custom/*.override\n", "    import custom/*.override\n" + REFUSED_TEMPLATE))
    result = run_kdns("-conf", "aks/Corefile", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [("kdns: error: aks/Corefile:24: template IN A reddog.microsoft.com { ... }: template: "
                                           "kdns serves template records of types A, AAAA, CNAME, PTR, NS, TXT, SRV, MX, SOA; "
                                           "'{{ .Name }} 60 IN HINFO a b' makes HINFO")]
    ignored = run_kdns("corefile", "check", "--ignore-unknown", "aks/Corefile", cwd=tmp_path)
    assert (ignored.returncode, ignored.stdout) == (0, "aks/Corefile: OK\n"), ignored.stdout + ignored.stderr
    assert ignored.stderr.count("ignored (--corefile-ignore-unknown): template: kdns serves template records") == 1
