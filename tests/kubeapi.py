"""An in-memory Kubernetes API server on loopback, for testing kdns's watch source.

`KubeAPI().start()` serves plain HTTP/1.1 on 127.0.0.1 from its own threads, so it works the
same from sync tests and from trio tests. It speaks the part of the API that a list+watch client
uses, the way kube-apiserver does:

- collections of Namespace, Service, Pod (core v1), EndpointSlice (discovery.k8s.io/v1),
  Ingress and IngressClass (networking.k8s.io/v1), cluster-wide and per namespace, plus
  single-object GETs; and the Gateway API's Gateway, HTTPRoute, GRPCRoute and TLSRoute
  (gateway.networking.k8s.io/v1), custom resources served only once `install_crds()` was
  called (404 before, as a cluster without the CRDs);
- discovery: `/api`, `/apis`, `/api/v1` and `/apis/<group>/<version>` list what is served
  (a group/version with nothing served is 404);
- lists with `limit`/`continue` paging over a consistent snapshot (the token carries the snapshot
  resourceVersion; one older than the last `compact()` answers 410 Expired), `labelSelector`
  (equality, existence, set-based) and the metadata.name/metadata.namespace field selectors;
  list items carry no kind/apiVersion, the list's metadata.resourceVersion is a string;
- watches as a chunked stream of one JSON event per line: replay of the history after
  `resourceVersion`, synthetic ADDED events when it is absent or "0" (or with
  sendInitialEvents=true), 410 Expired as an ERROR event for a compacted resourceVersion,
  `timeoutSeconds` (clean end), BOOKMARK events when `allowWatchBookmarks=true` (every
  second and on `bookmark()`); a label-selected watch sees an object relabelled out of its
  selector as DELETED and into it as ADDED, like the apiserver's watch cache;
- keep-alive connections: every non-watch response has a Content-Length, and a watch that ends
  cleanly leaves its connection reusable.

Faults for tests: `compact()`, `fail_next()`, `drop_watches()`, `down()`/`up()`, `hold()`/`release()`;
`install_crds()`/`uninstall_crds()` for the Gateway API's resources.
Every request is recorded in `requests`; `wait_for_watchers()`/`watchers()` and `wait_for_held()`
let a test sequence faults after the client got that far. Stdlib only.
"""

from __future__ import annotations

import base64
import bisect
import copy
import json
import re
import select
import socket
import socketserver
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

__all__ = ["KINDS", "KubeAPI"]

HOST = "127.0.0.1"
BOOKMARK_INTERVAL = 1.0  # seconds between automatic bookmarks on a watch that allows them
POLL = 0.1  # how often a waiting handler re-checks drops, stop and timeouts
JOIN_TIMEOUT = 2.0  # how long down()/stop() wait for handler threads to finish


@dataclass(frozen=True)
class Kind:
    kind: str
    api_version: str
    plural: str
    namespaced: bool
    crd: bool = False  # a custom resource: served only while its CRD is installed

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.api_version == "v1" else "/apis/" + self.api_version


KINDS: dict[str, Kind] = {
    k.kind: k
    for k in (
        Kind("Namespace", "v1", "namespaces", False),
        Kind("Service", "v1", "services", True),
        Kind("Pod", "v1", "pods", True),
        Kind("EndpointSlice", "discovery.k8s.io/v1", "endpointslices", True),
        Kind("Ingress", "networking.k8s.io/v1", "ingresses", True),
        Kind("IngressClass", "networking.k8s.io/v1", "ingressclasses", False),
        Kind("Gateway", "gateway.networking.k8s.io/v1", "gateways", True, crd=True),
        Kind("HTTPRoute", "gateway.networking.k8s.io/v1", "httproutes", True, crd=True),
        Kind("GRPCRoute", "gateway.networking.k8s.io/v1", "grpcroutes", True, crd=True),
        Kind("TLSRoute", "gateway.networking.k8s.io/v1", "tlsroutes", True, crd=True),
    )
}
CRDS = tuple(k.kind for k in KINDS.values() if k.crd)
_BY_NAME = {**{k.lower(): v for k, v in KINDS.items()}, **{v.plural: v for v in KINDS.values()}}
_PREFIXES = {k.prefix for k in KINDS.values()}

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new list without "
    "the continue parameter, or use the continue token in this response to retrieve the remainder of the results. "
    "Continuing with the provided token results in an inconsistent list - objects that were created, modified, or "
    "deleted between the time the first chunk was returned and now may show up in the list."
)


