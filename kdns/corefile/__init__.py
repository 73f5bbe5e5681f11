"""The Corefile front end: CoreDNS's configuration language read into frozen values.

Pure: no sockets, no trio, no clock, no environment. Files are read only through the injected
`Reader` (`DiskReader` for the real file system, `MemoryReader` for ConfigMap keys and tests),
each read capped at the reader's byte limit (1 MiB by default); the environment for `{$VAR}`
is a mapping the caller passes.

    corefile = read_corefile("/etc/coredns/Corefile", DiskReader(), env=dict(os.environ))
    corefile.check()                       # raises CorefileError (all problems in .problems)
    block = corefile.server_for("web.default.svc.cluster.local", 53)

Bounds (each an error when exceeded, `Limits`): 1,000 imported files, 16 MiB read in all,
200,000 tokens after imports and snippets, 10,000 snippet imports, imports 64 deep, blocks in
a directive's block 32 deep.

Modules: `lexer` (tokens, env substitution), `parser` (blocks, imports, snippets), `keys`
(server keys, CIDR reverse zones, one block per zone:port), `model` (the values), `kubedns` (the kube-dns ConfigMap
shape), `configmap` (ConfigMap manifests), `reader` (the file door).
"""

from __future__ import annotations

from collections.abc import Mapping

from kdns.corefile.configmap import read_manifest
from kdns.corefile.disk import DiskReader
from kdns.corefile.keys import DNS_PORT, parse_key, reverse_zones
from kdns.corefile.kubedns import from_kube_dns
from kdns.corefile.model import Corefile, CorefileError, Directive, Origin, ServerBlock, ServerKey
from kdns.corefile.parser import Limits, Parser
from kdns.corefile.reader import MemoryReader, Reader, ReadError

__all__ = [
    "Corefile", "CorefileError", "Directive", "DiskReader", "Limits", "MemoryReader", "Origin", "ReadError", "Reader",
    "ServerBlock", "ServerKey", "from_kube_dns", "load", "parse_key", "parse_text", "read_corefile", "read_manifest",
    "reverse_zones",
]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def parse_text(text: str, path: str = "Corefile", *, reader: Reader | None = None, env: Mapping[str, str] | None = None,
               default_port: int = DNS_PORT, limits: Limits | None = None) -> Corefile:
    """Parse Corefile text; `path` names it and anchors relative imports (read via `reader`)."""
    return Parser(reader or MemoryReader({}), env, default_port, limits).parse_text(text, path)


def read_corefile(path: str, reader: Reader, *, env: Mapping[str, str] | None = None, default_port: int = DNS_PORT,
                  limits: Limits | None = None) -> Corefile:
    """Read and parse the Corefile at `path`, with its imports, through `reader`."""
    return Parser(reader, env, default_port, limits).parse_file(path)


def load(path: str, reader: Reader, **options) -> Corefile:
    """A Corefile, or a ConfigMap manifest when `path` ends in .yaml, .yml or .json."""
    if path.endswith(MANIFEST_SUFFIXES):
        return read_manifest(path, reader, **options)
    return read_corefile(path, reader, **options)
