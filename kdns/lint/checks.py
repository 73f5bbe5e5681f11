"""What `kdns lint` finds in manifests, and what `kdns serve --manifests` warns about. Pure.

The mistakes it looks for are the ones that make a name NXDOMAIN, or give it a wrong
address, without a word from kdns otherwise: an object kdns skips or a field it ignores.

* One object at a time (`check_object`): a kind that looks like one DNS reads (`Servce`,
  `Endpoints`, a Service of another apiVersion); a field of the parts DNS reads that no
  Kubernetes version has, misspelt (`clusterIp`, `spec.ports[].Name`) or misplaced
  (`clusterIP` beside `spec` instead of in it), with the field it probably means; what
  `kdns serve` refuses (kdns.sources.convert's checks); names over Kubernetes' limits (port
  names over 15 characters, endpoint names that make a DNS name over 253).
* The objects together (kdns.lint.together): EndpointSlices that belong to no Service of
  the files, headless Services without EndpointSlices or ready endpoints, Services whose
  selector matches no Pod of the files (when the files hold Pods), one hostname on several
  endpoints of a Service.

A finding is an error when the API server would refuse the object, or kdns would skip or
refuse it or one of its fields (`kdns lint` exits 1), and a warning otherwise. Each carries
its file and line (`field_line`: the line of the field when the caller knows it, else the
object's) and names the object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from kdns import yamlload
from kdns.sources import convert

ERROR, WARNING = "error", "warning"
FieldPath = tuple[str | int, ...]
FieldLine = Callable[[FieldPath], int | None]  # the line a field is written on, if known

# What Kubernetes' API has in the parts DNS reads: a dict of field -> what is below it (None:
# not checked), a list of one such dict for a list of objects.
_ANY = None
METADATA = dict.fromkeys((
    "name", "generateName", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "finalizers",
    "managedFields", "selfLink"), _ANY)
SERVICE_PORT = dict.fromkeys(("name", "protocol", "appProtocol", "port", "targetPort", "nodePort"), _ANY)
SERVICE_SPEC: dict[str, Any] = dict.fromkeys((
    "selector", "clusterIP", "clusterIPs", "type", "externalIPs", "sessionAffinity", "loadBalancerIP",
    "loadBalancerSourceRanges", "externalName", "externalTrafficPolicy", "healthCheckNodePort", "publishNotReadyAddresses",
    "sessionAffinityConfig", "ipFamilies", "ipFamilyPolicy", "allocateLoadBalancerNodePorts", "loadBalancerClass",
    "internalTrafficPolicy", "trafficDistribution"), _ANY) | {"ports": [SERVICE_PORT]}
SERVICE_STATUS = {"loadBalancer": {"ingress": [dict.fromkeys(("ip", "hostname", "ipMode", "ports"), _ANY)]}, "conditions": _ANY}
SLICE_ENDPOINT = dict.fromkeys(("addresses", "hostname", "targetRef", "nodeName", "zone", "hints", "deprecatedTopology"), _ANY) | {
    "conditions": dict.fromkeys(("ready", "serving", "terminating"), _ANY)}
SCHEMAS: dict[str, dict[str, Any]] = {
    "Service": {"apiVersion": _ANY, "kind": _ANY, "metadata": METADATA, "spec": SERVICE_SPEC, "status": SERVICE_STATUS},
    "EndpointSlice": {"apiVersion": _ANY, "kind": _ANY, "metadata": METADATA, "addressType": _ANY, "endpoints": [SLICE_ENDPOINT],
                      "ports": [dict.fromkeys(("name", "protocol", "port", "appProtocol"), _ANY)]},
    "Pod": {"apiVersion": _ANY, "kind": _ANY, "metadata": METADATA, "spec": _ANY, "status": _ANY},
    "Namespace": {"apiVersion": _ANY, "kind": _ANY, "metadata": METADATA, "spec": _ANY, "status": _ANY},
}
API_VERSIONS = {kind: version for (version, kind) in convert.KINDS}  # the kinds kdns reads, at the version it reads
OTHER_KINDS = ("Endpoints",)  # kinds near the DNS ones that kdns does not read
MAX_PORT_NAME = 15  # IANA service names (the API server's validation of port names)
MAX_NAME = 253  # a DNS name, dots included, without the final one


@dataclass(frozen=True, slots=True)
class Finding:
    severity: str  # ERROR or WARNING
    file: str
    line: int | None
    subject: str  # the object: "Service shop/web"
    field: str  # "spec.clusterIp"; "" for the object as a whole
    message: str
    position: str = ""  # where in the file when there is no line ("items[3]" of a JSON file)

    @property
    def where(self) -> str:
        if self.line is not None:
            return f"{self.file}:{self.line}"
        return f"{self.file}: {self.position}" if self.position else self.file

    def __str__(self) -> str:
        parts = [self.where, self.severity, self.subject, self.field, self.message]
        return ": ".join(part for part in parts if part)

    @property
    def order(self) -> tuple[str, int, str, str, str, str]:
        return (self.file, self.line or 0, self.position, self.subject, self.field, self.message)


@dataclass(frozen=True, slots=True)
class Place:
    """Where an object is: its file, its line (or position), and how to find a field's line."""

    file: str
    line: int | None = None
    position: str = ""
    field_line: FieldLine | None = None

    def finding(self, severity: str, subject: str, path: FieldPath, message: str) -> Finding:
        line = self.field_line(path) if self.field_line is not None and path else None
        return Finding(severity, self.file, line or self.line, subject, dotted(path), message, self.position)


