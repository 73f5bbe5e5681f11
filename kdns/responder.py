"""Query bytes in, reply bytes out: the serving core that both transports call.

`Responder.handle` first tries the fast path: it reads the header and question with a few
slice operations and looks the lowercased question up in a memo of packed answers; a hit is
answered by splicing bytes (`wire.render`). Anything else takes the full path: `wire` parses
the query, `answer` decides, `wire` packs, and the packed entry goes into the memo. Both paths
end in the same `render`, so they give the same bytes.

Both tables are bounded in entries and in bytes (MEMO_*, MAX_REPLIES, REPLAY_BYTES); when one
is full it is emptied, and refills from the queries that follow.

The memo is kept exact by `publish`: each index change names the names it touched, and only
their entries are dropped; negative answers do not embed the SOA serial (it is appended at
render time), so a new serial alone invalidates nothing.

A UDP reply that depends on nothing but the query's bytes after its ID also goes into
`replies` (query minus ID -> (reply minus ID, the statistics key the shell gave for it)), and
the same bytes get it again at once. The shell's UDP loops (kdns/_udpbatch.c, and the Python
one through `replayed`) look replies up there before calling `handle`, to count each replay
under its key: the responder counts nothing itself. Pure: no sockets, no clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kdns import answer as ans
from kdns import names, wire
from kdns.codes import AXFR, IXFR, NOERROR, REFUSED, SERVFAIL
from kdns.index import Change, Snapshot
from kdns.transfer import TransferQuery

log = logging.getLogger("kdns.responder")

MEMO_ENTRIES = 200_000  # packed answers kept (name x type); the memo is emptied when full
MEMO_BYTES = 64 << 20  # ... or when its entries take this much (counted as `memo_cost`)
MAX_REPLIES = 50_000  # whole UDP replies kept for replay; emptied when full and on every change
REPLAY_BYTES = 16 << 20  # ... or when they take this much (counted as `replay_cost`)
MAX_REPLAYED_QUERY = 512  # bytes; larger queries (padded with EDNS options) are not kept
# What an entry costs beyond its bytes (CPython 3.11, measured with tracemalloc): a memo entry's
# Entry object, its header bytes and its slot in the per-name dict; a replay entry's key,
# (reply, key) tuple and dict slot.
MEMO_OVERHEAD = 550
REPLAY_OVERHEAD = 200


@dataclass(frozen=True, slots=True)
class UpstreamQuery:
    """The reply needs an upstream: the shell asks for `question` and builds the reply
    (`upstream.render`) with `prefix` (our CNAMEs, packed for this query) before the
    upstream's records."""

    query: wire.Query
    limit: int
    question: bytes  # name + type + class, in wire form, to ask upstream
    prefix: bytes = b""
    prefix_count: int = 0
    zones: tuple[str, ...] = ()  # the zones kdns serves: an upstream's records for names there are dropped

    @property
    def name(self) -> str:
        """The upstream question's name, lowercase dotted (for routing to stub domains)."""
        labels, _ = wire.read_name(self.question, 0, compressed=False)
        return ".".join(label.decode("latin-1") for label in labels).lower()


# (query, reply, the responder's zones) -> what `replies` keeps beside the reply: the shell
# gives stats.replay_key, the statistics key a replayed reply is counted under.
ReplayKey = Callable[[bytes, bytes, tuple[str, ...]], Any]  # the shell's statistics key, opaque here


