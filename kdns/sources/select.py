"""Which objects are exposed: CoreDNS's `namespaces` and `labels` options.

`Scope` decides, for a raw Kubernetes object (a dict), whether kdns serves it. Both sources
apply it the same way: the API source also passes the label selector to the API server so
that unselected objects never travel, and filters what arrives anyway.

* `namespaces`: only objects in these namespaces (and these Namespace objects) exist for
  DNS; names in other namespaces are NXDOMAIN and their addresses get no PTR. IngressClasses
  belong to no namespace and are always kept.
* `labels`: a label selector applied to Services and EndpointSlices (the EndpointSlice
  controller copies a Service's labels onto its slices). Pods and Namespaces are not
  filtered by it.

Selector syntax is the Kubernetes one: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
`a notin (x,y)`, joined with commas (all must hold).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_REQUIREMENT = re.compile(
    r"""\s*(?:
        (?P<not>!)\s*(?P<nkey>[\w./-]+)
      | (?P<skey>[\w./-]+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)
      | (?P<ekey>[\w./-]+)\s*(?P<eq>==|=|!=)\s*(?P<value>[\w./-]*)
      | (?P<key>[\w./-]+)
    )\s*(?:,|$)""",
    re.VERBOSE,
)


class SelectorError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, Any]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "in":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # notin: absent keys match, as in Kubernetes


@dataclass(frozen=True, slots=True)
class Selector:
    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: dict[str, Any] | None) -> bool:
        labels = labels if isinstance(labels, dict) else {}
        return all(r.matches(labels) for r in self.requirements)


def parse_selector(text: str) -> Selector:
    requirements = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _REQUIREMENT.match(text, pos)
        if m is None or m.end() == pos:
            raise SelectorError(f"not a label selector: {text!r} (at {text[pos:]!r})")
        pos = m.end()
        if m["nkey"]:
            requirements.append(Requirement(m["nkey"], "!exists"))
        elif m["skey"]:
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            requirements.append(Requirement(m["skey"], m["op"], values))
        elif m["ekey"]:
            requirements.append(Requirement(m["ekey"], "notin" if m["eq"] == "!=" else "in", frozenset([m["value"]])))
        else:
            requirements.append(Requirement(m["key"], "exists"))
    if not requirements:
        raise SelectorError("empty label selector")
    return Selector(text, tuple(requirements))


@dataclass(frozen=True, slots=True)
class Scope:
    namespaces: frozenset[str] | None = None  # None: every namespace
    labels: Selector | None = None
    pod_names: bool = False  # --endpoint-pod-names: an endpoint without a hostname is named after its Pod

    def admits(self, obj: dict[str, Any], kind: str) -> bool:
        """Whether this raw object is served (`kind` as in the manifest: "Service"...)."""
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = {}
        if self.namespaces is not None and kind != "IngressClass":  # (cluster-scoped: in no namespace)
            namespace = meta.get("name") if kind == "Namespace" else (meta.get("namespace") or "default")
            if namespace not in self.namespaces:
                return False
        if self.labels is not None and kind in ("Service", "EndpointSlice"):
            return self.labels.matches(meta.get("labels"))
        return True
