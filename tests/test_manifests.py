"""Manifests on disk → DNS answers: loading, ClusterIP allocation and live reloads.

Every assertion goes through a real DNS query to an in-process kdns (the `kdns` fixture,
--reload-interval 0.1). Files are rewritten atomically (temp file + rename) so a reload never
sees a half-written file.
"""

from __future__ import annotations

import ipaddress
import json
import os
import textwrap
import time
import uuid
from pathlib import Path

import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest
import trio

from kdns.sources.manifests import ManifestSet
from testkit.dnswire import rrs
from testkit.inprocess import Running
from testkit.repo import write

STEP = 0.05  # seconds between polls
TIMEOUT = 5.0  # how long a reload may take to show

V4_SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/12")
V6_SERVICE_RANGE = ipaddress.ip_network("fd00:10:96::/112")
NXDOMAIN = ("NXDOMAIN", frozenset())


# -- helpers ---------------------------------------------------------------------------------


def ok(*rdata: str) -> tuple[str, frozenset[str]]:
    """The expected result of a positive answer with exactly these records."""
    return ("NOERROR", frozenset(rdata))


def replace(path: Path, text: str) -> None:
    """Rewrite a manifest atomically, as editors and `kubectl`-style tools do."""
    tmp = path.with_name(path.name + ".tmp")  # not a manifest suffix: never read by kdns
    tmp.write_text(textwrap.dedent(text).lstrip())
    os.replace(tmp, path)


def ptr_name(ip: str) -> str:
    return dns.reversename.from_address(ip).to_text()


async def answer(run: Running, name: str, rdtype: str = "A") -> tuple[str, frozenset[str]]:
    """(rcode, rdata of the answer records of the asked type)."""
    response = await run.query(name, rdtype)
    wanted = dns.rdatatype.from_text(rdtype)
    data = frozenset(rd.to_text() for rrset in response.answer if rrset.rdtype == wanted for rd in rrset)
    return dns.rcode.to_text(response.rcode()), data


async def eventually(run: Running, name: str, rdtype: str, expected: tuple[str, frozenset[str]]) -> None:
    """Poll (bounded) until `name rdtype` answers `expected`."""
    got = None
    deadline = trio.current_time() + TIMEOUT
    for _ in range(int(TIMEOUT / STEP) + 1):
        got = await answer(run, name, rdtype)
        if got == expected or trio.current_time() > deadline:
            break
        await trio.sleep(STEP)
    assert got == expected, f"{name} {rdtype}: still {got} after {TIMEOUT}s, expected {expected}"


async def serial(run: Running) -> int:
    response = await run.query("cluster.local", "SOA")
    assert dns.rcode.to_text(response.rcode()) == "NOERROR"
    return response.answer[0][0].serial


async def assert_nodata(run: Running, name: str, rdtype: str = "A") -> None:
    response = await run.query(name, rdtype)
    assert dns.rcode.to_text(response.rcode()) == "NOERROR", name
    assert response.answer == [], name
    assert [(r.name.to_text(), dns.rdatatype.to_text(r.rdtype)) for r in response.authority] == [("cluster.local.", "SOA")]


async def assert_nxdomain(run: Running, name: str, rdtype: str = "A") -> None:
    response = await run.query(name, rdtype)
    assert dns.rcode.to_text(response.rcode()) == "NXDOMAIN", name
    assert response.answer == []
    assert [dns.rdatatype.to_text(r.rdtype) for r in response.authority] == ["SOA"]


def glue(response) -> set[str]:
    """The addresses in a response's additional section."""
    return {line.split()[-1] for line in rrs(response.additional) if line.split()[3] in ("A", "AAAA")}


async def rescanned(caplog: pytest.LogCaptureFixture, directory: Path) -> None:
    """A barrier: returns once kdns has read every change made to `directory` before the call.

    It adds a broken manifest and waits for kdns to report it. kdns reads all files in one
    pass, so by then it has read everything written earlier; a broken new file adds no data.
    """
    marker = f"zz-barrier-{uuid.uuid4().hex[:8]}.yaml"
    (directory / marker).write_text("kind: [unclosed\n")
    for _ in range(int(TIMEOUT / STEP) + 1):
        if any(marker in r.getMessage() and r.levelname == "ERROR" for r in caplog.records):
            return
        await trio.sleep(STEP)
    raise AssertionError(f"kdns never reported the broken barrier file {marker}")