class Responder:
    def __init__(self, snapshot: Snapshot, *, replay_key: ReplayKey | None = None):
        self.memo: dict[bytes, dict[bytes, wire.Entry]] = {}
        # UDP query minus ID -> (reply minus ID, replay_key's value for it)
        self.replies: dict[bytes, tuple[bytes, Any]] = {}
        self.replay_key = replay_key
        self._entries = 0  # packed answers in the memo
        self.memo_bytes = 0  # what they take (memo_cost)
        self.replies_bytes = 0  # what `replies` takes (replay_cost)
        self.snapshot = snapshot
        self.zones = snapshot.config.all_zones
        self._soa: tuple[bytes, ...] = ()
        self.publish(Change(snapshot, everything=True))
    @property
    def memo_entries(self) -> int:
        """Packed answers in the memo (name x type)."""
        return self._entries

    def publish(self, change: Change) -> None:
        """Make `change.snapshot` the one answers come from, dropping stale memo entries."""
        snap = change.snapshot
        if snap.config.all_zones != self.zones:
            raise ValueError("a Responder serves one set of zones")
        if not change.empty:
            self.replies.clear()  # whole replies embed the serial: cheap to rebuild from the memo
            self.replies_bytes = 0
        if change.everything or len(change.names) + len(change.ips) + len(change.absolute) > len(self.memo):
            # (Dropping everything is also the cheaper way when most names changed, as on
            # the first sync: no need to spell out a hundred thousand names to forget them.)
            self._clear_memo()
        else:
            stale = [names.join(rel, zone) for rel in change.names for zone in snap.config.zones]
            if "" in change.names:  # the apex NS answer and its glue are the same in every zone
                stale += self.zones
            stale += [names.reverse_name(ip) for ip in change.ips]
            stale += change.absolute  # the external zones' and outside names (kdns.tables)
            for name in stale:
                byname = self.memo.pop(names.to_wire(name), None)
                if byname is not None:
                    self._entries -= len(byname)
                    self.memo_bytes -= sum(memo_cost(entry) for entry in byname.values())
        if snap.serials != self.snapshot.serials or not self._soa:
            self._soa = tuple(wire.soa_record(zone, *snap.soa(zone)) for zone in self.zones)
        self.snapshot = snap

    def handle(self, data: bytes, limit: int | None = None, client: str | None = None) -> bytes | UpstreamQuery | TransferQuery | None:
        """The reply to `data`, an `UpstreamQuery` when an upstream must help, a `TransferQuery`
        for AXFR and IXFR (the shell decides, knowing the client), or None to send nothing.

        `limit` is None for UDP (the size then follows EDNS) or the largest reply the
        transport carries (TCP). `client` is the asking address (for autopath).
        """
        if limit is None:
            hit = self.replayed(data)
            if hit is not None:
                return hit[0]
        reply, reusable = self._reply(data, limit, client)
        if reusable and limit is None and len(data) <= MAX_REPLAYED_QUERY:
            # Stub resolvers send the same bytes for the same question every time: the
            # reply to a UDP query is a function of everything after its ID.
            if len(self.replies) >= MAX_REPLIES or self.replies_bytes >= REPLAY_BYTES:
                self.replies.clear()
                self.replies_bytes = 0
            assert type(reply) is bytes  # only replies made here are reusable
            key = self.replay_key(data, reply, self.zones) if self.replay_key is not None else None
            if data[2:] not in self.replies:
                self.replies_bytes += replay_cost(data, reply)
            self.replies[data[2:]] = (reply[2:], key)
        return reply

    def _clear_memo(self) -> None:
        self.memo.clear()
        self._entries = 0
        self.memo_bytes = 0

    def replayed(self, data: bytes) -> tuple[bytes, Any] | None:
        """(the reply made before for a UDP query with these bytes after its ID, with this
        query's ID; the key kept beside it), or None. The shell's UDP loop asks this first,
        to count a replay under its key, as the C part does with `replies`."""
        hit = self.replies.get(data[2:])
        return None if hit is None else (data[:2] + hit[0], hit[1])

    def _reply(self, data: bytes, limit: int | None, client: str | None) -> tuple[bytes | UpstreamQuery | TransferQuery | None, bool]:
        """The reply, and whether it may be replayed for the same bytes until the next change."""
        # Fast path: one question, no answer/authority records, at most an OPT record.
        if len(data) >= 17 and not data[2] & 0xF8 and data[4:10] == b"\x00\x01\x00\x00\x00\x00":
            end = data.find(0, 12) + 1
            if end:
                qend = end + 4
                n = len(data)
                arcount = data[10:12]
                edns = None
                if arcount == b"\x00\x00":
                    ok = n == qend
                else:
                    ok = (
                        arcount == b"\x00\x01"
                        and n >= qend + 11
                        and data[qend : qend + 3] == b"\x00\x00\x29"
                        and data[qend + 6] == 0  # EDNS version 0
                        and n == qend + 11 + int.from_bytes(data[qend + 9 : qend + 11], "big")
                    )
                    if ok:
                        edns = (int.from_bytes(data[qend + 3 : qend + 5], "big"), data[qend + 7] >= 0x80)
                if ok:
                    byname = self.memo.get(data[12:end].lower())
                    if byname is not None:
                        entry = byname.get(data[end:qend])
                        if entry is not None:
                            reply = wire.render(
                                entry,
                                data[:2],
                                data[2] << 8 | data[3],
                                data[12:qend],
                                self._soa[entry.soa] if entry.soa >= 0 else b"",
                                edns,
                                wire.udp_limit(edns) if limit is None else limit,
                            )
                            return reply, True
        return self._full(data, limit, client)

    def _full(self, data: bytes, limit: int | None, client: str | None) -> tuple[bytes | UpstreamQuery | TransferQuery | None, bool]:
        try:
            query = wire.parse_query(data)
        except wire.Malformed as exc:
            log.debug("malformed query: %s", exc)
            return exc.reply, False
        if query.edns is not None and query.edns.version != 0:
            return wire.badvers_reply(query), False
        if query.qtype == AXFR or query.qtype == IXFR:  # (never memoised: only misses get here)
            # Over TCP the shell transfers the zone (kdns.transfer); over UDP: REFUSED, as CoreDNS.
            return (TransferQuery(query, data) if limit is not None else wire.simple_reply(query, REFUSED)), False
        snap = self.snapshot
        client_ns = (snap.client_ns.get(client) or None) if client is not None and snap.config.autopath else None
        edns = (query.edns.udp_size, query.edns.do) if query.edns else None
        limit = wire.udp_limit(edns) if limit is None else limit
        try:
            result = ans.answer(snap, query.labels, query.qtype, query.qclass, client_ns)
            if result.upstream is not None:
                return self._upstream_query(query, result, limit), False
            entry = wire.pack_answer(query, result, self.zones)
        except Exception:  # a bug: answer SERVFAIL, say where, keep serving
            log.exception("failed to answer %r type %d", ".".join(query.labels), query.qtype)
            return wire.simple_reply(query, SERVFAIL), False
        if result.cacheable:
            if self._entries >= MEMO_ENTRIES or self.memo_bytes >= MEMO_BYTES:
                self._clear_memo()
            byname = self.memo.setdefault(query.qname, {})
            old = byname.get(query.qtail)
            self._entries += old is None
            self.memo_bytes += memo_cost(entry) - (memo_cost(old) if old is not None else 0)
            byname[query.qtail] = entry
        reply = wire.render(
            entry,
            query.qid,
            query.flags,
            query.question,
            self._soa[entry.soa] if entry.soa >= 0 else b"",
            edns,
            limit,
        )
        return reply, result.cacheable

    def _upstream_query(self, query: wire.Query, result: ans.Answer, limit: int) -> UpstreamQuery:
        if not result.answer and result.upstream == ".".join(query.labels):
            return UpstreamQuery(query, limit, query.question, zones=self.zones)  # as asked, case and all
        assert result.upstream is not None  # _reply asks only then
        question = _client_labels(query, result.upstream) + query.question[-4:]
        prefix = wire.pack_answer(query, ans.Answer(NOERROR, result.answer), self.zones).body if result.answer else b""
        return UpstreamQuery(query, limit, question, prefix, len(result.answer), self.zones)


def memo_cost(entry: wire.Entry) -> int:
    """Bytes a packed answer takes in the memo (with its short form for small UDP sizes)."""
    return MEMO_OVERHEAD + len(entry.body) + (len(entry.short.body) if entry.short is not None else 0)


def replay_cost(query: bytes, reply: bytes) -> int:
    """Bytes a whole reply kept for replay takes (its query minus the ID is the key)."""
    return REPLAY_OVERHEAD + len(query) + len(reply)


def _client_labels(query: wire.Query, name: str) -> bytes:
    """`name` in wire form; when it is the client's own name or the first labels of it (an
    autopath search suffix taken off), those labels as the client sent them, byte for byte
    (a label may hold any byte, a dot too, which dotted text cannot tell apart)."""
    labels = query.labels
    for count in range(len(labels), 0, -1):
        if ".".join(labels[:count]) == name:
            question = query.question
            pos = 0
            for _ in range(count):
                pos += 1 + question[pos]
            return question[:pos] + b"\x00"
    return names.to_wire(name)
