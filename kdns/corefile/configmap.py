"""A CoreDNS ConfigMap manifest (YAML or JSON) as a Corefile, its data keys as files.

A cluster's CoreDNS reads `/etc/coredns/Corefile` from the `coredns` ConfigMap mounted at
/etc/coredns, so every other key of that ConfigMap is a file beside it: k3s's Corefile says
`hosts /etc/coredns/NodeHosts`, and NodeHosts is a key of the same ConfigMap. k3s, AKS and
Gardener also mount an optional `coredns-custom` ConfigMap at /etc/coredns/custom and import
`custom/*.override` inside the main block and `custom/*.server` as extra blocks.

`read_manifest` reads a manifest (one ConfigMap as `kubectl get -o yaml` prints it, several
documents, or a List), lays the ConfigMaps' keys out as those files in a `MemoryReader`, and
parses the Corefile from there, so imports and (later) `hosts` files resolve the way they do
in the pod. Origins name the ConfigMap and key: `coredns.yaml[coredns/Corefile]:5`.

Which ConfigMap is mounted where: the one with a `Corefile` key (whatever its name) at the
Corefile's directory, and the others by name through `mounts`. Without a Corefile key, a
kube-dns ConfigMap (`stubDomains`, `upstreamNameservers`) is translated instead.

The manifest is read through the caller's reader (so its byte limit holds) and parsed with
PyYAML's safe loader. The result's `files` are the manifest, then the ConfigMap paths the parse
read (they exist only in the result's `reader`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import yaml

from kdns import yamlload
from kdns.corefile.keys import DNS_PORT
from kdns.corefile.kubedns import from_kube_dns
from kdns.corefile.model import Corefile, CorefileError, Origin
from kdns.corefile.parser import Limits, Parser
from kdns.corefile.reader import MemoryReader, Reader, ReadError

CONF = "/etc/coredns/Corefile"
MOUNTS: Mapping[str, str] = {"coredns-custom": "/etc/coredns/custom"}


@dataclass(frozen=True)
class _ConfigMap:
    name: str
    namespace: str
    data: dict[str, str]


def read_manifest(path: str, reader: Reader, *, env: Mapping[str, str] | None = None, default_port: int = DNS_PORT,
                  conf: str = CONF, mounts: Mapping[str, str] = MOUNTS, cluster_domain: str = "cluster.local",
                  limits: Limits | None = None) -> Corefile:
    """The Corefile a ConfigMap manifest holds (see the module's docstring)."""
    try:
        raw = reader.read(path)
    except ReadError as exc:
        return _failed(path, 0, str(exc))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _failed(path, raw[: exc.start].count(b"\n") + 1, f"not UTF-8 text (byte 0x{raw[exc.start]:02x})")
    try:
        docs = yamlload.load_yaml_all(text, yamlload.node_limit(reader.limit), hint="one node per 16 bytes of the file size limit")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return _failed(path, mark.line + 1 if mark is not None else 0, f"invalid YAML: {getattr(exc, 'problem', None) or exc}")
    except (ValueError, RecursionError) as exc:  # PyYAML's constructors refuse some values this way (`!!float 5z`)
        return _failed(path, 0, f"invalid YAML value: {exc}")
    errors: list[CorefileError] = []
    maps = _configmaps(docs, path, errors)
    if errors:
        return Corefile((), tuple(errors), files=(path,))

    corefiles = [m for m in maps if posixpath.basename(conf) in m.data]
    if len(corefiles) > 1:
        names = ", ".join(f"{m.namespace}/{m.name}" for m in corefiles)
        return _failed(path, 0, f"several ConfigMaps hold a {posixpath.basename(conf)} key ({names}); give one")
    if not corefiles:
        kube_dns = [m for m in maps if m.name == "kube-dns" or {"stubDomains", "upstreamNameservers"} & m.data.keys()]
        if len(kube_dns) == 1:
            cm = kube_dns[0]
            result = from_kube_dns(cm.data, label=lambda key: _label(path, cm, key), cluster_domain=cluster_domain,
                                   default_port=default_port)
            return replace(result, files=(path,))
        if kube_dns:
            return _failed(path, 0, "several kube-dns ConfigMaps; give one")
        return _failed(path, 0, f"no ConfigMap with a {posixpath.basename(conf)} key (CoreDNS) "
                                "or stubDomains/upstreamNameservers keys (kube-dns)")

    main = corefiles[0]
    files: dict[str, str] = {}
    labels: dict[str, str] = {}
    warnings: list[CorefileError] = []
    for cm in maps:
        directory = posixpath.dirname(conf) if cm is main else mounts.get(cm.name)
        if directory is None:
            if cm.name == "kube-dns" or {"stubDomains", "upstreamNameservers"} & cm.data.keys():
                warnings.append(CorefileError(Origin(_label(path, cm, ""), 0), "ignored: CoreDNS does not read the kube-dns ConfigMap"))
            continue
        for key, value in cm.data.items():
            files[posixpath.join(directory, key)] = value
            labels[posixpath.join(directory, key)] = _label(path, cm, key)
    virtual = MemoryReader(files, labels, limit=reader.limit)
    result = Parser(virtual, env, default_port, limits).parse_file(conf)
    return replace(result, warnings=tuple(warnings) + result.warnings, files=(path, *result.files))


def _label(path: str, cm: _ConfigMap, key: str) -> str:
    return f"{path}[{cm.name}/{key}]" if key else f"{path}[{cm.name}]"


def _failed(path: str, line: int, message: str) -> Corefile:
    return Corefile((), (CorefileError(Origin(path, line), message),), files=(path,))


def _configmaps(docs: list[object], path: str, errors: list[CorefileError]) -> list[_ConfigMap]:
    out: list[_ConfigMap] = []
    for i, doc in enumerate(docs, 1):
        if doc is None:
            continue
        items = doc.get("items") if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") else [doc]
        if not isinstance(items, list):
            errors.append(CorefileError(Origin(path, 0), f"document {i}: items: expected a list"))
            continue
        for item in items:
            if not isinstance(item, dict) or item.get("kind") != "ConfigMap":
                continue  # a Deployment, a Service: not ours to read
            cm = _configmap(item, f"document {i}", path, errors)
            if cm is not None:
                out.append(cm)
    return out


def _configmap(item: dict[str, Any], where: str, path: str, errors: list[CorefileError]) -> _ConfigMap | None:
    meta = item.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        errors.append(CorefileError(Origin(path, 0), f"{where}: a ConfigMap without metadata.name"))
        return None
    namespace = meta.get("namespace") or "default"
    data = item.get("data") or {}
    if not isinstance(data, dict):
        errors.append(CorefileError(Origin(path, 0), f"ConfigMap {namespace}/{name}: data: expected a mapping of key to text"))
        return None
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str):
            errors.append(CorefileError(Origin(path, 0), f"ConfigMap {namespace}/{name}: data.{key}: expected text (quote it)"))
            return None
    return _ConfigMap(name, str(namespace), dict(data))
