"""The fake API server's store: objects, resourceVersions, the event history and the open
watches, with the selectors and continue tokens that reading them takes. No HTTP, no faults
(`testkit.kubeapi.http` serves it; `testkit.kubeapi.KubeAPI` adds the faults).
"""

from __future__ import annotations

import base64
import bisect
import copy
import json
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

HOST = "127.0.0.1"
BOOKMARK_INTERVAL = 1.0  # seconds between automatic bookmarks on a watch that allows them
POLL = 0.1  # how often a waiting handler re-checks drops, stop and timeouts



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


# --- events and watches ----------------------------------------------------------------------


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


# --- the store -------------------------------------------------------------------------------


class Store:
    """The objects, their history and the open watches, behind one lock (`cond` wakes waiting
    handlers). No HTTP here: `testkit.kubeapi.http` serves it, `KubeAPI` adds the faults."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.by_kind: dict[str, dict[tuple[str, str], dict]] = {k: {} for k in KINDS}
        self.rv = 1  # the real server never hands out "0", which means "any" on the wire
        self.compacted = 0
        self.log: list[_Event] = []
        self.log_rvs: list[int] = []
        self.watching: set[_Watcher] = set()
        self.crds: set[str] = set()  # the custom resource kinds served (KubeAPI.install_crds)


    @property
    def resource_version(self) -> int:
        with self.lock:
            return self.rv


    def apply(self, obj: dict) -> dict:
        """Create or replace `obj`; emits ADDED or MODIFIED; returns the stored copy."""
        obj = copy.deepcopy(obj)
        kind = _kind(obj.get("kind"))
        if obj.setdefault("apiVersion", kind.api_version) != kind.api_version:
            raise ValueError(f"{kind.kind} is served as {kind.api_version}, not {obj['apiVersion']}")
        obj["kind"] = kind.kind
        if kind.crd and kind.kind not in self.crds:
            raise ValueError(f"the CRD of {kind.kind} is not installed: call install_crds() first")
        md = obj.setdefault("metadata", {})
        if not md.get("name"):
            raise ValueError("metadata.name is required")
        if kind.namespaced:
            md["namespace"] = md.get("namespace") or "default"
        else:
            md.pop("namespace", None)
        key = _key(obj)
        with self.lock:
            prev = self.by_kind[kind.kind].get(key)
            self.rv += 1
            md["resourceVersion"] = str(self.rv)
            if prev is not None:
                md["uid"] = prev["metadata"]["uid"]
                md["creationTimestamp"] = prev["metadata"]["creationTimestamp"]
            else:
                md.setdefault("uid", str(uuid.uuid4()))
                md.setdefault("creationTimestamp", _now())
            self.by_kind[kind.kind][key] = obj
            self.record(_Event(self.rv, kind.kind, "ADDED" if prev is None else "MODIFIED", obj, prev))
        return copy.deepcopy(obj)


    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete an object (namespace "" for a Namespace); emits DELETED; KeyError if absent."""
        k = _kind(kind)
        key = ((namespace or "") if k.namespaced else "", name)
        with self.lock:
            prev = self.by_kind[k.kind].pop(key)  # KeyError if absent
            self.rv += 1
            last = copy.deepcopy(prev)
            last["metadata"]["resourceVersion"] = str(self.rv)
            self.record(_Event(self.rv, k.kind, "DELETED", last, prev))


    def objects(self, kind: str) -> list[dict]:
        """The current objects of a kind, sorted by namespace and name (copies)."""
        k = _kind(kind)
        with self.lock:
            return [copy.deepcopy(o) for _, o in sorted(self.by_kind[k.kind].items())]


    def record(self, ev: _Event) -> None:
        # caller holds the lock
        self.log.append(ev)
        self.log_rvs.append(ev.rv)
        for w in self.watching:
            seen = w.convert(ev)
            if seen is not None:
                w.queue.append(seen)
        self.cond.notify_all()


    def snapshot(self, kind: str, rv: int) -> dict[tuple[str, str], dict]:
        """The objects of `kind` as they were at `rv` (caller holds the lock; rv >= compaction)."""
        objs = dict(self.by_kind[kind])
        for ev in reversed(self.log[bisect.bisect_right(self.log_rvs, rv) :]):
            if ev.kind == kind:
                key = _key(ev.obj)
                if ev.prev is None:
                    objs.pop(key, None)
                else:
                    objs[key] = ev.prev
        return objs


    def bookmark_object(self, kind: Kind, initial_end: bool = False) -> dict:
        md: dict[str, Any] = {"resourceVersion": str(self.rv)}
        if initial_end:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": md}


    def compact(self) -> None:
        """Forget the event history up to now: older watch RVs and continue tokens get 410."""
        with self.lock:
            self.compacted = self.rv
            cut = bisect.bisect_right(self.log_rvs, self.compacted)
            del self.log[:cut], self.log_rvs[:cut]


    def bookmark(self) -> None:
        """Send a BOOKMARK with the current resourceVersion on every watch that allows bookmarks."""
        with self.lock:
            for w in self.watching:
                if w.bookmarks:
                    w.queue.append(("BOOKMARK", self.bookmark_object(KINDS[w.kind])))
            self.cond.notify_all()


    def watchers(self, kind: str | None = None) -> int:
        """How many watch streams (for `kind`, or all) are open (their response headers sent).

        A watch the client closed is noticed within POLL seconds; a dropped, timed-out or
        server-closed one stops counting before the client can see its end."""
        k = None if kind is None else _kind(kind).kind
        with self.lock:
            return sum(1 for w in self.watching if w.ready and (k is None or w.kind == k))


    def wait_for_watchers(self, kind: str, count: int = 1, timeout: float = 5.0) -> None:
        """Block until at least `count` watch streams for `kind` are open (TimeoutError).

        Open means registered for events and response headers written, so a fault injected
        afterwards (drop_watches, down) reaches the client as a broken stream, not a failed request."""
        k = _kind(kind).kind
        with self.lock:
            if not self.cond.wait_for(lambda: sum(1 for w in self.watching if w.ready and w.kind == k) >= count, timeout):
                raise TimeoutError(f"fewer than {count} {k} watches open after {timeout}s")


def discovery(store: Store, path: str) -> dict | None:
    """The discovery document at `path` (`/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`),
    None if there is none: a group/version with nothing served (caller holds the lock)."""
    served = [k for k in KINDS.values() if not k.crd or k.kind in store.crds]
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
