"""YAML with bounds: PyYAML's safe loading, with a limit on nodes and nesting. Pure.

`load_yaml_all` / `load_yaml` parse YAML with libyaml's parser when PyYAML has it (about 3
times faster than the pure-Python one), PyYAML's safe constructor, and a composer that
counts nodes as it builds them: each alias counts as a copy of the node it names, so a few
hundred bytes of nested aliases (a "billion laughs" file) are refused after a set number of nodes
instead of being walked for minutes (see NODE_BYTES); nesting is limited to MAX_DEPTH
levels. The limits apply to a whole text, all its documents together. No I/O: text in,
values out (kdns.files reads the files).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import Node
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml: the pure-Python parser
    CParser = None  # type: ignore[assignment,misc]  # tested below

MIB = 1 << 20
# YAML nodes allowed per byte of a file's size limit, counting each alias as a copy of what it
# names: aliases can make a file cost no more than the largest file accepted without them.
# PyYAML holds every node of a document at once, with the objects built from them: up to
# ~400 bytes a node (measured; ~300 for ordinary manifests), so reading a file takes, for a
# moment, up to about 25 times its size limit in memory (16 MiB: 1,048,576 nodes, ~410 MB,
# and 6-8 s of CPU), as JSON's worst case (`[{},{},...]`, 415 MB) does. A Service written
# out takes 15-30 nodes of 5 to 10 bytes each, so files of ordinary manifests up to ~6 MB
# (~30,000 Services) fit under the default limit, and text-heavy ones (CRDs) up to its size.
NODE_BYTES = 16
# Kubernetes objects nest about 10 levels, CustomResourceDefinition schemas some 40.
MAX_DEPTH = 100


def node_limit(max_bytes: int) -> int:
    """The YAML nodes a file may hold under a size limit of `max_bytes` (see NODE_BYTES)."""
    return max_bytes // NODE_BYTES


# -- YAML -----------------------------------------------------------------------------------


class LimitError(yaml.MarkedYAMLError):
    """YAML over its node limit or MAX_DEPTH, or a recursive alias (a YAMLError with a problem_mark;
    the problem starts with what is wrong: "too big: ...")."""


class _CountingComposer(Composer):
    """PyYAML's composer, counting nodes (aliases as copies) and nesting as it goes."""

    def __init__(self, max_nodes: int, max_depth: int, hint: str) -> None:
        Composer.__init__(self)
        self.max_nodes = max_nodes
        self.hint = f" ({hint})" if hint else ""
        self.max_depth = max_depth
        self.nodes = 0  # so far in this file, aliases expanded
        self._depth = 0
        self._sizes: dict[str, int] = {}  # anchor -> nodes under it, aliases expanded

    peek_event: Callable[[], Any]  # the Parser's, mixed in beside this class (libyaml's or PyYAML's)

    def compose_document(self) -> Node | None:
        self._sizes = {}  # anchors are per document
        return Composer.compose_document(self)

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            if event.anchor in self.anchors and event.anchor not in self._sizes:
                mark = event.start_mark  # PyYAML's Mark or libyaml's, which has the same fields
                raise LimitError(None, None, f"recursive: alias *{event.anchor} inside the node it names", mark)  # type: ignore[arg-type]
            self._count(self._sizes.get(event.anchor, 0), event)  # type: ignore[arg-type]  # an alias always names an anchor
            return Composer.compose_node(self, parent, index)
        self._depth += 1
        if self._depth > self.max_depth:
            raise LimitError(None, None, f"too deep: nested more than {self.max_depth} levels", event.start_mark)
        before = self.nodes
        self._count(1, event)
        node = Composer.compose_node(self, parent, index)
        assert node is not None  # None only at the end of the stream, which peek_event showed is not here
        node.end_mark = node.start_mark  # not used by the constructor: 80 bytes a node saved
        self._depth -= 1
        if event.anchor is not None:
            self._sizes[event.anchor] = self.nodes - before
        return node

    def _count(self, n: int, event: Any) -> None:
        self.nodes += n
        if self.nodes > self.max_nodes:
            raise LimitError(
                None, None,
                f"too big: more than {self.max_nodes:,} nodes{self.hint}, counting each alias as a copy of what it names",
                event.start_mark,
            )


