"""Tokens -> server blocks, the way CoreDNS's parser (coredns/caddy `caddyfile`) groups them.

The grammar, as CoreDNS reads it:

    file      := (block | snippet | import)*
    block     := keys ( "{" body "}" | body-to-end-of-file )
    keys      := key+           several per line; a key ending in "," continues on the next line
    snippet   := "(" name ")" "{" tokens "}"          kept as tokens, replayed by `import name`
    body      := (directive | import)*
    directive := name arg* ("{" line* "}")?           one line; "{" must be on that line
    line      := name arg* ("{" line* "}")?           inside a directive's block

`import PATTERN` is replaced by the tokens of the snippet of that name, else of the files the
pattern names (relative to the file holding the `import`; a glob matching nothing is fine).
It is an import at the start of a line at the top level, inside a block, and inside a
directive's block; elsewhere `import` is an ordinary word. It takes exactly one argument.

Where CoreDNS would fail, so does this parser, with the file and line and a message saying
what to change: a `}` on the same line as a directive closing the server block (`. { log }`),
an import cycle, a snippet imported before it is defined. Problems are collected rather than
raised at the first, so a linter can show them all.

Bounds (each exceeded is an error, not a crash): `Limits` below.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from kdns.corefile.keys import DNS_PORT, check_overlaps, parse_key
from kdns.corefile.lexer import Token, TokenStream, substitute, tokenize
from kdns.corefile.model import Corefile, CorefileError, Directive, Origin, ServerBlock, ServerKey
from kdns.corefile.reader import NotFound, Reader, ReadError


@dataclass(frozen=True)
class Limits:
    files: int = 1000  # files read through imports (a glob counts each match)
    total_bytes: int = 16 << 20  # all those files together
    tokens: int = 200_000  # tokens after every import and snippet is spliced in
    snippet_expansions: int = 10_000  # as CoreDNS
    depth: int = 64  # imports inside imports
    nesting: int = 32  # blocks inside a directive's block (CoreDNS's plugins read one level)


class Parser:
    """One parse: `parse_file` or `parse_text` once, then throw the parser away."""

    def __init__(self, reader: Reader, env: Mapping[str, str] | None = None, default_port: int = DNS_PORT,
                 limits: Limits | None = None) -> None:
        self.reader = reader
        self.env = env or {}
        self.default_port = default_port
        self.limits = limits or Limits()
        self.errors: list[CorefileError] = []
        self.warnings: list[CorefileError] = []
        self.files: list[str] = []
        self.globs: list[str] = []
        self.snippets: dict[str, tuple[Origin, list[Token]]] = {}
        self.blocks: list[ServerBlock] = []
        self.s = TokenStream()
        self._bytes = 0
        self._tokens = 0
        self._expansions = 0
        self._unset: set[str] = set()
        self._over = False
        self._nesting = 0

    # -- entry points ------------------------------------------------------------------

    def parse_file(self, path: str) -> Corefile:
        tokens = self._load(path, None)
        return self._run(tokens)

    def parse_text(self, text: str, path: str) -> Corefile:
        tokens, problems = tokenize(text, path, shown=self._shown(path))
        self.errors += problems
        self.files.append(path)
        return self._run(tokens if self._budget(len(tokens), Origin(path, 0, shown=self._shown(path))) else None)

    def _run(self, tokens: list[Token] | None) -> Corefile:
        if tokens is not None:
            self.s.push(tokens)
            while self.s.peek() is not None:
                self._top()
            if not self.blocks and not self.errors:
                self._error(Origin(self.files[0], 0, shown=self._shown(self.files[0])), "no server blocks: CoreDNS would serve nothing")
        check_overlaps(self.blocks, self.errors)
        return Corefile(tuple(self.blocks), tuple(self.errors), tuple(self.warnings), tuple(self.files), tuple(self.globs), self.reader)

    # -- helpers -----------------------------------------------------------------------

    def _error(self, where: Origin | Token | None, message: str) -> None:
        self.errors.append(CorefileError(where.origin if isinstance(where, Token) else where, message))

    def _warn(self, where: Origin | Token, message: str) -> None:
        self.warnings.append(CorefileError(where.origin if isinstance(where, Token) else where, message))

    def _shown(self, path: str) -> str | None:
        shown = self.reader.describe(path)
        return None if shown == path else shown

    def _sub(self, tok: Token) -> str:
        missing: list[str] = []
        text = substitute(tok.text, self.env, missing)
        for name in missing:
            if name not in self._unset:
                self._unset.add(name)
                self._warn(tok, f"environment variable {name} is not set: CoreDNS reads it as empty text")
        return text

    def _rest_of_line(self) -> list[Token]:
        out = []
        while self.s.continues_line():
            tok = self.s.take()
            assert tok is not None  # continues_line() saw it
            out.append(tok)
        return out

    def _skip_block(self) -> None:
        """After a '{' taken in error: skip to its matching '}'."""
        depth = 1
        while depth and (tok := self.s.take()) is not None:
            depth += {"{": 1, "}": -1}.get(tok.text, 0)

    # -- files and imports -------------------------------------------------------------

    def _load(self, path: str, via: Origin | None, hint: str = "") -> list[Token] | None:
        where = via or Origin(path, 0, shown=self._shown(path))
        if len(self.files) >= self.limits.files:
            self._error(where, f"more than {self.limits.files} files imported")
            return None
        try:
            raw = self.reader.read(path)
        except ReadError as exc:
            hint = hint if isinstance(exc, NotFound) else ""
            self._error(where, str(exc) if via is None else f"cannot import {self.reader.describe(path)}: {exc}{hint}")
            return None
        self._bytes += len(raw)
        if self._bytes > self.limits.total_bytes:
            self._error(where, f"the Corefile and its imports are larger than {self.limits.total_bytes} bytes")
            return None
        self.files.append(path)
        shown = self._shown(path)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            self._error(Origin(path, line, via=via, shown=shown), f"not UTF-8 text (byte 0x{raw[exc.start]:02x})")
            return None
        tokens, problems = tokenize(text, path, via=via, shown=shown)
        self.errors += problems
        return tokens if self._budget(len(tokens), where) else None

    def _budget(self, count: int, where: Origin) -> bool:
        self._tokens += count
        if self._tokens > self.limits.tokens:
            if not self._over:
                self._over = True
                self._error(where, f"more than {self.limits.tokens} tokens after imports and snippets")
            return False
        return True

    def _import(self, tok: Token) -> None:
        args = self._rest_of_line()
        if not args or args[0].text in ("{", "}"):
            self._error(tok, "import needs one argument: a file, a glob or a snippet name")
            if args and args[0].text == "{" and len(args) == 1:
                self._skip_block()
            return
        if len(args) > 1:
            self._error(args[1], "import takes one argument (a file, a glob or a snippet name); CoreDNS has no snippet arguments")
            return
        pattern = self._sub(args[0])
        if not pattern:
            self._error(args[0], "import needs a non-empty file name")
            return
        chain = []
        hop: Origin | None = tok.origin
        while hop is not None:
            chain.append(hop)
            hop = hop.via
        if len(chain) > self.limits.depth:
            self._error(tok, f"imports nested more than {self.limits.depth} deep")
            return
        if pattern in self.snippets:
            self._import_snippet(tok, pattern, chain)
        else:
            self._import_files(tok, pattern, chain)

    def _import_snippet(self, tok: Token, name: str, chain: list[Origin]) -> None:
        if any(hop.snippet == name for hop in chain):
            self._error(tok, f"snippet ({name}) imports itself")
            return
        self._expansions += 1
        if self._expansions > self.limits.snippet_expansions:
            if self._expansions == self.limits.snippet_expansions + 1:
                self._error(tok, f"more than {self.limits.snippet_expansions} snippet imports")
            return
        _, body = self.snippets[name]
        if not self._budget(len(body), tok.origin):
            return
        via = tok.origin
        self.s.push([Token(t.text, Origin(t.origin.file, t.origin.line, via, name, t.origin.shown), t.breaks, t.quoted) for t in body])

    def _import_files(self, tok: Token, pattern: str, chain: list[Origin]) -> None:
        path = pattern if pattern.startswith("/") else posixpath.normpath(posixpath.join(posixpath.dirname(tok.origin.file), pattern))
        if path.count("*") > 1 or path.count("?") > 1 or "[" in path:
            self._error(tok, f"import pattern {pattern!r}: CoreDNS allows at most one '*' and one '?', and no '[...]'")
            return
        if "*" in path or "?" in path:
            self.globs.append(path)
            matches = self.reader.glob(path)
            if not matches:
                self._warn(tok, f"no file matches import pattern {pattern!r} ({self.reader.describe(path)})")
                return
        else:
            matches = [path]
        hint = f" (and no snippet ({pattern}) is defined above this line)" if "/" not in pattern else ""
        open_files = {hop.file for hop in chain}
        tokens: list[Token] = []
        for match in matches:
            if match in open_files:
                self._error(tok, f"import cycle: {self.reader.describe(match)} is already being imported")
                continue
            loaded = self._load(match, tok.origin, hint)
            if loaded:
                tokens += loaded
        self.s.push(tokens)

    # -- blocks ------------------------------------------------------------------------

    def _top(self) -> None:
        keys: list[tuple[str, Token]] = []
        expecting = False
        opened: Token | None = None
        while True:
            starts = not self.s.continues_line()
            tok = self.s.take()
            if tok is None:
                if expecting:
                    self._error(self.s.prev, "the file ends after a ',' that promises another server key")
                break
            if tok.text == "import" and starts:
                self._import(tok)
                continue
            if tok.text == "{":
                if expecting:
                    self._error(tok, "expected another server key after the ',' before '{'")
                opened = tok
                break
            if tok.text == "}":
                self._error(tok, "unexpected '}': no block is open here")
                continue
            text = self._sub(tok)
            expecting = text.endswith(",")
            text = text.removesuffix(",")
            if text:
                keys.append((text, tok))
            nxt = self.s.peek()
            if nxt is None:
                if expecting:
                    self._error(tok, "the file ends after a ',' that promises another server key")
                break
            if not expecting and not self.s.continues_line():
                if nxt.text == "{":
                    opened = self.s.take()
                break
        if not keys:
            if opened is not None:
                self._error(opened, "a server block needs a zone before '{' (for example '.:53 {')")
                self._body(opened)
            return
        if len(keys) == 1 and keys[0][0].startswith("(") and keys[0][0].endswith(")"):
            self._snippet(keys[0][0][1:-1], keys[0][1], opened)
            return
        server_keys: list[ServerKey] = []
        for text, tok in keys:
            found, problem = parse_key(text, tok.origin, self.default_port)
            if problem:
                if "{" in text or "}" in text:
                    problem += " (a brace must be separated from other text by a space)"
                self._error(tok, problem)
            server_keys += found
        directives = self._body(opened)
        if server_keys:
            self.blocks.append(ServerBlock(tuple(server_keys), tuple(directives), keys[0][1].origin))

    def _snippet(self, name: str, tok: Token, opened: Token | None) -> None:
        if opened is None:
            self._error(tok, f"snippet ({name}) needs a block: ({name}) {{ ... }}")
            return
        body: list[Token] = []
        depth = 1
        while True:
            t = self.s.take()
            if t is None:
                self._error(opened, f"no '}}' closes snippet ({name})")
                return
            depth += {"{": 1, "}": -1}.get(t.text, 0)
            if depth == 0:
                break
            body.append(t)
        if not name:
            self._error(tok, "a snippet needs a name: (name) { ... }")
        elif name in self.snippets:
            self._error(tok, f"snippet ({name}) is already defined at {self.snippets[name][0]}")
        else:
            for i, t in enumerate(body[:-1]):
                fresh = i == 0 or body[i - 1].origin.line + body[i - 1].breaks != t.origin.line
                if t.text == "import" and fresh and substitute(body[i + 1].text, self.env) == name:
                    self._error(t, f"snippet ({name}) imports itself")
                    return
            self.snippets[name] = (tok.origin, body)

    def _body(self, opened: Token | None) -> list[Directive]:
        out: list[Directive] = []
        while True:
            tok = self.s.take()
            if tok is None:
                if opened is not None:
                    self._error(opened, "no '}' closes the server block opened here")
                return out
            if tok.text == "}":
                if opened is not None:
                    return out
                self._error(tok, "unexpected '}': this server block has no '{'")
            elif tok.text == "{":
                self._error(tok, "unexpected '{' where a directive name was expected")
                self._skip_block()
            elif tok.text == "import":
                self._import(tok)
            else:
                out.append(self._directive(tok, "server" if opened is not None else "file"))

    def _directive(self, name_tok: Token, inside: str) -> Directive:
        """One line: name, args, and a block if '{' is on the line. `inside` is what a '}'
        on this line would close: "server" (CoreDNS refuses that), "file" (nothing) or "block"."""
        name = self._sub(name_tok)
        if len(name_tok.text) > 1 and name_tok.text.endswith("{") and not name_tok.quoted:
            self._warn(name_tok, f"{name_tok.text!r}: put a space before '{{' to open a block")
        args: list[str] = []
        origins: list[Origin] = []
        block: tuple[Directive, ...] | None = None
        while self.s.continues_line():
            tok = self.s.peek()
            assert tok is not None  # continues_line() saw it
            if tok.text == "}":
                self._closer_on_line(tok, inside)
                break
            self.s.take()
            if tok.text == "{":
                block = self._lines(tok)
                self._after_close(inside)
                break
            args.append(self._sub(tok))
            origins.append(tok.origin)
            if tok.text == "\\" and not tok.quoted and not self.s.continues_line():
                self._warn(tok, f"a '\\' at the end of a line does not continue it: CoreDNS passes '\\' to {name!r} as an argument")
        nxt = self.s.peek()
        if nxt is not None and nxt.text == "{" and not self.s.continues_line() and inside != "block":
            self._error(nxt, f"'{{' must be on the same line as the directive it opens ({name!r})")
            self.s.take()
            self._skip_block()
        return Directive(name, tuple(args), name_tok.origin, block, tuple(origins))

    def _closer_on_line(self, tok: Token, inside: str) -> None:
        if inside == "server":
            self._error(tok, "'}' must start its own line: CoreDNS reads a '}' after a directive on the same line as an error")
        elif inside == "file":
            self.s.take()
            self._error(tok, "unexpected '}': this server block has no '{'")

    def _after_close(self, inside: str) -> None:
        while self.s.continues_line():
            tok = self.s.peek()
            assert tok is not None  # continues_line() saw it
            if tok.text == "}":
                self._closer_on_line(tok, inside)
                return
            self.s.take()
            self._error(tok, f"unexpected {tok.text!r} after '}}' on the same line")
            if tok.text == "{":
                self._skip_block()

    def _lines(self, opened: Token) -> tuple[Directive, ...]:
        if self._nesting >= self.limits.nesting:
            self._error(opened, f"blocks nested more than {self.limits.nesting} deep")
            self._skip_block()
            return ()
        self._nesting += 1
        try:
            return self._block_lines(opened)
        finally:
            self._nesting -= 1

    def _block_lines(self, opened: Token) -> tuple[Directive, ...]:
        lines: list[Directive] = []
        while True:
            starts = not self.s.continues_line()
            tok = self.s.take()
            if tok is None:
                self._error(opened, "no '}' closes the '{' opened here")
                return tuple(lines)
            if tok.text == "}":
                return tuple(lines)
            if tok.text == "import" and starts:
                self._import(tok)
            elif tok.text == "{":
                self._error(tok, "unexpected '{' at the start of a line")
                self._skip_block()
            else:
                lines.append(self._directive(tok, "block"))
