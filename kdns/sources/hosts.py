"""Hosts data as a source of change events: `kdns serve --hosts FILE`, and a Corefile's `hosts`
directives (their file, their inline lines, a ConfigMap key read with the Corefile).

Each `HostsFile` (kdns.config) becomes one `StaticRecords` value (key `(Hosts, "", path)`, or
its label when it has no file): its file's lines parsed by kdns.hosts, its inline entries
beside them (CoreDNS serves both), turned into records by kdns.static (A/AAAA per name, PTR
per address unless `reverse` is off, its TTL). Names outside its `zones` (or in `excluded`)
are left out, silently as CoreDNS does; a name inside a zone kdns answers from Kubernetes is
skipped with a warning.

`HostsFiles.rescan` re-reads a file when its modification time, size or inode changed, as the
manifests are read (kdns.files: regular files only, at most `MAX_BYTES`, never a file modified
in the last 50 ms), and no more often than its own `reload` interval (0: read once);
`watch_hosts` polls every `--reload-interval` seconds, or sooner when a file asks for it.
`reconfigure` swaps the whole set (a reloaded Corefile) and says what changed.

A file that cannot be read, is too large or names too many hosts keeps its previous records,
and the problem is logged once; a file that disappears keeps them too, until it is back (some
tools delete and rewrite). At start each of these is an error, except a missing file that is
not `required` (a Corefile's, as CoreDNS only warns): its inline entries serve until it appears.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import trio

from kdns import files, hosts, static
from kdns.config import HostsFile
from kdns.model import Delete, Event, Kind, StaticRecords, Upsert

log = logging.getLogger("kdns.hosts")

MAX_BYTES = 4 * files.MIB  # the largest hosts file read
SETTLE = 0.05  # seconds: a file modified more recently than this is read on the next look
SHOWN_PROBLEMS = 5  # skipped lines logged per read of a file (then a count)


class HostsError(Exception):
    """A hosts file kdns cannot use at start; the message names the file."""


@dataclass
class _State:
    signature: tuple[int, int, int] | None = None
    entries: list[tuple[str, tuple[str, ...]]] | None = None  # the file's, as last read
    records: StaticRecords | None = None
    problem: str | None = None  # the last problem reported (logged once)
    looked: float | None = None  # when the file was last looked at (monotonic)


class HostsFiles:
    def __init__(self, hosts_files: tuple[HostsFile, ...], zones: tuple[str, ...], max_bytes: int = MAX_BYTES,
                 clock=time.monotonic):
        self.files = hosts_files
        self.zones = zones  # kdns's own zones: their names come from Kubernetes alone
        self.max_bytes = max_bytes
        self.clock = clock
        self._states = {f: _State() for f in hosts_files}
        self.reads = 0

    def load(self) -> list[Event]:
        """The first read: a file that cannot be used is an error (HostsError)."""
        events: list[Event] = []
        for f in self.files:
            problem = self._read(f, events, first=True)
            if problem and (f.required or not problem.endswith(_MISSING)):
                raise HostsError(problem)
            if problem:
                log.warning("%s; its other entries are served, the file is read once it appears", problem)
                self._states[f].problem = problem
        return events

    def rescan(self) -> list[Event]:
        """Re-read the files that changed (and are due); the events for those whose records changed."""
        events: list[Event] = []
        for f in self.files:
            state = self._states[f]
            now = self.clock()
            if not f.path:
                continue
            if state.looked is not None and f.reload is not None:
                if f.reload == 0 and state.signature is not None:
                    continue  # read once, and it was
                if f.reload and now - state.looked < f.reload:
                    continue  # not due yet
            state.looked = now
            problem = self._read(f, events, first=False)
            if problem and problem != state.problem:
                log.error("%s (keeping its previous records)", problem)
            elif not problem and state.problem:
                log.info("%s: fixed", f.path)
            state.problem = problem
        if events:
            self.reads += 1
        return events

    def reconfigure(self, hosts_files: tuple[HostsFile, ...]) -> list[Event]:
        """Serve `hosts_files` from now on (a reloaded Corefile): the events that take the
        records of the old set away and bring the new set's. The new files are read now; one
        that cannot be read is logged and served from its other entries."""
        old = {f.key for f in self.files}
        kept = {f: self._states[f] for f in hosts_files if f in self._states}
        self.files = hosts_files
        self._states = {f: kept.get(f) or _State() for f in hosts_files}
        events: list[Event] = [Delete((Kind.HOSTS, "", key)) for key in old - {f.key for f in hosts_files}]
        for f in hosts_files:
            if f not in kept:
                problem = self._read(f, events, first=True)
                if problem:
                    log.error("%s (its other entries are served)", problem)
                self._states[f].problem = problem
        return events

    @property
    def interval(self) -> float | None:
        """The shortest reload interval a file asks for (None: none does)."""
        asked = [f.reload for f in self.files if f.path and f.reload]
        return min(asked) if asked else None

    def _read(self, f: HostsFile, events: list[Event], *, first: bool) -> str | None:
        """Read `f` if it changed; append the event if its records did; the problem, if any."""
        state = self._states[f]
        problem = None
        if f.path:
            try:
                problem = self._read_file(f, state, first)
            except _Unchanged:
                return state.problem
        if not first and problem is not None:
            return problem  # keep the previous records
        entries = (state.entries or []) + list(f.inline)
        kept = []
        for address, names in entries:
            names = tuple(name for name in names if f.wants(name) and not self._ours(name, f.key))
            if names:
                kept.append((address, names))
        records = static.hosts_records(kept, f.key, ttl=f.ttl, reverse=f.reverse, rank=f.rank, kind=Kind.HOSTS)
        if records != state.records:
            state.records = records
            events.append(Upsert(records))
            log.info("%s: %d name(s), %d address(es)", f.key, len({n for _, ns in kept for n in ns}), len({ip for ip, _ in kept}))
        return problem

    def _read_file(self, f: HostsFile, state: _State, first: bool) -> str | None:
        try:
            st = os.stat(f.path)
            if files.signature(st) == state.signature:
                raise _Unchanged()
            if not first and 0 <= time.time() - st.st_mtime < SETTLE:
                raise _Unchanged()  # perhaps still being written: next time
            raw, after = files.read_regular(f.path, self.max_bytes, "hosts files")
            if after != files.signature(st):
                raise _Unchanged()  # changed while read: next time
            parsed = hosts.parse_hosts(files.decode(raw), f.path)
        except files.FileError as exc:
            return f"{f.path}: {exc}"
        except hosts.TooManyNames as exc:
            return str(exc)
        except FileNotFoundError:
            return f"{f.path}{_MISSING}"
        except OSError as exc:
            return f"{f.path}: cannot read: {exc.strerror or exc}"
        state.signature = after
        state.entries = parsed.pairs()
        self._report(parsed.problems)
        return None

    def _ours(self, name: str, origin: str) -> bool:
        zone = next((z for z in self.zones if name == z or name.endswith("." + z)), None)
        if zone is not None:
            log.warning("%s: %s lies in %s, which kdns answers from Kubernetes; skipped", origin, name, zone)
        return zone is not None

    @staticmethod
    def _report(problems: tuple[str, ...]) -> None:
        for problem in problems[:SHOWN_PROBLEMS]:
            log.warning("%s", problem)
        if len(problems) > SHOWN_PROBLEMS:
            log.warning("... and %d more line(s) skipped", len(problems) - SHOWN_PROBLEMS)


_MISSING = ": cannot read: No such file or directory"


class _Unchanged(Exception):
    """The file is as it was (or not ready to be read again)."""


async def watch_hosts(hosts_files: HostsFiles, send: trio.MemorySendChannel, interval: float) -> None:
    """Poll the files every `interval` seconds (sooner when a file's own interval is shorter);
    send each batch of changes as a list."""
    while True:
        await trio.sleep(min(interval, hosts_files.interval or interval))
        if not any(f.path for f in hosts_files.files):
            continue
        events = await trio.to_thread.run_sync(hosts_files.rescan, abandon_on_cancel=True)
        if events:
            await send.send(events)
