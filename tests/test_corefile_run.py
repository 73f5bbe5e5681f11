"""What a served Corefile does, seen through DNS answers: hosts (inline lines, k3s's NodeHosts
from its ConfigMap), stub-domain server blocks, `cache` with `disable` for the cluster zone,
`max_concurrent`, `ignore empty_service`, `k8s_external`, reloads (an imported file edited,
then broken), every address of both families for `.:PORT`; and what follows from a Corefile
as a whole (in-cluster credentials, no upstream without a forward, a value kdns rejects named
at its directive's line).

Loopback only: the fake API server (tests/kubeapi.py) and stub servers (tests/stubdns.py).
"""

from __future__ import annotations

import logging
import signal
import textwrap
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import pytest
import trio

from kdns.corefile.wiring import load_corefile
from testkit.corefile import CorefileProcess, copy_localized, run_kdns, serve_corefile, synced
from testkit.dnswire import rrs
from testkit.kubeapi import KubeAPI
from testkit.repo import needs_ipv6
from testkit.stubdns import StubDNS

WEB = "web.shop.svc.cluster.local."


@pytest.fixture
async def upstream(nursery):
    stub = StubDNS("example.com. 300 IN A 192.0.2.10", "db.consul.local. 300 IN A 192.0.2.99")
    await nursery.start(stub.serve)
    return stub


def corefile(tmp_path: Path, api: KubeAPI | None, body: str, *, name: str = "Corefile", extra: str = "") -> Path:
    """A Corefile whose main block (on 127.0.0.1, a free port) serves cluster.local from the
    fake API server (or in-cluster when `api` is None) and says `body`."""
    endpoint = f"\n        endpoint {api.url}" if api is not None else ""
    text = textwrap.dedent(f"""\
        .:0 {{
            bind 127.0.0.1
            kubernetes cluster.local in-addr.arpa ip6.arpa {{
                pods insecure
                fallthrough in-addr.arpa ip6.arpa{endpoint}
            }}
        """) + textwrap.indent(textwrap.dedent(body), "    ") + "}\n" + textwrap.dedent(extra)
    path = tmp_path / name
    path.write_text(text)
    return path


def ips(reply: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in reply.answer for rd in rrset if rrset.rdtype in (1, 28)}


def rcode(reply: dns.message.Message) -> str:
    return dns.rcode.to_text(reply.rcode())


# -- hosts -----------------------------------------------------------------------------------------


async def test_minikube_inline_hosts_answer_with_ptr_and_the_rest_falls_through(api, upstream, nursery, tmp_path):
    path = copy_localized("minikube.Corefile", tmp_path, api=api.url, upstream=upstream.address)
    server = await synced(await serve_corefile(nursery, path))
    reply = await server.query("host.minikube.internal", "A")
    assert rrs(reply.answer) == {"host.minikube.internal. 3600 IN A 192.168.49.1"} and rcode(reply) == "NOERROR"
    assert rcode(await server.query("host.minikube.internal", "AAAA")) == "NOERROR"  # NODATA: the name exists
    ptr = await server.query("1.49.168.192.in-addr.arpa", "PTR")
    assert rrs(ptr.answer) == {"1.49.168.192.in-addr.arpa. 3600 IN PTR host.minikube.internal."}
    assert ips(await server.query("example.com", "A")) == {"192.0.2.10"}  # fallthrough: on to forward
    assert upstream.count("host.minikube.internal.") == 0


