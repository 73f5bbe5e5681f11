"""The test API server (testkit/kubeapi/) speaks what the official kubernetes client expects.

These drive `KubeAPI` with the real `kubernetes` client (lists, paging, selectors, watches,
bookmarks, 410s) and with raw http.client for the wire details (chunking, keep-alive), and check
each fault the kdns watch-source tests rely on: fail_next, down/up, drop_watches, hold, stop.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

import kubernetes.client
import kubernetes.config
import kubernetes.watch
import pytest
import trio
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from testkit.kubeapi import KubeAPI

WAIT = 5.0  # bound on every wait


def svc(name: str, ns: str = "shop", labels: dict | None = None, ip: str = "10.96.0.1") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }


class Background:
    """Run `fn` in a daemon thread; `result()` joins with a bound and re-raises its exception."""

    def __init__(self, fn, *args, **kwargs):
        self.value = self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True)
        self.thread.start()

    def _run(self, fn, args, kwargs):
        try:
            self.value = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.error = e

    def done(self) -> bool:
        return not self.thread.is_alive()

    def result(self, timeout: float = WAIT):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "background call did not finish"
        if self.error is not None:
            raise self.error
        return self.value


@pytest.fixture
def api():
    server = KubeAPI().start()
    yield server
    server.stop()
    assert server.errors == []


@pytest.fixture
def client(api, tmp_path, monkeypatch):
    """An ApiClient configured from api.kubeconfig() into its own Configuration."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(api.kubeconfig(tmp_path / "kc")), client_configuration=cfg)
    assert cfg.host == api.url
    c = kubernetes.client.ApiClient(cfg)
    yield c
    c.close()


@pytest.fixture
def core(client):
    return kubernetes.client.CoreV1Api(client)


def names(items) -> list[str]:
    return [i["metadata"]["name"] if isinstance(i, dict) else i.metadata.name for i in items]


def collect(stream, until=None, limit: int = 100) -> list[dict]:
    """Events from a Watch stream until it ends, `until(events)` holds, or `limit` events."""
    events = []
    for ev in stream:
        events.append(ev)
        if (until and until(events)) or len(events) >= limit:
            stream.close()
            break
    return events


def kinds_of(events) -> list[tuple[str, str | None]]:
    return [(e["type"], e["raw_object"]["metadata"].get("name")) for e in events if e["type"] != "BOOKMARK"]


# --- lists -------------------------------------------------------------------------------------


def test_list_pages_raw_json_over_a_consistent_snapshot(api, core):
    for i in range(5):
        api.apply(svc(f"s{i}", ns="a" if i < 3 else "b"))
    rv = api.resource_version
    pages, token = [], None
    while True:
        resp = core.list_service_for_all_namespaces(_preload_content=False, limit=2, _continue=token, _request_timeout=WAIT)
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) == len(resp.data)
        body = json.loads(resp.data)
        assert body["kind"] == "ServiceList" and body["apiVersion"] == "v1"
        assert body["metadata"]["resourceVersion"] == str(rv)  # a string, the snapshot's RV on every page
        assert all("kind" not in i and "apiVersion" not in i for i in body["items"])
        pages.append(names(body["items"]))
        token = body["metadata"].get("continue")
        if len(pages) == 1:
            assert body["metadata"]["remainingItemCount"] == 3
            api.apply(svc("s3", ns="b", ip="10.96.9.9"))  # changes after the first page stay invisible
            api.delete("Service", "b", "s4")
            api.apply(svc("s5", ns="b"))
        if not token:
            break
    assert pages == [["s0", "s1"], ["s2", "s3"], ["s4"]]
    current = core.list_service_for_all_namespaces(_request_timeout=WAIT)
    assert isinstance(current.metadata.resource_version, str)
    assert int(current.metadata.resource_version) == api.resource_version == rv + 3
    assert names(current.items) == ["s0", "s1", "s2", "s3", "s5"]
    assert current.items[3].spec.cluster_ip == "10.96.9.9"
    assert names(core.list_namespaced_service("b", _request_timeout=WAIT).items) == ["s3", "s5"]


