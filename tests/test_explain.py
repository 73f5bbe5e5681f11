"""`kdns explain`: what kdns answers, why, and which objects made each record.

Every case of the answer table (tests/test_answers.py) is explained through the command with
`--json`, reading the same manifests, and again with `--server` against a running kdns's
`/explain` endpoint: the explanation's rcode and records must be what a DNS query gets
(the table's expectations), and each record must name the objects it comes from with the
file and line that define them (the line is checked in the file). Then: the search-path
walk of a pod (short, multi-label and outside names), negative answers explained in terms of
the mistakes that cause them, the forwarding cache seen through a running server, the API
source's resourceVersions, the test double's `explain()`, and /explain being off by default.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import trio

from kdns import cli
from kdns.config import DnsConfig
from kdns.explain import View, explain
from kdns.model import Synced
from kdns.state import DnsState
from testkit.answers import CASES, E2E, Case
from testkit.kubeapi import KubeAPI
from testkit.repo import DEMO, ROOT, write
from testkit.stubdns import StubDNS

SOURCE = ["--manifests", str(DEMO), "--manifests", str(E2E)]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """`kdns ARGV` in this process: (exit status, stdout, stderr)."""
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def explained(capsys, name: str, qtype: str, *extra: str) -> dict:
    status, out, err = run(capsys, "explain", name, qtype, "--json", *SOURCE, *extra)
    assert status == 0, err
    return json.loads(out)


def defines(where: str, kind: str, namespace: str, name: str) -> bool:
    """Whether FILE:LINE is the first line of the manifest document that defines this object."""
    path, _, line = where.rpartition(":")
    lines = Path(path).read_text().splitlines()[int(line) - 1:]
    document = "\n".join(lines[: next((i for i, text in enumerate(lines) if text.startswith("---")), len(lines))])
    found = re.search(rf"\bkind: {kind}\b", document) and re.search(rf"\bname: {re.escape(name)}\b", document)
    return bool(found) and (not namespace or namespace == "default" or re.search(rf"\bnamespace: {namespace}\b", document) is not None)


def check(case: Case, data: dict) -> None:
    """The explanation says what the query gets, and where each record comes from."""
    assert data["rcode"] == case.rcode, (str(case), data)
    records = data["records"]
    assert {r["record"] for r in records if r["section"] == "answer"} == set(case.answer), (str(case), data)
    if case.additional is not None:
        assert {r["record"] for r in records if r["section"] == "additional"} == set(case.additional), (str(case), data)
    if case.soa is not None:
        assert [r["record"].split(" ")[0] for r in records if r["section"] == "authority"] == [case.soa], str(case)
    for record in records:
        assert record["from"] or record["note"], f"{case}: nothing says where {record['record']} comes from"
        owner = record["record"].split(" ")[0]
        if ".svc.cluster.local." in owner or record["record"].split(" ")[3] == "PTR":
            assert any(o["kind"] == "Service" for o in record["from"]), f"{case}: {record}"
        for origin in record["from"]:
            assert origin["where"] and defines(origin["where"], origin["kind"], origin["namespace"], origin["name"]), (str(case), origin)
    if case.rcode in ("NXDOMAIN", "SERVFAIL") or (case.rcode == "NOERROR" and not case.answer):
        assert data["negative"], f"{case}: no reason given for a negative answer"
    assert data["answered_by"], str(case)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_explain_each_answer_of_the_table(capsys, case: Case):
    check(case, explained(capsys, case.name, case.qtype))


async def test_explain_through_a_running_server(kdns):
    """The same table through `kdns explain --server` and the /explain endpoint."""
    server = await kdns(DEMO, E2E, args=["--explain", "127.0.0.1:0"])
    url = f"http://127.0.0.1:{server.server.http_bound['/explain'].port}"

    first = CASES[0]  # the command itself once, as a user runs it; then its function, in a thread
    proc = await trio.run_process([sys.executable, "-m", "kdns", "explain", "--server", url, first.name, first.qtype, "--json"],
                                  capture_stdout=True, capture_stderr=True, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    check(first, json.loads(proc.stdout))
    for case in CASES:
        check(case, await trio.to_thread.run_sync(in_process, ["explain", "--server", url, case.name, case.qtype, "--json"]))


def in_process(argv: list[str]) -> dict:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0
    return json.loads(out.getvalue())


def test_text_output_names_the_objects(capsys):
    status, out, _ = run(capsys, "explain", "db.shop.svc.cluster.local", *SOURCE)
    assert status == 0
    assert out.startswith("db.shop.svc.cluster.local. A: NOERROR, cluster zone (cluster.local.)\n")
    assert "db.shop.svc.cluster.local. 5 IN A 10.244.1.30" in out
    assert re.search(r"from Service shop/db \(.*demo-cluster\.yaml:\d+\)", out)
    assert re.search(r"from EndpointSlice shop/db-\w+ \(.*demo-cluster\.yaml:\d+\)", out)


# -- the search-path walk ------------------------------------------------------------------------


@pytest.mark.parametrize("name, stops_at, queries, answer", [
    ("kubernetes", 1, 2, "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"),  # a short name, in the pod's namespace
    ("web.shop", 2, 4, "web.shop.svc.cluster.local. 5 IN A 10.96.100.10"),  # a multi-label name: <svc>.<ns>
    ("kubernetes.default.svc", 3, 6, "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"),  # found under <zone>
])
def test_search_walk(capsys, name, stops_at, queries, answer):
    data = explained(capsys, name, "A", "--namespace", "default")
    walk = data["search"]
    assert (walk["stops_at"], walk["queries"], walk["ndots"]) == (stops_at, queries, 5)
    assert walk["search"] == ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert [s["verdict"] for s in walk["steps"]] == ["next"] * (stops_at - 1) + ["stop"]
    assert walk["steps"][0]["name"] == f"{name}.default.svc.cluster.local."
    assert answer in {r["record"] for r in data["records"]}


def test_search_walk_of_an_outside_name_without_upstream(capsys):
    """Three NXDOMAINs from the search list, then the name as it is: REFUSED ends the walk."""
    walk = explained(capsys, "example.org", "A", "--namespace", "default")["search"]
    assert [s["name"] for s in walk["steps"]] == ["example.org.default.svc.cluster.local.", "example.org.svc.cluster.local.",
                                                 "example.org.cluster.local.", "example.org."]
    assert [s["answers"]["A"] for s in walk["steps"]] == ["NXDOMAIN"] * 3 + ["REFUSED"]
    assert (walk["stops_at"], walk["queries"], walk["steps"][-1]["verdict"]) == (None, 8, "give up")


def test_search_walk_with_autopath(capsys):
    data = explained(capsys, "web.shop", "A", "--namespace", "default", "--autopath")
    assert (data["search"]["stops_at"], data["search"]["queries"], data["answered_by"]) == (1, 2, "autopath")
    assert data["records"][0]["record"] == ("web.shop.default.svc.cluster.local. 5 IN CNAME web.shop.svc.cluster.local.")


def test_a_name_with_five_dots_is_tried_as_it_is_first(capsys):
    walk = explained(capsys, "a.b.c.d.e.f", "A", "--namespace", "default", "--outside-names", "nxdomain")["search"]
    assert [s["name"] for s in walk["steps"]] == ["a.b.c.d.e.f.", "a.b.c.d.e.f.default.svc.cluster.local.",
                                                 "a.b.c.d.e.f.svc.cluster.local.", "a.b.c.d.e.f.cluster.local."]
    assert (walk["stops_at"], walk["queries"]) == (None, 8)
    walk = explained(capsys, "a.b.c.d.e.f", "A", "--namespace", "default")["search"]
    assert [(s["name"], s["verdict"]) for s in walk["steps"]] == [("a.b.c.d.e.f.", "give up")], "REFUSED ends the walk"


async def test_forwarding_shows_the_upstream_and_the_cache(kdns, nursery):
    stub = StubDNS("example.org. 300 IN A 127.0.0.11")
    port = await nursery.start(stub.serve)
    server = await kdns(DEMO, args=["--explain", "127.0.0.1:0", "--upstream", f"127.0.0.1:{port}"])
    url = f"http://127.0.0.1:{server.server.http_bound['/explain'].port}"
    cold = await trio.to_thread.run_sync(in_process, ["explain", "--server", url, "example.org", "A", "--json"])
    assert cold["answered_by"] == "forwarding" and cold["forward"]["upstreams"] == [f"127.0.0.1:{port}"]
    assert cold["forward"]["cache"] is None
    await server.query("example.org", "A")
    warm = await trio.to_thread.run_sync(in_process, ["explain", "--server", url, "example.org", "--namespace", "default", "--json"])
    cache = warm["forward"]["cache"]
    assert cache["rcode"] == "NOERROR" and cache["records"] == 1 and 0 < cache["ttl_left"] <= 30
    walk = warm["search"]
    assert (walk["stops_at"], walk["queries"]) == (4, 8)
    assert walk["steps"][-1]["answers"]["A"].startswith("forwarded, cached: NOERROR")


# -- negative answers, in terms of the mistakes behind them -------------------------------------------


def test_typos_and_missing_endpoints_are_named(capsys, tmp_path):
    manifest = write(tmp_path / "shop.yaml", """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: shop}
        spec: {clusterIP: None, ports: [{name: http, port: 80}]}
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: web-abc
          namespace: shop
          labels: {kubernetes.io/service-name: wbe}
        addressType: IPv4
        endpoints: [{addresses: [10.244.0.1]}]
        ---
        apiVersion: v1
        kind: Servce
        metadata: {name: api, namespace: shop}
        spec: {clusterIP: 10.96.0.9}
    """)
    _, out, err = run(capsys, "explain", "web.shop.svc.cluster.local", "--json", "--manifests", str(manifest))
    data = json.loads(out)
    assert data["rcode"] == "NXDOMAIN"
    assert "headless" in data["negative"] and "web-abc (labelled for 'wbe')" in data["negative"]
    assert "warning: EndpointSlice shop/web-abc" in err, "the source's checks are shown too"
    _status, out, err = run(capsys, "explain", "api.shop.svc.cluster.local", "--json", "--manifests", str(manifest))
    assert json.loads(out)["negative"] == "no Service shop/api"
    assert "unknown kind 'Servce' (did you mean Service?)" in err


def test_nodata_and_nxdomain_are_told_apart(capsys):
    nodata = explained(capsys, "web.shop.svc.cluster.local", "TXT")
    assert nodata["rcode"] == "NOERROR" and "exists with A, AAAA, SRV records but none of type TXT" in nodata["negative"]
    assert "not ready" in explained(capsys, "db-2.db.shop.svc.cluster.local", "A")["negative"]
    assert "no port named https" in explained(capsys, "_https._tcp.web.shop.svc.cluster.local", "SRV")["negative"]
    typo = explained(capsys, "wbe.shop.svc.cluster.local", "A")
    assert typo["negative"] == "no Service shop/wbe" and typo["nearest"] == ["web.shop.svc.cluster.local."]
    assert explained(capsys, "web.shpo.svc.cluster.local", "A")["nearest"] == ["web.shop.svc.cluster.local."]


def test_servfail_before_the_first_sync():
    state = DnsState(DnsConfig(), sources=["Service"], now=1.0)
    data = explain(View(state.snapshot, state.index), "web.shop.svc.cluster.local.", "A").to_json()
    assert data["rcode"] == "SERVFAIL" and "not synced" in data["negative"] and data["synced"] is False
    state.apply([Synced("Service")], 2.0)
    assert explain(View(state.snapshot, state.index), "web.shop.svc.cluster.local.", "A").rcode == "NXDOMAIN"


# -- the other tables: external zones, hosts files, the test double's records -------------------------


def test_external_zone_and_hosts_file(capsys, tmp_path):
    external = Path(__file__).parent / "manifests" / "external.yaml"
    hosts = write(tmp_path / "hosts", """
        # the node's names
        192.0.2.7 build.corp.example build
    """)
    argv = ["--manifests", str(external), "--external-zone", "k8s.example.org", "--hosts", str(hosts)]
    status, out, err = run(capsys, "explain", "ext-only.shop.k8s.example.org", "--json", *argv)
    assert status == 0, err
    data = json.loads(out)
    assert (data["answered_by"], data["zone"]) == ("external zone", "k8s.example.org.")
    [record] = data["records"]
    assert record["record"] == "ext-only.shop.k8s.example.org. 5 IN A 198.51.100.1"
    [origin] = record["from"]
    assert (origin["kind"], origin["name"]) == ("Service", "ext-only") and defines(origin["where"], "Service", "shop", "ext-only")
    status, out, _ = run(capsys, "explain", "build.corp.example", "--json", *argv)
    data = json.loads(out)
    assert data["answered_by"] == "hosts file"
    assert data["records"][0]["record"] == "build.corp.example. 3600 IN A 192.0.2.7"
    assert data["records"][0]["from"] == [{"kind": "Hosts", "namespace": "", "name": str(hosts), "where": str(hosts)}]
    status, out, _ = run(capsys, "explain", "7.2.0.192.in-addr.arpa", "PTR", "--json", *argv)
    data = json.loads(out)
    assert data["records"][0]["record"] == "7.2.0.192.in-addr.arpa. 3600 IN PTR build.corp.example."
    assert data["records"][0]["from"][0]["kind"] == "Hosts"
    status, out, _ = run(capsys, "explain", "ext-only.shop.k8s.example.org", "--json", "--manifests", str(external))
    assert json.loads(out)["answered_by"] == "refused", "without --external-zone the name lies outside every zone"


def test_test_double_records_and_outside_names():
    from kdns.testing import KdnsServer

    with KdnsServer() as kd:
        kd.record("api.stripe.com", "A", "127.0.0.9")
        found = kd.explain("api.stripe.com.")
        assert (found.answered_by, found.answer) == ("test double record", ("api.stripe.com. 5 IN A 127.0.0.9",))
        assert [str(o) for o in found.records[0].origins] == ["Record api.stripe.com"]
        closed = kd.explain("example.org.")
        assert (closed.rcode, closed.answered_by) == ("NXDOMAIN", "closed world") and "nxdomain" in closed.negative


# -- other sources and entry points ----------------------------------------------------------------


def test_api_source_gives_resource_versions(capsys):
    api = KubeAPI().start()
    try:
        stored = api.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
                            "spec": {"clusterIP": "10.96.7.7", "ports": [{"name": "http", "port": 80}]}})
        status, out, err = run(capsys, "explain", "web.shop.svc.cluster.local", "--json", "--apiserver", api.url)
    finally:
        api.stop()
    assert status == 0, err
    data = json.loads(out)
    [record] = data["records"]
    assert record["record"] == "web.shop.svc.cluster.local. 5 IN A 10.96.7.7"
    assert record["from"] == [{"kind": "Service", "namespace": "shop", "name": "web",
                               "where": f"resourceVersion {stored['metadata']['resourceVersion']}"}]


def test_test_double_explains():
    from kdns.testing import KdnsServer

    with KdnsServer() as kd:
        kd.service("redis", ports=[("redis", 6379)])
        found = kd.explain("redis")
        assert found.rcode == "NOERROR" and found.search.stops_at == 1
        assert found.answer == (f"redis.default.svc.cluster.local. 5 IN A {kd.cluster_ip('redis')}",)
        assert [str(o) for o in found.records[0].origins] == ["Service default/redis"]
        missing = kd.explain("rdis.default.svc.cluster.local.")
        assert missing.rcode == "NXDOMAIN" and missing.nearest == ("redis.default.svc.cluster.local.",)


async def test_explain_endpoint_is_off_unless_configured(kdns):
    server = await kdns(DEMO, args=["--metrics", "127.0.0.1:0"])
    assert "/explain" not in server.server.http_bound
    url = f"http://127.0.0.1:{server.server.http_bound['/metrics'].port}"
    result = await trio.run_process([sys.executable, "-m", "kdns", "explain", "--server", url, "web.shop"], capture_stdout=True,
                                    capture_stderr=True, check=False, cwd=ROOT)
    assert result.returncode == 1 and b"not found (kdns serve --explain ADDRESS serves /explain)" in result.stderr


def test_command_line_mistakes(capsys):
    status, _, err = run(capsys, "explain", "web.shop", "BOGUS", *SOURCE)
    assert status == 2 and "unknown record type 'BOGUS'" in err
    status, _, err = run(capsys, "explain", "web.shop", "--manifests", "/nonexistent.yaml")
    assert status == 1 and "/nonexistent.yaml: no such file or directory" in err