async def test_k3s_nodehosts_from_the_configmap(api, upstream, nursery, tmp_path):
    """k3s's hosts directive names /etc/coredns/NodeHosts, a key of the same ConfigMap: read from
    the manifest, with its ttl 60; the NodeHosts names never go upstream."""
    path = copy_localized("k3s.yaml", tmp_path, api=api.url, upstream=upstream.address, replace={"10.10.0.53": upstream.address})
    server = await synced(await serve_corefile(nursery, path, "--corefile-ignore-unknown"))
    reply = await server.query("k3d-demo-server-0", "A")
    assert rrs(reply.answer) == {"k3d-demo-server-0. 60 IN A 172.18.0.2"}
    assert rrs((await server.query("host.k3d.internal", "A")).answer) == {"host.k3d.internal. 60 IN A 172.18.0.1"}
    ptr = await server.query("3.0.18.172.in-addr.arpa", "PTR")
    assert rrs(ptr.answer) == {"3.0.18.172.in-addr.arpa. 60 IN PTR k3d-demo-agent-0."}
    assert upstream.count("k3d-demo-server-0.") == upstream.count("host.k3d.internal.") == 0
    assert ips(await server.query(WEB, "A")) == {"10.96.100.10"}


async def test_hosts_file_relative_to_the_corefile_reload_and_names_of_a_deeper_block(api, upstream, nursery, tmp_path):
    """A relative hosts path is read beside the Corefile (here: conf/), re-read when it
    changes; a name under another server block's zone is that block's (forwarded there)."""
    (tmp_path / "conf").mkdir()
    hosts = tmp_path / "conf" / "extra.hosts"
    hosts.write_text("10.1.2.3 app.example.test\n10.1.2.4 db.consul.local\n")
    path = corefile(tmp_path / "conf", api, """\
        hosts extra.hosts {
            reload 1s
            fallthrough
        }
        """, extra=f"consul.local:0 {{\n    bind 127.0.0.1\n    forward . {upstream.address}\n}}\n")
    server = await synced(await serve_corefile(nursery, path))
    assert ips(await server.query("app.example.test", "A")) == {"10.1.2.3"}
    assert ips(await server.query("db.consul.local", "A")) == {"192.0.2.99"}  # the consul.local block's, not hosts'
    hosts.write_text("10.1.2.5 app.example.test\n")
    with trio.fail_after(10):
        while ips(await server.query("app.example.test", "A")) != {"10.1.2.5"}:
            await trio.sleep(0.1)


async def test_hosts_ttl_and_no_reverse(api, upstream, nursery, tmp_path):
    path = corefile(tmp_path, api, f"hosts {{\n    10.1.2.3 app.example.test\n    ttl 120\n    no_reverse\n    fallthrough\n}}\n"
                                   f"forward . {upstream.address}\n")
    server = await synced(await serve_corefile(nursery, path))
    assert rrs((await server.query("app.example.test", "A")).answer) == {"app.example.test. 120 IN A 10.1.2.3"}
    ptr = await server.query("3.2.1.10.in-addr.arpa", "PTR")
    assert rcode(ptr) == "NXDOMAIN" and upstream.count("3.2.1.10.in-addr.arpa.") == 1  # no PTR held: asked upstream


# -- forwarding and caching ------------------------------------------------------------------------


async def test_several_forward_lines_in_file_order(api, nursery, tmp_path):
    """`forward example.org A` before `forward . B`: example.org's names go to A, the rest to B;
    a `forward` after `forward .` for the same names is never used (CoreDNS's order)."""
    a, b = StubDNS("www.example.org. 300 IN A 192.0.2.1"), StubDNS("www.example.net. 300 IN A 192.0.2.2")
    await nursery.start(a.serve)
    await nursery.start(b.serve)
    path = corefile(tmp_path, api, f"forward example.org {a.address}\nforward . {b.address}\nforward example.net {a.address}\n")
    server = await synced(await serve_corefile(nursery, path))
    assert ips(await server.query("www.example.org", "A")) == {"192.0.2.1"}
    assert ips(await server.query("www.example.net", "A")) == {"192.0.2.2"}
    assert (a.count("www.example.net."), b.count("www.example.org.")) == (0, 0)


