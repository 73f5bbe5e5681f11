"""The published state: the index of Kubernetes objects and the responder over its snapshot.

"Apply a batch of events to the index, then publish the new snapshot to the responder if it
changed" is one step, and this is the one place it is written: the server's index writer,
kdns.testing, the tests and perf/scale.py all go through `DnsState.apply`. There is one
current snapshot (`DnsState.snapshot`, the one answers come from), never an index ahead of
the responder. Pure: no I/O, no clock (time is a parameter).
"""

from __future__ import annotations

from collections.abc import Iterable

from kdns.config import DnsConfig
from kdns.index import Change, Index, Snapshot
from kdns.model import Event, Upsert
from kdns.responder import ReplayKey, Responder


class DnsState:
    """The index (the one writer's) and the responder (every reader's), kept in step."""

    def __init__(
        self,
        config: DnsConfig,
        *,
        sources: Iterable[str] = (),
        now: float = 0.0,
        replay_key: ReplayKey | None = None,
    ):
        """`sources`: the sources that must deliver their initial state before the snapshot
        counts as synced. `replay_key`: see `Responder`."""
        self.replay_key = replay_key
        self.index = Index(config, sources=sources, now=now)
        self.responder = Responder(self.index.snapshot, replay_key=replay_key)

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot answers come from now."""
        return self.responder.snapshot

    def apply(self, events: Iterable[Event], now: float) -> Change:
        """Apply a batch of events and publish the result: the next query sees all of it."""
        change = self.index.apply(events, now)
        if change.snapshot is not self.responder.snapshot:
            self.responder.publish(change)
        return change

    def reconfigure(self, config: DnsConfig, now: float) -> None:
        """Rebuild the index and the responder for another configuration from the objects
        held (a reload that changes the answers: zones, TTL...). Sources still syncing stay
        pending."""
        index = Index(config, sources=self.index.pending_sources, now=now)
        index.apply([Upsert(obj) for obj in self.index.objects()], now)
        self.index = index
        self.responder = Responder(index.snapshot, replay_key=self.replay_key)
