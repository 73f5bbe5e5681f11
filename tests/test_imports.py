"""The tiers of kdns and the direction of their imports, read from the source (ast).

* The pure tier (`PURE`) does no I/O, no trio, no wall clock: a pure module imports only the
  stdlib modules in `PURE_STDLIB`, its allowed libraries (`PURE_LIBRARIES`) and other pure
  modules; never trio, sockets, the kubernetes client, nor any shell module.
* The shell (every other module: sources that do I/O, serve/, observe, settings, workers)
  and the composition tier (app, cli, testing) may import the pure tier and each other,
  within these rules:
  - `kdns.app` is imported by `kdns.cli` (the command) and `kdns.testing.server` (which
    builds a Server for other projects' tests), nothing else;
  - `kdns.cli` is imported by `kdns.__main__` only;
  - `kdns.testing` is imported by nothing outside it, and only `kdns.testing.plugin`
    imports pytest.

Every module of kdns/ must be in one tier or the other: a new module says where it belongs.
Imports inside functions count as much as those at the top.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from testkit.repo import ROOT

KDNS = ROOT / "kdns"

PURE = {
    "kdns.answer", "kdns.answer_hosts", "kdns.rewrite", "kdns.templates", "kdns.external", "kdns.hostindex", "kdns.hosts", "kdns.result", "kdns.snapshot",
    "kdns.static", "kdns.tables", "kdns.ttlpatch", "kdns.cache", "kdns.codes", "kdns.config", "kdns.guard", "kdns.index", "kdns.model", "kdns.names",
    "kdns.options", "kdns.packing", "kdns.pool", "kdns.records", "kdns.reload", "kdns.responder", "kdns.state", "kdns.stats", "kdns.upstream",
    "kdns.wire", "kdns.yamlload", "kdns.sources.allocate", "kdns.sources.backoff", "kdns.sources.convert", "kdns.sources.select",
    "kdns.ingress", "kdns.gateway", "kdns.webhosts", "kdns.sources.convert_web", "kdns.sources.resources",
    "kdns.corefile.configmap", "kdns.corefile.keys", "kdns.corefile.kubedns", "kdns.corefile.lexer", "kdns.corefile.model",
    "kdns.corefile.parser", "kdns.corefile.reader", "kdns.corefile.review", "kdns.corefile.translate", "kdns.testing.match",
    "kdns.explain", "kdns.explain.endpoint", "kdns.explain.negative", "kdns.explain.provenance", "kdns.explain.report", "kdns.explain.search",
    "kdns.explain.why", "kdns.lint", "kdns.lint.checks", "kdns.lint.together", "kdns.transfer",
    "kdns.corefile.translate.blocks", "kdns.corefile.translate.cache", "kdns.corefile.translate.context", "kdns.corefile.translate.forward", "kdns.corefile.translate.hosts", "kdns.corefile.translate.kubernetes", "kdns.corefile.translate.rewrite", "kdns.corefile.translate.server", "kdns.corefile.translate.values",
}
SHELL = {
    "kdns", "kdns.__main__", "kdns.app", "kdns.cli", "kdns.files", "kdns.observe", "kdns.settings", "kdns.workers",
    "kdns.corefile", "kdns.corefile.disk",  # the package re-exports DiskReader, the front end's one door to the disk
    "kdns.corefile.wiring", "kdns.corefile.cli",  # serving a Corefile: reads files, builds the ServeConfig
    "kdns.caps",  # Linux capabilities (binding port 53 without root)
    "kdns._udpbatch",  # the C part (kdns/_udpbatch.c)
    "kdns.serve", "kdns.serve.forward", "kdns.serve.listeners", "kdns.serve.serving", "kdns.serve.tcp", "kdns.serve.udp",
    "kdns.sources", "kdns.sources.hosts", "kdns.sources.kubernetes", "kdns.sources.manifests", "kdns.sources.source",
    "kdns.testing", "kdns.testing.plugin", "kdns.testing.resolver", "kdns.testing.server", "kdns.testing.tap",
    "kdns.testing.querylog", "kdns.testing.manifests", "kdns.exec", "kdns.linuxns",
    "kdns.explain.command", "kdns.lint.command",
}
PURE_STDLIB = {
    "__future__", "abc", "collections", "dataclasses", "datetime", "enum", "functools", "hashlib", "ipaddress", "itertools",
    "json", "logging", "math", "operator", "posixpath", "re", "string", "struct", "typing",
}
PURE_LIBRARIES = {"dnslib", "immutables", "cachetools", "yaml"}  # yaml: parsing text (kdns.yamlload bounds it)

# Who may import the composition tier (module -> the modules allowed to import it).
IMPORTED_ONLY_BY = {
    "kdns.app": {"kdns.cli", "kdns.exec", "kdns.testing.server"},
    "kdns.cli": {"kdns.__main__"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {module_name(path): path for path in KDNS.rglob("*.py")}
    found.update({f"kdns.{path.stem}": path for path in KDNS.glob("*.c")})
    return found


MODULES = modules()


def imports(name: str) -> set[str]:
    """Every module `name` imports (kdns modules by their full name, others by their top package)."""
    path = MODULES[name]
    if path.suffix != ".py":
        return set()
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {_resolve(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name}: relative import (kdns uses absolute ones)"
            base = node.module or ""
            if base.split(".")[0] != "kdns":
                out.add(base.split(".")[0])
                continue
            for alias in node.names:  # `from kdns import wire` imports the module kdns.wire
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return out


def _resolve(dotted: str) -> str:
    return dotted if dotted.split(".")[0] == "kdns" else dotted.split(".")[0]


def test_every_module_is_in_a_tier():
    assert not PURE & SHELL
    assert set(MODULES) == PURE | SHELL, f"not in a tier: {sorted(set(MODULES) - PURE - SHELL)}; gone: {sorted(PURE | SHELL - set(MODULES))}"


def test_the_allowed_stdlib_modules_are_stdlib():
    assert PURE_STDLIB <= set(sys.stdlib_module_names) | {"__future__"}


@pytest.mark.parametrize("name", sorted(PURE))
def test_pure_modules_import_only_the_pure_tier(name):
    """design.md: the core imports no trio, sockets, clock, Kubernetes client, nor the shell."""
    bad = {m for m in imports(name) if m not in PURE and m not in PURE_STDLIB and m not in PURE_LIBRARIES}
    assert not bad, f"{name} (pure) imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_only_the_entry_points_import_the_composition_tier(name):
    for imported, allowed in IMPORTED_ONLY_BY.items():
        if imported in imports(name):
            assert name in allowed, f"{name} imports {imported}, which only {sorted(allowed)} may import"
    if name.split(".")[:2] != ["kdns", "testing"]:
        assert not {m for m in imports(name) if m.startswith("kdns.testing")}, f"{name} imports kdns.testing"
    if name != "kdns.testing.plugin":
        assert "pytest" not in imports(name), f"{name} imports pytest (only kdns.testing.plugin may)"


def test_mypy_is_strict_on_exactly_the_pure_tier():
    """pyproject.toml names the pure tier again for mypy (strict there); the two lists agree."""
    import tomllib

    overrides = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["overrides"]
    strict = [o for o in overrides if o.get("disallow_untyped_defs")]
    assert len(strict) == 1, "one mypy override holds the strict flags"
    assert set(strict[0]["module"]) == PURE