# -- manifests used below ---------------------------------------------------------------------

SHOP = """
    apiVersion: v1
    kind: Namespace
    metadata:
      name: shop
"""


def web(ip: str = "10.96.0.50", *, label: str = "web", target_port: int = 8080, name: str = "web") -> str:
    """A ClusterIP Service shop/<name> with one named port."""
    return f"""
    apiVersion: v1
    kind: Service
    metadata:
      name: {name}
      namespace: shop
      labels: {{app: {label}}}
    spec:
      clusterIP: {ip}
      ports:
        - {{name: http, port: 80, targetPort: {target_port}, protocol: TCP}}
    """


WEB_SLICE = """
    apiVersion: discovery.k8s.io/v1
    kind: EndpointSlice
    metadata:
      name: web-abc
      namespace: shop
      labels: {kubernetes.io/service-name: web}
    addressType: IPv4
    endpoints:
      - addresses: ["10.244.0.5"]
    ports:
      - {name: http, port: 8080, protocol: TCP}
"""


def db_slice(ip: str = "10.244.0.7") -> str:
    return f"""
    apiVersion: discovery.k8s.io/v1
    kind: EndpointSlice
    metadata:
      name: db-xyz
      namespace: shop
      labels: {{kubernetes.io/service-name: db}}
    addressType: IPv4
    endpoints:
      - addresses: ["{ip}"]
        hostname: db-0
    ports:
      - {{name: postgres, port: 5432, protocol: TCP}}
    """


DB = """
    apiVersion: v1
    kind: Service
    metadata:
      name: db
      namespace: shop
    spec:
      clusterIP: None
      ports:
        - {name: postgres, port: 5432, protocol: TCP}
"""


def docs(*parts: str) -> str:
    """A multi-document YAML file of the given documents."""
    return "---\n" + "---\n".join(textwrap.dedent(p).lstrip() for p in parts)


# -- loading ----------------------------------------------------------------------------------


async def test_multi_document_yaml_loads_every_document(kdns, tmp_path):
    """Every document of a multi-document YAML file is used, including empty ones in between."""
    path = write(tmp_path / "shop.yaml", docs(SHOP, web(), "", WEB_SLICE, web("10.96.0.60", name="api")))
    run = await kdns(path)
    assert await answer(run, "web.shop.svc.cluster.local") == ok("10.96.0.50")
    assert await answer(run, "api.shop.svc.cluster.local") == ok("10.96.0.60")
    assert await answer(run, "10-244-0-5.web.shop.svc.cluster.local") == ok("10.244.0.5")


async def test_kind_list_and_typed_lists_are_unpacked(kdns, tmp_path):
    """`kind: List` and `<Kind>List` documents (what `kubectl get -o yaml` prints) are read item by item."""
    path = write(
        tmp_path / "lists.yaml",
        """
        apiVersion: v1
        kind: List
        items:
          - apiVersion: v1
            kind: Service
            metadata: {name: web, namespace: shop}
            spec:
              clusterIP: 10.96.0.50
              ports: [{name: http, port: 80}]
          - apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata:
              name: web-abc
              namespace: shop
              labels: {kubernetes.io/service-name: web}
            addressType: IPv4
            endpoints: [{addresses: ["10.244.0.5"]}]
        ---
        apiVersion: v1
        kind: ServiceList
        metadata: {resourceVersion: "1"}
        items:
          - apiVersion: v1
            kind: Service
            metadata: {name: api, namespace: shop}
            spec: {clusterIP: 10.96.0.60}
          - apiVersion: v1
            kind: Service
            metadata: {name: cart, namespace: store}
            spec: {clusterIP: 10.96.0.70}
        """,
    )
    run = await kdns(path)
    assert await answer(run, "web.shop.svc.cluster.local") == ok("10.96.0.50")
    assert await answer(run, "10-244-0-5.web.shop.svc.cluster.local") == ok("10.244.0.5")
    assert await answer(run, "api.shop.svc.cluster.local") == ok("10.96.0.60")
    assert await answer(run, "cart.store.svc.cluster.local") == ok("10.96.0.70")


