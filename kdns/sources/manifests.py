"""Kubernetes manifests on disk as a source of change events.

`ManifestSet` reads files and directories of `.yaml`, `.yml` and `.json` files
(multi-document YAML, `kind: List`, JSON) into model values, and on `rescan()` works out
what changed since the last look, per file: a file that fails to parse or check keeps the
objects it had before, and the problem comes back as a one-line message naming the file, the
object and the field. `watch_manifests` polls for changes and sends the events on.

Directories are read one level deep, like `kubectl apply -f DIR`. An object defined in two
files is an error in the file that defines it second.

Only regular files are read (kdns.files: opened without blocking, checked with fstat), of at
most `max_bytes` each and, for YAML, at most max_bytes / 16 nodes counting aliases as copies;
a path named directly that turns into a FIFO, a device or a directory is reported once and
keeps its objects. A rescan costs one stat per file when nothing changed (a file is read only
when its mtime, size or inode did), and is linear in the number of files.

Each object's place is kept (`locate`: `file:line` of its first line, or its position in a
JSON file) for `kdns explain`. Each file read is also checked as `kdns lint` checks files
(kdns.lint.checks; with the line of each field in YAML files up to FIELD_LINES bytes, of each
object in larger ones, whose nodes are not kept): what the checks find in a file is logged as
warnings once when it is (re)loaded, and what changes between two rescans in the checks of the
objects together (an EndpointSlice whose Service went away) is logged then.

(A little over 400 lines: reading a file, with its lines, and saying what is wrong in it stay
together, since the checks need the objects as they are read and only then.)
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio
import yaml

from kdns import files, yamlload
from kdns.lint import checks, together
from kdns.model import ROUTE_KINDS, Delete, Event, Kind, KubeObject, ObjectKey, Service, Upsert, describe
from kdns.sources import convert
from kdns.sources.allocate import ClusterIPAllocator
from kdns.sources.select import Scope

log = logging.getLogger("kdns.manifests")

SUFFIXES = (".yaml", ".yml", ".json")
SETTLE = 0.05  # seconds: a file modified more recently than this is read on the next look
MAX_BYTES = 16 * files.MIB  # --manifest-max-bytes: the largest file read
OPTION = "manifest-max-bytes"
SKIPPED_BECAUSE = {Kind.INGRESS: "no --ingress-hosts", Kind.INGRESS_CLASS: "no --ingress-hosts", Kind.GATEWAY: "no --gateway-hosts",
                   **{kind: "no --gateway-hosts" for kind in ROUTE_KINDS}, Kind.ENDPOINT_SLICE: "--no-endpoints"}
FIELD_LINES = files.MIB  # YAML files up to this size keep their nodes while read, for the checks' field lines


_Stat = os.stat_result | OSError | None  # a file's stat, why there is none, or None: do not look


class ManifestError(Exception):
    """A manifest kdns cannot use; the message is one line naming file, object and field."""


class _Duplicate(ManifestError):
    """An object another file already defines: the verdict depends on the other files."""


@dataclass
class _File:
    signature: tuple[int, int, int] | None = None  # (mtime_ns, size, inode) of what was read
    objects: dict[ObjectKey, KubeObject] = field(default_factory=dict)
    error: str | None = None  # the last problem reported, so it is logged once
    blocked: bool = False  # refused because another file defines one of its objects
    where: dict[ObjectKey, int | str] = field(default_factory=dict)  # each object's line (or position)
    findings: list[checks.Finding] = field(default_factory=list)  # what the checks found in it, object by object
    facts: together.Facts = field(default_factory=together.Facts)  # what the checks of the objects together need


@dataclass
class _Parsed:
    objects: dict[ObjectKey, KubeObject]
    where: dict[ObjectKey, int | str]
    findings: list[checks.Finding]
    facts: together.Facts


class ManifestSet:
    def __init__(self, paths: list[str] | tuple[str, ...], scope: Scope | None = None, max_bytes: int = MAX_BYTES,
                 skip: frozenset[Kind] = frozenset()):
        """`skip`: kinds not read (Ingresses without --ingress-hosts, ...), as kinds DNS does not use."""
        self.paths = [Path(p) for p in paths]
        self.scope = scope or Scope()
        self.skip = skip
        self.max_bytes = max_bytes  # may change between rescans (a config reload)
        self._is_dir: dict[Path, bool] = {}  # what each named path was when first seen
        self._list_errors: dict[Path, str] = {}  # a directory that cannot be listed, reported once
        self._children: dict[Path, dict[str, Path]] = {}  # directory -> its files' Paths (hashed once)
        self.allocator = ClusterIPAllocator()
        self._files: dict[Path, _File] = {}
        self._state: dict[ObjectKey, KubeObject] = {}
        self._owners: dict[ObjectKey, Path] = {}  # which file defines each object
        self._loaded = False
        self._reloaded: list[Path] = []  # files (re)loaded by the rescan under way
        self._warned: set[str] = set()  # the findings of the checks of the objects together, as last logged
        self.reads = 0  # rescans that found changes (for metrics)
        self.files_read = 0  # files opened and read, in all (a rescan of unchanged files reads none)
        self.last_change: float | None = None  # time.monotonic() of the last change found

    def load(self) -> list[Event]:
        """The first read: every problem is fatal (raises ManifestError)."""
        for path in self.paths:
            if not path.exists():
                raise ManifestError(f"{path}: no such file or directory")
        events, errors = self.rescan()
        if errors:
            raise ManifestError(errors[0])
        self._loaded = True
        if not self._files:
            log.warning("no manifest files (%s) in %s", "/".join(SUFFIXES), ", ".join(map(str, self.paths)))
        return events

    def rescan(self) -> tuple[list[Event], list[str]]:
        """Read what changed on disk; return the events and the problems found."""
        errors: list[str] = []
        present = self._list_files()
        changed = False
        self._reloaded = []
        for path in [p for p in self._files if p not in present]:
            log.info("%s: removed; its objects are gone", path)
            self._set_objects(path, {})
            del self._files[path]
            changed = True
        for path, st in present.items():
            changed |= self._read(path, st, errors)
        # A file refused for defining an object that another file defines may be fine now
        # that the other files have changed: try those again (their verdict is not theirs).
        if changed:
            for path, st in present.items():
                if self._files[path].blocked:
                    changed |= self._read(path, st, errors, force=True)
        events = self._diff() if changed else []
        if changed or self._reloaded:
            self._report_findings()
        if events:
            self.reads += 1
            self.last_change = time.monotonic()
        return events, errors

    def _read(self, path: Path, st: _Stat, errors: list[str], *, force: bool = False) -> bool:
        """Re-read `path` (`st`: its stat, or why it failed) if it changed; True when its objects did."""
        state = self._files.setdefault(path, _File())
        if st is None:  # in a directory that cannot be listed: left as it was
            if state.error:
                errors.append(state.error)
            return False
        if isinstance(st, OSError):
            self._report(state, f"{path}: cannot read: {st.strerror or st}", errors)
            return False
        before = files.signature(st)
        if before == state.signature and not force:
            if state.error:
                errors.append(state.error)
            return False
        if not stat.S_ISREG(st.st_mode):
            problem = f"{path}: {files.not_regular(st.st_mode)}"
        elif st.st_size > self.max_bytes:
            problem = f"{path}: {files.too_large(st.st_size, self.max_bytes, OPTION)}"
        elif self._loaded and 0 <= time.time() - st.st_mtime < SETTLE:
            return False  # modified a moment ago, perhaps still being written: next time
        else:
            try:
                raw, after = files.read_regular(path, self.max_bytes, OPTION)
                self.files_read += 1
                if after != before:
                    return False  # being written right now: look again next time
                text = files.decode(raw)
            except files.FileError as exc:
                problem = f"{path}: {exc}"
            except OSError as exc:
                self._report(state, f"{path}: cannot read: {exc.strerror or exc}", errors)
                return False  # perhaps a moment's problem: try again next time
            else:
                return self._use(path, state, before, text, errors)
        self._report(state, problem, errors)
        state.signature = before  # not looked at again until it changes
        return False

    def _use(self, path: Path, state: _File, before: tuple[int, int, int], text: str, errors: list[str]) -> bool:
        """Parse and check what was read; True when the file's objects changed."""
        try:
            parsed = self._parse(path, text)
        except ManifestError as exc:
            problem, blocked = str(exc), isinstance(exc, _Duplicate)
        except Exception as exc:  # noqa: BLE001 - any input a parser chokes on is a broken file
            problem, blocked = f"{path}: cannot parse: {type(exc).__name__}: {exc}", False
        else:
            if state.error:
                log.info("%s: fixed", path)
            state.signature, state.error, state.blocked = before, None, False
            state.where, state.findings, state.facts = parsed.where, parsed.findings, parsed.facts
            self._reloaded.append(path)
            return self._set_objects(path, parsed.objects)
        self._report(state, problem, errors)
        state.signature = before  # do not re-read an unchanged broken file
        state.blocked = blocked
        return False

    def _set_objects(self, path: Path, objects: dict[ObjectKey, KubeObject]) -> bool:
        state = self._files[path]
        if objects == state.objects:
            return False
        for key in state.objects.keys() - objects.keys():
            if self._owners.get(key) == path:
                del self._owners[key]
        for key in objects:
            self._owners[key] = path
        state.objects = objects
        return True

    def _report(self, state: _File, problem: str, errors: list[str]) -> None:
        errors.append(problem)
        if problem != state.error:
            state.error = problem
            if self._loaded:  # at start the caller refuses to run instead
                kept = "keeping its previous contents" if state.objects else "ignoring it"
                log.error("%s (%s)", problem, kept)

    def _list_files(self) -> dict[Path, _Stat]:
        """The files to read, in order, with their stat (following symlinks) or why it failed.

        A named directory contributes its regular files with a manifest suffix, sorted by
        name (all it had, stat None, while it cannot be listed); a named file is itself,
        whatever it has become (`_read` says what is wrong).
        """
        found: dict[Path, _Stat] = {}
        for path in self.paths:
            st = _stat(path)
            if path not in self._is_dir and isinstance(st, os.stat_result):
                self._is_dir[path] = stat.S_ISDIR(st.st_mode)
            if self._is_dir.get(path):
                found.update(self._list_directory(path))
            elif isinstance(st, os.stat_result) or path in self._files:
                found[path] = st
        return found

    def _list_directory(self, path: Path) -> dict[Path, _Stat]:
        entries: list[tuple[str, os.stat_result]] = []
        try:
            with os.scandir(path) as listing:
                for entry in listing:
                    if os.path.splitext(entry.name)[1] not in SUFFIXES:
                        continue
                    try:
                        st = entry.stat()
                    except OSError:
                        continue  # a dangling symlink, or gone since listed: not a file here
                    if stat.S_ISREG(st.st_mode):
                        entries.append((entry.name, st))
        except OSError as exc:
            problem = f"{path}: cannot list: {exc.strerror or exc}"
            if self._list_errors.get(path) != problem:
                self._list_errors[path] = problem
                log.error("%s (keeping what it had)", problem)
            return {p: None for p in self._files if p.parent == path}
        if self._list_errors.pop(path, None):
            log.info("%s: can be listed again", path)
        entries.sort()
        known = self._children.get(path, {})
        children = self._children[path] = {name: known.get(name) or path / name for name, _ in entries}
        return {children[name]: st for name, st in entries}

    def _parse(self, path: Path, text: str) -> _Parsed:
        documents = _documents(path, text, files.node_limit(self.max_bytes))
        parsed = _Parsed({}, {}, [], together.Facts())
        objects = parsed.objects
        for position, document, line, item_lines, node in documents:
            where = f"{path}: {position}"
            for item, item_position, item_line, item_node in _items(where, document, position, line, item_lines, node):
                if isinstance(item.get("kind"), str) and self.scope.admits(item, item["kind"]):
                    place = checks.Place(str(path), item_line, item_position)
                    with_fields = checks.Place(str(path), item_line, item_position, checks.field_lines(item_node))
                    parsed.findings += checks.check_object(item, with_fields, refusals=False)
                    parsed.facts.add(item, place)  # (kept: without the node, which must go)
                kind = convert.kind_of(item)
                if kind in self.skip:
                    log.debug("%s: skipping %s: not asked for (%s)", path, describe(_key_of(item)), SKIPPED_BECAUSE.get(kind, ""))
                    continue
                if kind is None:
                    known = {k: v for (v, k) in convert.KINDS}
                    if item["kind"] in known:
                        log.warning(
                            "%s: skipping %s: apiVersion %r, kdns reads %s",
                            path, describe(_key_of(item)), item.get("apiVersion"), known[item["kind"]],
                        )
                    else:
                        log.debug("%s: skipping %s: not used for DNS", path, describe(_key_of(item)))
                    continue
                if not self.scope.admits(item, item["kind"]):
                    log.debug("%s: skipping %s: outside --namespaces/--labels", path, describe(_key_of(item)))
                    continue
                try:
                    obj = convert.convert(item, self.allocator, pod_names=self.scope.pod_names)
                except convert.ObjectError as exc:
                    raise ManifestError(f"{path}: {exc}") from None
                if obj is None:
                    log.debug("%s: skipping %s: not used for DNS", path, describe(_key_of(item)))
                    continue
                if isinstance(obj, Service):
                    self.allocator.reserve(obj.cluster_ips)
                if obj.key in objects:
                    raise ManifestError(f"{path}: {describe(obj.key)}: defined twice in this file")
                owner = self._owner(obj.key, path)
                if owner is not None:
                    raise _Duplicate(f"{path}: {describe(obj.key)}: already defined in {owner}")
                objects[obj.key] = obj
                parsed.where[obj.key] = item_line if item_line is not None else item_position
        return parsed

    def locate(self, key: ObjectKey) -> str | None:
        """Where the object with this key is defined: `file:line`, or `file: position` (JSON)."""
        path = self._owners.get(key)
        state = self._files.get(path) if path is not None else None
        where = state.where.get(key) if state is not None else None
        if where is None:
            return None
        return f"{path}:{where}" if isinstance(where, int) else f"{path}: {where}"

    def _report_findings(self) -> None:
        """Log what the checks find: each file's own findings when it was (re)loaded, and
        the findings of the objects together that are new since the last time."""
        reloaded = {str(path) for path in self._reloaded}
        for path in self._reloaded:
            for finding in sorted(self._files[path].findings, key=lambda f: f.order):
                log.warning("%s", finding)
        found = together.check_set(together.Facts.merge(state.facts for state in self._files.values()))
        for finding in sorted(found, key=lambda f: f.order):
            if finding.file in reloaded or str(finding) not in self._warned:
                log.warning("%s", finding)
        self._warned = {str(finding) for finding in found}

    def _owner(self, key: ObjectKey, path: Path) -> Path | None:
        owner = self._owners.get(key)
        return owner if owner != path else None

    def _diff(self) -> list[Event]:
        state: dict[ObjectKey, KubeObject] = {}
        for f in self._files.values():
            state.update(f.objects)
        events: list[Event] = [Delete(key) for key in self._state if key not in state]
        events += [Upsert(obj) for key, obj in state.items() if self._state.get(key) != obj]
        self._state = state
        return events


