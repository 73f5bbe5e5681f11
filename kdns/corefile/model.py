"""What a Corefile says, as frozen values that remember where each part was written.

A `Corefile` is a list of server blocks; a `ServerBlock` has normalised keys (zone, port,
transport) and its directives in file order; a `Directive` has a name, arguments, an
optional block of lines (each line is a `Directive` too) and an `Origin`.

Zones are named the way the brief for kdns's Corefile front end asks: lowercase, no trailing
dot, and "." for the root zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kdns.corefile.reader import Reader


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a token was written: a file and a 1-based line, and the import that brought it in.

    `file` is the path the reader knows (imports resolve relative to it); `shown` is how the
    file is named in messages when that differs (a ConfigMap key, say). `via` is the origin of
    the `import` line that spliced this text in, `snippet` the snippet's name when that import
    named a snippet. Line 0 means "not from any line" (values made from a kube-dns ConfigMap).
    """

    file: str
    line: int
    via: Origin | None = None
    snippet: str | None = None
    shown: str | None = None

    @property
    def where(self) -> str:
        """`file:line` without the import chain."""
        name = self.shown or self.file
        return f"{name}:{self.line}" if self.line else name

    def __str__(self) -> str:
        hops = []
        here: Origin = self
        while here.via is not None:
            if here.snippet is not None:
                hops.append(f"in snippet ({here.snippet}), imported from {here.via.where}")
            else:
                hops.append(f"imported from {here.via.where}")
            here = here.via
        return f"{self.where} ({', '.join(hops)})" if hops else self.where


class CorefileError(Exception):
    """A problem with a Corefile, at a file and line.

    The parser collects every problem it can; `Corefile.check()` raises the first one with
    all of them in `problems`, so a linter can print each and a server can refuse to start.
    """

    def __init__(self, origin: Origin | None, message: str) -> None:
        super().__init__(message)
        self.origin = origin
        self.message = message
        self.problems: tuple[CorefileError, ...] = (self,)

    @property
    def file(self) -> str | None:
        return None if self.origin is None else (self.origin.shown or self.origin.file)

    @property
    def line(self) -> int | None:
        return None if self.origin is None else self.origin.line

    def __str__(self) -> str:
        text = self.message if self.origin is None else f"{self.origin}: {self.message}"
        more = len(self.problems) - 1
        return text + (f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else "")

    def __repr__(self) -> str:
        return f"CorefileError({self.origin!r}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class Directive:
    """One directive line, or one line inside a directive's block (same shape).

    `block` is None when the line has no braces, a tuple of lines when it has (empty for `{ }`).
    `arg_origins` holds each argument's own origin when the parser made the directive (an
    argument after a quoted string that spans lines is on a later line); `origin_of` reads it.
    `str()` shows the directive on one line, block lines separated by ';' (display only).
    """

    name: str
    args: tuple[str, ...]
    origin: Origin
    block: tuple[Directive, ...] | None = None
    arg_origins: tuple[Origin, ...] = field(default=(), compare=False, repr=False)

    def origin_of(self, index: int) -> Origin:
        """Where argument `index` was written."""
        return self.arg_origins[index] if index < len(self.arg_origins) else self.origin

    def lines(self, name: str) -> tuple[Directive, ...]:
        """The lines of this directive's block that start with `name`."""
        return tuple(line for line in self.block or () if line.name == name)

    def __str__(self) -> str:
        """The directive on one line, as a Corefile could say it: `cache 30 { disable success x }`."""
        text = " ".join(_quote(word) for word in (self.name, *self.args))
        if self.block is not None:
            text += " {" + "".join(f" {line};" for line in self.block).removesuffix(";") + " }"
        return text


def _quote(word: str) -> str:
    if word and not any(c.isspace() or c in '"#;' for c in word) and word not in ("{", "}"):
        return word
    return '"' + word.replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class ServerKey:
    """One zone a server block serves: `example.org:5353` -> ("example.org", 5353, "dns").

    A CIDR key becomes one ServerKey per reverse zone; `text` keeps the key as written."""

    zone: str
    port: int
    transport: str
    text: str
    origin: Origin

    def __str__(self) -> str:
        return f"{self.transport}://{self.zone}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerBlock:
    keys: tuple[ServerKey, ...]
    directives: tuple[Directive, ...]
    origin: Origin

    def directive(self, name: str) -> tuple[Directive, ...]:
        """Every directive called `name`, in file order."""
        return tuple(d for d in self.directives if d.name == name)

    @property
    def listen_hosts(self) -> tuple[str, ...]:
        """The `bind` arguments, or ("",) for every address (CoreDNS's unbound listener)."""
        hosts = tuple(arg for d in self.directive("bind") for arg in d.args)
        return hosts or ("",)

    @property
    def filtered(self) -> bool:
        """A `view` block shares its zone with others; its filter decides per query."""
        return bool(self.directive("view"))


@dataclass(frozen=True)
class Corefile:
    """A parsed Corefile: its server blocks and every problem found on the way.

    `files` names every file read (the Corefile and its imports) and `globs` every import
    pattern with a wildcard, so a reload can watch both. `reader` is the reader the parse used:
    later steps read `hosts` files and the like through it (a ConfigMap's keys live there).
    """

    blocks: tuple[ServerBlock, ...]
    errors: tuple[CorefileError, ...] = ()
    warnings: tuple[CorefileError, ...] = ()
    files: tuple[str, ...] = ()
    globs: tuple[str, ...] = ()
    reader: Reader | None = field(default=None, compare=False, repr=False)

    def check(self) -> Corefile:
        """Raise the first error (carrying all of them in `problems`), else return self."""
        if self.errors:
            first = CorefileError(self.errors[0].origin, self.errors[0].message)
            first.problems = self.errors
            raise first
        return self

    def server_for(self, qname: str, port: int, transport: str = "dns", address: str | None = None) -> ServerBlock | None:
        """The server block CoreDNS would hand this query to, or None (CoreDNS answers REFUSED).

        The longest zone that is `qname` or one of its parents wins, the root zone last; only
        keys on `port` and `transport` count, and with `address` (the local address the query
        came in on) only blocks listening there. Blocks with a `view` are candidates like any
        other: their filters are not evaluated here.
        """
        zones: dict[str, ServerBlock] = {}
        for block in self.blocks:
            if address is not None and not _listens_on(block, address):
                continue
            for key in block.keys:
                if key.port == port and key.transport == transport:
                    zones.setdefault(key.zone, block)
        name = qname.lower().rstrip(".")
        while name:
            if name in zones:
                return zones[name]
            name = name.partition(".")[2]
        return zones.get(".")


def _listens_on(block: ServerBlock, address: str) -> bool:
    hosts = block.listen_hosts
    return "" in hosts or address in hosts
