"""Corefile tokens, read the way CoreDNS's lexer (coredns/caddy `caddyfile`) reads them.

- Tokens are separated by white space. A token that *starts* with `"` runs to the next
  unescaped `"` and may span lines; inside it `\\"` is a quote and every other backslash is
  kept as written (`"a\\.b"` is `a\\.b`, which is what regular expressions want). A quote in
  the middle of a token is an ordinary character, and so is a backtick: CoreDNS has no
  backtick strings (those came with Caddy 2).
- `#` outside quotes starts a comment to the end of the line, even in the middle of a token
  (`foo#bar` is `foo`). Carriage returns are dropped outside quotes. A leading byte order
  mark is skipped.
- There is no line continuation: a line ends where its newline is. Only a quoted string, a
  `{ ... }` block, or a server key ending in `,` carries on to the next line. A `\\` at the
  end of a line is an ordinary token (CoreDNS would pass it to the directive).
- Braces are tokens only when they stand alone (`{`, `}`), as in CoreDNS.

`substitute` does CoreDNS's `{$NAME}` and `{%NAME%}` environment substitution, from a
mapping given by the caller. `TokenStream` is what the parser reads tokens from: imports are
spliced into it, and it says whether the next token is on the line of the last one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kdns.corefile.model import CorefileError, Origin


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    origin: Origin
    breaks: int = 0  # newlines inside the token (a quoted string across lines)
    quoted: bool = False

    @property
    def end_line(self) -> int:
        return self.origin.line + self.breaks


def _space(ch: str) -> bool:
    # Go's unicode.IsSpace; Python's isspace() also counts the ASCII separators 0x1c-0x1f.
    return ch.isspace() and ch not in "\x1c\x1d\x1e\x1f"


def tokenize(text: str, file: str, *, via: Origin | None = None, shown: str | None = None) -> tuple[list[Token], list[CorefileError]]:
    """The tokens of one file, and the problems found (an unterminated quoted string)."""
    tokens: list[Token] = []
    problems: list[CorefileError] = []
    origins: dict[int, Origin] = {}

    def at(line: int) -> Origin:
        if line not in origins:
            origins[line] = Origin(file, line, via=via, shown=shown)
        return origins[line]

    text = text.removeprefix("\ufeff")
    n = len(text)
    i = 0
    line = 1
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif _space(ch):
            i += 1
        elif ch == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif ch == '"':
            start = line
            buf: list[str] = []
            i += 1
            closed = False
            while i < n:
                c = text[i]
                if c == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    buf.append('"' if nxt == '"' else "\\" + nxt)
                    line += nxt == "\n"
                    i += 2
                    continue
                i += 1
                if c == '"':
                    closed = True
                    break
                line += c == "\n"
                buf.append(c)
            if not closed:
                problems.append(CorefileError(at(start), "this quoted string has no closing '\"'"))
            tokens.append(Token("".join(buf), at(start), line - start, True))
        else:
            buf = []
            while i < n:
                c = text[i]
                if c == "\r":
                    i += 1  # CoreDNS drops CR even inside a word
                    continue
                if _space(c):
                    break
                if c == "#":
                    end = text.find("\n", i)
                    i = n if end < 0 else end
                    break
                buf.append(c)
                i += 1
            tokens.append(Token("".join(buf), at(line)))
    return tokens, problems


def substitute(text: str, env: Mapping[str, str], missing: list[str] | None = None) -> str:
    """Replace `{%NAME%}` and then `{$NAME}` with the variable's value ("" when unset, as in
    CoreDNS; the names go to `missing`). A malformed reference (`{$}`) stops the scan there,
    as in CoreDNS; replaced text is not scanned again."""
    if "{" not in text:
        return text
    text = _replace(text, "{%", "%}", env, missing)
    return _replace(text, "{$", "}", env, missing)


def _replace(s: str, start: str, end: str, env: Mapping[str, str], missing: list[str] | None) -> str:
    out: list[str] = []
    pos = 0
    while True:
        i = s.find(start, pos)
        if i < 0:
            break
        j = s.find(end, i)
        if j <= i + len(start):  # not found, or an empty name: CoreDNS stops here
            break
        name = s[i + len(start) : j]
        value = env.get(name)
        if value is None:
            if missing is not None:
                missing.append(name)
            value = ""
        out.append(s[pos:i])
        out.append(value)
        pos = j + len(end)
    out.append(s[pos:])
    return "".join(out)


class TokenStream:
    """The token stream; `push` splices an import's tokens in at the current position."""

    def __init__(self) -> None:
        self._frames: list[list[Any]] = []  # [tokens, index of the next one]
        self.prev: Token | None = None

    def push(self, tokens: list[Token]) -> None:
        if tokens:
            self._frames.append([tokens, 0])

    def peek(self) -> Token | None:
        frames = self._frames
        while frames:
            tokens, i = frames[-1]
            if i < len(tokens):
                tok: Token = tokens[i]
                return tok
            frames.pop()
        return None

    def take(self) -> Token | None:
        tok = self.peek()
        if tok is not None:
            self._frames[-1][1] += 1
            self.prev = tok
        return tok

    def continues_line(self) -> bool:
        """Is the next token on the same line as the last one taken?"""
        nxt, prev = self.peek(), self.prev
        if nxt is None or prev is None:
            return False
        a, b = prev.origin, nxt.origin
        return a.file == b.file and a.via == b.via and a.snippet == b.snippet and prev.end_line == b.line
