"""The translator's notebook: options set so far, explanations, refusals; and argument readers.

Every handler writes through a `Context`: `option()` sets a kdns option (a second directive
setting it to another value is refused, naming the first), `explain()` records what a line
became, `refuse()` records why kdns will not serve the Corefile. `unsupported()` is a refusal
that the caller's `ignore_unknown` turns into a warning ("ignored"): it is only for whole
directives kdns does not know (plugins), server blocks on DoT/DoH/gRPC schemes and tls:// or
https:// forward targets. What kdns cannot honour inside a directive it reads (an option of
`kubernetes`, a `rewrite type`...) is always refused: ignoring it would change what the
directive does. What CoreDNS itself would reject is always refused too.

The readers (`duration`, `integer`, `zone`, `http_address`...) parse arguments the way
CoreDNS's Go code does (time.ParseDuration, strconv.Atoi, net.SplitHostPort) and return None
after refusing when the text is not valid.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from kdns.corefile.keys import normalise_zone, parse_key
from kdns.corefile.model import CorefileError, Directive, Origin
from kdns.corefile.translate.values import DATA, NO_EFFECT, OPTION, REFUSED, WARNING, Explanation


def head(d: Directive, limit: int = 80) -> str:
    """The directive on one line without its block, cut at `limit` characters."""
    text = str(Directive(d.name, d.args, d.origin))
    text += " { ... }" if d.block else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Block:
    """What a handler knows about the server block it is in."""

    zones: tuple[str, ...]
    main: bool
    origin: Origin
    seen: dict[str, Directive] = field(default_factory=dict)  # first directive of each name


class Context:
    def __init__(self, ignore_unknown: bool = False) -> None:
        self.ignore_unknown = ignore_unknown
        self.options: dict[str, Any] = {}
        self.origins: dict[str, Origin] = {}
        self.setters: dict[str, Directive] = {}
        self.entries: list[Explanation | list[Explanation]] = []  # a list: a slot filled later
        self.problems: list[CorefileError] = []
        self.warnings: list[CorefileError] = []
        self.current: tuple[Directive, list[Explanation]] | None = None

    # -- what lines became -------------------------------------------------------------

    def start(self, d: Directive) -> list[Explanation]:
        """Entries about `d` itself go into a slot made now, so that they come before its lines'."""
        self.current = (d, self.later())
        return self.current[1]

    def _target(self, d: Directive) -> list[Explanation] | list[Explanation | list[Explanation]]:
        return self.current[1] if self.current is not None and self.current[0] is d else self.entries

    def explain(self, d: Directive, kind: str, effect: str) -> None:
        self._target(d).append(Explanation(d.origin, head(d) if d.block is not None else str(d), kind, effect))
        if kind == WARNING:
            self.warnings.append(CorefileError(d.origin, f"{d.name}: {effect}"))

    def later(self) -> list[Explanation]:
        """A slot for entries made once the whole Corefile is read (what a forward became)."""
        slot: list[Explanation] = []
        self.entries.append(slot)
        return slot

    def fill(self, slot: list[Explanation], d: Directive, kind: str, effect: str) -> None:
        slot.append(Explanation(d.origin, head(d) if d.block is not None else str(d), kind, effect))
        if kind == WARNING:
            self.warnings.append(CorefileError(d.origin, f"{d.name}: {effect}"))

    def explanations(self) -> tuple[Explanation, ...]:
        return tuple(e for item in self.entries for e in (item if isinstance(item, list) else [item]))

    def note(self, origin: Origin, what: str, kind: str, effect: str) -> None:
        """An entry not tied to a written line (what the absence of a directive means)."""
        self.entries.append(Explanation(origin, what, kind, effect))
        if kind == WARNING:
            self.warnings.append(CorefileError(origin, effect))

    def refuse(self, d: Directive, reason: str, origin: Origin | None = None, slot: list[Explanation] | None = None) -> None:
        where = origin or d.origin
        (slot if slot is not None else self._target(d)).append(Explanation(where, head(d), REFUSED, reason))
        self.problems.append(CorefileError(where, f"{head(d, 60)}: {reason}"))

    def unsupported(self, d: Directive, reason: str, origin: Origin | None = None) -> bool:
        """Refuse, or with ignore_unknown warn that the line is ignored. True when ignored."""
        if self.ignore_unknown:
            where = origin or d.origin
            self._target(d).append(Explanation(where, head(d), WARNING, f"ignored (ignore_unknown): {reason}"))
            self.warnings.append(CorefileError(where, f"{head(d, 60)}: ignored: {reason}"))
            return True
        self.refuse(d, reason, origin)
        return False

    # -- options -----------------------------------------------------------------------

    def option(self, name: str, value: Any, d: Directive | None, origin: Origin | None = None) -> bool:
        """Set a kdns option; False (and a refusal) when another directive set it differently."""
        where = origin or (d.origin if d is not None else None)
        if name in self.options and self.options[name] != value:
            first = self.setters.get(name)
            if d is not None:
                by = f" by '{head(first, 40)}' at {first.origin}" if first is not None else ""
                self.refuse(d, f"kdns has one {name} for the whole server; it is already {self.options[name]!r}{by}")
            return False
        if name not in self.options:
            self.options[name] = value
            if where is not None:
                self.origins[name] = where
            if d is not None:
                self.setters[name] = d
        return True

    def append(self, name: str, value: str, d: Directive) -> None:
        """Add to a repeatable option (each value once)."""
        values = self.options.setdefault(name, [])
        if value not in values:
            values.append(value)
        self.origins.setdefault(name, d.origin)

    # -- argument readers --------------------------------------------------------------

    def arity(self, d: Directive, low: int, high: int | None = None) -> bool:
        n = len(d.args)
        if n < low or (high is not None and n > high):
            want = f"{low}" if low == high else f"{low} to {high}" if high is not None else f"at least {low}"
            self.refuse(d, f"expects {want} argument{'s' if (high or low) != 1 else ''}, got {n}")
            return False
        return True

    def no_block(self, d: Directive) -> bool:
        if d.block:
            self.refuse(d, f"{d.name} takes no block here")
            return False
        return True

    def integer(self, d: Directive, text: str, low: int | None = None, high: int | None = None, what: str = "") -> int | None:
        if not re.fullmatch(r"[+-]?[0-9]{1,18}", text):
            self.refuse(d, f"{what or d.name}: not a whole number: {text!r}")
            return None
        value = int(text)
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if low is not None and high is not None else \
                     f"at least {low}" if low is not None else f"at most {high}"
            self.refuse(d, f"{what or d.name} must be {bounds}, got {value}")
            return None
        return value

    def duration(self, d: Directive, text: str, what: str = "", positive: bool = False) -> float | None:
        """Go's time.ParseDuration ("5s", "1m30s", "300ms", "0"), in seconds; negatives refused."""
        value = parse_duration(text)
        if value is None:
            self.refuse(d, f"{what or d.name}: not a duration (like 5s, 1m30s, 300ms): {text!r}")
        elif value < 0 or (positive and value == 0):
            self.refuse(d, f"{what or d.name} must be {'more than 0' if positive else 'positive'}, got {text!r}")
            return None
        return value

    def zone(self, d: Directive, text: str) -> str | None:
        zone, problem = normalise_zone(text)
        if problem:
            self.refuse(d, f"not a zone: {problem}")
            return None
        return zone

    def zones(self, d: Directive, texts: tuple[str, ...] | list[str]) -> tuple[str, ...] | None:
        out = []
        for text in texts:
            zone = self.zone(d, text)
            if zone is None:
                return None
            out.append(zone)
        return tuple(out)

    def fallthrough(self, line: Directive) -> tuple[str, ...] | None:
        """CoreDNS's `fallthrough [ZONES...]`: no zones means every zone (".")."""
        return self.zones(line, line.args) if line.args else (".",)

    def http_address(self, d: Directive, text: str) -> str | None:
        """net.SplitHostPort text -> kdns's `[HOST]:PORT`; `localhost` is 127.0.0.1."""
        host, port = split_host_port(text)
        if port is None:
            self.refuse(d, f"expected [HOST]:PORT, got {text!r}")
            return None
        if not port.isdigit() or int(port) > 65535:
            self.refuse(d, f"port {port!r} in {text!r}: kdns takes port numbers (no service names)")
            return None
        if host == "":
            return f":{port}"
        if host == "localhost":
            return f"127.0.0.1:{port}"
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            self.refuse(d, f"{host!r} in {text!r} is not an IP address: kdns listens on addresses, not host names")
            return None
        return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def zones_of(ctx: Context, d: Directive, texts: tuple[str, ...], block: Block) -> tuple[str, ...] | None:
    """Zones given as arguments (names or CIDRs, as CoreDNS's OriginsFromArgsOrServerBlock
    reads them), else the block's zones."""
    if not texts:
        return block.zones
    out: list[str] = []
    for i, text in enumerate(texts):
        keys, problem = parse_key(text, d.origin_of(i))
        if problem or "://" in text:
            ctx.refuse(d, problem or f"{text!r} is not a zone")
            return None
        out += [k.zone for k in keys if k.zone not in out]
    return tuple(out)


def parse_duration(text: str) -> float | None:
    """Go's time.ParseDuration in seconds, or None."""
    if text in ("0", "+0", "-0"):
        return 0.0
    m = re.fullmatch(r"([+-]?)((?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+)", text)
    if not m:
        return None
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total = sum(float(num) * units[unit] for num, unit in re.findall(r"([0-9.]+)(ns|us|µs|μs|ms|s|m|h)", m[2]))
    return -total if m[1] == "-" else total


def split_host_port(text: str) -> tuple[str, str | None]:
    """Go's net.SplitHostPort: ("host", "port"), or (text, None) when it does not split."""
    if text.startswith("["):
        inner, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            return text, None
        return inner, rest[1:]
    host, sep, port = text.rpartition(":")
    if not sep or ":" in host:
        return text, None
    return host, port


__all__ = ["DATA", "NO_EFFECT", "OPTION", "REFUSED", "WARNING", "Block", "Context", "head", "parse_duration", "split_host_port",
           "zones_of"]