async def test_eks_stub_block_takes_its_domain(api, nursery, tmp_path):
    main, consul = StubDNS("example.com. 300 IN A 192.0.2.10"), StubDNS("db.consul.local. 300 IN A 192.0.2.99")
    await nursery.start(main.serve)
    await nursery.start(consul.serve)
    path = copy_localized("eks.Corefile", tmp_path, api=api.url, upstream=main.address, replace={"10.150.0.1": consul.address})
    server = await synced(await serve_corefile(nursery, path))
    assert ips(await server.query("db.consul.local", "A")) == {"192.0.2.99"}
    assert ips(await server.query("example.com", "A")) == {"192.0.2.10"}
    assert (consul.count("db.consul.local."), main.count("db.consul.local."), consul.count("example.com.")) == (1, 0, 0)


async def test_kubeadm_cache_keeps_forwarded_answers_but_never_cluster_names(api, upstream, nursery, tmp_path):
    """`cache 30 { disable success cluster.local; disable denial cluster.local }`: a forwarded
    answer is asked upstream once; a Service that changes is seen at once, cached or not."""
    path = copy_localized("kubeadm.Corefile", tmp_path, api=api.url, upstream=upstream.address)
    server = await synced(await serve_corefile(nursery, path))
    for _ in range(3):
        assert ips(await server.query("example.com", "A")) == {"192.0.2.10"}
    assert upstream.count("example.com.") == 1
    name = "cachetest.shop.svc.cluster.local."
    assert rcode(await server.query(name, "A")) == "NXDOMAIN"
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cachetest", "namespace": "shop"},
               "spec": {"clusterIP": "10.96.200.1", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
    api.apply(service)
    try:
        with trio.fail_after(10):
            while ips(await server.query(name, "A")) != {"10.96.200.1"}:
                await trio.sleep(0.05)
        api.apply({**service, "spec": {**service["spec"], "clusterIP": "10.96.200.2"}})
        with trio.fail_after(10):
            while ips(await server.query(name, "A")) != {"10.96.200.2"}:
                await trio.sleep(0.05)
    finally:
        api.delete("Service", "shop", "cachetest")
    assert upstream.count(name) == 0


async def test_max_concurrent_refuses_beyond_the_limit(api, nursery, tmp_path):
    slow = StubDNS("a.example.com. 300 IN A 192.0.2.1", "b.example.com. 300 IN A 192.0.2.2")
    slow.delay = 1.0
    await nursery.start(slow.serve)
    path = corefile(tmp_path, api, f"forward . {slow.address} {{\n    max_concurrent 1\n}}\n")
    server = await synced(await serve_corefile(nursery, path))
    replies: dict[str, dns.message.Message] = {}

    async def ask(name: str) -> None:
        replies[name] = await server.query(name, "A")

    async with trio.open_nursery() as asking:
        asking.start_soon(ask, "a.example.com")
        with trio.fail_after(5):
            while slow.count("a.example.com.") == 0:  # the first is in flight upstream
                await trio.sleep(0.01)
        asking.start_soon(ask, "b.example.com")
    assert ips(replies["a.example.com"]) == {"192.0.2.1"}
    assert rcode(replies["b.example.com"]) == "REFUSED" and slow.count("b.example.com.") == 0
    assert ips(await server.query("b.example.com", "A")) == {"192.0.2.2"}  # nothing in flight now


# -- the kubernetes directive ------------------------------------------------------------------------


async def test_ignore_empty_service(api, nursery, tmp_path):
    """`ignore empty_service`: a ClusterIP Service without ready endpoints is NXDOMAIN (its
    ClusterIP keeps its PTR); one with endpoints is answered as ever."""
    path = tmp_path / "Corefile"
    path.write_text(f".:0 {{\n bind 127.0.0.1\n kubernetes cluster.local {{\n  endpoint {api.url}\n  ignore empty_service\n }}\n}}\n")
    server = await synced(await serve_corefile(nursery, path))
    lonely = await server.query("lonely.e2e.svc.cluster.local", "A")
    assert rcode(lonely) == "NXDOMAIN", lonely
    assert ips(await server.query(WEB, "A")) == {"10.96.100.10"}
    ptr = await server.query("3.55.96.10.in-addr.arpa", "PTR")
    assert rrs(ptr.answer) == {"3.55.96.10.in-addr.arpa. 5 IN PTR lonely.e2e.svc.cluster.local."}


async def test_k8s_external_serves_the_external_zone(api, nursery, tmp_path):
    lb = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "edge", "namespace": "shop"},
          "spec": {"type": "LoadBalancer", "clusterIP": "10.96.201.1", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
          "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}
    api.apply(lb)
    try:
        path = corefile(tmp_path, api, "k8s_external k8s.example.org {\n    ttl 40\n}\n")
        server = await synced(await serve_corefile(nursery, path))
        reply = await server.query("edge.shop.k8s.example.org", "A")
        assert rrs(reply.answer) == {"edge.shop.k8s.example.org. 40 IN A 203.0.113.7"}
        assert rcode(await server.query("nope.shop.k8s.example.org", "A")) == "NXDOMAIN"
    finally:
        api.delete("Service", "shop", "edge")


# -- reloading ---------------------------------------------------------------------------------------


async def test_reload_follows_an_imported_file_and_keeps_the_old_one_when_it_breaks(api, upstream, nursery, tmp_path, caplog):
    (tmp_path / "custom").mkdir()
    extra = tmp_path / "custom" / "names.override"
    extra.write_text("hosts {\n    10.1.2.3 app.example.test\n    fallthrough\n}\n")
    path = corefile(tmp_path, api, f"import custom/*.override\nforward . {upstream.address}\n")
    running = await synced(await serve_corefile(nursery, path))
    assert ips(await running.query("app.example.test", "A")) == {"10.1.2.3"}

    extra.write_text("hosts {\n    10.1.2.4 app.example.test\n    10.1.2.5 new.example.test\n    fallthrough\n}\n")
    assert running.server.reload()
    assert ips(await running.query("app.example.test", "A")) == {"10.1.2.4"}
    assert ips(await running.query("new.example.test", "A")) == {"10.1.2.5"}

    (tmp_path / "custom" / "more.override").write_text("template CH TXT version.bind\n")
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="kdns"):
        assert not running.server.reload()
    assert ips(await running.query("app.example.test", "A")) == {"10.1.2.4"}  # the old configuration serves on
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    where = f"{tmp_path / 'custom' / 'more.override'}:1 (imported from {path}:8)"
    why = "template CH TXT version.bind: template: kdns answers class IN only; a template of class CH would never be asked"
    assert errors == [f"reload rejected, keeping the running configuration: {where}: {why}"], errors

    # A rewrite brought in by a reload is served at once.
    (tmp_path / "custom" / "more.override").write_text("rewrite name exact alias.example.test app.example.test\n")
    assert running.server.reload()
    reply = await running.query("Alias.Example.Test", "A")
    assert [rrset.to_text() for rrset in reply.answer] == ["Alias.Example.Test. 3600 IN A 10.1.2.4"]

    (tmp_path / "custom" / "more.override").unlink()
    extra.write_text("hosts {\n    10.1.2.6 app.example.test\n    fallthrough\n}\n")
    assert running.server.reload()
    assert ips(await running.query("app.example.test", "A")) == {"10.1.2.6"}
    assert rcode(await running.query("new.example.test", "A")) == "NXDOMAIN"  # no longer held: the upstream's answer