def _kind(name: str | None) -> Kind:
    """A Kind by kind name ("Service"), lowercase name or plural ("services")."""
    k = KINDS.get(name or "") or _BY_NAME.get((name or "").lower())
    if k is None:
        raise ValueError(f"unsupported kind {name!r}; known: {', '.join(KINDS)}")
    return k


def status(code: int, message: str, reason: str | None = None, **extra: Any) -> dict:
    """A meta/v1 Status object as kube-apiserver sends with errors."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": extra.pop("metadata", {}),
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, ""),
        "code": code,
    }
    body.update(extra)
    return body


# --- selectors -----------------------------------------------------------------------------

_QNAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_KEY = re.compile(rf"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_QNAME}")
_VALUE = re.compile(rf"({_QNAME})?")
_SET = re.compile(r"(\S+?)\s+(in|notin)\s*\((.*)\)", re.DOTALL)


def _split_terms(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    terms, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced parenthesis in {text!r}")
        if ch == "," and depth == 0:
            terms.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ValueError(f"unbalanced parenthesis in {text!r}")
    terms.append("".join(cur))
    return [t.strip() for t in terms]


def _check(pattern: re.Pattern, text: str, what: str) -> str:
    if not pattern.fullmatch(text):
        raise ValueError(f"invalid label {what}: {text!r}")
    return text


def parse_label_selector(text: str | None) -> Callable[[dict], bool]:
    """A predicate over a labels dict; ValueError for a malformed selector.

    Supports `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`, ANDed by commas.
    """
    reqs: list[Callable[[dict], bool]] = []
    for term in _split_terms(text or ""):
        if not term:
            if (text or "").strip():
                raise ValueError(f"empty term in label selector {text!r}")
            continue
        m = _SET.fullmatch(term)
        if m:
            key = _check(_KEY, m.group(1), "key")
            values = frozenset(_check(_VALUE, v.strip(), "value") for v in m.group(3).split(","))
            if m.group(2) == "in":
                reqs.append(lambda lb, k=key, vs=values: k in lb and lb[k] in vs)
            else:
                reqs.append(lambda lb, k=key, vs=values: k not in lb or lb[k] not in vs)
        elif term.startswith("!"):
            key = _check(_KEY, term[1:].strip(), "key")
            reqs.append(lambda lb, k=key: k not in lb)
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            _check(_KEY, key, "key"), _check(_VALUE, value, "value")
            reqs.append(lambda lb, k=key, v=value: lb.get(k) != v)
        elif "=" in term:
            key, value = (s.strip() for s in (term.split("==", 1) if "==" in term else term.split("=", 1)))
            _check(_KEY, key, "key"), _check(_VALUE, value, "value")
            reqs.append(lambda lb, k=key, v=value: k in lb and lb[k] == v)
        else:
            key = _check(_KEY, term, "key")
            reqs.append(lambda lb, k=key: k in lb)
    return lambda labels: all(r(labels) for r in reqs)


def parse_field_selector(text: str | None) -> Callable[[dict], bool]:
    """metadata.name and metadata.namespace with =, == and !=; other fields are ignored."""
    reqs: list[Callable[[dict], bool]] = []
    for term in _split_terms(text or ""):
        if not term:
            continue
        neg = "!=" in term
        key, value = (s.strip() for s in re.split(r"!=|==|=", term, maxsplit=1)) if re.search("=", term) else (term, "")
        if key in ("metadata.name", "metadata.namespace"):
            attr = key.split(".", 1)[1]
            reqs.append(lambda md, a=attr, v=value, n=neg: (md.get(a, "") == v) != n)
    return lambda md: all(r(md) for r in reqs)


# --- the store -----------------------------------------------------------------------------


@dataclass
class _Event:
    rv: int
    kind: str
    type: str
    obj: dict  # the state after the event (the last state for DELETED); never mutated
    prev: dict | None  # the state before it, to rebuild list snapshots


@dataclass(eq=False)
class _Watcher:
    kind: str
    namespace: str | None
    labels: Callable[[dict], bool]
    fields: Callable[[dict], bool]
    bookmarks: bool
    queue: deque = field(default_factory=deque)  # (type, object) pairs to send, in order
    dropped: bool = False
    ready: bool = False  # response headers sent: what wait_for_watchers() and watchers() count

    def passes(self, obj: dict) -> bool:
        md = obj.get("metadata", {})
        return (self.namespace is None or md.get("namespace") == self.namespace) and self.labels(md.get("labels") or {}) and self.fields(md)

    def convert(self, ev: _Event) -> tuple[str, dict] | None:
        """The event this watch sees, as the apiserver's watch cache decides it (cacheWatcher.convertToWatchEvent):
        an update that makes an object start matching the selectors is ADDED, one that makes it stop
        matching is DELETED (the previous state with the event's resourceVersion)."""
        if ev.kind != self.kind:
            return None
        if ev.type == "DELETED":
            return ("DELETED", ev.obj) if self.passes(ev.obj) else None
        now, before = self.passes(ev.obj), ev.prev is not None and self.passes(ev.prev)
        if now:
            return ("MODIFIED" if before else "ADDED", ev.obj)
        if before:
            last = copy.deepcopy(ev.prev)
            last["metadata"]["resourceVersion"] = str(ev.rv)
            return ("DELETED", last)
        return None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(obj: dict) -> tuple[str, str]:
    md = obj["metadata"]
    return (md.get("namespace", ""), md["name"])


def _encode_continue(rv: int, start: tuple[str, str]) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": list(start)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        ns, name = raw["start"]
        return int(raw["rv"]), (str(ns), str(name))
    except (ValueError, TypeError, KeyError) as e:  # bad base64, JSON or shape
        raise ValueError(f"invalid continue token: {e}") from None


# --- HTTP ------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # KubeAPI joins its handler threads itself, with a bound
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, api: KubeAPI, port: int):
        self.api = api
        self.closing = False
        self.conns: set[socket.socket] = set()
        super().__init__((HOST, port), _Handler)

    def server_bind(self):
        # HTTPServer.server_bind would do a reverse DNS lookup (socket.getfqdn): skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address):
        t = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True, name=f"kubeapi-{client_address[1]}"
        )
        with self.api._lock:
            self.api._threads.add(t)
        t.start()

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.api._lock:
                self.api._threads.discard(threading.current_thread())

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or self.closing:
            return  # the peer went away, or we are closing connections on purpose
        self.api.errors.append(exc)
        traceback.print_exc()


