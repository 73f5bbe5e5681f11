"""Follow a live cluster through the Kubernetes API with the official client.

One reflector per resource (Namespaces, Services, EndpointSlices, and Pods when pod records
are verified; Ingresses and IngressClasses, Gateways and routes for their hosts) runs in a
worker thread, because the client blocks:

1. list the collection in pages (`limit`/`continue`) as raw JSON (`_preload_content=False`),
   converting and trimming each object on arrival: the client's model objects would cost
   several times the memory and time;
2. send the difference from what this reflector last sent (Upserts for everything listed,
   Deletes for what vanished) as one batch, then `Synced(kind)` after the first list;
3. watch from the list's resourceVersion with bookmarks and a server-side timeout, sending
   each event as it comes and remembering the last resourceVersion; when a watch ends,
   watch again from there; on 410 Gone (history compacted) list again (step 1).

Each object's latest resourceVersion is kept beside it (`ClusterWatch.locate`, for `kdns
explain`), except for Pods (they make no records, and there can be many).

Batches go into trio through a bounded channel (`trio.from_thread.run(send.send, ...)`), so
a burst of events blocks the reader instead of growing memory. Errors are retried with
exponential back-off and jitter (capped at 5 s), each logged as one line with its cause
and the delay. On shutdown the threads are abandoned (their blocking read cannot be
interrupted portably); a stop flag and read timeouts end them soon after.

The Gateway API's resources are CustomResourceDefinitions a cluster may not have: before
listing one, its reflector asks the API's discovery (`/apis/gateway.networking.k8s.io/v1`,
readable by every client) whether it is served. While it is not, the reflector counts as
synced with no objects (those it had are deleted), says so once at info level, and asks
again every `PROBE_INTERVAL` seconds: CRDs installed later are picked up, and a cluster
without them logs no error.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import trio
import urllib3

from kdns.config import ApiSource
from kdns.model import Delete, Event, Kind, KubeObject, ObjectKey, Synced, Upsert
from kdns.sources import convert
from kdns.sources.backoff import Backoff
from kdns.sources.resources import RESOURCES, Resource
from kdns.sources.select import Scope

__all__ = ["RESOURCES", "ApiSourceError", "ClusterWatch", "Reflector", "Resource", "client_configuration"]

log = logging.getLogger("kdns.kubernetes")

WATCH_TIMEOUT = 60  # seconds the API server keeps one watch open (timeoutSeconds)
PAGE_SIZE = 500
CONNECT_TIMEOUT = 5.0
PROBE_INTERVAL = 10.0  # seconds between two looks for a resource the API server does not serve (yet)


class ApiSourceError(Exception):
    """The API source cannot be configured (a bad kubeconfig, for example)."""


def client_configuration(source: ApiSource):
    """A kubernetes client Configuration of our own (the client's global one is left alone)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    try:
        if source.apiserver:
            cfg.host = source.apiserver.rstrip("/")
        elif source.in_cluster:
            config.load_incluster_config(client_configuration=cfg)
        else:
            config.load_kube_config(config_file=source.kubeconfig, client_configuration=cfg, persist_config=False)
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        where = "in-cluster config" if source.in_cluster else (source.kubeconfig or "kubeconfig")
        raise ApiSourceError(f"{where}: {exc}") from None
    cfg.retries = False  # we retry ourselves, with back-off and one log line per failure
    return cfg


class _HttpError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str | None, message: str | None):
        super().__init__(" ".join(str(part) for part in (f"HTTP {status}", reason, message and f"({message})") if part))
        self.status = status


class _Gone(Exception):
    """The API server no longer has the history we asked for (410): list again."""