def test_stored_objects_get_metadata(api, core):
    stored = api.apply({"kind": "Service", "metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.5"}})
    md = stored["metadata"]
    assert stored["apiVersion"] == "v1" and md["namespace"] == "default"
    assert md["resourceVersion"] == str(api.resource_version) and md["uid"] and md["creationTimestamp"].endswith("Z")
    again = api.apply({"kind": "Service", "metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.6"}})
    assert again["metadata"]["uid"] == md["uid"] and int(again["metadata"]["resourceVersion"]) == int(md["resourceVersion"]) + 1
    ns = api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "namespace": "ignored"}})
    assert "namespace" not in ns["metadata"]
    assert [o["spec"]["clusterIP"] for o in api.objects("Service")] == ["10.96.0.6"]
    got = core.read_namespaced_service("web", "default", _request_timeout=WAIT)
    assert got.kind == "Service" and got.spec.cluster_ip == "10.96.0.6"
    assert core.read_namespace("shop", _request_timeout=WAIT).metadata.name == "shop"
    with pytest.raises(ApiException) as e:
        core.read_namespaced_service("nope", "default", _request_timeout=WAIT)
    assert e.value.status == 404 and json.loads(e.value.body)["reason"] == "NotFound"
    with pytest.raises(KeyError):
        api.delete("Service", "default", "nope")
    with pytest.raises(ValueError):
        api.apply({"kind": "ConfigMap", "metadata": {"name": "x"}})
    with pytest.raises(ValueError):
        api.apply({"apiVersion": "discovery.k8s.io/v1beta1", "kind": "EndpointSlice", "metadata": {"name": "x"}})


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["web1", "web2"]),
        ("app==web", ["web1", "web2"]),
        ("app!=web", ["db", "bare"]),
        ("tier", ["web1", "web2", "db"]),
        ("!tier", ["bare"]),
        ("app in (web,db)", ["web1", "web2", "db"]),
        ("app notin (web)", ["db", "bare"]),
        ("app=web,tier=front", ["web1"]),
        ("app in (web, db), tier notin (back), !gone", ["web1", "web2"]),
        ("example.com/role=edge", ["web2"]),
    ],
)
def test_label_selectors(api, core, selector, expected):
    api.apply(svc("web1", labels={"app": "web", "tier": "front"}))
    api.apply(svc("web2", labels={"app": "web", "tier": "mid", "example.com/role": "edge"}))
    api.apply(svc("db", labels={"app": "db", "tier": "back"}))
    api.apply(svc("bare"))
    got = core.list_service_for_all_namespaces(label_selector=selector, _request_timeout=WAIT)
    assert sorted(names(got.items)) == sorted(expected)


def test_bad_selector_is_a_400(api, core):
    with pytest.raises(ApiException) as e:
        core.list_service_for_all_namespaces(label_selector="app in (web", _request_timeout=WAIT)
    assert e.value.status == 400


def test_other_kinds(api, client, core):
    api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    api.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"}, "status": {"podIP": "10.0.0.7"}})
    api.apply(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": True}, "hostname": "web-0"}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }
    )
    disc = kubernetes.client.DiscoveryV1Api(client)
    slices = disc.list_endpoint_slice_for_all_namespaces(label_selector="kubernetes.io/service-name=web", _request_timeout=WAIT)
    assert slices.kind == "EndpointSliceList" and slices.api_version == "discovery.k8s.io/v1"
    (s,) = slices.items
    assert s.address_type == "IPv4" and s.endpoints[0].addresses == ["10.0.0.7"] and s.endpoints[0].conditions.ready
    assert names(disc.list_namespaced_endpoint_slice("shop", _request_timeout=WAIT).items) == ["web-abc"]
    assert names(disc.list_namespaced_endpoint_slice("other", _request_timeout=WAIT).items) == []
    assert names(core.list_namespace(_request_timeout=WAIT).items) == ["shop"]
    pods = core.list_pod_for_all_namespaces(_request_timeout=WAIT)
    assert pods.items[0].status.pod_ip == "10.0.0.7"
    raw = json.loads(core.list_namespace(_preload_content=False, _request_timeout=WAIT).data)
    assert raw["kind"] == "NamespaceList"