def field_lines(node: yaml.Node | None) -> FieldLine | None:
    """How to find the line of a field path in the object YAML node `node` (the deepest part
    of the path that is there: a misspelt key is found, its parent's line otherwise)."""
    if node is None:
        return None

    def line(path: FieldPath) -> int | None:
        current: yaml.Node | None = node
        found = yamlload.line_of(node)
        for step in path:
            if isinstance(step, str):
                key = yamlload.key_node(current, step)
                if key is None:
                    return found
                found = yamlload.line_of(key)
            current = yamlload.child(current, step)
            if current is None:
                return found
            if isinstance(step, int):
                found = yamlload.line_of(current)
        return found

    return line


def dotted(path: FieldPath) -> str:
    """("spec", "ports", 0, "name") -> "spec.ports[0].name"."""
    out = ""
    for step in path:
        if isinstance(step, int) or "." in step or "/" in step:
            out += f"[{step}]"  # an index, or a label's key (kubernetes.io/service-name)
        else:
            out += f".{step}" if out else step
    return out


def parse_field(text: str) -> FieldPath:
    """"spec.ports[0].port" -> ("spec", "ports", 0, "port"); "metadata.labels[a/b]" -> (..., "a/b")."""
    path: list[str | int] = []
    for part in text.replace("]", "").split("."):
        head, *subscripts = part.split("[")
        if head:
            path.append(head)
        path.extend(int(s) if s.isdigit() else s for s in subscripts)
    return tuple(path)


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def subject_of(obj: dict[str, Any]) -> str:
    kind, namespace, name = convert.identify(obj)
    return f"{kind} {namespace}/{name or '?'}" if namespace else f"{kind} {name or '?'}"


