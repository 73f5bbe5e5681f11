"""`kdns serve` run as operators run it: a real process, its HTTP endpoints, metrics,
signals, config reloads, logs, and the file system it leaves alone.

Every process listens on loopback port 0 (DNS and HTTP); it prints its DNS address
(`--print-address`, testkit.process.kdns_serve) and logs its HTTP ports. Every wait is bounded, and every process is killed in a
`finally`. HTTP goes through http.client, DNS through dnspython or a raw socket.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import trio
import yaml
from prometheus_client.parser import text_string_to_metric_families

from testkit.kubeapi import KubeAPI
from testkit.process import KDNS, kdns_serve, lookup
from testkit.repo import DEMO, ROOT, write
from testkit.stubdns import StubDNS

STOP_TIMEOUT = 5.0
WAIT = 5.0  # for a reload, a sync, a log line
WEB = "web.shop.svc.cluster.local"  # in the demo cluster: 10.96.100.10


# -- a kdns process ------------------------------------------------------------------------------


# -- clients -------------------------------------------------------------------------------------


def get(port: int, path: str, method: str = "GET") -> tuple[int, str]:
    """(status, body) of one HTTP request to 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3.0)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def wait_status(port: int, path: str, status: int, timeout: float = WAIT, step: float = 0.02) -> float:
    """Poll until GET path answers `status`; the seconds it took."""
    start = time.monotonic()
    got = None
    while time.monotonic() - start < timeout:
        got = get(port, path)
        if got[0] == status:
            return time.monotonic() - start
        time.sleep(step)
    raise AssertionError(f"GET {path}: {got} after {timeout}s, expected {status}")


def answer(reply: dns.message.Message) -> tuple[str, set[str], set[int]]:
    """(rcode, answer rdata, answer TTLs)."""
    return (
        dns.rcode.to_text(reply.rcode()),
        {rd.to_text() for rrset in reply.answer for rd in rrset},
        {rrset.ttl for rrset in reply.answer},
    )