# --- watches -----------------------------------------------------------------------------------


def test_watch_sees_changes_from_another_thread_and_ends_at_its_timeout(api, core):
    api.apply(svc("web"))
    rv = str(api.resource_version)

    def change():
        api.wait_for_watchers("Service")
        api.apply(svc("db"))
        api.apply(svc("web", ip="10.96.0.2"))
        api.delete("Service", "shop", "db")
        api.bookmark()

    changer = Background(change)
    w = kubernetes.watch.Watch()
    started = time.monotonic()
    events = collect(
        w.stream(
            core.list_service_for_all_namespaces, resource_version=rv, timeout_seconds=2, allow_watch_bookmarks=True, _request_timeout=WAIT
        )
    )
    elapsed = time.monotonic() - started
    changer.result()
    assert 1.9 < elapsed < 4, elapsed
    assert kinds_of(events) == [("ADDED", "db"), ("MODIFIED", "web"), ("DELETED", "db")]
    objs = [e for e in events if e["type"] != "BOOKMARK"]
    assert isinstance(objs[1]["object"], kubernetes.client.V1Service) and objs[1]["object"].spec.cluster_ip == "10.96.0.2"
    assert objs[1]["raw_object"]["kind"] == "Service" and objs[1]["raw_object"]["apiVersion"] == "v1"
    assert [int(e["raw_object"]["metadata"]["resourceVersion"]) for e in objs] == [int(rv) + 1, int(rv) + 2, int(rv) + 3]
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks, "bookmark() and the 1 s timer both send BOOKMARKs"
    assert bookmarks[0]["raw_object"] == {"kind": "Service", "apiVersion": "v1", "metadata": {"resourceVersion": str(int(rv) + 3)}}
    assert w.resource_version == str(api.resource_version)
    assert api.watchers("Service") == 0


def test_bookmarks_only_when_asked(api, core):
    api.apply(svc("web"))
    w = kubernetes.watch.Watch()
    stream = w.stream(
        core.list_service_for_all_namespaces, resource_version=str(api.resource_version), timeout_seconds=1, _request_timeout=WAIT
    )
    api.bookmark()
    assert collect(stream) == []


def test_watch_resumes_from_a_resource_version(api, core):
    api.apply(svc("a"))
    rv_a = str(api.resource_version)
    api.apply(svc("b"))
    api.apply(svc("c", ns="other"))
    api.delete("Service", "shop", "a")
    w = kubernetes.watch.Watch()
    events = collect(
        w.stream(core.list_service_for_all_namespaces, resource_version=rv_a, _request_timeout=WAIT), until=lambda evs: len(evs) == 3
    )
    assert kinds_of(events) == [("ADDED", "b"), ("ADDED", "c"), ("DELETED", "a")]
    # namespaced: only shop's history
    events = collect(w.stream(core.list_namespaced_service, "shop", resource_version=rv_a, timeout_seconds=1, _request_timeout=WAIT))
    assert kinds_of(events) == [("ADDED", "b"), ("DELETED", "a")]
    # from the current RV: nothing until something happens
    stream = w.stream(core.list_service_for_all_namespaces, resource_version=str(api.resource_version), _request_timeout=WAIT)
    api.apply(svc("d"))
    assert kinds_of(collect(stream, until=lambda evs: True)) == [("ADDED", "d")]


