"""The hosts-file format (/etc/hosts, CoreDNS's `hosts` plugin, k3s's NodeHosts): text in,
entries out. Pure: the caller reads the file (kdns.sources.hosts, bounded) or has the text
(a Corefile's inline lines, a ConfigMap key, the test double).

A line is `ADDRESS NAME [NAME...]`; `#` starts a comment anywhere on a line. As CoreDNS and
glibc read it: an IPv6 address may carry a zone (`fe80::1%lo0`; the zone is dropped), names
are case-insensitive and taken as absolute (`myhost` is the single-label name `myhost.`).
Unlike CoreDNS, which skips them silently, a line kdns cannot use is returned as a problem
naming the origin and the line, and the rest of the file still counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdns import names, static

MAX_NAMES = 100_000  # names of one hosts file (about 300 bytes each in the index)


@dataclass(frozen=True, slots=True)
class HostsEntry:
    address: str  # canonical IP
    names: tuple[str, ...]  # lowercase, absolute, no trailing dot
    line: int


@dataclass(frozen=True, slots=True)
class Parsed:
    entries: tuple[HostsEntry, ...]
    problems: tuple[str, ...]  # "ORIGIN:LINE: what is wrong", one per line skipped or name dropped
    names: int  # distinct names

    def pairs(self) -> list[tuple[str, tuple[str, ...]]]:
        """(address, names) pairs, for kdns.static.hosts_records."""
        return [(entry.address, entry.names) for entry in self.entries]


class TooManyNames(ValueError):
    """More names than a hosts file may give (MAX_NAMES)."""


def parse_hosts(text: str, origin: str, *, max_names: int = MAX_NAMES) -> Parsed:
    """The entries of hosts-file `text`; `origin` names it in problems (a path, "inline").
    Raises TooManyNames beyond `max_names` distinct names (the file is then not used)."""
    entries: list[HostsEntry] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{origin}:{number}"
        address = names.canonical_ip(fields[0].split("%", 1)[0])
        if address is None:
            problems.append(f"{where}: not an IP address: {fields[0]!r}; line skipped")
            continue
        if len(fields) < 2:
            problems.append(f"{where}: no name after {fields[0]}; line skipped")
            continue
        good = []
        for text_name in fields[1:]:
            try:
                name = static.target_name(text_name)
            except ValueError:
                problems.append(f"{where}: not a host name: {text_name!r}; skipped")
                continue
            good.append(name)
            seen.add(name)
        if len(seen) > max_names:
            raise TooManyNames(f"{origin}: more than {max_names:,} names")
        if good:
            entries.append(HostsEntry(address, tuple(dict.fromkeys(good)), number))
    return Parsed(tuple(entries), tuple(problems), len(seen))
