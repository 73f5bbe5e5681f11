"""The queries a kdns test server received (`KdnsServer.queries`), and ways to read them.

`QueryLog` is a list of `Query`, in the order received, filled by the server's thread as each
reply goes out. It adds `for_name` (the queries for a name as the application writes it,
with the search-path rules of kdns.testing.match) and `wait_for` / `wait_for_async` (block,
or await, until such a query has arrived, with a timeout). No pytest, no trio.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import SupportsIndex

from kdns.testing.match import NamePattern, name_pattern

WAIT_TIMEOUT = 5.0  # seconds wait_for waits by default
POLL = 0.01  # seconds between looks in wait_for_async


@dataclass(frozen=True)
class Query:
    """A question the server received: name (as asked, lowercased, no trailing dot), type
    ("A", "AAAA", ...), the client's address, the rcode answered ("NOERROR", ...; None when
    no reply was sent) and the transport it came over ("udp" or "tcp")."""

    name: str
    type: str
    client: str
    rcode: str | None
    transport: str


class QueryLog(list[Query]):
    """Every question received, in order; a list with helpers. Safe to read from any thread
    while the server appends to it."""

    def __init__(self, zone: str, namespace: str):
        super().__init__()
        self.zone = zone
        self.namespace = namespace  # the one `for_name` and `wait_for` expand short names with
        self._changed = threading.Condition()

    # -- filled by the server's thread ---------------------------------------------------------

    def append(self, query: Query) -> None:
        with self._changed:
            super().append(query)
            self._changed.notify_all()

    def clear(self) -> None:
        """Forget every query received so far."""
        with self._changed:
            super().clear()

    def __delitem__(self, index: SupportsIndex | slice) -> None:
        with self._changed:
            super().__delitem__(index)

    # -- reading -----------------------------------------------------------------------------------

    def pattern(self, name: str, namespace: str | None = None) -> NamePattern:
        return name_pattern(name, self.zone, namespace or self.namespace)

    def for_name(self, name: str, qtype: str | None = None, *, namespace: str | None = None) -> list[Query]:
        """The queries for `name` as the application writes it ("redis" matches every name
        the pod's search path makes of it; `name.` only itself; `*.suffix` and `*` too),
        of one type if `qtype` is given ("A", "AAAA", ...)."""
        pattern = self.pattern(name, namespace)
        wanted = qtype.upper() if qtype is not None else None
        return [q for q in list(self) if pattern.matches(q.name) and (wanted is None or q.type == wanted)]

    def wait_for(
        self, name: str = "*", qtype: str | None = None, *, count: int = 1, timeout: float = WAIT_TIMEOUT,
        namespace: str | None = None,
    ) -> Query:
        """Block until `count` queries for `name` (as in `for_name`) have been received, counting
        those already in the log; return the `count`-th. TimeoutError after `timeout` seconds,
        saying what was received. Do not call it from the event loop the code under test
        runs in: it would wait for ever on that loop (use `wait_for_async` there)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = self.for_name(name, qtype, namespace=namespace)
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(self._timeout_message(name, qtype, count, len(found), timeout))
                self._changed.wait(left)

    async def wait_for_async(
        self, name: str = "*", qtype: str | None = None, *, count: int = 1, timeout: float = WAIT_TIMEOUT,  # noqa: ASYNC109 - wait_for's arguments, for trio and asyncio tests alike  # noqa: ASYNC109 - wait_for's arguments, for trio and asyncio tests alike
        namespace: str | None = None,
    ) -> Query:
        """`wait_for` for async tests (trio or asyncio): awaits, so that the code under test
        goes on running in the same loop meanwhile."""
        import sniffio  # a dependency of trio, hence of kdns

        sleep: Callable[[float], Awaitable[object]]
        if sniffio.current_async_library() == "trio":
            import trio

            sleep = trio.sleep
        else:
            import asyncio

            sleep = asyncio.sleep
        deadline = time.monotonic() + timeout
        while True:
            found = self.for_name(name, qtype, namespace=namespace)
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() >= deadline:
                raise TimeoutError(self._timeout_message(name, qtype, count, len(found), timeout))
            await sleep(POLL)

    def _timeout_message(self, name: str, qtype: str | None, count: int, found: int, timeout: float) -> str:
        seen = sorted({f"{q.name} {q.type}" for q in list(self)})
        what = f"{count} {qtype + ' ' if qtype else ''}quer{'y' if count == 1 else 'ies'} for {name!r}"
        shown = ", ".join(seen[:20]) + (f" and {len(seen) - 20} more" if len(seen) > 20 else "")
        return f"{what} not received within {timeout:g} s ({found} received); names asked: {shown or 'none'}"