def test_watch_without_resource_version_starts_with_the_current_state(api, core):
    api.apply(svc("web", labels={"app": "web"}))
    api.apply(svc("db", labels={"app": "db"}))
    api.apply(svc("web", labels={"app": "web"}, ip="10.96.0.3"))
    w = kubernetes.watch.Watch()
    stream = w.stream(core.list_service_for_all_namespaces, label_selector="app=web", _request_timeout=WAIT)
    first = next(stream)
    assert first["type"] == "ADDED" and first["object"].spec.cluster_ip == "10.96.0.3"
    api.apply(svc("db", labels={"app": "db"}))  # filtered out
    api.apply(svc("web2", labels={"app": "web"}))
    assert kinds_of(collect(stream, until=lambda evs: True)) == [("ADDED", "web2")]
    stream = w.stream(core.list_service_for_all_namespaces, resource_version="0", timeout_seconds=1, _request_timeout=WAIT)
    assert kinds_of(collect(stream)) == [("ADDED", "db"), ("ADDED", "web"), ("ADDED", "web2")]


def test_selected_watch_sees_objects_enter_and_leave_the_selection(api, core):
    """Like the apiserver's watch cache: relabelling out of a selector is DELETED, into it ADDED."""
    api.apply(svc("web", labels={"app": "web"}))
    rv = str(api.resource_version)
    api.apply(svc("web", labels={"app": "old"}))
    api.apply(svc("web", labels={"app": "web"}, ip="10.96.0.4"))
    api.apply(svc("web", labels={"app": "web"}, ip="10.96.0.5"))
    api.delete("Service", "shop", "web")
    w = kubernetes.watch.Watch()
    events = collect(
        w.stream(core.list_service_for_all_namespaces, label_selector="app=web", resource_version=rv, _request_timeout=WAIT),
        until=lambda evs: len(evs) == 4,
    )
    assert kinds_of(events) == [("DELETED", "web"), ("ADDED", "web"), ("MODIFIED", "web"), ("DELETED", "web")]
    gone = events[0]["raw_object"]["metadata"]
    assert gone["labels"] == {"app": "web"} and gone["resourceVersion"] == str(int(rv) + 1)  # old state, event's RV


def test_watch_from_a_compacted_resource_version_is_410(api, core):
    api.apply(svc("a"))
    old = str(api.resource_version)
    api.apply(svc("b"))
    api.compact()
    w = kubernetes.watch.Watch()
    with pytest.raises(ApiException) as e:  # with timeout_seconds the client raises the ERROR event at once
        collect(w.stream(core.list_service_for_all_namespaces, resource_version=old, timeout_seconds=5, _request_timeout=WAIT))
    assert e.value.status == 410 and e.value.reason.startswith("Expired: too old resource version: ")
    assert sum(1 for r in api.requests if r[2].get("watch") == "true") == 1
    with pytest.raises(ApiException) as e:  # without it, the client retries once from the same RV, then raises
        collect(w.stream(core.list_service_for_all_namespaces, resource_version=old, _request_timeout=WAIT))
    assert e.value.status == 410
    assert sum(1 for r in api.requests if r[2].get("watch") == "true") == 3
    # the compaction point itself and later still work
    stream = w.stream(core.list_service_for_all_namespaces, resource_version=str(api.resource_version), _request_timeout=WAIT)
    api.apply(svc("c"))
    assert kinds_of(collect(stream, until=lambda evs: True)) == [("ADDED", "c")]


def test_continue_token_older_than_compaction_is_410(api, core):
    for name in "abc":
        api.apply(svc(name))
    first = core.list_service_for_all_namespaces(limit=1, _request_timeout=WAIT)
    api.apply(svc("d"))
    api.compact()
    with pytest.raises(ApiException) as e:
        core.list_service_for_all_namespaces(limit=1, _continue=first.metadata._continue, _request_timeout=WAIT)
    assert e.value.status == 410
    body = json.loads(e.value.body)
    assert body["reason"] == "Expired" and body["metadata"]["continue"]
    # the inconsistent continuation token from the Status goes on from the next key, current state
    rest = core.list_service_for_all_namespaces(_continue=body["metadata"]["continue"], _request_timeout=WAIT)
    assert names(rest.items) == ["b", "c", "d"]


