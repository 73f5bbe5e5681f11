"""Kubernetes manifests on disk as a source of change events.

`ManifestSet` reads files and directories of `.yaml`, `.yml` and `.json` files
(multi-document YAML, `kind: List`, JSON) into model values, and on `rescan()` works out
what changed since the last look, per file: a file that fails to parse or check keeps the
objects it had before, and the problem comes back as a one-line message naming the file, the
object and the field. `watch_manifests` polls for changes and sends the events on.

Directories are read one level deep, like `kubectl apply -f DIR`. An object defined in two
files is an error in the file that defines it second.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio
import yaml

from kdns.model import Delete, Event, KubeObject, ObjectKey, Service, Upsert, describe
from kdns.sources import convert
from kdns.sources.allocate import ClusterIPAllocator
from kdns.sources.select import Scope

log = logging.getLogger("kdns.manifests")

SUFFIXES = (".yaml", ".yml", ".json")
SETTLE = 0.05  # seconds: a file modified more recently than this is read on the next look


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


class ManifestSet:
    def __init__(self, paths: list[str] | tuple[str, ...], scope: Scope | None = None):
        self.paths = [Path(p) for p in paths]
        self.scope = scope or Scope()
        self.allocator = ClusterIPAllocator()
        self._files: dict[Path, _File] = {}
        self._state: dict[ObjectKey, KubeObject] = {}
        self._owners: dict[ObjectKey, Path] = {}  # which file defines each object
        self._loaded = False
        self.reads = 0  # rescans that found changes (for metrics)
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
        for path in list(self._files):
            if path not in present:
                log.info("%s: removed; its objects are gone", path)
                self._set_objects(path, {})
                del self._files[path]
                changed = True
        for path in present:
            changed |= self._read(path, errors)
        # A file refused for defining an object that another file defines may be fine now
        # that the other files have been read: try those again (their verdict is not theirs).
        for path in present:
            if self._files[path].blocked:
                changed |= self._read(path, errors, force=True)
        events = self._diff() if changed else []
        if events:
            self.reads += 1
            self.last_change = time.monotonic()
        return events, errors

    def _read(self, path: Path, errors: list[str], *, force: bool = False) -> bool:
        """Re-read `path` if it changed; True when its objects did."""
        state = self._files.setdefault(path, _File())
        try:
            before = _signature(path)
            if before == state.signature and not force:
                if state.error:
                    errors.append(state.error)
                return False
            if self._loaded and 0 <= time.time() - before[0] / 1e9 < SETTLE:
                return False  # modified a moment ago, perhaps still being written: next time
            text = path.read_text(encoding="utf-8")
            if _signature(path) != before:
                return False  # being written right now: look again next time
        except (OSError, UnicodeDecodeError) as exc:
            problem = f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}"
            self._report(state, problem, errors)
            return False
        try:
            objects = self._parse(path, text)
        except ManifestError as exc:
            problem, blocked = str(exc), isinstance(exc, _Duplicate)
        except Exception as exc:  # noqa: BLE001 - any input a parser chokes on is a broken file
            problem, blocked = f"{path}: cannot parse: {type(exc).__name__}: {exc}", False
        else:
            if state.error:
                log.info("%s: fixed", path)
            state.signature, state.error, state.blocked = before, None, False
            return self._set_objects(path, objects)
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

    def _list_files(self) -> list[Path]:
        found: dict[Path, None] = {}
        for path in self.paths:
            if path.is_dir():
                try:
                    entries = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
                except OSError as exc:
                    log.error("%s: cannot list: %s", path, exc.strerror)
                    entries = [p for p in self._files if p.parent == path]  # keep what we had
                found.update(dict.fromkeys(entries))
            elif path.exists() or path in self._files:
                found[path] = None
        return list(found)

    def _parse(self, path: Path, text: str) -> dict[ObjectKey, KubeObject]:
        documents = _documents(path, text)
        objects: dict[ObjectKey, KubeObject] = {}
        for position, document in documents:
            where = f"{path}: {position}"
            for item in _items(where, document):
                kind = convert.kind_of(item)
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
                    obj = convert.convert(item, self.allocator)
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
        return objects

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


def _signature(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _documents(path: Path, text: str) -> list[tuple[str, object]]:
    """(position, parsed document) pairs; position names the document in messages."""
    if path.suffix == ".json":
        try:
            return [("document 1", json.loads(text))]
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise ManifestError(f"{path}: {line}invalid YAML: {problem}") from None
    return [(f"document {i}", doc) for i, doc in enumerate(docs, 1) if doc is not None]


def _items(where: str, document: object) -> list[dict]:
    if not isinstance(document, dict) or not isinstance(document.get("kind"), str):
        raise ManifestError(f"{where}: not a Kubernetes object (a mapping with apiVersion and kind)")
    kind = document["kind"]
    if kind == "List" or (kind.endswith("List") and "items" in document):
        items = document.get("items") or []
        if not isinstance(items, list):
            raise ManifestError(f"{where}: {kind}: items: expected a list")
        out = []
        for i, item in enumerate(items):
            out.extend(_items(f"{where}: items[{i}]", item))
        return out
    return [document]


async def watch_manifests(manifests: ManifestSet, send: trio.MemorySendChannel, interval: float) -> None:
    """Poll the files every `interval` seconds; send each batch of changes as a list."""
    while True:
        await trio.sleep(interval)
        events, _ = await trio.to_thread.run_sync(manifests.rescan)
        if events:
            log.info("manifests changed: %d object(s) updated or removed", len(events))
            await send.send(events)