async def test_reload_directive_and_sighup_in_a_process(api, upstream, tmp_path):
    """With `reload 2s` the Corefile is looked at every 2 s (CoreDNS's minimum): an edited
    import is picked up, a broken one is logged with its file:line and the old answers stay;
    SIGHUP reloads at once; neither enters lameduck (/ready stays 200)."""
    (tmp_path / "custom").mkdir()
    extra = tmp_path / "custom" / "names.override"
    extra.write_text("hosts {\n    10.1.2.3 app.example.test\n    fallthrough\n}\n")
    path = corefile(tmp_path, api, "health 127.0.0.1:0\nready 127.0.0.1:0\nreload 2s\nimport custom/*.override\n")
    process = CorefileProcess("-conf", str(path), cwd=tmp_path)
    try:
        await trio.to_thread.run_sync(process.started, ("/health", "/ready"))
        await trio.to_thread.run_sync(process.wait_for, "synced with")

        async def answer() -> set[str]:
            return ips(await dns.asyncquery.udp(dns.message.make_query("app.example.test", "A"), "127.0.0.1", port=process.port,
                                                timeout=3))

        assert await answer() == {"10.1.2.3"}
        extra.write_text("hosts {\n    10.1.2.4 app.example.test\n    fallthrough\n}\n")
        with trio.fail_after(15):
            while await answer() != {"10.1.2.4"}:
                await trio.sleep(0.2)
        mark = process.mark()
        extra.write_text("hosts {\n    10.1.2.5 app.example.test\n    ttl soon\n    fallthrough\n}\n")  # not a TTL
        m = await trio.to_thread.run_sync(lambda: process.wait_for("ERROR .*reload rejected", timeout=15, since=mark))
        assert f"{extra}:3 (imported from {path}:" in m.string and "ttl: not a whole number: 'soon'" in m.string, m.string
        assert await answer() == {"10.1.2.4"}
        assert (await trio.to_thread.run_sync(process.get, "/ready"))[0] == 200
        extra.write_text("hosts {\n    10.1.2.6 app.example.test\n    fallthrough\n}\n")
        process.proc.send_signal(signal.SIGHUP)
        with trio.fail_after(15):
            while await answer() != {"10.1.2.6"}:
                await trio.sleep(0.05)
        assert process.matching("SIGHUP received, reloading") and not process.matching("lameduck period")
    finally:
        process.proc.send_signal(signal.SIGINT)
        await trio.to_thread.run_sync(process.wait_exit)
        process.close()