def test_wire_format(api):
    """Raw HTTP: Content-Length and keep-alive on lists, chunked JSON lines on watches."""
    api.apply(svc("web"))
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=WAIT)
    try:
        conn.request("GET", "/api/v1/services")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200 and resp.getheader("Content-Type") == "application/json"
        assert int(resp.getheader("Content-Length")) == len(body)
        sock = conn.sock
        conn.request("GET", "/api/v1/nope")
        resp = conn.getresponse()
        assert resp.status == 404 and json.loads(resp.read())["kind"] == "Status"
        conn.request("GET", f"/api/v1/namespaces/shop/services?watch=1&resourceVersion={api.resource_version - 1}&timeoutSeconds=1")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
        line = resp.readline()
        assert json.loads(line)["type"] == "ADDED" and json.loads(line)["object"]["kind"] == "Service"
        assert resp.read() == b""  # clean end at timeoutSeconds
        conn.request("GET", "/api/v1/services?watch=true&resourceVersion=0&timeoutSeconds=1&limit=1")
        resp = conn.getresponse()
        resp.read()
        assert conn.sock is sock, "the connection was kept alive throughout"
        api.compact()
        conn.request("GET", "/api/v1/services?watch=true&resourceVersion=1")
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read()) == {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: 1 ({api.resource_version})",
                "reason": "Expired",
                "code": 410,
            },
        }
    finally:
        conn.close()
    assert [r[0:2] for r in api.requests[:2]] == [("GET", "/api/v1/services"), ("GET", "/api/v1/nope")]


# --- faults ------------------------------------------------------------------------------------


def test_fail_next(api, core):
    api.apply(svc("web"))
    api.fail_next(2)
    for _ in range(2):
        with pytest.raises(ApiException) as e:
            core.list_service_for_all_namespaces(_request_timeout=WAIT)
        assert e.value.status == 500
        assert json.loads(e.value.body) == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "injected",
            "reason": "InternalError",
            "code": 500,
        }
    assert names(core.list_service_for_all_namespaces(_request_timeout=WAIT).items) == ["web"]
    api.fail_next(1, 403, kinds=("Pod",))
    assert names(core.list_service_for_all_namespaces(_request_timeout=WAIT).items) == ["web"]
    w = kubernetes.watch.Watch()
    with pytest.raises(ApiException) as e:  # a watch request fails the same way, before any event
        collect(w.stream(core.list_pod_for_all_namespaces, timeout_seconds=1, _request_timeout=WAIT))
    assert e.value.status == 403 and json.loads(e.value.body)["reason"] == "Forbidden"
    assert core.list_pod_for_all_namespaces(_request_timeout=WAIT).items == []


def test_down_and_up(api, core):
    api.apply(svc("web"))
    port, rv = api.port, str(api.resource_version)
    assert names(core.list_service_for_all_namespaces(_request_timeout=WAIT).items) == ["web"]  # a pooled connection
    api.down()
    with pytest.raises(urllib3.exceptions.MaxRetryError) as e:  # not an ApiException
        core.list_service_for_all_namespaces(_request_timeout=WAIT)
    assert isinstance(e.value.reason, urllib3.exceptions.NewConnectionError)
    api.apply(svc("db"))  # the store works while down
    api.up()
    assert api.port == port
    assert names(core.list_service_for_all_namespaces(_request_timeout=WAIT).items) == ["db", "web"]
    w = kubernetes.watch.Watch()
    events = collect(w.stream(core.list_service_for_all_namespaces, resource_version=rv, _request_timeout=WAIT), until=lambda e: True)
    assert kinds_of(events) == [("ADDED", "db")]