def _key_of(item: dict) -> ObjectKey:
    kind, namespace, name = convert.identify(item)
    return (kind, namespace, name)  # type: ignore[return-value]


def _stat(path: Path) -> os.stat_result | OSError:
    """The stat of `path` (following symlinks), or why there is none."""
    try:
        return os.stat(path)
    except OSError as exc:
        return exc


# (position, document, its line, the lines of its items, its YAML node when the file is small)
_Document = tuple[str, object, int | None, list[int], yaml.Node | None]


def _documents(path: Path, text: str, max_nodes: int) -> list[_Document]:
    """(position, parsed document, line, item lines) of each document; position names the
    document in messages; the lines are those of the document and of the entries of its
    `items` list (none for JSON)."""
    if path.suffix == ".json":
        try:
            return [("document 1", json.loads(text), None, [], None)]
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
    lines: list[tuple[int | None, list[int], yaml.Node | None]] = []
    keep = len(text) <= FIELD_LINES

    def note(node: yaml.Node) -> None:  # the lines; the nodes of a large file go as soon as they are built
        items = yamlload.child(node, "items")
        entries = items.value if isinstance(items, yaml.SequenceNode) else []
        lines.append((yamlload.line_of(node), [entry.start_mark.line + 1 for entry in entries], node if keep else None))

    try:
        docs = files.load_yaml_all(text, max_nodes, hint=f"{OPTION} / {files.NODE_BYTES}", on_node=note)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: {files.yaml_problem(exc, text)}") from None
    return [(f"document {i}", doc, *lines[i - 1]) for i, doc in enumerate(docs, 1) if doc is not None]