# -- listening ------------------------------------------------------------------------------------------


@needs_ipv6
async def test_dot_key_without_bind_listens_on_both_families(api, nursery, tmp_path):
    path = tmp_path / "Corefile"
    path.write_text(f".:0 {{\n kubernetes cluster.local {{\n  endpoint {api.url}\n }}\n}}\n")
    running = await synced(await serve_corefile(nursery, path))
    assert {str(b.address.host) for b in running.server.bound} == {"0.0.0.0", "::"}
    for host in ("127.0.0.1", "::1"):
        reply = await dns.asyncquery.udp(dns.message.make_query(WEB, "A"), host, port=running.port, timeout=3)
        assert ips(reply) == {"10.96.100.10"}


# -- what follows from the Corefile as a whole -----------------------------------------------------------


def test_no_endpoint_means_in_cluster_and_no_forward_means_no_upstream(tmp_path):
    """CoreDNS's kubernetes without endpoint or kubeconfig uses the pod's service account; a
    Corefile without forward has no upstream, even in a pod (no fallback to resolv.conf)."""
    path = corefile(tmp_path, None, "errors\n")
    loaded = load_corefile(str(path), environ={"KUBERNETES_SERVICE_HOST": "10.96.0.1"})
    assert loaded.problems == ()
    assert loaded.config.api is not None and loaded.config.api.in_cluster
    assert loaded.config.upstreams == () and not loaded.config.dns.forwarding


def test_a_value_kdns_rejects_is_named_at_its_directive(tmp_path):
    path = corefile(tmp_path, None, f"forward . {tmp_path / 'missing' / 'resolv.conf'}\n")
    loaded = load_corefile(str(path), environ={})
    assert [str(p) for p in loaded.problems] == [
        f"{path}:7: kdns's resolv-conf from here: {tmp_path / 'missing' / 'resolv.conf'}: No such file or directory"]


def test_in_cluster_outside_a_pod_is_a_clear_start_up_error(tmp_path):
    path = corefile(tmp_path, None, "errors\n")
    result = run_kdns("-conf", str(path), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == "kdns: error: in-cluster config: Service host/port is not set.", result.stderr