def test_drop_watches_ends_the_stream_abruptly(api, core):
    api.apply(svc("web"))
    w = kubernetes.watch.Watch()
    stream = w.stream(core.list_service_for_all_namespaces, _request_timeout=WAIT)
    assert next(stream)["type"] == "ADDED"
    api.wait_for_watchers("Service")
    api.drop_watches()
    with pytest.raises(urllib3.exceptions.ProtocolError, match="ended prematurely"):
        next(stream)
    assert api.watchers() == 0
    assert names(core.list_service_for_all_namespaces(_request_timeout=WAIT).items) == ["web"]  # other requests still work


def test_down_ends_open_watches_too(api, core):
    w = kubernetes.watch.Watch()
    stream = w.stream(core.list_service_for_all_namespaces, allow_watch_bookmarks=True, _request_timeout=WAIT)
    reader = Background(collect, stream)
    api.wait_for_watchers("Service")
    api.down()
    with pytest.raises(urllib3.exceptions.ProtocolError):
        reader.result()
    api.up()


def test_hold_blocks_lists_until_release(api, core):
    api.apply(svc("web"))
    api.hold(["Service"])
    lister = Background(core.list_service_for_all_namespaces, _request_timeout=WAIT)
    api.wait_for_held()
    assert names(core.list_namespace(_request_timeout=WAIT).items) == []  # other kinds are not held
    w = kubernetes.watch.Watch()  # nor are watches
    assert kinds_of(collect(w.stream(core.list_service_for_all_namespaces, timeout_seconds=1, _request_timeout=WAIT))) == [("ADDED", "web")]
    assert not lister.done()
    api.release()
    assert names(lister.result().items) == ["web"]


def test_stop_closes_everything_promptly(tmp_path):
    api = KubeAPI().start()
    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(api.kubeconfig(tmp_path / "kc")), client_configuration=cfg)
    with kubernetes.client.ApiClient(cfg) as client:
        core = kubernetes.client.CoreV1Api(client)
        core.list_namespace(_request_timeout=WAIT)  # leaves an idle keep-alive connection
        watcher = Background(collect, kubernetes.watch.Watch().stream(core.list_service_for_all_namespaces, _request_timeout=WAIT))
        api.hold()
        lister = Background(core.list_pod_for_all_namespaces, _request_timeout=WAIT)
        api.wait_for_watchers("Service")
        api.wait_for_held()
        started = time.monotonic()
        api.stop()
        api.stop()  # idempotent
        assert time.monotonic() - started < 1.0
        with pytest.raises(urllib3.exceptions.ProtocolError):
            watcher.result()
        with pytest.raises(urllib3.exceptions.HTTPError):  # the held list's connection drops, then nothing listens
            lister.result()
        assert not [t for t in threading.enumerate() if t.name.startswith("kubeapi")]
    with pytest.raises(RuntimeError):
        api.up()
    assert api.errors == []


def test_wait_for_watchers_times_out(api):
    with pytest.raises(TimeoutError):
        api.wait_for_watchers("Service", timeout=0.1)


def test_kubeconfig_is_a_loadable_file(api, tmp_path):
    path = api.kubeconfig(tmp_path / "sub" / "kc")
    assert isinstance(path, Path) and path.exists()
    contexts, active = kubernetes.config.list_kube_config_contexts(config_file=str(path))
    assert active["context"]["cluster"] == "kubeapi" and len(contexts) == 1


async def test_usable_from_trio(api, client):
    """The server runs in its own threads: a trio test can watch (in a thread) and change objects."""
    core = kubernetes.client.CoreV1Api(client)
    api.apply(svc("web"))
    rv = str(api.resource_version)
    w = kubernetes.watch.Watch()

    def watch():
        return collect(
            w.stream(core.list_service_for_all_namespaces, resource_version=rv, _request_timeout=WAIT), until=lambda evs: len(evs) == 2
        )

    result = []

    async def watcher():
        result.append(await trio.to_thread.run_sync(watch))

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher)
            await trio.to_thread.run_sync(api.wait_for_watchers, "Service")
            api.apply(svc("db"))
            api.delete("Service", "shop", "web")
    assert kinds_of(result[0]) == [("ADDED", "db"), ("DELETED", "web")]
