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

Three parts: `store` (objects, history, watches: `Store`), `http` (the request handler) and
this module (`KubeAPI`: the server's life, its faults, and the store's methods).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Self

from testkit.kubeapi.http import _abort, _HTTPServer
from testkit.kubeapi.store import CRDS, HOST, KINDS, POLL, Store, _kind

__all__ = ["KINDS", "KubeAPI", "Store"]

JOIN_TIMEOUT = 2.0  # how long down()/stop() wait for handler threads to finish


class KubeAPI:
    """An in-memory kube-apiserver on 127.0.0.1 (see the module docstring)."""

    def __init__(self, port: int = 0):
        self._port = port
        self.store = Store()  # objects, history, open watches; the faults below share its lock
        self._lock = self.store.lock
        self._cond = self.store.cond
        self._fail: list = [0, 500, None, None]  # count, status, kinds, retry_after
        self._held: frozenset[str] | None = None
        self._held_waiting = 0
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

    # -- custom resources --

    def install_crds(self, *kinds: str) -> None:
        """Serve these custom resources (default: all of the Gateway API's), as after
        `kubectl apply` of their CRDs."""
        with self._lock:
            self.store.crds.update(_kind(k).kind for k in kinds or CRDS)

    def uninstall_crds(self, *kinds: str) -> None:
        """Stop serving them (default: all): their objects are deleted (DELETED events), then
        their watches end and their paths answer 404, as when a CRD is deleted."""
        gone = {_kind(k).kind for k in kinds or CRDS}
        for kind in gone:
            for obj in self.objects(kind):
                self.delete(kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        with self._lock:
            self.store.crds -= gone
            for w in self.store.watching:
                if w.kind in gone:
                    w.dropped = True
            self._cond.notify_all()

    # -- objects (the store's) --

    @property
    def resource_version(self) -> int:
        return self.store.resource_version

    def apply(self, obj: dict) -> dict:
        """Create or replace `obj`; emits ADDED or MODIFIED; returns the stored copy."""
        return self.store.apply(obj)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete an object (namespace "" for a Namespace); emits DELETED; KeyError if absent."""
        self.store.delete(kind, namespace, name)

    def objects(self, kind: str) -> list[dict]:
        """The current objects of a kind, sorted by namespace and name (copies)."""
        return self.store.objects(kind)

    def compact(self) -> None:
        """Forget the event history up to now: older watch RVs and continue tokens get 410."""
        self.store.compact()

    def bookmark(self) -> None:
        """Send a BOOKMARK with the current resourceVersion on every watch that allows bookmarks."""
        self.store.bookmark()

    def watchers(self, kind: str | None = None) -> int:
        """How many watch streams (for `kind`, or all) are open (see Store.watchers)."""
        return self.store.watchers(kind)

    def wait_for_watchers(self, kind: str, count: int = 1, timeout: float = 5.0) -> None:
        """Block until at least `count` watch streams for `kind` are open (see Store.wait_for_watchers)."""
        self.store.wait_for_watchers(kind, count, timeout)

    # -- faults --

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
            for w in self.store.watching:
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