async def test_json_file_is_loaded(kdns, tmp_path):
    """A `.json` manifest (a single object or a List) is read like YAML."""
    single = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.50", "ports": [{"name": "http", "port": 80}]},
    }
    listed = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [{**single, "metadata": {"name": "api", "namespace": "shop"}, "spec": {"clusterIP": "10.96.0.60"}}],
    }
    one = tmp_path / "web.json"
    one.write_text(json.dumps(single, indent=2))
    two = tmp_path / "api.json"
    two.write_text(json.dumps(listed))
    run = await kdns(one, two)
    assert await answer(run, "web.shop.svc.cluster.local") == ok("10.96.0.50")
    assert await answer(run, "_http._tcp.web.shop.svc.cluster.local", "SRV") == ok("0 100 80 web.shop.svc.cluster.local.")
    assert await answer(run, "api.shop.svc.cluster.local") == ok("10.96.0.60")


async def test_directory_reads_manifests_one_level_deep(kdns, tmp_path):
    """A directory contributes its .yaml/.yml/.json files; other files, subdirectories and FIFOs are not read."""
    d = tmp_path / "cluster"
    write(d / "a.yaml", web("10.96.0.1", name="a"))
    write(d / "b.yml", web("10.96.0.2", name="b"))
    (d / "c.json").write_text(
        json.dumps(
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "c", "namespace": "shop"}, "spec": {"clusterIP": "10.96.0.3"}}
        )
    )
    write(d / "notes.txt", web("10.96.0.4", name="txt"))  # a valid manifest, wrong suffix
    write(d / "sub" / "d.yaml", web("10.96.0.5", name="nested"))
    write(d / "dir.yaml" / "e.yaml", web("10.96.0.6", name="deeper"))  # a directory named like a file
    os.mkfifo(d / "pipe.yaml")  # opening it for reading would wait for a writer
    run = await kdns(d)
    assert await answer(run, "a.shop.svc.cluster.local") == ok("10.96.0.1")
    assert await answer(run, "b.shop.svc.cluster.local") == ok("10.96.0.2")
    assert await answer(run, "c.shop.svc.cluster.local") == ok("10.96.0.3")
    for name in ("txt", "nested", "deeper"):
        await assert_nxdomain(run, f"{name}.shop.svc.cluster.local")


async def test_other_kinds_are_skipped(kdns, tmp_path):
    """Deployments, ConfigMaps and unknown apiVersions are ignored: no error, no names, no namespaces."""
    path = write(
        tmp_path / "mixed.yaml",
        docs(
            web(),
            """
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web, namespace: apps}
            spec: {replicas: 2, clusterIP: not-checked}
            """,
            """
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: settings, namespace: config}
            data: {key: value}
            """,
            """
            apiVersion: v2
            kind: Service
            metadata: {name: future, namespace: shop}
            spec: {clusterIP: 10.96.0.99}
            """,
        ),
    )
    run = await kdns(path)
    assert await answer(run, "web.shop.svc.cluster.local") == ok("10.96.0.50")
    await assert_nxdomain(run, "future.shop.svc.cluster.local")
    await assert_nxdomain(run, "apps.svc.cluster.local")
    await assert_nxdomain(run, "config.svc.cluster.local")


async def test_namespace_object_alone_makes_the_namespace_exist(kdns, tmp_path):
    """A Namespace with nothing in it: `<ns>.svc` is NODATA; a namespace nobody names is NXDOMAIN."""
    run = await kdns(write(tmp_path / "ns.yaml", SHOP))
    await assert_nodata(run, "shop.svc.cluster.local")
    await assert_nodata(run, "shop.svc.cluster.local", "SRV")
    await assert_nodata(run, "shop.pod.cluster.local")
    await assert_nxdomain(run, "nothere.svc.cluster.local")
    await assert_nxdomain(run, "web.shop.svc.cluster.local")