def _items(where: str, document: object, position: str = "", line: int | None = None, item_lines: list[int] | None = None,
           node: yaml.Node | None = None) -> list[tuple[dict, str, int | None, yaml.Node | None]]:
    """The objects of a document (those of a List one by one), each with its position, line
    (entries of a List nested in a List have the line of the outer entry) and YAML node."""
    if not isinstance(document, dict) or not isinstance(document.get("kind"), str):
        raise ManifestError(f"{where}: not a Kubernetes object (a mapping with apiVersion and kind)")
    kind = document["kind"]
    if kind == "List" or (kind.endswith("List") and "items" in document):
        items = document.get("items") or []
        if not isinstance(items, list):
            raise ManifestError(f"{where}: {kind}: items: expected a list")
        out = []
        below = yamlload.child(node, "items")
        for i, item in enumerate(items):
            at = item_lines[i] if item_lines and i < len(item_lines) else line
            out.extend(_items(f"{where}: items[{i}]", item, f"{position}, items[{i}]", at, None, yamlload.child(below, i)))
        return out
    return [(document, position, line, node)]


async def watch_manifests(manifests: ManifestSet, send: trio.MemorySendChannel, interval: float) -> None:
    """Poll the files every `interval` seconds; send each batch of changes as a list."""
    while True:
        await trio.sleep(interval)
        # Abandoned on cancellation: a shutdown does not wait for a slow read to finish.
        events, _ = await trio.to_thread.run_sync(manifests.rescan, abandon_on_cancel=True)
        if events:
            log.info("manifests changed: %d object(s) updated or removed", len(events))
            await send.send(events)