class _PyLoader(Reader, Scanner, Parser, _CountingComposer, SafeConstructor, Resolver):
    def __init__(self, text: str, max_nodes: int, max_depth: int, hint: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _CountingComposer.__init__(self, max_nodes, max_depth, hint)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


LOADERS: dict[str, type] = {"python": _PyLoader}

if CParser is not None:

    class _CLoader(_CountingComposer, CParser, SafeConstructor, Resolver):
        """libyaml scans and parses; the composer above (not libyaml's) builds the nodes."""

        def __init__(self, text: str, max_nodes: int, max_depth: int, hint: str) -> None:
            CParser.__init__(self, text)
            _CountingComposer.__init__(self, max_nodes, max_depth, hint)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    LOADERS["libyaml"] = _CLoader

PARSER = "libyaml" if "libyaml" in LOADERS else "python"  # the one used unless told


def load_yaml_all(text: str, max_nodes: int, *, hint: str = "", max_depth: int = MAX_DEPTH, parser: str = PARSER,
                  on_node: Callable[[yaml.Node], None] | None = None) -> list[Any]:
    """Every document of `text` (None for empty ones), with at most `max_nodes` nodes in all.

    `on_node`, if given, sees each document's root node before it is turned into values: the
    nodes carry where they start (`start_mark.line`, 0-based), which is how the readers of
    manifests learn the line of each object without keeping the nodes (see `line_of`).

    Raises yaml.YAMLError (LimitError for the limits; `hint` says where the node limit comes
    from) for text that is not YAML, and whatever PyYAML's constructors raise for values they
    refuse (`!!float 5z`).
    """
    loader = LOADERS[parser](text, max_nodes, max_depth, hint)
    try:
        docs = []
        while loader.check_node():
            node = loader.get_node()
            if on_node is not None:
                on_node(node)
            docs.append(_construct(loader, node))
        return docs
    finally:
        loader.dispose()


def load_yaml(text: str, max_nodes: int, *, hint: str = "", max_depth: int = MAX_DEPTH, parser: str = PARSER) -> Any:
    """The single document of `text` (None if empty), as yaml.safe_load, within the limits."""
    loader = LOADERS[parser](text, max_nodes, max_depth, hint)
    try:
        node = loader.get_single_node()
        return _construct(loader, node) if node is not None else None
    finally:
        loader.dispose()


def line_of(node: yaml.Node | None) -> int | None:
    """The 1-based line a node starts on (None for no node)."""
    return node.start_mark.line + 1 if node is not None and node.start_mark is not None else None


def child(node: yaml.Node | None, step: str | int) -> yaml.Node | None:
    """The node under `node` at a mapping key (str) or a sequence index (int), or None."""
    if isinstance(node, yaml.MappingNode) and isinstance(step, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == step:
                return cast(yaml.Node, value)
    elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        return cast(yaml.Node, node.value[step])
    return None


def key_node(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """The key node of `key` in a mapping node (where a field's name is written), or None."""
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return k
    return None


def _construct(loader: Any, node: Node) -> Any:
    """construct_document, depth first: PyYAML's breadth-first way keeps a suspended generator
    for every collection until the end (2.5 times the memory). Recursive aliases, which need
    it, are refused while composing; the recursion is bounded by MAX_DEPTH."""
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.constructed_objects = {}
        loader.recursive_objects = {}


def yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """One line for a YAML error: `line N: invalid YAML: what` (`line N: too big: what`...)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        problem = f"character #x{exc.character:04x} is not allowed" if isinstance(exc.character, int) else exc.reason
    else:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        context_mark = getattr(exc, "context_mark", None)
        if context and context_mark is not None and getattr(exc, "problem_mark", None) is not None:
            problem = f"{context} (line {context_mark.line + 1}): {problem}"
    if not isinstance(exc, LimitError):
        problem = f"invalid YAML: {problem}"
    return f"line {line}: {problem}" if line is not None else problem
