"""The fake API server's HTTP side: list, get and watch requests answered from a `Store`, the
way kube-apiserver answers them (see the package docstring), and the faults of `KubeAPI`
applied to them."""

from __future__ import annotations

import bisect
import json
import select
import socket
import socketserver
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from testkit.kubeapi.store import (
    _CONTINUE_EXPIRED,
    _PREFIXES,
    _TRUE,
    BOOKMARK_INTERVAL,
    HOST,
    KINDS,
    POLL,
    Kind,
    _decode_continue,
    _encode_continue,
    _key,
    _Watcher,
    discovery,
    parse_field_selector,
    parse_label_selector,
    status,
)

if TYPE_CHECKING:
    from testkit.kubeapi import KubeAPI


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
        with self.api.store.lock:
            self.api._threads.add(t)
        t.start()

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.api.store.lock:
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
        with self.server.api.store.lock:
            if self.server.closing:
                _abort(self.connection)
            self.server.conns.add(self.connection)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self.server.api.store.lock:
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
        with api.store.lock:
            api.requests.append(("GET", url.path, dict(params)))
            injected = api._take_failure(route[0].kind if route else None)
            if route is not None and route[0].crd and route[0].kind not in api.store.crds:
                route = None  # its CRD is not installed: the API server does not know the path
            found = discovery(api.store, url.path) if route is None else None
        if injected is not None:
            code, retry_after = injected
            self._send_json(code, status(code, "injected"), {"Retry-After": str(retry_after)} if retry_after is not None else None)
            return
        if route is None:
            if url.path == "/version":
                self._send_json(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0-kdns-test"})
            elif found is not None:
                self._send_json(200, found)
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
        with api.store.lock:
            api.requests.append((self.command, url.path, {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}))
        self._send_status(
            405, f"the server does not allow this method on the requested resource ({self.command}; this test server is read-only)"
        )

    do_POST = do_PUT = do_PATCH = do_DELETE = _other

    # -- verbs --

    def _get(self, kind: Kind, namespace: str | None, name: str) -> None:
        api = self.server.api
        with api.store.lock:
            obj = api.store.by_kind[kind.kind].get((namespace or "", name))
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
        with api.store.lock:
            if token:
                if snap_rv < api.store.compacted:
                    expired = status(410, _CONTINUE_EXPIRED, "Expired", metadata={"continue": _encode_continue(api.store.rv, start)})
                list_rv = snap_rv
            elif exact_rv is not None:
                if exact_rv < api.store.compacted:
                    expired = status(410, f"too old resource version: {exact_rv} ({api.store.compacted})", "Expired")
                list_rv = min(exact_rv, api.store.rv)
            else:
                list_rv = api.store.rv
            objs = api.store.snapshot(kind.kind, list_rv) if expired is None else {}
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
        with api.store.lock:
            if initial:
                for _, obj in sorted(api.store.by_kind[kind.kind].items()):
                    if watcher.passes(obj):
                        watcher.queue.append(("ADDED", obj))
                if end_bookmark:
                    watcher.queue.append(("BOOKMARK", api.store.bookmark_object(kind, initial_end=True)))
            elif from_rv is not None and from_rv < api.store.compacted:
                error = status(410, f"too old resource version: {from_rv} ({api.store.compacted})", "Expired")
            elif from_rv is not None:
                log = api.store.log
                for ev in log[bisect.bisect_right(api.store.log_rvs, from_rv) :]:
                    seen = watcher.convert(ev)
                    if seen is not None:
                        watcher.queue.append(seen)
            if error is None:
                api.store.watching.add(watcher)
                api.store.cond.notify_all()
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
            with api.store.lock:
                watcher.ready = True
                api.store.cond.notify_all()
            deadline = time.monotonic() + timeout if timeout is not None else None
            next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
            while True:
                end = None
                with api.store.lock:
                    batch = list(watcher.queue)
                    watcher.queue.clear()
                    now = time.monotonic()
                    if srv.closing or watcher.dropped:
                        end = "abort"
                    elif not batch:
                        if deadline is not None and now >= deadline:
                            end = "clean"
                        elif bookmarks and now >= next_bookmark:
                            batch = [("BOOKMARK", api.store.bookmark_object(kind))]
                            next_bookmark = now + BOOKMARK_INTERVAL
                        else:
                            wake = min(POLL, (deadline - now) if deadline is not None else POLL)
                            api.store.cond.wait(max(wake, 0.0))
                    if end:  # unregister before the client can see the end
                        api.store.watching.discard(watcher)
                        api.store.cond.notify_all()
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
            with api.store.lock:
                api.store.watching.discard(watcher)
                api.store.cond.notify_all()


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
