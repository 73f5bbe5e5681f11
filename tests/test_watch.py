"""Following a live cluster: kdns's API source against a test API server, through DNS.

`testkit/kubeapi/` serves the list/watch protocol over HTTP on loopback; kdns talks to it with
the official `kubernetes` client (through a generated kubeconfig or `--apiserver`), and every
assertion is a DNS query to the real server.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys

import dns.rcode
import pytest
import trio
import trio.lowlevel
import trio.testing

from testkit.dnswire import rrs
from testkit.kubeapi import KubeAPI
from testkit.repo import ROOT

CL = "cluster.local"
DEADLINE = 5.0  # how long a test waits for an answer to become what it expects


@pytest.fixture
def api():
    server = KubeAPI().start()
    yield server
    server.stop()


def service(name, ns="default", ip="10.96.0.10", *, ports=(("http", 80),), labels=None, headless=False):
    spec = {"ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports]}
    spec["clusterIP"] = "None" if headless else ip
    meta = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def endpoint_slice(name, service_name, ns="default", *ips, hostname=None, labels=None, ready=True, port=("http", 80)):
    lab = {"kubernetes.io/service-name": service_name, **(labels or {})}
    endpoints = [{"addresses": [ip], "conditions": {"ready": ready}, **({"hostname": hostname} if hostname else {})} for ip in ips]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": lab},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": port[0], "port": port[1], "protocol": "TCP"}],
    }


def namespace(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def pod(name, ns, ip):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, "status": {"podIP": ip, "podIPs": [{"ip": ip}]}}


async def eventually(server, name, rdtype, expect, *, timeout=DEADLINE):
    """Query until `expect(reply)` holds; fail with the last reply after `timeout` seconds."""
    reply = None
    with trio.move_on_after(timeout):
        while True:
            reply = await server.query(name, rdtype)
            if expect(reply):
                return reply
            await trio.sleep(0.02)
    pytest.fail(f"{name} {rdtype}: still {reply}")


def answers(*lines):
    return lambda reply: reply.rcode() == dns.rcode.NOERROR and rrs(reply.answer) == set(lines)


def rcode(code):
    return lambda reply: reply.rcode() == code


def a(name, ip):
    return f"{name}. 5 IN A {ip}"


@pytest.fixture
def follow(kdns, api, tmp_path):
    """Start kdns on the test API server (through a kubeconfig by default)."""

    async def start(*args, kubeconfig=True):
        source = ["--kubeconfig", str(api.kubeconfig(tmp_path / "kubeconfig"))] if kubeconfig else ["--apiserver", api.url]
        server = await kdns(args=[*source, *args])
        with trio.fail_after(DEADLINE):
            while not server.server.synced:
                await trio.sleep(0.02)
        return server

    return start


async def test_services_and_slices_are_followed(api, follow):
    api.apply(service("web", "shop", "10.96.1.1"))
    server = await follow()
    name = f"web.shop.svc.{CL}"
    assert rrs((await server.query(name)).answer) == {a(name, "10.96.1.1")}

    # Within a second of the watch event, modifications, new objects and deletions show.
    api.apply(service("web", "shop", "10.96.1.2"))
    await eventually(server, name, "A", answers(a(name, "10.96.1.2")), timeout=1.0)
    api.apply(service("db", "shop", headless=True, ports=(("pg", 5432),)))
    api.apply(endpoint_slice("db-1", "db", "shop", "10.244.0.5", hostname="db-0", port=("pg", 5432)))
    db = f"db.shop.svc.{CL}"
    await eventually(server, db, "A", answers(a(db, "10.244.0.5")), timeout=1.0)
    await eventually(server, f"_pg._tcp.{db}", "SRV", answers(f"_pg._tcp.{db}. 5 IN SRV 0 100 5432 db-0.{db}."), timeout=1.0)
    api.apply(endpoint_slice("db-1", "db", "shop", "10.244.0.5", "10.244.0.6", hostname=None, port=("pg", 5432)))
    await eventually(server, db, "A", answers(a(db, "10.244.0.5"), a(db, "10.244.0.6")), timeout=1.0)
    api.delete("EndpointSlice", "shop", "db-1")
    await eventually(server, db, "A", rcode(dns.rcode.NXDOMAIN), timeout=1.0)
    api.delete("Service", "shop", "web")
    await eventually(server, name, "A", rcode(dns.rcode.NXDOMAIN), timeout=1.0)
    await eventually(server, "2.1.96.10.in-addr.arpa", "PTR", rcode(dns.rcode.NXDOMAIN), timeout=1.0)


async def test_apiserver_url_without_kubeconfig(api, follow):
    api.apply(service("web", "shop", "10.96.1.1"))
    server = await follow(kubeconfig=False)
    assert rrs((await server.query(f"web.shop.svc.{CL}")).answer) == {a(f"web.shop.svc.{CL}", "10.96.1.1")}
    assert (await server.query(f"shop.svc.{CL}")).rcode() == dns.rcode.NOERROR


async def test_lists_are_paged(api, follow):
    """More Services than one page (500): every one arrives."""
    for i in range(1203):
        api.apply(service(f"s{i}", "bulk", f"10.97.{i // 250}.{i % 250 + 1}"))
    server = await follow()
    for i in (0, 499, 500, 1202):
        name = f"s{i}.bulk.svc.{CL}"
        assert rrs((await server.query(name)).answer) == {a(name, f"10.97.{i // 250}.{i % 250 + 1}")}
    pages = [q for method, path, q in api.requests if path.endswith("/services") and "watch" not in q]
    assert len(pages) >= 3 and all(q.get("limit") for q in pages)


async def test_outage_keeps_answers_and_reconciles(api, follow, caplog):
    api.apply(service("keep", "shop", "10.96.2.1"))
    api.apply(service("change", "shop", "10.96.2.2"))
    api.apply(service("gone", "shop", "10.96.2.3"))
    server = await follow()
    api.down()
    # Meanwhile the cluster changes, and the history is compacted: kdns must relist.
    api.apply(service("change", "shop", "10.96.2.20"))
    api.delete("Service", "shop", "gone")
    api.apply(service("new", "shop", "10.96.2.4"))
    api.compact()
    with caplog.at_level(logging.WARNING, logger="kdns"), trio.fail_after(DEADLINE):
        while not any("retrying in" in r.getMessage() for r in caplog.records):  # kdns has seen the outage
            await trio.sleep(0.02)
    # During the outage: the last known state, nothing wrong, nothing lost.
    assert rrs((await server.query(f"keep.shop.svc.{CL}")).answer) == {a(f"keep.shop.svc.{CL}", "10.96.2.1")}
    assert rrs((await server.query(f"change.shop.svc.{CL}")).answer) == {a(f"change.shop.svc.{CL}", "10.96.2.2")}
    assert rrs((await server.query(f"gone.shop.svc.{CL}")).answer) == {a(f"gone.shop.svc.{CL}", "10.96.2.3")}
    api.up()
    await eventually(server, f"gone.shop.svc.{CL}", "A", rcode(dns.rcode.NXDOMAIN), timeout=10)
    assert rrs((await server.query(f"change.shop.svc.{CL}")).answer) == {a(f"change.shop.svc.{CL}", "10.96.2.20")}
    assert rrs((await server.query(f"new.shop.svc.{CL}")).answer) == {a(f"new.shop.svc.{CL}", "10.96.2.4")}
    assert rrs((await server.query(f"keep.shop.svc.{CL}")).answer) == {a(f"keep.shop.svc.{CL}", "10.96.2.1")}


async def test_gone_mid_watch_relists_without_a_gap(api, follow, nursery):
    """410 Gone: kdns lists again, and no existing name ever answers NXDOMAIN meanwhile."""
    for i in range(50):
        api.apply(service(f"s{i}", "shop", f"10.96.3.{i + 1}"))
    server = await follow()
    seen = []

    async def watch_answers():
        while True:
            reply = await server.query(f"s7.shop.svc.{CL}")
            seen.append(reply.rcode())
            await trio.lowlevel.checkpoint()

    nursery.start_soon(watch_answers)
    lists_before = sum(1 for _, path, q in api.requests if path.endswith("/services") and "watch" not in q)
    api.compact()
    api.apply(service("s49", "shop", "10.96.3.99"))  # a change the relist must bring
    api.delete("Service", "shop", "s48")
    api.compact()
    api.drop_watches()
    await eventually(server, f"s49.shop.svc.{CL}", "A", answers(a(f"s49.shop.svc.{CL}", "10.96.3.99")), timeout=10)
    await eventually(server, f"s48.shop.svc.{CL}", "A", rcode(dns.rcode.NXDOMAIN), timeout=10)
    lists_after = sum(1 for _, path, q in api.requests if path.endswith("/services") and "watch" not in q)
    assert lists_after > lists_before, "kdns must have listed again"
    assert seen and set(seen) == {dns.rcode.NOERROR}


async def test_unchanged_objects_change_nothing(api, follow):
    api.apply(service("web", "shop", "10.96.1.1", labels={"v": "1"}))
    server = await follow()
    serial = (await server.query(CL, "SOA")).answer[0][0].serial
    api.apply(service("web", "shop", "10.96.1.1", labels={"v": "2"}))  # a MODIFIED event, same DNS data
    api.apply(service("other", "shop", "10.96.1.9"))
    await eventually(server, f"other.shop.svc.{CL}", "A", rcode(dns.rcode.NOERROR))
    after = (await server.query(CL, "SOA")).answer[0][0].serial
    assert after == serial + 1, "only the new Service bumped the serial"


async def test_servfail_until_the_first_sync(api, kdns, caplog, clock):
    """Before the first sync: SERVFAIL (never NXDOMAIN), not synced, and after the startup
    timeout (trio's clock, moved on by the test) a warning; then the right answers."""
    api.apply(service("web", "shop", "10.96.1.1"))
    api.hold()
    try:
        server = await kdns(args=["--apiserver", api.url, "--startup-timeout", "30"])
        await trio.to_thread.run_sync(api.wait_for_held)
        for timed_out in (False, True):
            reply = await server.query(f"web.shop.svc.{CL}")
            assert reply.rcode() == dns.rcode.SERVFAIL
            assert (await server.query(f"nope.shop.svc.{CL}")).rcode() == dns.rcode.SERVFAIL
            assert not server.server.synced
            warned = [r for r in caplog.records if "not synced with" in r.getMessage() and r.levelname == "WARNING"]
            assert bool(warned) == timed_out
            clock.jump(30)  # the startup timeout passes
            await trio.testing.wait_all_tasks_blocked()
    finally:
        api.release()
    await eventually(server, f"web.shop.svc.{CL}", "A", answers(a(f"web.shop.svc.{CL}", "10.96.1.1")))
    assert (await server.query(f"nope.shop.svc.{CL}")).rcode() == dns.rcode.NXDOMAIN
    assert server.server.synced


async def test_errors_back_off_with_one_line_each(api, follow, caplog):
    """Each failure of the API is one warning line, without a traceback, saying what failed and
    how long kdns waits: delays double from 0.25 s, each jittered down to as little as half.
    Once a list succeeds the next failure waits 0.25 s at most again (the rest of the rule, the
    5 s cap and a watch that stayed open, is tests/test_backoff.py's, with a given clock)."""
    api.apply(service("web", "shop", "10.96.1.1"))
    api.fail_next(3, 503, kinds=("Service",))
    with caplog.at_level(logging.WARNING, logger="kdns"):
        server = await follow()
    assert rrs((await server.query(f"web.shop.svc.{CL}")).answer) == {a(f"web.shop.svc.{CL}", "10.96.1.1")}
    failures = [r for r in caplog.records if r.name == "kdns.kubernetes" and r.levelno == logging.WARNING]
    assert len(failures) == 3, [r.getMessage() for r in failures]
    for record in failures:
        message = record.getMessage()
        assert message.startswith("services: HTTP 503") and "retrying in" in message, message
        assert record.exc_info is None, "expected errors are logged without a traceback"
    for delay, longest in zip(retry_delays(failures), (0.25, 0.5, 1.0), strict=True):
        assert longest / 2 - 0.05 <= delay <= longest + 0.05, [r.getMessage() for r in failures]

    # The list that ended the outage starts the delays afresh: the next failure (the dropped
    # watch, or the 503 after it) waits 0.25 s at most, not the 2 s the outage had reached.
    seen = len(caplog.records)
    with caplog.at_level(logging.WARNING, logger="kdns"):
        api.fail_next(1, 503, kinds=("Service",))
        api.drop_watches()
        with trio.fail_after(DEADLINE):
            while not (later := [r for r in caplog.records[seen:] if "retrying in" in r.getMessage()]):
                await trio.sleep(0.02)
    assert retry_delays(later)[0] <= 0.25 + 0.05, [r.getMessage() for r in later]
    name = f"web.shop.svc.{CL}"
    api.apply(service("web", "shop", "10.96.1.2"))
    await eventually(server, name, "A", answers(a(name, "10.96.1.2")))


def retry_delays(records: list[logging.LogRecord]) -> list[float]:
    """The delays of kdns's 'retrying in N.Ns' warnings."""
    return [float(m.group(1)) for r in records if (m := re.search(r"retrying in ([\d.]+)s$", r.getMessage()))]


async def test_namespaces_and_labels_filter(api, follow):
    api.apply(namespace("a"))
    api.apply(namespace("b"))
    api.apply(service("web", "a", "10.96.4.1", labels={"dns": "on"}))
    api.apply(service("hidden", "a", "10.96.4.2", labels={"dns": "off"}))
    api.apply(service("web", "b", "10.96.4.3", labels={"dns": "on"}))
    api.apply(service("hdl", "a", headless=True, labels={"dns": "on"}))
    api.apply(endpoint_slice("hdl-1", "hdl", "a", "10.244.4.1", labels={"dns": "on"}))
    api.apply(endpoint_slice("hdl-2", "hdl", "a", "10.244.4.2", labels={"dns": "off"}))
    server = await follow("--namespaces", "a", "--labels", "dns=on")
    assert rrs((await server.query(f"web.a.svc.{CL}")).answer) == {a(f"web.a.svc.{CL}", "10.96.4.1")}
    assert rrs((await server.query(f"hdl.a.svc.{CL}")).answer) == {a(f"hdl.a.svc.{CL}", "10.244.4.1")}
    for name in (f"hidden.a.svc.{CL}", f"web.b.svc.{CL}", f"b.svc.{CL}", f"10-1-2-3.b.pod.{CL}"):
        assert (await server.query(name)).rcode() == dns.rcode.NXDOMAIN, name
    assert (await server.query("3.4.96.10.in-addr.arpa", "PTR")).rcode() == dns.rcode.NXDOMAIN
    # The selector travels to the API server, so unselected Services are never sent.
    assert any(q.get("labelSelector") == "dns=on" for _, path, q in api.requests if path.endswith("/services"))
    # A label change moves a Service in and out of view.
    api.apply(service("hidden", "a", "10.96.4.2", labels={"dns": "on"}))
    await eventually(server, f"hidden.a.svc.{CL}", "A", answers(a(f"hidden.a.svc.{CL}", "10.96.4.2")))


async def test_pods_verified(api, follow):
    api.apply(namespace("shop"))
    api.apply(pod("web-1", "shop", "10.244.9.1"))
    server = await follow("--pods", "verified")
    name = f"10-244-9-1.shop.pod.{CL}"
    assert rrs((await server.query(name)).answer) == {a(name, "10.244.9.1")}
    assert (await server.query(f"10-244-9-2.shop.pod.{CL}")).rcode() == dns.rcode.NXDOMAIN
    assert (await server.query(f"10-244-9-1.other.pod.{CL}")).rcode() == dns.rcode.NXDOMAIN
    api.apply(pod("web-2", "shop", "10.244.9.2"))
    await eventually(server, f"10-244-9-2.shop.pod.{CL}", "A", answers(a(f"10-244-9-2.shop.pod.{CL}", "10.244.9.2")))
    api.delete("Pod", "shop", "web-1")
    await eventually(server, name, "A", rcode(dns.rcode.NXDOMAIN))
    assert any(path.endswith("/pods") for _, path, _ in api.requests)


async def test_pods_are_not_watched_unless_verified(api, follow):
    await follow()
    assert not any(path.endswith("/pods") for _, path, _ in api.requests)


async def test_shutdown_does_not_hang_on_an_open_watch(api):
    """Cancelling kdns while its watches are blocked returns at once."""
    from kdns.app import Server
    from kdns.cli import _parser
    from kdns.settings import build_config

    async with trio.open_nursery() as nursery:
        server = Server(build_config(_parser().parse_args(["serve", "--apiserver", api.url, "--listen", "127.0.0.1:0"])))
        await nursery.start(server.serve)
        await trio.to_thread.run_sync(api.wait_for_watchers, "Service")
        nursery.cancel_scope.cancel()
        cancelled_at = trio.current_time()
    assert trio.current_time() - cancelled_at < 2, "shutdown waited for a blocked watch"


def test_sigterm_while_watching(api, tmp_path):
    """`kdns serve --kubeconfig` exits 0 promptly on SIGTERM with watches open."""
    kubeconfig = api.kubeconfig(tmp_path / "kc")
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kdns", "serve", "--kubeconfig", str(kubeconfig), "--listen", "127.0.0.1:0", "--lameduck", "0"],
        stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )
    try:
        api.wait_for_watchers("Service", timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


def test_bad_kubeconfig_is_a_startup_error(tmp_path):
    bad = tmp_path / "kc"
    bad.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    result = subprocess.run(
        [sys.executable, "-m", "kdns", "serve", "--kubeconfig", str(bad), "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=30, cwd=ROOT, check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdns: error: ") and str(bad) in lines[0], result.stderr


def test_manifests_and_api_are_exclusive(api, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kdns", "serve", "--manifests", "config/demo-cluster.yaml", "--apiserver", api.url],
        capture_output=True, text=True, timeout=30, cwd=ROOT, check=False,
    )
    assert result.returncode == 2 and "--manifests" in result.stderr