async def test_namespace_of_a_service_exists_without_a_namespace_object(kdns, tmp_path):
    """metadata.namespace of a Service is enough for the namespace to exist."""
    run = await kdns(write(tmp_path / "svc.yaml", web()))
    await assert_nodata(run, "shop.svc.cluster.local")
    assert await answer(run, "10-1-2-3.shop.pod.cluster.local") == ok("10.1.2.3")
    await assert_nxdomain(run, "10-1-2-3.other.pod.cluster.local")


async def test_missing_metadata_namespace_means_default(kdns, tmp_path):
    """An object without metadata.namespace lives in `default`."""
    path = write(
        tmp_path / "svc.yaml",
        """
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec: {clusterIP: 10.96.0.50}
        """,
    )
    run = await kdns(path)
    assert await answer(run, "web.default.svc.cluster.local") == ok("10.96.0.50")
    await assert_nodata(run, "default.svc.cluster.local")


# -- ClusterIP allocation -------------------------------------------------------------------

UNALLOCATED = """
    apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: shop}
    spec:
      ports: [{name: http, port: 80}]
"""


async def test_service_without_cluster_ip_gets_a_stable_address(kdns, tmp_path):
    """No clusterIP: an address from 10.96.0.0/12 (not its first /24), the same on every start."""
    path = write(tmp_path / "svc.yaml", UNALLOCATED)
    first = await kdns(path)
    rcode, ips = await answer(first, "web.shop.svc.cluster.local")
    assert rcode == "NOERROR" and len(ips) == 1
    (ip,) = ips
    address = ipaddress.ip_address(ip)
    assert address in V4_SERVICE_RANGE
    assert address not in ipaddress.ip_network("10.96.0.0/24")
    await assert_nodata(first, "web.shop.svc.cluster.local", "AAAA")
    assert await answer(first, ptr_name(ip), "PTR") == ok("web.shop.svc.cluster.local.")

    second = await kdns(path)
    assert await answer(second, "web.shop.svc.cluster.local") == ok(ip)


async def test_ipv6_service_gets_an_ipv6_address(kdns, tmp_path):
    """ipFamilies [IPv6] (single stack): one AAAA from fd00:10:96::/112 and no A."""
    path = write(
        tmp_path / "svc.yaml",
        """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: shop}
        spec:
          ipFamilies: [IPv6]
        """,
    )
    run = await kdns(path)
    rcode, ips = await answer(run, "web.shop.svc.cluster.local", "AAAA")
    assert rcode == "NOERROR" and len(ips) == 1
    assert ipaddress.ip_address(next(iter(ips))) in V6_SERVICE_RANGE
    await assert_nodata(run, "web.shop.svc.cluster.local", "A")
    again = await kdns(path)
    assert await answer(again, "web.shop.svc.cluster.local", "AAAA") == (rcode, ips)


async def test_prefer_dual_stack_service_gets_both_families(kdns, tmp_path):
    """ipFamilyPolicy PreferDualStack: one A from 10.96.0.0/12 and one AAAA from fd00:10:96::/112."""
    path = write(
        tmp_path / "svc.yaml",
        """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: shop}
        spec:
          ipFamilyPolicy: PreferDualStack
        """,
    )
    run = await kdns(path)
    rcode4, v4 = await answer(run, "web.shop.svc.cluster.local", "A")
    rcode6, v6 = await answer(run, "web.shop.svc.cluster.local", "AAAA")
    assert rcode4 == rcode6 == "NOERROR" and len(v4) == len(v6) == 1
    assert ipaddress.ip_address(next(iter(v4))) in V4_SERVICE_RANGE
    assert ipaddress.ip_address(next(iter(v6))) in V6_SERVICE_RANGE


# -- reloads ----------------------------------------------------------------------------------


