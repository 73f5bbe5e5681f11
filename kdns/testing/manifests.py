"""`KdnsServer.load()`'s reading: manifests from a file, a directory or YAML text, with the
bounds `kdns serve --manifests` has (kdns/files.py reads, kdns/yamlload.py parses); and the
objects `KdnsServer.ingress()` declares. No pytest.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import yaml

from kdns import files
from kdns.options import default

SUFFIXES = (".yaml", ".yml", ".json")
TARGET = "external-dns.alpha.kubernetes.io/target"  # (kdns.sources.convert_web reads it)


def read_objects(path_or_yaml: str | Path) -> list[dict]:
    """The objects of a manifest file, of the manifest files of a directory (one level, sorted),
    or of YAML text (a str with a line break; it may be indented as a whole). FileNotFoundError for a path with nothing
    there; ValueError naming the file for one kdns refuses (not a regular file, too large,
    not UTF-8, broken YAML or JSON, over the node limit)."""
    limit = default("manifest-max-bytes")
    if isinstance(path_or_yaml, str) and "\n" in path_or_yaml:
        size = len(path_or_yaml.encode())
        if size > limit:
            raise ValueError(f"YAML text: {files.too_large(size, limit, 'manifest-max-bytes')}")
        return _documents("YAML text", textwrap.dedent(path_or_yaml), limit)  # (indented as a whole in a test)
    path = Path(path_or_yaml)
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
    elif path.exists():
        paths = [path]
    else:
        raise FileNotFoundError(2, "no such file or directory (a str without a line break is a path, not YAML)", str(path))
    objects: list[dict] = []
    for one in paths:
        try:
            text = files.decode(files.read_regular(one, limit, "manifest-max-bytes")[0])
        except files.FileError as exc:
            raise ValueError(f"{one}: {exc}") from None
        objects += _documents(str(one), text, limit, as_json=one.suffix == ".json")
    return objects


def _documents(where: str, text: str, limit: int, *, as_json: bool = False) -> list[dict]:
    try:
        docs = [json.loads(text)] if as_json else files.load_yaml_all(text, files.node_limit(limit))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: {files.yaml_problem(exc, text)}") from None
    return [doc for doc in docs if doc]


def ingress_manifest(hosts: list[str], name: str, namespace: str, backend: str | None, port: int, targets: list[str],
                     ingress_class: str | None) -> dict:
    """An Ingress routing `hosts` to Service `backend` (if any), resolving to `targets`
    (addresses, or one name) through external-dns's target annotation."""
    rule_path = {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": backend, "port": {"number": port}}}} if backend else None
    spec: dict = {"rules": [{"host": host, **({"http": {"paths": [rule_path]}} if rule_path else {})} for host in hosts]}
    if ingress_class:
        spec["ingressClassName"] = ingress_class
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": namespace, "annotations": {TARGET: ",".join(targets)}}, "spec": spec}


def ingress_name(host: str) -> str:
    """The name `KdnsServer.ingress()` gives the Ingress of a host: `shop-example-com`."""
    return host.strip().rstrip(".").lower().replace("*", "wildcard").replace(".", "-")[:253]
