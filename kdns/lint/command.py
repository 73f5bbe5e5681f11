"""`kdns lint PATH...`: the mistakes in manifests that make names NXDOMAIN or wrong.

Files and directories (one level deep, `.yaml`, `.yml`, `.json`) are read as `kdns serve
--manifests` reads them (regular files, `--manifest-max-bytes`, the YAML node limit); every
object goes through kdns.lint.checks, with the line of each field (YAML keeps where each
node starts; a JSON file is read as YAML for its lines when it can be, else by position).
Each finding is printed as `FILE:LINE: error|warning: KIND NS/NAME: FIELD: what`, then a
count. Exit status: 1 when there is an error, else 0 (warnings alone); 2 for a command-line
mistake.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from kdns import files, yamlload
from kdns.lint import checks, together
from kdns.lint.checks import ERROR, Finding, Place
from kdns.options import default
from kdns.sources import convert

SUFFIXES = (".yaml", ".yml", ".json")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "lint",
        help="find the mistakes in manifests that make names NXDOMAIN or wrong (exit 1 on errors)",
        description=(
            "Check manifests for what DNS would otherwise keep quiet about: kinds that look like the ones kdns reads "
            "(Servce), misspelt or misplaced fields of the parts DNS reads (clusterIp, spec.ports[].Name), what kdns serve "
            "refuses, EndpointSlices that belong to no Service, headless Services without ready endpoints, Services whose "
            "selector matches no Pod of the files, hostnames shared by endpoints, names over Kubernetes' limits. Each "
            "finding names the file, line and object. Exit status 1 when there is an error."
        ),
    )
    parser.add_argument("paths", metavar="PATH", nargs="+", help="a manifest file, or a directory of them (one level deep)")
    parser.add_argument("--zone", default=default("zone")[0], metavar="ZONE", help="the cluster domain, for the length of names "
                        f"(default {default('zone')[0]})")
    parser.add_argument("--manifest-max-bytes", type=int, default=default("manifest-max-bytes"), metavar="BYTES",
                        help="the largest file read, as kdns serve's option of that name")


def main(args: argparse.Namespace) -> int:
    findings = lint(args.paths, args.zone.strip().rstrip(".").lower(), args.manifest_max_bytes)
    for finding in findings:
        print(finding)
    errors = sum(1 for f in findings if f.severity == ERROR)
    print(f"{errors} error(s), {len(findings) - errors} warning(s)")
    return 1 if errors else 0


def lint(paths: list[str], zone: str = "cluster.local", max_bytes: int = default("manifest-max-bytes")) -> list[Finding]:
    """Every finding for these files and directories, in file and line order."""
    findings: list[Finding] = []
    facts = together.Facts()
    defined: dict[tuple, str] = {}  # object key -> the place that defines it first
    for path in _files(paths, findings):
        for obj, place in _objects(path, max_bytes, findings):
            findings += checks.check_object(obj, place, zone)
            facts.add(obj, place)
            key = _key(obj)
            if key is not None:
                if key in defined:
                    findings.append(place.finding(ERROR, checks.subject_of(obj), (), f"already defined at {defined[key]}: kdns serve "
                                                  "refuses the second file"))
                else:
                    defined[key] = Finding(ERROR, place.file, place.line, "", "", "", place.position).where
    findings += together.check_set(facts)
    return sorted(findings, key=lambda f: f.order)


def _key(obj: dict) -> tuple | None:
    kind = convert.kind_of(obj)
    return None if kind is None else (kind, *convert.identify(obj)[1:])


def _files(paths: list[str], findings: list[Finding]) -> list[Path]:
    out = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        elif path.exists():
            out.append(path)
        else:
            findings.append(Finding(ERROR, text, None, "", "", "no such file or directory"))
    return out


def _objects(path: Path, max_bytes: int, findings: list[Finding]) -> list[tuple[dict, Place]]:
    """The objects of a file, each with its place; what cannot be read is a finding."""
    def problem(message: str) -> list[tuple[dict, Place]]:
        findings.append(Finding(ERROR, str(path), None, "", "", message))
        return []

    try:
        text = files.decode(files.read_regular(path, max_bytes, "--manifest-max-bytes")[0])
    except files.FileError as exc:
        return problem(str(exc))
    except OSError as exc:
        return problem(f"cannot read: {exc.strerror or exc}")
    nodes: list[yaml.Node] = []
    try:
        docs = files.load_yaml_all(text, files.node_limit(max_bytes), on_node=nodes.append)
    except yaml.YAMLError as exc:
        if path.suffix != ".json":
            return problem(files.yaml_problem(exc, text))
        try:  # JSON that PyYAML does not read (YAML 1.1 differs in corners): positions instead of lines
            docs, nodes = [json.loads(text)], []
        except json.JSONDecodeError as err:
            return problem(f"line {err.lineno}: invalid JSON: {err.msg}")
    except Exception as exc:  # noqa: BLE001 - PyYAML's constructors raise all sorts for values they refuse
        return problem(f"invalid YAML value: {type(exc).__name__}: {exc}")
    out: list[tuple[dict, Place]] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        node = nodes[i] if i < len(nodes) else None
        _items(doc, node, path, f"document {i + 1}", out, findings)
    return out


def _items(doc: Any, node: yaml.Node | None, path: Path, position: str, out: list, findings: list[Finding]) -> None:
    line = yamlload.line_of(node)
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        findings.append(Finding(ERROR, str(path), line, "", "", "not a Kubernetes object (a mapping with apiVersion and kind)",
                                position))
        return
    kind = doc["kind"]
    if kind == "List" or (kind.endswith("List") and "items" in doc):
        items = doc.get("items") or []
        if isinstance(items, list):
            below = yamlload.child(node, "items")
            for i, item in enumerate(items):
                _items(item, yamlload.child(below, i), path, f"{position}, items[{i}]", out, findings)
        return
    out.append((doc, Place(str(path), line, position if line is None else "", checks.field_lines(node))))