async def test_editing_a_file_changes_the_answer(kdns, tmp_path):
    """A changed clusterIP is served after a reload, with its PTR moved along."""
    path = write(tmp_path / "svc.yaml", docs(SHOP, web("10.96.0.50")))
    run = await kdns(path)
    assert await answer(run, "web.shop.svc.cluster.local") == ok("10.96.0.50")
    replace(path, docs(SHOP, web("10.96.0.51")))
    await eventually(run, "web.shop.svc.cluster.local", "A", ok("10.96.0.51"))
    assert await answer(run, ptr_name("10.96.0.51"), "PTR") == ok("web.shop.svc.cluster.local.")
    await assert_nxdomain(run, ptr_name("10.96.0.50"), "PTR")


async def test_adding_a_file_adds_its_names(kdns, tmp_path):
    """A new manifest in a watched directory is picked up without a restart."""
    d = tmp_path / "cluster"
    write(d / "shop.yaml", SHOP)
    run = await kdns(d)
    await assert_nxdomain(run, "web.shop.svc.cluster.local")
    write(d / "web.yaml", docs(web(), WEB_SLICE))
    await eventually(run, "web.shop.svc.cluster.local", "A", ok("10.96.0.50"))
    assert await answer(run, "10-244-0-5.web.shop.svc.cluster.local") == ok("10.244.0.5")


async def test_deleting_a_file_removes_its_names(kdns, tmp_path):
    """Removing a manifest from a watched directory makes its names NXDOMAIN (and its namespace go)."""
    d = tmp_path / "cluster"
    write(d / "keep.yaml", web("10.96.0.60", name="api"))
    gone = write(d / "store.yaml", web("10.96.0.70", name="cart").replace("namespace: shop", "namespace: store"))
    run = await kdns(d)
    assert await answer(run, "cart.store.svc.cluster.local") == ok("10.96.0.70")
    gone.unlink()
    await eventually(run, "cart.store.svc.cluster.local", "A", NXDOMAIN)
    await assert_nxdomain(run, "store.svc.cluster.local")
    await assert_nxdomain(run, ptr_name("10.96.0.70"), "PTR")
    assert await answer(run, "api.shop.svc.cluster.local") == ok("10.96.0.60")


BREAKAGES = {
    "invalid-yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n   namespace: shop\n",
    "invalid-cluster-ip": textwrap.dedent(web("10.96.0.x")),
    # Inputs that once escaped the parser and stopped the whole server:
    "deeply-nested": "a: " + "[" * 5000 + "]" * 5000 + "\n",
    "scoped-ipv6-cluster-ip": textwrap.dedent(web("10.96.0.50")).replace("10.96.0.50", "'fe80::1%eth0'"),
    # Nine levels of nine aliases (9**9 items): refused while parsing instead of walked for minutes.
    "alias-bomb": "kind: List\nitems:\n- &a0 {kind: List, items: []}\n"
    + "".join(f"- &a{i} {{kind: List, items: [{', '.join([f'*a{i - 1}'] * 9)}]}}\n" for i in range(1, 10)),
}


@pytest.mark.parametrize("broken", BREAKAGES.values(), ids=BREAKAGES.keys())
async def test_broken_file_keeps_its_old_answer_until_fixed(kdns, tmp_path, broken):
    """A file that breaks keeps serving what it had; other files still update; fixing it applies."""
    d = tmp_path / "cluster"
    web_file = write(d / "a-web.yaml", web("10.96.0.50"))
    api_file = write(d / "b-api.yaml", web("10.96.0.60", name="api"))
    run = await kdns(d)

    replace(web_file, broken)
    replace(api_file, web("10.96.0.61", name="api"))  # read after a-web.yaml in the same pass
    await eventually(run, "api.shop.svc.cluster.local", "A", ok("10.96.0.61"))
    assert await answer(run, "web.shop.svc.cluster.local") == ok("10.96.0.50")

    replace(web_file, web("10.96.0.52"))
    await eventually(run, "web.shop.svc.cluster.local", "A", ok("10.96.0.52"))


