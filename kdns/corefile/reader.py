"""The one door to files for the Corefile front end: read with a byte limit, and glob.

The parser never opens a file itself; it asks a `Reader`. `DiskReader` (kdns.corefile.disk)
reads the real file system (the only code in kdns/corefile that does I/O); `MemoryReader`
serves files held in memory: the keys of a ConfigMap, or a test's fixtures. This module is
pure: the protocol, its errors and the in-memory reader.

Glob patterns follow what CoreDNS's `import` accepts: `*` and `?` match within one path
component (never a `/`) and do match names starting with a dot; CoreDNS refuses patterns with
more than one `*`, more than one `?` or a `[...]` class before they get here.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Protocol

DEFAULT_LIMIT = 1 << 20  # bytes per file: a Corefile, an import, a ConfigMap manifest


class ReadError(Exception):
    """A file could not be read; the message says why (no path: the caller adds it)."""


class NotFound(ReadError):
    """There is no file at that path."""


class Reader(Protocol):
    limit: int

    def read(self, path: str) -> bytes:
        """The file's bytes; ReadError when it is missing, a directory or over `limit`."""
        ...

    def glob(self, pattern: str) -> list[str]:
        """The paths matching `pattern`, sorted."""
        ...

    def describe(self, path: str) -> str:
        """How `path` is named in messages."""
        ...


class MemoryReader:
    """Files held in memory, keyed by normalised POSIX path.

    `labels` names files in messages (`coredns.yaml[coredns/Corefile]`); paths not held here
    go to `fallback` when one is given, else they do not exist."""

    def __init__(self, files: Mapping[str, str | bytes], labels: Mapping[str, str] | None = None,
                 limit: int = DEFAULT_LIMIT, fallback: Reader | None = None) -> None:
        self.limit = limit
        self.fallback = fallback
        self._files = {posixpath.normpath(p): (v.encode() if isinstance(v, str) else v) for p, v in files.items()}
        self._labels = {posixpath.normpath(p): v for p, v in (labels or {}).items()}
        self._dirs = {posixpath.dirname(p) for p in self._files}
        for d in list(self._dirs):
            while d not in ("", "/", "."):
                d = posixpath.dirname(d)
                self._dirs.add(d)

    def read(self, path: str) -> bytes:
        path = posixpath.normpath(path)
        if path in self._files:
            data = self._files[path]
            if len(data) > self.limit:
                raise ReadError(f"larger than {self.limit} bytes")
            return data
        if path in self._dirs:
            raise ReadError("is a directory")
        if self.fallback is not None:
            return self.fallback.read(path)
        raise NotFound("no such file")

    def glob(self, pattern: str) -> list[str]:
        pattern = posixpath.normpath(pattern)
        rx = re.compile("/".join(_component(part) for part in pattern.split("/")) + r"\Z")
        found = {p for p in self._files if rx.match(p)} | {d for d in self._dirs if rx.match(d)}
        if self.fallback is not None:
            found.update(self.fallback.glob(pattern))
        return sorted(found)

    def describe(self, path: str) -> str:
        path = posixpath.normpath(path)
        if path in self._labels:
            return self._labels[path]
        return self.fallback.describe(path) if self.fallback is not None and path not in self._files else path


def _component(part: str) -> str:
    return "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in part)