def _abort(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubeapi-test"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format, *args):
        pass

    def version_string(self) -> str:
        return self.server_version

    def setup(self):
        super().setup()
        with self.server.api._lock:
            if self.server.closing:
                _abort(self.connection)
            self.server.conns.add(self.connection)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self.server.api._lock:
                self.server.conns.discard(self.connection)

    # -- responses --

    def _send_json(self, code: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-cache, private")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def _send_status(self, code: int, message: str, reason: str | None = None, **extra: Any) -> None:
        self._send_json(code, status(code, message, reason, **extra))

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))

    def _abort(self) -> None:
        """Close the connection without finishing the response."""
        _abort(self.connection)
        self.close_connection = True

    def _client_gone(self) -> bool:
        """Has the peer closed (or reset) its side? Checked while a watch is idle."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # -- dispatch --

    def do_GET(self):
        api = self.server.api
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        route = _route(url.path)
        with api._lock:
            api.requests.append(("GET", url.path, dict(params)))
            injected = api._take_failure(route[0].kind if route else None)
            if route is not None and route[0].crd and route[0].kind not in api._crds:
                route = None  # its CRD is not installed: the API server does not know the path
            discovery = api._discovery(url.path) if route is None else None
        if injected is not None:
            code, retry_after = injected
            self._send_json(code, status(code, "injected"), {"Retry-After": str(retry_after)} if retry_after is not None else None)
            return
        if route is None:
            if url.path == "/version":
                self._send_json(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0-kdns-test"})
            elif discovery is not None:
                self._send_json(200, discovery)
            else:
                self._send_status(404, "the server could not find the requested resource")
            return
        kind, namespace, name = route
        if name is not None:
            self._get(kind, namespace, name)
        elif params.get("watch", "") in _TRUE:
            self._watch(kind, namespace, params)
        else:
            self._list(kind, namespace, params)

    def _other(self):
        api = self.server.api
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with api._lock:
            api.requests.append((self.command, url.path, {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}))
        self._send_status(
            405, f"the server does not allow this method on the requested resource ({self.command}; this test server is read-only)"
        )

    do_POST = do_PUT = do_PATCH = do_DELETE = _other

    # -- verbs --

    def _get(self, kind: Kind, namespace: str | None, name: str) -> None:
        api = self.server.api
        with api._lock:
            obj = api._store[kind.kind].get((namespace or "", name))
        if obj is None:
            self._send_status(404, f'{kind.plural} "{name}" not found', details={"name": name, "kind": kind.plural})
        else:
            self._send_json(200, obj)

    def _list(self, kind: Kind, namespace: str | None, params: dict[str, str]) -> None:
        api = self.server.api
        try:
            labels = parse_label_selector(params.get("labelSelector"))
            fields = parse_field_selector(params.get("fieldSelector"))
            limit = int(params.get("limit") or 0)
            token = params.get("continue") or ""
            start = None
            if token:
                snap_rv, start = _decode_continue(token)
            rv_param = params.get("resourceVersion") or ""
            exact_rv = int(rv_param) if params.get("resourceVersionMatch") == "Exact" and rv_param not in ("", "0") else None
        except ValueError as e:
            self._send_status(400, str(e))
            return
        if not api._wait_unheld(self.server, kind.kind):
            self._abort()  # stopped or brought down while held
            return
        expired = None
        with api._lock:
            if token:
                if snap_rv < api._compacted:
                    expired = status(410, _CONTINUE_EXPIRED, "Expired", metadata={"continue": _encode_continue(api._rv, start)})
                list_rv = snap_rv
            elif exact_rv is not None:
                if exact_rv < api._compacted:
                    expired = status(410, f"too old resource version: {exact_rv} ({api._compacted})", "Expired")
                list_rv = min(exact_rv, api._rv)
            else:
                list_rv = api._rv
            objs = api._snapshot(kind.kind, list_rv) if expired is None else {}
        if expired is not None:
            self._send_json(410, expired)
            return
        items = [
            o
            for key, o in sorted(objs.items())
            if (namespace is None or key[0] == namespace)
            and (start is None or key > start)
            and labels(o["metadata"].get("labels") or {})
            and fields(o["metadata"])
        ]
        meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if limit > 0 and len(items) > limit:
            rest = len(items) - limit
            items = items[:limit]
            meta["continue"] = _encode_continue(list_rv, _key(items[-1]))
            if not params.get("labelSelector") and not params.get("fieldSelector"):
                meta["remainingItemCount"] = rest
        body = {
            "kind": kind.list_kind,
            "apiVersion": kind.api_version,
            "metadata": meta,
            "items": [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items],
        }
        self._send_json(200, body)

    def _watch(self, kind: Kind, namespace: str | None, params: dict[str, str]) -> None:
        api = self.server.api
        srv = self.server
        try:
            labels = parse_label_selector(params.get("labelSelector"))
            fields = parse_field_selector(params.get("fieldSelector"))
            rv_param = params.get("resourceVersion") or ""
            from_rv = int(rv_param) if rv_param not in ("", "0") else None
            timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        except ValueError as e:
            self._send_status(400, str(e))
            return
        bookmarks = params.get("allowWatchBookmarks", "") in _TRUE
        if "sendInitialEvents" in params:
            initial = params["sendInitialEvents"] in _TRUE
            end_bookmark = initial and bookmarks
        else:
            initial, end_bookmark = from_rv is None, False
        watcher = _Watcher(kind.kind, namespace, labels, fields, bookmarks)
        error = None
        with api._lock:
            if initial:
                for _, obj in sorted(api._store[kind.kind].items()):
                    if watcher.passes(obj):
                        watcher.queue.append(("ADDED", obj))
                if end_bookmark:
                    watcher.queue.append(("BOOKMARK", api._bookmark(kind, initial_end=True)))
            elif from_rv is not None and from_rv < api._compacted:
                error = status(410, f"too old resource version: {from_rv} ({api._compacted})", "Expired")
            elif from_rv is not None:
                log = api._log
                for ev in log[bisect.bisect_right(api._log_rvs, from_rv) :]:
                    seen = watcher.convert(ev)
                    if seen is not None:
                        watcher.queue.append(seen)
            if error is None:
                api._watchers.add(watcher)
                api._cond.notify_all()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-cache, private")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if error is not None:
                self._chunk(json.dumps({"type": "ERROR", "object": error}, separators=(",", ":")).encode() + b"\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            with api._lock:
                watcher.ready = True
                api._cond.notify_all()
            deadline = time.monotonic() + timeout if timeout is not None else None
            next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
            while True:
                end = None
                with api._lock:
                    batch = list(watcher.queue)
                    watcher.queue.clear()
                    now = time.monotonic()
                    if srv.closing or watcher.dropped:
                        end = "abort"
                    elif not batch:
                        if deadline is not None and now >= deadline:
                            end = "clean"
                        elif bookmarks and now >= next_bookmark:
                            batch = [("BOOKMARK", api._bookmark(kind))]
                            next_bookmark = now + BOOKMARK_INTERVAL
                        else:
                            wake = min(POLL, (deadline - now) if deadline is not None else POLL)
                            api._cond.wait(max(wake, 0.0))
                    if end:  # unregister before the client can see the end
                        api._watchers.discard(watcher)
                        api._cond.notify_all()
                if end == "abort":
                    self._abort()
                    return
                if end == "clean":
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if batch:
                    for type_, obj in batch:
                        self._chunk(json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n")
                elif self._client_gone():
                    self.close_connection = True
                    return
        except OSError:
            self.close_connection = True
        finally:
            with api._lock:
                api._watchers.discard(watcher)
                api._cond.notify_all()


def _route(path: str) -> tuple[Kind, str | None, str | None] | None:
    """(kind, namespace or None for all, name or None for the collection), or None if unknown."""
    for prefix in _PREFIXES:
        if path.startswith(prefix + "/"):
            parts = path[len(prefix) + 1 :].rstrip("/").split("/")
            break
    else:
        return None
    kinds = {k.plural: k for k in KINDS.values() if k.prefix == prefix}
    if len(parts) == 1 and parts[0] in kinds:  # /api/v1/services, /api/v1/namespaces
        return kinds[parts[0]], None, None
    if len(parts) == 2 and parts[0] in kinds and not kinds[parts[0]].namespaced and parts[1]:  # one Namespace, IngressClass
        return kinds[parts[0]], None, parts[1]
    if len(parts) in (3, 4) and parts[0] == "namespaces" and parts[1]:
        k = kinds.get(parts[2])
        if k is not None and k.namespaced:
            return k, parts[1], (parts[3] or None) if len(parts) == 4 else None
    return None


# --- the API ---------------------------------------------------------------------------------


class KubeAPI:
    """An in-memory kube-apiserver on 127.0.0.1 (see the module docstring)."""

    def __init__(self, port: int = 0):
        self._port = port
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._store: dict[str, dict[tuple[str, str], dict]] = {k: {} for k in KINDS}
        self._rv = 1  # the real server never hands out "0", which means "any" on the wire
        self._compacted = 0
        self._log: list[_Event] = []
        self._log_rvs: list[int] = []
        self._watchers: set[_Watcher] = set()
        self._fail: list = [0, 500, None, None]  # count, status, kinds, retry_after
        self._held: frozenset[str] | None = None
        self._held_waiting = 0
        self._crds: set[str] = set()  # the custom resource kinds served (install_crds)
        self._srv: _HTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._threads: set[threading.Thread] = set()
        self._stopped = False
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.errors: list[BaseException] = []  # unexpected exceptions in handler threads

    # -- lifecycle --

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._port}"

    def start(self) -> Self:
        self.up()
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def up(self) -> None:
        """Listen (again) on the same port; objects and history are kept."""
        if self._stopped:
            raise RuntimeError("KubeAPI was stopped")
        if self._srv is not None:
            return
        srv = _HTTPServer(self, self._port)
        self._port = srv.server_address[1]
        thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name=f"kubeapi-{self._port}")
        with self._lock:
            self._srv, self._serve_thread = srv, thread
        thread.start()

    def down(self) -> None:
        """Stop listening and close every connection (open watches end abruptly); keep the port."""
        with self._lock:
            srv, thread = self._srv, self._serve_thread
            self._srv = self._serve_thread = None
            if srv is None:
                return
            srv.closing = True
            conns = list(srv.conns)
            self._cond.notify_all()
        srv.shutdown()
        srv.server_close()
        for c in conns:
            _abort(c)
        deadline = time.monotonic() + JOIN_TIMEOUT
        thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Close the listener and every connection, release holds; idempotent."""
        with self._lock:
            self._stopped = True
        self.down()  # held lists see their server closing and drop their connections
        with self._lock:
            self._held = None
            self._cond.notify_all()

    def kubeconfig(self, path: str | Path) -> Path:
        """Write a kubeconfig for this server (no auth) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kubeapi", "cluster": {"server": self.url}}],
            "users": [{"name": "kubeapi", "user": {}}],
            "contexts": [{"name": "kubeapi", "context": {"cluster": "kubeapi", "user": "kubeapi", "namespace": "default"}}],
            "current-context": "kubeapi",
            "preferences": {},
        }
        path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
        return path

    # -- objects --

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def apply(self, obj: dict) -> dict:
        """Create or replace `obj`; emits ADDED or MODIFIED; returns the stored copy."""
        obj = copy.deepcopy(obj)
        kind = _kind(obj.get("kind"))
        if obj.setdefault("apiVersion", kind.api_version) != kind.api_version:
            raise ValueError(f"{kind.kind} is served as {kind.api_version}, not {obj['apiVersion']}")
        obj["kind"] = kind.kind
        if kind.crd and kind.kind not in self._crds:
            raise ValueError(f"the CRD of {kind.kind} is not installed: call install_crds() first")
        md = obj.setdefault("metadata", {})
        if not md.get("name"):
            raise ValueError("metadata.name is required")
        if kind.namespaced:
            md["namespace"] = md.get("namespace") or "default"
        else:
            md.pop("namespace", None)
        key = _key(obj)
        with self._lock:
            prev = self._store[kind.kind].get(key)
            self._rv += 1
            md["resourceVersion"] = str(self._rv)
            if prev is not None:
                md["uid"] = prev["metadata"]["uid"]
                md["creationTimestamp"] = prev["metadata"]["creationTimestamp"]
            else:
                md.setdefault("uid", str(uuid.uuid4()))
                md.setdefault("creationTimestamp", _now())
            self._store[kind.kind][key] = obj
            self._record(_Event(self._rv, kind.kind, "ADDED" if prev is None else "MODIFIED", obj, prev))
        return copy.deepcopy(obj)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete an object (namespace "" for a Namespace); emits DELETED; KeyError if absent."""
        k = _kind(kind)
        key = ((namespace or "") if k.namespaced else "", name)
        with self._lock:
            prev = self._store[k.kind].pop(key)  # KeyError if absent
            self._rv += 1
            last = copy.deepcopy(prev)
            last["metadata"]["resourceVersion"] = str(self._rv)
            self._record(_Event(self._rv, k.kind, "DELETED", last, prev))

    def objects(self, kind: str) -> list[dict]:
        """The current objects of a kind, sorted by namespace and name (copies)."""
        k = _kind(kind)
        with self._lock:
            return [copy.deepcopy(o) for _, o in sorted(self._store[k.kind].items())]

    def _record(self, ev: _Event) -> None:
        # caller holds the lock
        self._log.append(ev)
        self._log_rvs.append(ev.rv)
        for w in self._watchers:
            seen = w.convert(ev)
            if seen is not None:
                w.queue.append(seen)
        self._cond.notify_all()

    def _snapshot(self, kind: str, rv: int) -> dict[tuple[str, str], dict]:
        """The objects of `kind` as they were at `rv` (caller holds the lock; rv >= compaction)."""
        objs = dict(self._store[kind])
        for ev in reversed(self._log[bisect.bisect_right(self._log_rvs, rv) :]):
            if ev.kind == kind:
                key = _key(ev.obj)
                if ev.prev is None:
                    objs.pop(key, None)
                else:
                    objs[key] = ev.prev
        return objs

    def _bookmark(self, kind: Kind, initial_end: bool = False) -> dict:
        md: dict[str, Any] = {"resourceVersion": str(self._rv)}
        if initial_end:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": md}

    # -- custom resources and discovery --

    def install_crds(self, *kinds: str) -> None:
        """Serve these custom resources (default: all of the Gateway API's), as after
        `kubectl apply` of their CRDs."""
        with self._lock:
            self._crds.update(_kind(k).kind for k in kinds or CRDS)

    def uninstall_crds(self, *kinds: str) -> None:
        """Stop serving them (default: all): their objects are deleted (DELETED events), then
        their watches end and their paths answer 404, as when a CRD is deleted."""
        gone = {_kind(k).kind for k in kinds or CRDS}
        for kind in gone:
            for obj in self.objects(kind):
                self.delete(kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        with self._lock:
            self._crds -= gone
            for w in self._watchers:
                if w.kind in gone:
                    w.dropped = True
            self._cond.notify_all()

    def _discovery(self, path: str) -> dict | None:
        """The discovery document at `path`, None if there is none (caller holds the lock)."""
        served = [k for k in KINDS.values() if not k.crd or k.kind in self._crds]
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            versions = sorted({k.api_version for k in served if "/" in k.api_version})
            groups = [{"name": v.split("/")[0], "versions": [{"groupVersion": v, "version": v.split("/")[1]}],
                       "preferredVersion": {"groupVersion": v, "version": v.split("/")[1]}} for v in versions]
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        version = "v1" if path == "/api/v1" else path.removeprefix("/apis/") if path.startswith("/apis/") else ""
        listed = [k for k in served if k.api_version == version]
        if not listed:
            return None
        resources = [{"name": k.plural, "singularName": k.kind.lower(), "namespaced": k.namespaced, "kind": k.kind,
                      "verbs": ["get", "list", "watch"]} for k in listed]
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": version, "resources": resources}

    # -- faults --

    def compact(self) -> None:
        """Forget the event history up to now: older watch RVs and continue tokens get 410."""
        with self._lock:
            self._compacted = self._rv
            cut = bisect.bisect_right(self._log_rvs, self._compacted)
            del self._log[:cut], self._log_rvs[:cut]

    def fail_next(self, count: int, status: int = 500, kinds: tuple[str, ...] | None = None, *, retry_after: int | None = None) -> None:
        """Answer the next `count` requests (only those for `kinds`, if given) with `status` and a Status body.

        `retry_after` adds a Retry-After header; note urllib3 then retries 413/429/503 by itself.
        """
        ks = None if kinds is None else frozenset(_kind(k).kind for k in kinds)
        with self._lock:
            self._fail = [count, status, ks, retry_after]

    def _take_failure(self, kind: str | None) -> tuple[int, int | None] | None:
        # caller holds the lock
        count, code, kinds, retry_after = self._fail
        if count > 0 and (kinds is None or kind in kinds):
            self._fail[0] -= 1
            return code, retry_after
        return None

    def drop_watches(self) -> None:
        """Abruptly close every open watch connection (no final chunk)."""
        with self._lock:
            for w in self._watchers:
                w.dropped = True
            self._cond.notify_all()

    def hold(self, kinds: tuple[str, ...] | list[str] | str | None = None) -> None:
        """Make list (not watch) requests for `kinds` (default all) block until release() or stop()."""
        if isinstance(kinds, str):
            kinds = (kinds,)
        held = frozenset(KINDS) if kinds is None else frozenset(_kind(k).kind for k in kinds)
        with self._lock:
            self._held = held

    def release(self) -> None:
        with self._lock:
            self._held = None
            self._cond.notify_all()

    def _wait_unheld(self, srv: _HTTPServer, kind: str) -> bool:
        """Block while lists of `kind` are held; False if the server went down meanwhile."""
        with self._lock:
            if self._held is None or kind not in self._held:
                return not srv.closing
            self._held_waiting += 1
            self._cond.notify_all()
            try:
                while self._held is not None and kind in self._held and not srv.closing:
                    self._cond.wait(POLL)
            finally:
                self._held_waiting -= 1
                self._cond.notify_all()
            return not srv.closing

    def wait_for_held(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until at least `count` list requests are blocked by hold() (TimeoutError)."""
        with self._lock:
            if not self._cond.wait_for(lambda: self._held_waiting >= count, timeout):
                raise TimeoutError(f"{self._held_waiting} held list requests, wanted {count}")

    def bookmark(self) -> None:
        """Send a BOOKMARK with the current resourceVersion on every watch that allows bookmarks."""
        with self._lock:
            for w in self._watchers:
                if w.bookmarks:
                    w.queue.append(("BOOKMARK", self._bookmark(KINDS[w.kind])))
            self._cond.notify_all()

    # -- observing --

    def watchers(self, kind: str | None = None) -> int:
        """How many watch streams (for `kind`, or all) are open (their response headers sent).

        A watch the client closed is noticed within POLL seconds; a dropped, timed-out or
        server-closed one stops counting before the client can see its end."""
        k = None if kind is None else _kind(kind).kind
        with self._lock:
            return sum(1 for w in self._watchers if w.ready and (k is None or w.kind == k))

    def wait_for_watchers(self, kind: str, count: int = 1, timeout: float = 5.0) -> None:
        """Block until at least `count` watch streams for `kind` are open (TimeoutError).

        Open means registered for events and response headers written, so a fault injected
        afterwards (drop_watches, down) reaches the client as a broken stream, not a failed request."""
        k = _kind(kind).kind
        with self._lock:
            if not self._cond.wait_for(lambda: sum(1 for w in self._watchers if w.ready and w.kind == k) >= count, timeout):
                raise TimeoutError(f"fewer than {count} {k} watches open after {timeout}s")