async def test_soa_serial_increases_when_dns_data_changes(kdns, tmp_path):
    """`cluster.local SOA` gets a higher serial after each change of answers."""
    path = write(tmp_path / "svc.yaml", docs(SHOP, web("10.96.0.50")))
    run = await kdns(path)
    first = await serial(run)
    replace(path, docs(SHOP, web("10.96.0.51")))
    await eventually(run, "web.shop.svc.cluster.local", "A", ok("10.96.0.51"))
    second = await serial(run)
    assert second > first
    replace(path, docs(SHOP, web("10.96.0.51"), web("10.96.0.60", name="api")))
    await eventually(run, "api.shop.svc.cluster.local", "A", ok("10.96.0.60"))
    assert await serial(run) > second


NO_DNS_CHANGE = {
    "identical": web(),
    "label": web(label="frontend"),
    "target-port": web(target_port=9090),
}


@pytest.mark.parametrize("rewrite", NO_DNS_CHANGE.values(), ids=NO_DNS_CHANGE.keys())
async def test_soa_serial_stays_when_dns_data_does_not_change(kdns, tmp_path, caplog, rewrite):
    """Rewriting a file with no change DNS uses (same text, a label, a targetPort) keeps the serial."""
    d = tmp_path / "cluster"
    path = write(d / "web.yaml", docs(SHOP, web()))
    run = await kdns(d)
    before = await serial(run)
    replace(path, docs(SHOP, rewrite))
    await rescanned(caplog, d)
    assert await serial(run) == before
    assert await answer(run, "web.shop.svc.cluster.local") == ok("10.96.0.50")
    # and the same file with a change DNS does use moves it on
    replace(path, docs(SHOP, web("10.96.0.51")))
    await eventually(run, "web.shop.svc.cluster.local", "A", ok("10.96.0.51"))
    assert await serial(run) > before


async def test_deleted_clusterip_service_loses_every_name(kdns, tmp_path):
    """Deleting a Service (its EndpointSlice stays) removes its A, SRV, PTR and endpoint names."""
    path = write(tmp_path / "shop.yaml", docs(SHOP, web(), WEB_SLICE))
    run = await kdns(path)
    names = [
        ("web.shop.svc.cluster.local", "A"),
        ("web.shop.svc.cluster.local", "SRV"),
        ("_http._tcp.web.shop.svc.cluster.local", "SRV"),
        (ptr_name("10.96.0.50"), "PTR"),
        ("10-244-0-5.web.shop.svc.cluster.local", "A"),
        (ptr_name("10.244.0.5"), "PTR"),
    ]
    for name, rdtype in names:  # all there (and remembered by kdns's answer cache)
        rcode, data = await answer(run, name, rdtype)
        assert rcode == "NOERROR" and data, (name, rdtype)

    replace(path, docs(SHOP, WEB_SLICE))
    await eventually(run, "web.shop.svc.cluster.local", "A", NXDOMAIN)
    for name, rdtype in names:
        await assert_nxdomain(run, name, rdtype)
    await assert_nodata(run, "shop.svc.cluster.local")  # the Namespace object keeps it


async def test_deleted_headless_service_loses_every_name(kdns, tmp_path):
    """Deleting a headless Service removes its A, SRV, hostname and PTR names."""
    path = write(tmp_path / "shop.yaml", docs(SHOP, DB, db_slice()))
    run = await kdns(path)
    names = [
        ("db.shop.svc.cluster.local", "A"),
        ("db.shop.svc.cluster.local", "SRV"),
        ("_postgres._tcp.db.shop.svc.cluster.local", "SRV"),
        ("db-0.db.shop.svc.cluster.local", "A"),
        (ptr_name("10.244.0.7"), "PTR"),
    ]
    for name, rdtype in names:
        rcode, data = await answer(run, name, rdtype)
        assert rcode == "NOERROR" and data, (name, rdtype)

    replace(path, docs(SHOP, db_slice()))
    await eventually(run, "db.shop.svc.cluster.local", "A", NXDOMAIN)
    for name, rdtype in names:
        await assert_nxdomain(run, name, rdtype)