class Reflector:
    """List-then-watch of one resource, in a worker thread; sends batches of events."""

    def __init__(self, resource: Resource, cfg, scope: Scope, emit: Callable[[list[Event]], bool], stopping: threading.Event):
        self.resource = resource
        self.scope = scope
        self.emit = emit  # returns False once nobody listens any more
        self.stopping = stopping
        self._cfg = cfg
        self._api_client: Any = None  # kubernetes.client.ApiClient once connected (the client is untyped)
        self._api_exception: type[Any] = _HttpError  # an exception class with .status and .reason
        self._known: dict[ObjectKey, KubeObject] = {}  # what was last sent for each object
        # The latest resourceVersion of each object (for `kdns explain`): written by this
        # reflector's thread, read by the serving thread (single dict operations).
        self.versions: dict[ObjectKey, str] = {}
        self._keep_versions = resource.kind is not Kind.POD
        self._synced = False
        self._response = None
        self.backoff = Backoff(random.uniform)  # when to retry after a failure (kdns/sources/backoff.py)
        self.label_selector = scope.labels.text if scope.labels and resource.kind in (Kind.SERVICE, Kind.ENDPOINT_SLICE) else None
        self.thread: threading.Thread | None = None
        self.running = False
        self.lists = 0  # complete lists (for metrics)
        self.watches = 0  # watches started
        self.last_event: float | None = None  # time.monotonic() of the last event sent
        self._absent = False  # an optional resource the API server did not serve when last asked

    def run(self) -> None:
        """The reflector's life, in its worker thread.

        Requests go through the client's `ApiClient` (kubeconfig, in-cluster, TLS and token
        handling) but not through its generated API classes: those import some 20 MB of
        models and cost most of a second, for objects we never build.
        """
        from kubernetes.client import ApiClient
        from kubernetes.client.exceptions import ApiException

        self._api_exception = ApiException  # what the client raises for TLS failures, for one
        self.thread = threading.current_thread()
        self.running = True
        try:
            with ApiClient(self._cfg) as api_client:
                self._api_client = api_client
                self._loop()
        finally:
            self.running = False

    def stop(self) -> None:
        """Best effort from another thread: unblock a read by closing the open response."""
        response = self._response
        if response is not None:
            try:
                response.shutdown() if hasattr(response, "shutdown") else response.close()
            except Exception as exc:  # noqa: BLE001 - shutting down a socket another thread reads
                log.debug("%s: closing the open response: %s", self.resource.label, exc)

    def _loop(self) -> None:
        version = None
        while not self.stopping.is_set():
            try:
                if version is None:
                    if self.resource.optional and not self._served():
                        if not self._missing():
                            return
                        continue
                    version = self._list()
                    if version is None:
                        return
                version = self._watch(version)
                self.backoff.succeeded()
            except _Gone:
                log.info("%s: resourceVersion too old (410 Gone); listing again", self.resource.label)
                version = None
            except _HttpError as exc:
                if exc.status == 404 and self.resource.optional:
                    version = None  # its CRD went away: discovery says so next
                elif exc.status == 410:
                    log.info("%s: resourceVersion too old (410 Gone); listing again", self.resource.label)
                    version = None
                else:
                    self._back_off(str(exc))
            except self._api_exception as exc:
                self._back_off(f"{exc.status or ''} {exc.reason or ''}".strip() or type(exc).__name__)
            except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError) as exc:
                self._back_off(_cause(exc))
            finally:
                self._response = None

    def _back_off(self, cause: str) -> None:
        if self.stopping.is_set():
            return  # the error is our own shutdown closing the connection
        delay = self.backoff.failed(time.monotonic())
        log.warning("%s: %s; retrying in %.1fs", self.resource.label, cause, delay)
        self.stopping.wait(delay)

    def _served(self) -> bool:
        """Whether discovery lists this (optional) resource under its group and version."""
        response = self._call(path=self.resource.path.rsplit("/", 1)[0], expect_missing=True)
        if response is None:
            return False
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        resources = body.get("resources") if isinstance(body, dict) else None
        return any(isinstance(r, dict) and r.get("name") == self.resource.label for r in resources or ())

    def _missing(self) -> bool:
        """The resource is not served: no objects, synced; look again later. False when
        nobody listens any more."""
        if not self._absent:
            self._absent = True
            log.info("%s: not served by the API server (%s is not installed); looking again every %gs",
                     self.resource.label, self.resource.api_version, PROBE_INTERVAL)
        events: list[Event] = [Delete(key) for key in self._known]
        self._known = {}
        if not self._synced:
            events.append(Synced(self.resource.kind.value))
            self._synced = True
        if events and not self.emit(events):
            return False
        self.backoff.succeeded()
        self.stopping.wait(PROBE_INTERVAL)
        return True

    def _call(self, *, path: str | None = None, expect_missing: bool = False, **params):
        """GET the collection (or `path`) with these query parameters; the streaming urllib3
        response (None for a 404 when `expect_missing`)."""
        if self.label_selector and path is None:
            params["labelSelector"] = self.label_selector
        method, url, headers, _, _ = self._api_client.param_serialize(
            method="GET",
            resource_path=path or self.resource.path,
            query_params=list(params.items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self._api_client.call_api(
            method, url, header_params=headers, _request_timeout=(CONNECT_TIMEOUT, WATCH_TIMEOUT + 15)
        ).response
        if response.status == 404 and expect_missing:
            response.release_conn()
            return None
        if response.status >= 300:
            try:
                body = json.loads(response.data)
                message = body.get("message") if isinstance(body, dict) else None
            except ValueError:
                message = None
            finally:
                response.release_conn()
            raise _HttpError(response.status, response.reason, message)
        self._response = response
        return response

    def _list(self) -> str | None:
        """List every page; send the difference from what we sent before. Returns the RV."""
        objects: dict[ObjectKey, KubeObject] = {}
        versions: dict[ObjectKey, str] = {}
        token = None
        while True:
            response = self._call(limit=PAGE_SIZE, **({"continue": token} if token else {}))
            try:
                page = json.loads(response.data)
            finally:
                response.release_conn()
            for item in page.get("items") or []:
                item.setdefault("apiVersion", self.resource.api_version)
                item.setdefault("kind", self.resource.kind.value)
                obj = self._convert(item)
                if obj is not None:
                    key = obj.key  # (one tuple for both dicts)
                    objects[key] = obj
                    if self._keep_versions:
                        versions[key] = _version(item)
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                break
        self.lists += 1
        self.backoff.succeeded()
        if self._absent:
            self._absent = False
            log.info("%s: served by the API server now; following it", self.resource.label)
        self.last_event = time.monotonic()
        # Only what differs from what was sent before: a relist of an unchanged cluster then
        # costs the serving thread nothing (the comparisons happen here, in this thread).
        known = self._known
        events: list[Event] = [Delete(key) for key in known.keys() - objects.keys()]
        events += [Upsert(obj) for key, obj in objects.items() if known.get(key) != obj]
        self._known = objects
        self.versions = versions
        if not self._synced:
            events.append(Synced(self.resource.kind.value))
            self._synced = True
            log.info("%s: listed %d", self.resource.label, len(objects))
        if events and not self.emit(events):
            return None
        return str(meta.get("resourceVersion") or "")

    def _watch(self, version: str) -> str:
        """Follow events until the server ends the watch; return the last resourceVersion."""
        self.watches += 1
        response = self._call(watch="true", resourceVersion=version, timeoutSeconds=WATCH_TIMEOUT, allowWatchBookmarks="true")
        self.backoff.watch_opened(time.monotonic())
        try:
            for line in _lines(response):
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone()
                    raise ValueError(f"watch error: {obj.get('code')} {obj.get('message')}")
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind == "BOOKMARK":
                    continue
                events = self._event(kind, obj)
                self.last_event = time.monotonic()  # heard from the API, even if nothing changed
                if events and not self.emit(events):
                    break
                if self.stopping.is_set():
                    break
        finally:
            response.release_conn()
        return version

    def _event(self, kind: str, obj: dict) -> list[Event]:
        obj.setdefault("apiVersion", self.resource.api_version)
        obj.setdefault("kind", self.resource.kind.value)
        ident = convert.identify(obj)
        key: ObjectKey = (self.resource.kind, ident[1], ident[2])
        if kind == "DELETED":
            converted = None
        elif kind in ("ADDED", "MODIFIED"):
            converted = self._convert(obj)
        else:
            return []
        if converted is None:
            self.versions.pop(key, None)
            if self._known.pop(key, None) is not None:
                return [Delete(key)]
            return []
        if self._keep_versions:
            self.versions[converted.key] = _version(obj)
        if self._known.get(converted.key) == converted:
            return []  # nothing DNS answers with has changed (status, annotations, ...)
        self._known[converted.key] = converted
        return [Upsert(converted)]

    def _convert(self, item: dict):
        if not self.scope.admits(item, self.resource.kind.value):
            return None
        try:
            return convert.convert(item, pod_names=self.scope.pod_names)
        except convert.ObjectError as exc:
            log.warning("%s: ignoring %s", self.resource.label, exc)
            return None


def _version(obj: dict) -> str:
    meta = obj.get("metadata")
    version = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return version if isinstance(version, str) else ""


def _lines(response):
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


def _cause(exc: BaseException) -> str:
    """A one-line cause for an expected network error (no traceback)."""
    reason = getattr(exc, "reason", None)
    while isinstance(reason, BaseException) and getattr(reason, "reason", None) is not None:
        reason = reason.reason  # type: ignore[attr-defined]  # getattr just found it
    text = str(reason or exc)
    return text.split(": ", 1)[-1] if "object at 0x" in text else text


class ClusterWatch:
    """The reflectors of one API source; `run` until cancelled, then `join` their threads."""

    def __init__(self, source: ApiSource, kinds: list[Kind], scope: Scope):
        self.source = source
        self.kinds = kinds
        self.scope = scope
        self.stopping = threading.Event()
        self.reflectors: list[Reflector] = []

    async def run(self, send: trio.MemorySendChannel) -> None:
        """Run one reflector per kind, each in a worker thread, sending event batches to `send`."""
        cfg = client_configuration(self.source)
        token = trio.lowlevel.current_trio_token()
        stopping = self.stopping

        def emit(events: list[Event]) -> bool:
            try:
                trio.from_thread.run(send.send, events, trio_token=token)
                return True
            except (trio.RunFinishedError, trio.Cancelled, trio.ClosedResourceError, trio.BrokenResourceError):
                stopping.set()
                return False

        self.reflectors = [Reflector(RESOURCES[kind], cfg, self.scope, emit, stopping) for kind in self.kinds]
        limiter = trio.CapacityLimiter(len(self.reflectors))
        try:
            async with trio.open_nursery() as nursery:
                for reflector in self.reflectors:
                    nursery.start_soon(_in_thread, reflector, limiter)
        finally:
            self.stop()

    def locate(self, key: ObjectKey) -> str | None:
        """`resourceVersion N` of the object kdns last heard of with this key, or None."""
        for reflector in self.reflectors:
            if reflector.resource.kind is key[0]:
                version = reflector.versions.get(key)
                return f"resourceVersion {version}" if version else None
        return None

    def stop(self) -> None:
        self.stopping.set()
        for reflector in self.reflectors:
            reflector.stop()

    def stats(self) -> dict[str, tuple[int, int, float | None]]:
        """Per resource: (lists, watch restarts, time.monotonic() of the last event)."""
        return {r.resource.label: (r.lists, max(0, r.watches - r.lists), r.last_event) for r in self.reflectors}

    def join(self, timeout: float) -> None:
        """Wait (blocking) until the reflector threads have noticed the stop, up to `timeout`."""
        deadline = time.monotonic() + timeout
        for reflector in self.reflectors:
            thread = reflector.thread
            if thread is not None and thread is not threading.current_thread():
                while reflector.running and time.monotonic() < deadline:
                    time.sleep(0.01)


async def _in_thread(reflector: Reflector, limiter: trio.CapacityLimiter) -> None:
    await trio.to_thread.run_sync(reflector.run, abandon_on_cancel=True, limiter=limiter)