def udp_exchange(port: int, wire: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.connect(("127.0.0.1", port))
        sock.send(wire)
        return sock.recv(65535)


def tcp_exchange(sock: socket.socket, wire: bytes) -> bytes:
    sock.sendall(struct.pack("!H", len(wire)) + wire)
    size = struct.unpack("!H", recv_exactly(sock, 2))[0]
    return recv_exactly(sock, size)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"connection closed after {len(data)} of {n} bytes"
        data += chunk
    return data


# -- metrics -------------------------------------------------------------------------------------


class Metrics:
    """One scrape of /metrics, parsed with prometheus_client's parser."""

    def __init__(self, port: int):
        status, body = get(port, "/metrics")
        assert status == 200, body
        self.families = {f.name: f for f in text_string_to_metric_families(body)}

    def samples(self, name: str, **labels: str) -> list:
        def same(key: str, have: str | None, want: str) -> bool:
            if key == "le" and have is not None:  # bucket bounds compare as numbers: "100" == "100.0"
                return float(have) == float(want)
            return have == want

        return [
            s for f in self.families.values() for s in f.samples
            if s.name == name and all(same(k, s.labels.get(k), v) for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
        return sum(s.value for s in self.samples(name, **labels))


def delta(before: Metrics, after: Metrics, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


# CoreDNS's metric families and their label names (bucket samples also carry `le`).
COREDNS_FAMILIES = {
    "coredns_dns_requests": ("counter", {"server", "zone", "view", "proto", "family", "type"}),
    "coredns_dns_responses": ("counter", {"server", "zone", "view", "rcode", "plugin"}),
    "coredns_dns_request_duration_seconds": ("histogram", {"server", "zone", "view", "type"}),
    "coredns_dns_request_size_bytes": ("histogram", {"server", "zone", "view", "proto"}),
    "coredns_dns_response_size_bytes": ("histogram", {"server", "zone", "view", "proto"}),
    "coredns_cache_entries": ("gauge", {"server", "type", "zones", "view"}),
    "coredns_cache_hits": ("counter", {"server", "type", "zones", "view"}),
    "coredns_cache_misses": ("counter", {"server", "zones", "view"}),
    "coredns_cache_requests": ("counter", {"server", "zones", "view"}),
    "coredns_proxy_request_duration_seconds": ("histogram", {"proxy_name", "to", "rcode"}),
    "coredns_kubernetes_dns_programming_duration_seconds": ("histogram", {"service_kind"}),
    "coredns_build_info": ("gauge", {"version", "revision", "goversion"}),
    "coredns_panics": ("counter", set()),
    "kdns_objects": ("gauge", {"kind"}),
    "kdns_synced": ("gauge", set()),
    "kdns_source_relists": ("counter", {"resource"}),
    "kdns_source_watch_restarts": ("counter", {"resource"}),
    "kdns_source_seconds_since_last_event": ("gauge", {"resource"}),
}


def check_labels(metrics: Metrics, names: list[str]) -> None:
    """Each family exists with its type, and has samples, each carrying exactly its labels."""
    for name in names:
        kind, labels = COREDNS_FAMILIES[name]
        family = metrics.families.get(name)
        assert family is not None, f"no {name} in /metrics: {sorted(metrics.families)}"
        assert family.type == kind, (name, family.type)
        assert family.samples, f"{name} has no samples"
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample)


# -- a stub upstream in a thread of its own --------------------------------------------------


@contextlib.contextmanager
def stub_upstream(*zone_lines: str):
    """testkit.stubdns.StubDNS on 127.0.0.1, run by trio in a thread; yields the StubDNS."""
    stub = StubDNS(*zone_lines)
    started = threading.Event()
    box: dict = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            box["token"] = trio.lowlevel.current_trio_token()
            box["scope"] = nursery.cancel_scope
            await nursery.start(stub.serve)
            started.set()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    try:
        assert started.wait(5.0), "the stub upstream did not start"
        yield stub
    finally:
        if "scope" in box:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(box["scope"].cancel, trio_token=box["token"])
        thread.join(5.0)


# -- manifests -----------------------------------------------------------------------------------

NAMESPACE_AND_SERVICE = """
    apiVersion: v1
    kind: Namespace
    metadata: {name: shop}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: shop}
    spec:
      clusterIP: 10.96.0.50
      ports: [{name: http, port: 80}]
"""


def endpoint_slice(*ips: str, trigger: str | None = None) -> str:
    annotations = f"\n  annotations: {{endpoints.kubernetes.io/last-change-trigger-time: '{trigger}'}}" if trigger else ""
    endpoints = "".join(f"\n  - addresses: ['{ip}']" for ip in ips)
    return (
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-abc\n  namespace: shop\n"
        f"  labels: {{kubernetes.io/service-name: web}}{annotations}\naddressType: IPv4\nendpoints:{endpoints}\n"
        "ports: [{name: http, port: 8080, protocol: TCP}]\n"
    )


def replace_file(path: Path, text: str) -> None:
    """Rewrite a file atomically (temp file + rename), as editors and kubectl do."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def eventually(check, timeout: float = WAIT, step: float = 0.05):
    """Call `check()` until it returns a true value; fail with the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"still {last!r} after {timeout}s")


# -- /health, /ready -----------------------------------------------------------------------------


def test_health_ready_and_http_errors():
    """/health answers 200 `OK`; /ready answers 200 once synced (manifests are read before
    serving); an unknown path is 404; a POST to a known path is 405; HEAD has no body."""
    with kdns_serve("--manifests", DEMO) as k:
        assert set(k.http) == {"/health", "/ready", "/metrics"}
        assert get(k.http["/health"], "/health") == (200, "OK")
        assert get(k.http["/ready"], "/ready") == (200, "OK")
        assert get(k.http["/health"], "/nope")[0] == 404
        assert get(k.http["/health"], "/health/x")[0] == 404
        assert get(k.http["/health"], "/health", "POST")[0] == 405
        assert get(k.http["/ready"], "/ready", "DELETE")[0] == 405
        assert get(k.http["/health"], "/health", "HEAD") == (200, "")
        assert get(k.http["/health"], "/health?verbose=1") == (200, "OK")


def test_endpoints_on_separate_addresses_serve_only_their_paths():
    """Endpoints given different addresses get listeners of their own: each answers its
    path, and 404 for the others (metrics are not exposed on the liveness port)."""
    with kdns_serve("--manifests", DEMO, http=("--health", "127.0.0.1:0", "--metrics", "127.0.0.2:0")) as k:
        assert set(k.http) == {"/health", "/metrics"}
        assert k.wait_for(r"listening on http 127\.0\.0\.2:\d+ for /metrics")
        assert get(k.http["/health"], "/health") == (200, "OK")
        assert get(k.http["/health"], "/metrics")[0] == 404
        assert get(k.http["/health"], "/ready")[0] == 404  # not configured at all
        conn = http.client.HTTPConnection("127.0.0.2", k.http["/metrics"], timeout=3.0)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            assert response.status == 200 and b"coredns_build_info" in response.read()
        finally:
            conn.close()


def test_ready_is_503_until_a_slow_api_source_has_synced():
    """With an API server whose lists hang, /ready is 503 (and cluster names SERVFAIL,
    never NXDOMAIN) while /health is 200; once the lists complete, /ready turns 200 and the
    names resolve."""
    with KubeAPI() as api:
        api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        api.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
                   "spec": {"clusterIP": "10.96.0.50", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        api.hold()
        with kdns_serve("--apiserver", api.url, "--lameduck", "0") as k:
            api.wait_for_held(1, timeout=10.0)
            status, body = get(k.http["/ready"], "/ready")
            assert status == 503, body
            assert get(k.http["/health"], "/health") == (200, "OK")
            assert answer(lookup(k.port, "web.shop.svc.cluster.local"))[0] == "SERVFAIL"
            assert Metrics(k.http["/metrics"]).value("kdns_synced") == 0
            api.wait_for_held(1, timeout=10.0)  # the list still hangs ...
            assert get(k.http["/ready"], "/ready")[0] == 503  # ... and /ready still says so: not a one-off

            api.release()
            wait_status(k.http["/ready"], "/ready", 200, timeout=10.0)
            assert answer(lookup(k.port, "web.shop.svc.cluster.local"))[:2] == ("NOERROR", {"10.96.0.50"})
            metrics = Metrics(k.http["/metrics"])
            assert metrics.value("kdns_synced") == 1
            assert metrics.value("kdns_objects", kind="services") == 1
            k.wait_for(r"synced with .*1 services")


# -- /metrics ------------------------------------------------------------------------------------


def test_metrics_have_coredns_names_and_labels():
    """/metrics parses as Prometheus text and carries CoreDNS's families with CoreDNS's
    label names (so dashboards and coredns-mixin alerts work), plus the kdns_* source
    metrics; object counts agree with the start-up log line."""
    with kdns_serve("--manifests", DEMO) as k:
        lookup(k.port, WEB)
        metrics = Metrics(k.http["/metrics"])
        for name in COREDNS_FAMILIES:
            assert name in metrics.families, f"no {name} in /metrics"
        check_labels(metrics, [
            "coredns_dns_requests", "coredns_dns_responses", "coredns_dns_request_duration_seconds",
            "coredns_dns_request_size_bytes", "coredns_dns_response_size_bytes", "coredns_build_info", "coredns_panics",
            "kdns_objects", "kdns_synced", "kdns_source_relists", "kdns_source_watch_restarts",
        ])
        for name in COREDNS_FAMILIES:
            assert metrics.families[name].type == COREDNS_FAMILIES[name][0], name
        build = metrics.samples("coredns_build_info")
        assert len(build) == 1 and build[0].value == 1
        assert metrics.value("coredns_panics_total") == 0
        counts = re.search(r"\((\d+) namespaces, (\d+) services, (\d+) endpointslices, (\d+) pods\)", k.lines[0])
        assert counts, k.lines[0]
        for kind, n in zip(("namespaces", "services", "endpointslices", "pods"), counts.groups()):
            assert metrics.value("kdns_objects", kind=kind) == int(n), kind
        assert metrics.value("kdns_objects", kind="services") == 8


@pytest.mark.parametrize("pure_python", ["0", "1"], ids=["c-loop", "python-loop"])
def test_query_counters_move_by_exactly_the_queries_sent(pure_python):
    """Queries show up in CoreDNS's counters with the right labels: 5 UDP A queries for a
    service raise requests_total{zone="cluster.local.",proto="udp",type="A"} and
    responses_total{rcode="NOERROR"} by exactly 5 (duration and size histograms too, sizes
    summing to the bytes on the wire); NXDOMAIN, REFUSED (outside the zones), a reverse
    name and TCP each land under their own labels. With either UDP loop: 4 of the 5 are
    replays, which the C loop answers and counts without Python."""
    with kdns_serve("--manifests", DEMO, env={**os.environ, "KDNS_PURE_PYTHON": pure_python}) as k:
        server = f"dns://127.0.0.1:{k.port}"
        zone = {"server": server, "zone": "cluster.local.", "view": ""}
        before = Metrics(k.http["/metrics"])
        q = dns.message.make_query(WEB, "A").to_wire()
        replies = [udp_exchange(k.port, q) for _ in range(5)]
        assert all(dns.message.from_wire(r).rcode() == dns.rcode.NOERROR for r in replies)
        after = Metrics(k.http["/metrics"])

        assert delta(before, after, "coredns_dns_requests_total", **zone, proto="udp", family="1", type="A") == 5
        assert delta(before, after, "coredns_dns_requests_total") == 5
        assert delta(before, after, "coredns_dns_responses_total", **zone, rcode="NOERROR", plugin="kubernetes") == 5
        assert delta(before, after, "coredns_dns_request_duration_seconds_count", **zone, type="A") == 5
        assert delta(before, after, "coredns_dns_request_duration_seconds_bucket", **zone, type="A", le="+Inf") == 5
        assert delta(before, after, "coredns_dns_request_size_bytes_count", **zone, proto="udp") == 5
        assert delta(before, after, "coredns_dns_request_size_bytes_sum", **zone, proto="udp") == 5 * len(q)
        assert delta(before, after, "coredns_dns_response_size_bytes_sum", **zone, proto="udp") == sum(map(len, replies))
        # 5 replies of under 100 bytes: in the le="100" bucket and every larger one, not le="0"
        assert delta(before, after, "coredns_dns_response_size_bytes_bucket", **zone, proto="udp", le="100") == 5
        assert delta(before, after, "coredns_dns_response_size_bytes_bucket", **zone, proto="udp", le="0") == 0

        before = after
        assert answer(lookup(k.port, "nope.shop.svc.cluster.local"))[0] == "NXDOMAIN"
        assert answer(lookup(k.port, "example.org"))[0] == "REFUSED"
        assert answer(lookup(k.port, "10.100.96.10.in-addr.arpa", "PTR"))[0] == "NOERROR"
        with socket.create_connection(("127.0.0.1", k.port), timeout=2.0) as tcp:
            tcp_exchange(tcp, dns.message.make_query(WEB, "AAAA").to_wire())
        after = Metrics(k.http["/metrics"])
        assert delta(before, after, "coredns_dns_responses_total", **zone, rcode="NXDOMAIN") == 1
        assert delta(before, after, "coredns_dns_responses_total", server=server, zone=".", rcode="REFUSED") == 1
        assert delta(before, after, "coredns_dns_requests_total", server=server, zone="in-addr.arpa.", type="PTR", proto="udp") == 1
        assert delta(before, after, "coredns_dns_requests_total", **zone, proto="tcp", type="AAAA") == 1
        assert delta(before, after, "coredns_dns_request_size_bytes_count", **zone, proto="tcp") == 1
        assert delta(before, after, "coredns_dns_requests_total", proto="tcp") == 1
        assert delta(before, after, "coredns_dns_requests_total") == 4
        assert delta(before, after, "coredns_dns_responses_total", rcode="NOERROR") == 2


def test_cache_and_proxy_metrics_move_when_forwarding():
    """Forwarding to an upstream moves the cache metrics: a first question is a miss and
    goes upstream, the same question again is a hit served from the cache (the upstream
    sees it once); a cached NXDOMAIN counts as a denial; the upstream's round trips show in
    coredns_proxy_request_duration_seconds{to=upstream}."""
    with stub_upstream("example.org. 300 IN A 192.0.2.10") as stub, kdns_serve("--manifests", DEMO, "--upstream", stub.address) as k:
        before = Metrics(k.http["/metrics"])
        for _ in range(2):
            assert answer(lookup(k.port, "example.org"))[:2] == ("NOERROR", {"192.0.2.10"})
        for _ in range(2):
            assert answer(lookup(k.port, "nope.example.org"))[0] == "NXDOMAIN"
        after = Metrics(k.http["/metrics"])
        assert stub.count("example.org.", "A") == 1
        assert stub.count("nope.example.org.", "A") == 1

        check_labels(after, ["coredns_cache_entries", "coredns_cache_hits", "coredns_cache_misses",
                             "coredns_cache_requests", "coredns_proxy_request_duration_seconds"])
        assert delta(before, after, "coredns_cache_misses_total") == 2
        assert delta(before, after, "coredns_cache_hits_total", type="success") == 1
        assert delta(before, after, "coredns_cache_hits_total", type="denial") == 1
        assert delta(before, after, "coredns_cache_requests_total") == 4
        assert after.value("coredns_cache_entries", type="success") == 1
        assert after.value("coredns_cache_entries", type="denial") == 1
        assert delta(before, after, "coredns_proxy_request_duration_seconds_count", to=stub.address, rcode="NOERROR") == 1
        assert delta(before, after, "coredns_proxy_request_duration_seconds_count", to=stub.address, rcode="NXDOMAIN") == 1
        assert delta(before, after, "coredns_dns_requests_total", zone=".", type="A", proto="udp") == 4

        # A fresh cache hit is kept for replay (the C loop answers the same bytes while its
        # TTLs stand): every replay is a cache hit too.
        before = after
        for _ in range(5):
            assert answer(lookup(k.port, "example.org"))[:2] == ("NOERROR", {"192.0.2.10"})
        after = Metrics(k.http["/metrics"])
        assert stub.count("example.org.", "A") == 1
        assert delta(before, after, "coredns_cache_hits_total", type="success") == 5
        assert delta(before, after, "coredns_cache_requests_total") == 5
        assert delta(before, after, "coredns_dns_requests_total", zone=".", type="A", proto="udp") == 5


def test_dns_programming_latency_counts_an_annotated_endpoint_change(tmp_path):
    """An EndpointSlice change carrying endpoints.kubernetes.io/last-change-trigger-time is
    observed in coredns_kubernetes_dns_programming_duration_seconds{service_kind="cluster_ip"},
    measured from that trigger time (30 s ago here: in the 32.768 s bucket, not 16.384);
    a change without the annotation is not observed."""
    d = tmp_path / "cluster"
    write(d / "web.yaml", NAMESPACE_AND_SERVICE)
    slice_file = d / "web-slice.yaml"
    slice_file.write_text(endpoint_slice("10.244.0.5"))
    with kdns_serve("--manifests", d, "--reload-interval", "0.1") as k:
        family = "coredns_kubernetes_dns_programming_duration_seconds"
        assert Metrics(k.http["/metrics"]).value(f"{family}_count") == 0

        trigger = (datetime.now(UTC) - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        replace_file(slice_file, endpoint_slice("10.244.0.5", "10.244.0.6", trigger=trigger))
        eventually(lambda: answer(lookup(k.port, "10-244-0-6.web.shop.svc.cluster.local"))[1] == {"10.244.0.6"})
        metrics = eventually(lambda: (m := Metrics(k.http["/metrics"])).value(f"{family}_count") and m)
        kind = {"service_kind": "cluster_ip"}
        assert metrics.value(f"{family}_count", **kind) == 1
        assert 29.5 <= metrics.value(f"{family}_sum", **kind) < 40
        assert metrics.value(f"{family}_bucket", **kind, le="16.384") == 0
        assert metrics.value(f"{family}_bucket", **kind, le="32.768") == 1

        replace_file(slice_file, endpoint_slice("10.244.0.5", "10.244.0.6", "10.244.0.7"))
        eventually(lambda: answer(lookup(k.port, "10-244-0-7.web.shop.svc.cluster.local"))[1] == {"10.244.0.7"})
        replace_file(slice_file, endpoint_slice("10.244.0.5", "10.244.0.6", "10.244.0.7", "10.244.0.8", trigger=trigger))
        eventually(lambda: answer(lookup(k.port, "10-244-0-8.web.shop.svc.cluster.local"))[1] == {"10.244.0.8"})
        eventually(lambda: Metrics(k.http["/metrics"]).value(f"{family}_count") >= 2)
        assert Metrics(k.http["/metrics"]).value(f"{family}_count") == 2  # the change without the annotation: not observed


# -- SIGTERM: lameduck and drain -------------------------------------------------------------


def test_sigterm_lameduck_answers_then_drains_and_exits_0():
    """SIGTERM with --lameduck 1.5: /ready turns 503 at once (liveness stays 200); queries
    over UDP and over an open TCP connection are still answered during the lameduck
    period; then the idle TCP connection is closed and the process exits 0, not before
    ~1.5 s and well before the 5 s drain deadline (so the idle connection did not hold it)."""
    with kdns_serve("--manifests", DEMO, "--lameduck", "1.5") as k:
        tcp = socket.create_connection(("127.0.0.1", k.port), timeout=5.0)
        try:
            wire = dns.message.make_query(WEB, "A").to_wire()
            assert dns.message.from_wire(tcp_exchange(tcp, wire)).rcode() == dns.rcode.NOERROR
            assert get(k.http["/ready"], "/ready") == (200, "OK")

            sent = time.monotonic()
            k.proc.send_signal(signal.SIGTERM)
            assert wait_status(k.http["/ready"], "/ready", 503, timeout=1.0, step=0.01) < 0.5
            assert get(k.http["/ready"], "/ready") == (503, "shutting down")
            assert get(k.http["/health"], "/health") == (200, "OK")
            assert answer(lookup(k.port, WEB))[:2] == ("NOERROR", {"10.96.100.10"})
            assert dns.message.from_wire(tcp_exchange(tcp, wire)).rcode() == dns.rcode.NOERROR
            assert lookup(k.port, WEB, tcp=True).rcode() == dns.rcode.NOERROR  # new connections too
            assert time.monotonic() - sent < 1.4, "the lameduck checks took too long to mean anything"

            assert tcp.recv(1) == b""  # closed by kdns (timeout: 5 s)
            closed = time.monotonic() - sent
            status = k.wait_exit()
            exited = time.monotonic() - sent
        finally:
            tcp.close()
        assert status == 0, k.lines
        assert 1.3 <= closed <= 3.0, closed
        assert 1.3 <= exited <= 3.5, exited
        k.wait_for("SIGTERM received, shutting down after a 1.5s lameduck period")
        k.wait_for("shut down$")
        assert k.matching(r" (ERROR|WARNING) ") == []


# -- SIGHUP and config-file reloads ------------------------------------------------------------


def base_config(**extra) -> dict:
    return {"manifests": [str(DEMO)], "listen": ["127.0.0.1:0"], "health": "127.0.0.1:0", "ready": "127.0.0.1:0",
            "lameduck": 0, **extra}


def write_config(path: Path, values: dict) -> Path:
    replace_file(path, yaml.safe_dump(values, sort_keys=False))
    return path


def ttl_of(port: int, name: str = WEB) -> int:
    rcode, data, ttls = answer(lookup(port, name))
    assert rcode == "NOERROR" and data == {"10.96.100.10"}, (rcode, data)
    (ttl,) = ttls
    return ttl


def test_sighup_applies_a_good_config_without_dropping_a_query(tmp_path):
    """SIGHUP re-reads --config: a good file (ttl 5 → 60) is applied, one "configuration
    reloaded" line, no query going unanswered meanwhile, readiness staying 200 (no lameduck),
    and new answers carry the new TTL."""
    path = write_config(tmp_path / "kdns.yaml", base_config(ttl=5, **{"reload-interval": 60}))
    with kdns_serve("--config", path, listen=False, http=(), http_paths=2) as k:
        assert ttl_of(k.port) == 5
        ready = k.http["/ready"]

        write_config(path, base_config(ttl=60, **{"reload-interval": 60}))
        answered, failed = [], []
        stop = threading.Event()

        def keep_asking() -> None:
            for _ in range(2000):
                if stop.is_set():
                    return
                try:
                    answered.append(answer(lookup(k.port, WEB))[0])
                except (dns.exception.DNSException, OSError) as exc:  # a timeout is a dropped query
                    failed.append(repr(exc))

        asker = threading.Thread(target=keep_asking, daemon=True)
        asker.start()
        try:
            mark = k.mark()
            eventually(lambda: len(answered) + len(failed) >= 20)  # asking before the reload ...
            k.proc.send_signal(signal.SIGHUP)
            k.wait_for(rf"configuration reloaded from {re.escape(str(path))}", since=mark)
            assert get(ready, "/ready") == (200, "OK")  # no lameduck on reload
            asked = len(answered) + len(failed)
            eventually(lambda: len(answered) + len(failed) >= asked + 20)  # ... and after it
        finally:
            stop.set()
            asker.join(5.0)
        assert failed == [] and answered and set(answered) == {"NOERROR"}, (failed, set(answered))
        assert ttl_of(k.port) == 60
        assert len(k.matching("configuration reloaded", since=mark)) == 1
        assert k.proc.poll() is None


def test_sighup_rejects_a_bad_config_and_keeps_the_running_one(tmp_path):
    """SIGHUP with a bad file (an unknown key; ttl out of range): one "reload rejected" line
    naming the key, answers keep the running TTL, the process keeps serving and ready; a
    good file after that is applied again (here: query logging turned on)."""
    path = write_config(tmp_path / "kdns.yaml", base_config(ttl=60, **{"reload-interval": 60}))
    with kdns_serve("--config", path, listen=False, http=(), http_paths=2) as k:
        assert ttl_of(k.port) == 60
        for bad, key in ((base_config(ttl=60, ttl_seconds=3), "ttl_seconds"), (base_config(ttl=9999), "ttl")):
            write_config(path, bad)
            mark = k.mark()
            k.proc.send_signal(signal.SIGHUP)
            line = k.wait_for(r"^.*reload rejected.*$", since=mark).group(0)
            assert " ERROR " in line and f"{key}: " in line, line
            assert len(k.matching("reload rejected", since=mark)) == 1  # (the next SIGHUP's lines would show another)
            assert k.matching("configuration reloaded", since=mark) == []
            assert ttl_of(k.port) == 60
            assert get(k.http["/ready"], "/ready") == (200, "OK")
            assert k.proc.poll() is None

        write_config(path, base_config(ttl=60, **{"reload-interval": 60, "log-queries": True}))
        mark = k.mark()
        k.proc.send_signal(signal.SIGHUP)
        k.wait_for("configuration reloaded", since=mark)
        assert len(k.matching("reload rejected")) == 2, "each bad file rejected once"
        assert ttl_of(k.port) == 60
        k.wait_for(r"kdns\.query: 127\.0\.0\.1 udp web\.shop\.svc\.cluster\.local\. A NOERROR", since=mark)


def test_config_file_change_is_picked_up_without_sighup(tmp_path):
    """With --config, editing the file is enough (checked every reload-interval): the new
    TTL is served, with no SIGHUP sent."""
    path = write_config(tmp_path / "kdns.yaml", base_config(ttl=5, **{"reload-interval": 0.2}))
    with kdns_serve("--config", path, listen=False, http=(), http_paths=2) as k:
        assert ttl_of(k.port) == 5
        mark = k.mark()
        write_config(path, base_config(ttl=60, **{"reload-interval": 0.2}))
        k.wait_for(rf"{re.escape(str(path))} changed, reloading", since=mark)
        k.wait_for("configuration reloaded", since=mark)
        assert ttl_of(k.port) == 60
        assert k.matching("SIGHUP", since=mark) == []


def test_restart_only_change_is_logged_and_the_old_listener_kept(tmp_path):
    """A reload that changes `listen` (an option that only takes effect at start) logs a
    warning naming it and saying to restart; the rest of the file is applied (query
    logging), and the old listener keeps serving."""
    path = write_config(tmp_path / "kdns.yaml", base_config(ttl=30, **{"reload-interval": 0.2}))
    with kdns_serve("--config", path, listen=False, http=(), http_paths=2) as k:
        assert ttl_of(k.port) == 30
        mark = k.mark()
        write_config(path, base_config(ttl=30, **{"reload-interval": 0.2, "listen": ["127.0.0.1:1"], "log-queries": True}))
        line = k.wait_for(r"^.*reload: .*$", since=mark).group(0)
        assert " WARNING " in line and "listen" in line and "restart" in line, line
        k.wait_for("configuration reloaded", since=mark)
        assert ttl_of(k.port) == 30  # the old listener
        k.wait_for(r"kdns\.query: 127\.0\.0\.1 udp web\.shop\.svc\.cluster\.local\. A NOERROR", since=mark)
        assert get(k.http["/health"], "/health") == (200, "OK")
        assert k.proc.poll() is None


def test_flags_keep_overriding_the_file_on_reload(tmp_path):
    """A flag given at start keeps overriding the file across a reload: with `--ttl 7` the
    file's ttl 60 does not take over when the file is reloaded."""
    path = write_config(tmp_path / "kdns.yaml", base_config(ttl=5, **{"reload-interval": 60}))
    with kdns_serve("--config", path, "--ttl", "7", listen=False, http=(), http_paths=2) as k:
        assert ttl_of(k.port) == 7
        write_config(path, base_config(ttl=60, **{"reload-interval": 60, "log-queries": True}))
        mark = k.mark()
        k.proc.send_signal(signal.SIGHUP)
        k.wait_for("configuration reloaded", since=mark)
        assert ttl_of(k.port) == 7
        k.wait_for(r"kdns\.query: 127\.0\.0\.1 udp web\.shop\.svc\.cluster\.local\. A NOERROR", since=mark)  # the file's change applied


# -- logs ------------------------------------------------------------------------------------


def test_json_logs_and_query_logging():
    """--log-format json: every stderr line is a JSON object with time, level, logger and
    message. --log-queries: one line per query with its name, type and rcode; NXDOMAIN is
    logged at info level, and nothing at warning or error."""
    with kdns_serve("--manifests", DEMO, "--log-format", "json", "--log-queries", "--lameduck", "0") as k:
        assert answer(lookup(k.port, WEB))[0] == "NOERROR"
        assert answer(lookup(k.port, "nope.shop.svc.cluster.local"))[0] == "NXDOMAIN"
        assert lookup(k.port, WEB, "AAAA", tcp=True).rcode() == dns.rcode.NOERROR
        k.wait_for(r"AAAA NOERROR")
        k.proc.send_signal(signal.SIGTERM)
        assert k.wait_exit() == 0
    records = []
    for line in k.lines:
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= set(record), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"]), line
        records.append(record)
    assert all(r["level"] in ("debug", "info") for r in records), [r for r in records if r["level"] not in ("debug", "info")]
    queries = [r["message"] for r in records if r["logger"] == "kdns.query"]
    assert len(queries) == 3, queries
    assert re.search(r"^127\.0\.0\.1 udp web\.shop\.svc\.cluster\.local\. A NOERROR \d+$", queries[0]), queries[0]
    assert re.search(r"^127\.0\.0\.1 udp nope\.shop\.svc\.cluster\.local\. A NXDOMAIN \d+$", queries[1]), queries[1]
    assert re.search(r"^127\.0\.0\.1 tcp web\.shop\.svc\.cluster\.local\. AAAA NOERROR \d+$", queries[2]), queries[2]
    messages = [r["message"] for r in records]
    assert any(m.startswith("listening on udp 127.0.0.1:") for m in messages)
    assert "shut down" in messages


def test_queries_are_not_logged_by_default():
    """Without --log-queries, answering queries (NXDOMAIN included) adds no log line."""
    with kdns_serve("--manifests", DEMO) as k:
        mark = k.mark()
        for name in (WEB, "nope.shop.svc.cluster.local", "example.org"):
            lookup(k.port, name)
        lookup(k.port, WEB, tcp=True)
        k.proc.send_signal(signal.SIGHUP)  # lines kdns does log, after any it would log for the queries
        k.wait_for("no --config file to reload", since=mark)
        assert [line for line in k.lines[mark:] if "SIGHUP received" not in line and "no --config file" not in line] == []


# -- kdns writes no files --------------------------------------------------------------------------


def test_kdns_writes_no_files(tmp_path):
    """kdns runs with a read-only root in mind: started in an empty working directory with
    an empty HOME and TMPDIR, serving queries and metrics and shutting down leaves all three
    empty."""
    dirs = {name: tmp_path / name for name in ("cwd", "home", "tmp")}
    for d in dirs.values():
        d.mkdir()
    env = {**os.environ, "HOME": str(dirs["home"]), "TMPDIR": str(dirs["tmp"])}
    env.pop("KUBECONFIG", None)
    with kdns_serve("--manifests", DEMO, "--lameduck", "0", "--log-queries", cwd=dirs["cwd"], env=env) as k:
        for name in (WEB, "nope.shop.svc.cluster.local"):
            lookup(k.port, name)
        lookup(k.port, WEB, tcp=True)
        assert get(k.http["/metrics"], "/metrics")[0] == 200
        assert get(k.http["/ready"], "/ready")[0] == 200
        k.proc.send_signal(signal.SIGTERM)
        assert k.wait_exit() == 0
    for name, d in dirs.items():
        assert sorted(p.name for p in d.rglob("*")) == [], name


# -- --workers ---------------------------------------------------------------------------------


def answered_from_fresh_sockets(port: int, count: int, timeout: float) -> int:
    """How many of `count` queries, each from a socket of its own (so a port of its own, which
    SO_REUSEPORT hashes to one of the processes), are answered within `timeout`."""
    wire = dns.message.make_query(WEB, "A").to_wire()
    answered = 0
    for _ in range(count):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.connect(("127.0.0.1", port))
            sock.send(wire)
            try:
                answered += dns.message.from_wire(sock.recv(65535)).rcode() == dns.rcode.NOERROR
            except TimeoutError:
                pass
    return answered


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_answer_on_one_port_and_stop_together():
    """--workers 2: a second process answers on the same UDP port (SO_REUSEPORT). While the
    first process is stopped (SIGSTOP), queries from some source ports are still answered,
    by the worker, and the others are not; after SIGCONT all are. SIGTERM to the first
    process reaches the worker: both lameduck and exit, status 0."""
    with kdns_serve("--manifests", DEMO, "--workers", "2", "--lameduck", "0.3") as k:
        worker = int(k.wait_for(r"started worker 1 \(pid (\d+)\)").group(1))
        eventually(lambda: len(k.matching(rf"listening on udp 127\.0\.0\.1:{k.port}$")) == 2)
        # A child of the main thread: PR_SET_PDEATHSIG would end it with the thread that started it.
        pid = k.proc.pid
        assert Path(f"/proc/{pid}/task/{pid}/children").read_text().split() == [str(worker)]
        assert answered_from_fresh_sockets(k.port, 10, 2.0) == 10
        k.proc.send_signal(signal.SIGSTOP)
        try:
            while_stopped = answered_from_fresh_sockets(k.port, 24, 0.25)
        finally:
            k.proc.send_signal(signal.SIGCONT)
        assert 0 < while_stopped < 24, while_stopped
        assert answered_from_fresh_sockets(k.port, 10, 2.0) == 10
        assert get(k.http["/ready"], "/ready") == (200, "OK")  # the first process's endpoints
        k.proc.send_signal(signal.SIGTERM)
        assert k.wait_exit() == 0, k.lines
        eventually(lambda: not alive(worker))
        assert len(k.matching(r"SIGTERM received, shutting down")) == 2, k.lines
        assert k.matching(r" (ERROR|WARNING) ") == []


def test_a_worker_that_dies_is_started_again_and_dies_with_the_first():
    """A worker killed outright is started again (an ERROR line says so) and answers on the
    port; when the first process is killed outright, the worker gets SIGTERM from the
    kernel and exits after its lameduck period."""
    with kdns_serve("--manifests", DEMO, "--workers", "2", "--lameduck", "0.2", http=()) as k:
        first = int(k.wait_for(r"started worker 1 \(pid (\d+)\)").group(1))
        mark = k.mark()
        os.kill(first, signal.SIGKILL)
        k.wait_for(rf"ERROR kdns\.workers: worker 1 \(pid {first}\) exited with status -9; starting it again", since=mark)
        second = int(k.wait_for(r"started worker 1 \(pid (\d+)\)", since=mark).group(1))
        eventually(lambda: len(k.matching(rf"listening on udp 127\.0\.0\.1:{k.port}$", since=mark)) == 1)
        k.proc.send_signal(signal.SIGSTOP)  # only the new worker can answer now
        try:
            assert answered_from_fresh_sockets(k.port, 16, 0.25) > 0
        finally:
            k.proc.send_signal(signal.SIGCONT)
        k.proc.kill()
        k.wait_exit()
        eventually(lambda: not alive(second))


def test_sighup_reloads_every_worker(tmp_path):
    """--workers 2 with a config file: SIGHUP to the first process reloads both (ttl 5 → 60
    in every answer, whichever process gives it); the workers' HTTP endpoints stay off, so
    the reload reports no restart-only change."""
    path = write_config(tmp_path / "kdns.yaml", base_config(ttl=5, workers=2, **{"reload-interval": 60}))
    with kdns_serve("--config", path, listen=False, http=(), http_paths=2) as k:
        eventually(lambda: len(k.matching(rf"listening on udp 127\.0\.0\.1:{k.port}$")) == 2)
        write_config(path, base_config(ttl=60, workers=2, **{"reload-interval": 60}))
        mark = k.mark()
        k.proc.send_signal(signal.SIGHUP)
        eventually(lambda: len(k.matching("configuration reloaded", since=mark)) == 2)
        assert {ttl_of(k.port) for _ in range(20)} == {60}
        assert k.matching(r" (ERROR|WARNING) ") == []


def test_workers_out_of_range_is_a_flag_error():
    result = subprocess.run([*KDNS, "serve", "--workers", "0"], check=False, capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert result.returncode == 2 and "--workers: must be between 1 and 256, got 0" in result.stderr, result.stderr