def distance(a: str, b: str, limit: int = 2) -> int:
    """Edits (insert, delete, replace, swap two neighbours) from `a` to `b`, or limit + 1
    once it is sure to exceed `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, before[j - 2] + 1)
            current.append(cost)
        if min(current) > limit:
            return limit + 1
        before, previous = previous, current
    return previous[-1]


def typo_limit(word: str) -> int:
    """How many edits a misspelling of a word this long may have: 1 up to 4 letters, else 2."""
    return 1 if len(word) <= 4 else 2


def close(word: str, candidates: Iterable[str], limit: int = 2) -> str | None:
    """The candidate `word` is probably a misspelling of: the same but for case, else the
    nearest within `limit` edits (fewer for short words: `typo_limit`)."""
    folded = word.lower()
    for candidate in candidates:
        if candidate.lower() == folded:
            return str(candidate)
    limit = min(limit, typo_limit(word))
    best = min(candidates, key=lambda c: (distance(folded, c.lower(), limit), c), default=None)
    return best if best is not None and distance(folded, best.lower(), limit) <= limit else None


# -- one object --------------------------------------------------------------------------


def check_object(obj: dict[str, Any], place: Place, zone: str = "cluster.local", *, refusals: bool = True) -> list[Finding]:
    """The problems of one object (a mapping with a string `kind`). `refusals`: include what
    `kdns serve` refuses (it says so itself when it reads the file)."""
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    subject = subject_of(obj)
    if kind not in SCHEMAS:
        return _kind(kind, api_version, subject, place)
    if api_version != API_VERSIONS[kind]:
        return [place.finding(ERROR, subject, ("apiVersion",), f"kdns reads {kind} {API_VERSIONS[kind]}, not {api_version!r}: "
                              "it skips this object")]
    out: list[Finding] = []
    _fields(obj, SCHEMAS[kind], (), kind, subject, place, out)
    if refusals:
        try:
            convert.convert(obj, _no_allocation)
        except convert.ObjectError as exc:
            out.append(place.finding(ERROR, subject, parse_field(exc.field), exc.problem + ": kdns serve refuses the file"))
    if kind == "Service":
        out += _port_names(obj.get("spec"), ("spec",), subject, place)
    elif kind == "EndpointSlice":
        out += _port_names(obj, (), subject, place) + _long_names(obj, subject, place, zone)
    return out


def _no_allocation(namespace: str, name: str, families: tuple[int, ...]) -> tuple[str, ...]:
    return ()  # lint does not care which address a Service would get


def _kind(kind: Any, api_version: Any, subject: str, place: Place) -> list[Finding]:
    if not isinstance(kind, str):
        return []
    if kind in OTHER_KINDS:
        return [place.finding(WARNING, subject, ("kind",), "kdns reads EndpointSlices, not Endpoints: these addresses are not "
                              "served from files (in a cluster the EndpointSlice mirroring controller copies them)")]
    meant = close(kind, list(SCHEMAS)) or close(kind.removesuffix("s"), list(SCHEMAS), 1)
    if meant is None:
        return []
    return [place.finding(ERROR, subject, ("kind",), f"unknown kind {kind!r} (did you mean {meant}?): kdns skips it")]


def _fields(value: Any, schema: Any, path: FieldPath, kind: str, subject: str, place: Place, out: list[Finding]) -> None:
    if schema is None:
        return
    if isinstance(schema, list):
        if isinstance(value, list):
            for i, item in enumerate(value):
                _fields(item, schema[0], (*path, i), kind, subject, place, out)
        return
    if not isinstance(value, dict):
        return
    for key, below in value.items():
        if not isinstance(key, str):
            continue
        if key in schema:
            _fields(below, schema[key], (*path, key), kind, subject, place, out)
        else:
            out.append(place.finding(ERROR, subject, (*path, key), _unknown(key, schema, path, kind)))


def _unknown(key: str, schema: dict[str, Any], path: FieldPath, kind: str) -> str:
    meant = close(key, list(schema))
    if meant is not None:
        return f"unknown field (did you mean {meant}?): kdns ignores it"
    here = tuple(step for step in path if isinstance(step, str))
    places = [where for where in _known_places(SCHEMAS[kind], ()) if tuple(s.removesuffix("[]") for s in where[:-1]) != here]
    exact = [where for where in places if where[-1].removesuffix("[]").lower() == key.lower()]
    near = exact or [where for where in places if distance(key.lower(), where[-1].removesuffix("[]").lower(), 1) <= 1 and len(key) > 3]
    if near:
        return f"misplaced (it belongs at {'.'.join(near[0])}): kdns ignores it"
    return "unknown field: kdns ignores it"


def _known_places(schema: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every field path of a schema, list items written `name[]`."""
    if isinstance(schema, list):
        return _known_places(schema[0], (*path[:-1], path[-1] + "[]") if path else path)
    if not isinstance(schema, dict):
        return []
    out = []
    for key, below in schema.items():
        out.append((*path, key))
        out += _known_places(below, (*path, key))
    return out


def _port_names(owner: Any, path: FieldPath, subject: str, place: Place) -> list[Finding]:
    out = []
    ports = owner.get("ports") if isinstance(owner, dict) else None
    for i, port in enumerate(ports if isinstance(ports, list) else []):
        name = port.get("name") if isinstance(port, dict) else None
        if isinstance(name, str) and len(name) > MAX_PORT_NAME:
            out.append(place.finding(ERROR, subject, (*path, "ports", i, "name"),
                                     f"{len(name)} characters, over the {MAX_PORT_NAME} a port name may have"))
    return out


def _long_names(obj: dict[str, Any], subject: str, place: Place, zone: str) -> list[Finding]:
    """Endpoint names that make a DNS name longer than a query can ask for."""
    out: list[Finding] = []
    _, namespace, _ = convert.identify(obj)
    meta = mapping(obj.get("metadata"))
    labels = mapping(meta.get("labels"))
    service = labels.get(convert.SERVICE_NAME_LABEL)
    endpoints = obj.get("endpoints")
    if not isinstance(service, str) or not isinstance(endpoints, list):
        return out
    for i, ep in enumerate(endpoints):
        hostname = ep.get("hostname") if isinstance(ep, dict) else None
        if isinstance(hostname, str) and hostname:
            full = f"{hostname}.{service}.{namespace}.svc.{zone}"
            if len(full) > MAX_NAME:
                out.append(place.finding(WARNING, subject, ("endpoints", i, "hostname"),
                                         f"{full} is {len(full)} characters, over DNS's {MAX_NAME}: no query can ask for it"))
    return out