async def test_moving_a_service_to_another_file_keeps_it(kdns, tmp_path, caplog):
    """Copy a Service into a new file, then delete it from the old one: it resolves from the new file.

    While both files define it, the second is reported as a duplicate and ignored; once the
    old file no longer defines it, the new file's definition is the only one and must apply.
    """
    d = tmp_path / "cluster"
    old = write(d / "b-old.yaml", docs(SHOP, web("10.96.0.50")))
    new = write(d / "a-new.yaml", SHOP.replace("shop", "extra"))
    run = await kdns(d)

    replace(new, docs(SHOP.replace("shop", "extra"), web("10.96.0.51")))
    await rescanned(caplog, d)
    assert await answer(run, "web.shop.svc.cluster.local") == ok("10.96.0.50")  # duplicate: ignored

    replace(old, SHOP)
    await eventually(run, "web.shop.svc.cluster.local", "A", ok("10.96.0.51"))


async def test_srv_additional_section_follows_a_changed_cluster_ip(kdns, tmp_path):
    """After a clusterIP edit, `_port._proto` SRV answers carry the new address as glue."""
    path = write(tmp_path / "svc.yaml", docs(SHOP, web("10.96.0.50")))
    run = await kdns(path)
    srv = "_http._tcp.web.shop.svc.cluster.local"
    response = await run.query(srv, "SRV")
    assert glue(response) == {"10.96.0.50"}

    replace(path, docs(SHOP, web("10.96.0.51")))
    await eventually(run, "web.shop.svc.cluster.local", "A", ok("10.96.0.51"))
    response = await run.query(srv, "SRV")
    assert glue(response) == {"10.96.0.51"}


async def test_srv_additional_section_follows_a_changed_endpoint_address(kdns, tmp_path):
    """After an endpoint's address changes, headless SRV answers carry the new address as glue."""
    path = write(tmp_path / "db.yaml", docs(SHOP, DB, db_slice("10.244.0.7")))
    run = await kdns(path)
    srv = "_postgres._tcp.db.shop.svc.cluster.local"
    response = await run.query(srv, "SRV")
    assert glue(response) == {"10.244.0.7"}

    replace(path, docs(SHOP, DB, db_slice("10.244.0.8")))
    await eventually(run, "db-0.db.shop.svc.cluster.local", "A", ok("10.244.0.8"))
    response = await run.query(srv, "SRV")
    assert glue(response) == {"10.244.0.8"}


async def test_a_file_dated_in_the_future_is_still_read(kdns, tmp_path):
    """A clock skew between the editor's machine and ours must not freeze a file."""
    path = write(tmp_path / "svc.yaml", docs(SHOP, web("10.96.0.50")))
    run = await kdns(path)
    replace(path, docs(SHOP, web("10.96.0.51")))
    future = time.time() + 3600
    os.utime(path, (future, future))
    await eventually(run, "web.shop.svc.cluster.local", "A", ok("10.96.0.51"))


async def test_a_known_kind_with_a_strange_api_version_is_skipped(kdns, tmp_path):
    """`apiVersion: [v1]` once stopped the server; now it is skipped like any other version."""
    d = tmp_path / "cluster"
    web_file = write(d / "a-web.yaml", web("10.96.0.50"))
    write(d / "b-api.yaml", web("10.96.0.60", name="api"))
    run = await kdns(d)
    replace(web_file, textwrap.dedent(web("10.96.0.50")).replace("apiVersion: v1", "apiVersion: [v1]"))
    await eventually(run, "web.shop.svc.cluster.local", "A", NXDOMAIN)
    assert await answer(run, "api.shop.svc.cluster.local") == ok("10.96.0.60")


# -- what a rescan costs, and paths that change kind ----------------------------------------------


