"""`kdns serve --hosts FILE`: hosts files as a source of change events.

Each file becomes one `StaticRecords` value (key `(Hosts, "", path)`): its lines parsed by
kdns.hosts, turned into records by kdns.static (A/AAAA per name, PTR per address unless
`--no-hosts-reverse`, the `--hosts-ttl`). `HostsFiles.rescan` re-reads a file when its
modification time, size or inode changed, as the manifests are read (kdns.files: regular
files only, at most `MAX_BYTES`, never a file modified in the last 50 ms); `watch_hosts`
polls every `--reload-interval` seconds.

A file that cannot be read, is too large or names too many hosts keeps its previous records,
and the problem is logged once; a file that disappears keeps them too, until it is back (some
tools delete and rewrite). At start each of these is an error. A line kdns cannot use, and a
name inside a zone kdns answers from Kubernetes, are skipped with a warning.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import trio

from kdns import files, hosts, static
from kdns.config import HostsFile
from kdns.model import Event, Kind, StaticRecords, Upsert

log = logging.getLogger("kdns.hosts")

MAX_BYTES = 4 * files.MIB  # the largest hosts file read
SETTLE = 0.05  # seconds: a file modified more recently than this is read on the next look
SHOWN_PROBLEMS = 5  # skipped lines logged per read of a file (then a count)


class HostsError(Exception):
    """A hosts file kdns cannot use at start; the message names the file."""


@dataclass
class _State:
    signature: tuple[int, int, int] | None = None
    records: StaticRecords | None = None
    problem: str | None = None  # the last problem reported (logged once)


class HostsFiles:
    def __init__(self, hosts_files: tuple[HostsFile, ...], zones: tuple[str, ...], max_bytes: int = MAX_BYTES):
        self.files = hosts_files
        self.zones = zones  # kdns's own zones: their names come from Kubernetes alone
        self.max_bytes = max_bytes
        self._states = {f.path: _State() for f in hosts_files}
        self.reads = 0

    def load(self) -> list[Event]:
        """The first read: a file that cannot be used is an error (HostsError)."""
        events: list[Event] = []
        for f in self.files:
            problem = self._read(f, events, first=True)
            if problem:
                raise HostsError(problem)
        return events

    def rescan(self) -> list[Event]:
        """Re-read the files that changed; the events for those whose records changed."""
        events: list[Event] = []
        for f in self.files:
            state = self._states[f.path]
            problem = self._read(f, events, first=False)
            if problem and problem != state.problem:
                log.error("%s (keeping its previous records)", problem)
            elif not problem and state.problem:
                log.info("%s: fixed", f.path)
            state.problem = problem
        if events:
            self.reads += 1
        return events

    def _read(self, f: HostsFile, events: list[Event], *, first: bool) -> str | None:
        """Read `f` if it changed; append the event if its records did; the problem, if any."""
        state = self._states[f.path]
        try:
            st = os.stat(f.path)
            if files.signature(st) == state.signature:
                return state.problem
            if not first and 0 <= time.time() - st.st_mtime < SETTLE:
                return state.problem  # perhaps still being written: next time
            raw, after = files.read_regular(f.path, self.max_bytes, "hosts files")
            if after != files.signature(st):
                return state.problem  # changed while read: next time
            parsed = hosts.parse_hosts(files.decode(raw), f.path)
        except files.FileError as exc:
            return f"{f.path}: {exc}"
        except hosts.TooManyNames as exc:
            return str(exc)
        except OSError as exc:
            return f"{f.path}: cannot read: {exc.strerror or exc}"
        state.signature = after
        self._report(parsed.problems)
        entries = []
        for entry in parsed.entries:
            kept = tuple(name for name in entry.names if not self._ours(name, f.path, entry.line))
            if kept:
                entries.append((entry.address, kept))
        records = static.hosts_records(entries, f.path, ttl=f.ttl, reverse=f.reverse, rank=f.rank, kind=Kind.HOSTS)
        if records != state.records:
            state.records = records
            events.append(Upsert(records))
            log.info("%s: %d name(s), %d address(es)", f.path, parsed.names, len({ip for ip, _ in entries}))
        return None

    def _ours(self, name: str, path: str, line: int) -> bool:
        zone = next((z for z in self.zones if name == z or name.endswith("." + z)), None)
        if zone is not None:
            log.warning("%s:%d: %s lies in %s, which kdns answers from Kubernetes; skipped", path, line, name, zone)
        return zone is not None

    @staticmethod
    def _report(problems: tuple[str, ...]) -> None:
        for problem in problems[:SHOWN_PROBLEMS]:
            log.warning("%s", problem)
        if len(problems) > SHOWN_PROBLEMS:
            log.warning("... and %d more line(s) skipped", len(problems) - SHOWN_PROBLEMS)


async def watch_hosts(hosts_files: HostsFiles, send: trio.MemorySendChannel, interval: float) -> None:
    """Poll the files every `interval` seconds; send each batch of changes as a list."""
    while True:
        await trio.sleep(interval)
        events = await trio.to_thread.run_sync(hosts_files.rescan, abandon_on_cancel=True)
        if events:
            await send.send(events)