def test_rescan_reads_only_the_files_whose_metadata_changed(tmp_path):
    """With nothing changed a rescan opens no file; a changed file is read alone (the first
    look reads each file once)."""
    d = tmp_path / "cluster"
    paths = [write(d / f"svc-{i:02d}.yaml", web(f"10.96.1.{i + 1}", name=f"s{i}")) for i in range(40)]
    manifests = ManifestSet([str(d)])
    assert len(manifests.load()) == 40 and manifests.files_read == 40
    for _ in range(3):
        assert manifests.rescan() == ([], []) and manifests.files_read == 40
    paths[7].write_text(textwrap.dedent(web("10.96.1.99", name="s7")))
    past = time.time() - 10  # not "being written": read on this look
    os.utime(paths[7], (past, past))
    events, errors = manifests.rescan()
    assert errors == [] and [e.obj.cluster_ips for e in events] == [("10.96.1.99",)]
    assert manifests.files_read == 41


async def test_named_file_that_becomes_a_directory_keeps_its_objects(kdns, tmp_path, caplog):
    """A file named by --manifests replaced by a directory (even one full of manifests) is
    reported once and keeps its Service; a file there again is read again."""
    path = write(tmp_path / "web.yaml", web("10.96.0.50"))
    other = write(tmp_path / "api.yaml", web("10.96.0.60", name="api"))
    run = await kdns(path, other)
    path.unlink()
    write(path / "inner.yaml", web("10.96.0.70", name="inner"))
    replace(other, web("10.96.0.61", name="api"))
    await eventually(run, "api.shop.svc.cluster.local", "A", ok("10.96.0.61"))
    replace(other, web("10.96.0.62", name="api"))
    await eventually(run, "api.shop.svc.cluster.local", "A", ok("10.96.0.62"))
    reports = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and str(path) in r.getMessage()]
    assert reports == [f"{path}: not a regular file (a directory); only regular files are read (keeping its previous contents)"]
    assert await answer(run, "web.shop.svc.cluster.local") == ok("10.96.0.50")
    await assert_nxdomain(run, "inner.shop.svc.cluster.local")
    (path / "inner.yaml").unlink()
    path.rmdir()
    write(path, web("10.96.0.51"))
    await eventually(run, "web.shop.svc.cluster.local", "A", ok("10.96.0.51"))


async def test_configmap_volume_symlinks_are_followed(kdns, tmp_path):
    """A ConfigMap mounted as a volume: each file is a symlink through `..data` to a timestamped
    directory, and an update swaps `..data` in one rename. kdns reads through the links and
    follows the swap."""
    d = tmp_path / "volume"
    write(d / "..2024_01_01" / "web.yaml", web("10.96.0.50"))
    (d / "..data").symlink_to("..2024_01_01")
    (d / "web.yaml").symlink_to("..data/web.yaml")
    run = await kdns(d)
    assert await answer(run, "web.shop.svc.cluster.local") == ok("10.96.0.50")
    write(d / "..2024_01_02" / "web.yaml", web("10.96.0.51"))
    (d / "..data_tmp").symlink_to("..2024_01_02")
    os.replace(d / "..data_tmp", d / "..data")
    await eventually(run, "web.shop.svc.cluster.local", "A", ok("10.96.0.51"))


async def test_named_directory_that_cannot_be_listed_keeps_its_objects(kdns, tmp_path, caplog):
    """A directory named by --manifests that disappears (a volume being remounted) is reported
    once and its files keep their Services; listed again, it is followed again."""
    d = tmp_path / "cluster"
    write(d / "web.yaml", web("10.96.0.50"))
    other = write(tmp_path / "api.yaml", web("10.96.0.60", name="api"))
    run = await kdns(d, other)
    moved = d.rename(tmp_path / "elsewhere")
    for ip in ("10.96.0.61", "10.96.0.62"):  # two passes at least
        replace(other, web(ip, name="api"))
        await eventually(run, "api.shop.svc.cluster.local", "A", ok(ip))
    reports = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert reports == [f"{d}: cannot list: No such file or directory (keeping what it had)"]
    assert await answer(run, "web.shop.svc.cluster.local") == ok("10.96.0.50")
    moved.rename(d)
    replace(d / "web.yaml", web("10.96.0.51"))
    await eventually(run, "web.shop.svc.cluster.local", "A", ok("10.96.0.51"))
