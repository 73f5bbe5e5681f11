"""Query bytes in, reply bytes out: the serving core that both transports call. (Over 400
lines: the fast path for plain UDP queries is written out in one method, and the two tables
it keeps are its own; splitting them off would put a call on every query.)

`Responder.handle` first tries the fast path: it reads the header and question with a few
slice operations and looks the lowercased question up in a memo of packed answers; a hit is
answered by splicing bytes (`wire.render`). A miss whose query is plain (one question, at most
an OPT record) is read from the same slices (`wire.plain_query`), answered (`answer`) and
packed (`wire.pack_answer`: `packing`, no dnslib); any other query is parsed in full first.
A packed answer with records goes into the memo; one without (NXDOMAIN, NODATA: the bulk of
names asked once, a flood of unique names above all) is a shared Entry that costs no more to
make again than to look up, and is not kept there. Every path ends in the same `render`, so
they give the same bytes.

A UDP reply that depends on nothing but the query's bytes after its ID also goes into the
replay table (query minus ID -> (reply minus ID, the statistics key the shell gave for it)),
and the same bytes get it again at once. The shell's UDP loops (kdns/_udpbatch.c, and the
Python one through `replay_entry`) look replies up there before calling `handle`, to count
each replay under its key: the responder counts nothing itself. The shell also puts fresh
answers from the forwarding cache there (`remember_forwarded`), as (reply minus ID, key,
deadline, base, patches): valid until `deadline` (a `time.monotonic` reading: the start of
the prefetch window or the first expiry), and only for clients the recursion allow list
admits; each replay writes the TTLs at `patches` counted down by the whole seconds since
`base` (kdns.ttlpatch), the bytes a fresh render would give. The shell checks and patches;
`handle` never replays such an entry.

Both tables are bounded in entries and in bytes (MEMO_*, MAX_REPLIES, REPLAY_BYTES) and kept
in two generations of half the bound each: lookups try the current generation, then the
previous one, and a hit there is copied into the current one; when the current one is full,
the previous one is dropped and the current one becomes the previous. What is asked for
again within a generation's lifetime stays, however many unique names go by (a flood of
them no longer empties the tables under a busy server's feet: perf/tables.py measures it).
The C loop looks in both generations and promotes too (`promoted` adds what it copied).

The memo is kept exact by `publish`: each index change names the names it touched, and only
their entries are dropped; negative answers do not embed the SOA serial (it is appended at
render time), so a new serial alone invalidates nothing. Whole replies embed it: the replay
table is emptied on every change. Pure: no sockets, no clock.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from kdns import answer as ans
from kdns import names, packing, stats, wire
from kdns.codes import AXFR, IXFR, NOERROR, NXDOMAIN, REFUSED, SERVFAIL
from kdns.index import Change, Snapshot
from kdns.transfer import TransferQuery
from kdns.upstream import UpstreamAnswer

log = logging.getLogger("kdns.responder")

MEMO_ENTRIES = 200_000  # packed answers with records kept (name x type), both generations together
MEMO_BYTES = 16 << 20  # ... and what they take (counted as `memo_cost`)
MAX_REWRITTEN = 4096  # memo names a Corefile's rewrite answered from another name, forgotten on every change
MAX_REPLIES = 100_000  # whole UDP replies kept for replay, both generations; emptied on every change
REPLAY_BYTES = 24 << 20  # ... and what they take (counted as `replay_cost`)
MAX_REPLAYED_QUERY = 512  # bytes; larger queries (padded with EDNS options) are not kept
# What an entry costs beyond its bytes (CPython 3.11, measured with tracemalloc): a memo entry's
# Entry object, its header bytes and its slot in the per-name dict (a shared negative Entry
# costs nothing of its own: its name's key and dict do); a replay entry's key, (reply, key)
# tuple and dict slot.
MEMO_OVERHEAD = 550
MEMO_NAME_OVERHEAD = 300  # the per-name dict and its slot, beside the name's bytes
REPLAY_OVERHEAD = 200
# A forwarded entry's three more tuple slots, its deadline and base (floats) and its patches'
# bytes object, beside the patches themselves (counted by their length; kdns/_udpbatch.c too).
FORWARDED_OVERHEAD = 120

Replay = tuple[Any, ...]  # (reply minus ID, key) or (reply minus ID, key, deadline, base, patches)
MAX_KEY_KINDS = 65_536  # statistics keys remembered by kind (the kinds are few: zones x types x 2 x buckets)
_SIZE_INDEX = stats.size_index()  # a message's size -> its size bucket (stats.size_bucket)


@dataclass(slots=True, unsafe_hash=True)
class UpstreamQuery:
    """The reply needs an upstream: the shell asks for `question` and builds the reply
    (`upstream.render`) with `prefix` (our CNAMEs, packed for this query) before the
    upstream's records. A value (not frozen only because frozen dataclasses are slow to build)."""

    query: wire.Query
    limit: int
    question: bytes  # name + type + class, in wire form, to ask upstream
    prefix: bytes = b""
    prefix_count: int = 0
    zones: tuple[str, ...] = ()  # the zones kdns serves: an upstream's records for names there are dropped
    # A Corefile's rewrite: the upstream's records mapped back to the asked name (kdns.rewrite.Via.upstream)
    revert: Callable[[UpstreamAnswer], UpstreamAnswer] | None = None
    replayable: bool = True  # False when the reply is the asking client's alone (autopath): never replayed

    @property
    def name(self) -> str:
        """The upstream question's name, lowercase dotted (for routing to stub domains)."""
        if self.question is self.query.question:  # the client's own question: its labels are read
            return ".".join(self.query.labels).lower()
        labels, _ = wire.read_name(self.question, 0, compressed=False)
        return ".".join(label.decode("latin-1") for label in labels).lower()


# (query, reply, the responder's zones[, where the question name ends]) -> what `replies`
# keeps beside the reply: the shell gives stats.replay_key, the statistics key a replayed
# reply is counted under.
ReplayKey = Callable[..., object]


class Responder:
    def __init__(self, snapshot: Snapshot, *, replay_key: ReplayKey | None = None):
        # The memo: lowercased question name -> {question type and class: packed answer}, in
        # two generations (the current one, then the previous one).
        self.memo: dict[bytes, dict[bytes, packing.Entry]] = {}
        self.memo_old: dict[bytes, dict[bytes, packing.Entry]] = {}
        self._memo_count = [0, 0]  # entries (name x type) in memo, memo_old
        self._memo_size = [0, 0]  # what they take (memo_cost)
        # The replay table: UDP query minus ID -> (reply minus ID, replay_key's value for it[,
        # deadline, base, patches]), in two generations; the C loop reads both.
        self.replies: dict[bytes, Replay] = {}
        self.replies_old: dict[bytes, Replay] = {}
        self._replies_count_old = 0
        self._replies_size = [0, 0]  # replay_cost of replies, replies_old
        self.replay_key = replay_key
        self._keys: dict[tuple[Any, ...], object] = {}  # (zone, type, rcode, size buckets) -> replay_key's key
        self.snapshot = snapshot
        self.zones = snapshot.config.all_zones
        self._soa: tuple[bytes, ...] = ()  # each zone's SOA record, written out in full
        self._soa_parts: tuple[tuple[bytes, ...], ...] = ()
        self._soa_at: dict[int, bytes] = {}  # zone index << 9 | offset -> SOA record pointing there
        self._services_names: tuple[tuple[tuple[str, ...], int, ans.Answer, int], ...] = ()
        self._nxdomains: dict[int, tuple[packing.Entry, bytes]] = {}  # zone << 9 | name length -> (Entry, SOA record)
        # Names whose memo entries a Corefile's rewrite made from another name's records: any
        # change may touch them (kdns.rewrite). At most MAX_REWRITTEN (the memo is cleared then).
        self._rewritten: set[bytes] = set()
        self.publish(Change(snapshot, everything=True))

    @property
    def memo_entries(self) -> int:
        """Packed answers in the memo (name x type), both generations."""
        return self._memo_count[0] + self._memo_count[1]

    @property
    def memo_bytes(self) -> int:
        """What the memo takes, as counted against MEMO_BYTES (`memo_cost`)."""
        return self._memo_size[0] + self._memo_size[1]

    @property
    def replay_entries(self) -> int:
        """Whole replies kept for replay, both generations."""
        return len(self.replies) + self._replies_count_old

    @property
    def replies_bytes(self) -> int:
        """What the replay table takes, as counted against REPLAY_BYTES (`replay_cost`)."""
        return self._replies_size[0] + self._replies_size[1]

    def publish(self, change: Change) -> None:
        """Make `change.snapshot` the one answers come from, dropping stale memo entries."""
        snap = change.snapshot
        if snap.config.all_zones != self.zones:
            raise ValueError("a Responder serves one set of zones")
        if not change.empty:
            self.drop_replies()  # whole replies embed the serial: cheap to rebuild from the memo
        if change.everything or len(change.names) + len(change.ips) + len(change.absolute) > len(self.memo) + len(self.memo_old):
            # (Dropping everything is also the cheaper way when most names changed, as on
            # the first sync: no need to spell out a hundred thousand names to forget them.)
            self._clear_memo()
        else:
            stale = [names.join(rel, zone) for rel in change.names for zone in snap.config.zones]
            if "" in change.names:  # the apex NS answer and its glue are the same in every zone
                stale += self.zones
            stale += [names.reverse_name(ip) for ip in change.ips]
            stale += change.absolute  # the external zones' and outside names (kdns.tables)
            keys = [names.to_wire(name) for name in stale]
            if self._rewritten and not change.empty:
                keys += self._rewritten
                self._rewritten = set()
            for key in keys:
                for gen, memo in enumerate((self.memo, self.memo_old)):
                    byname = memo.pop(key, None)
                    if byname is not None:
                        self._memo_count[gen] -= len(byname)
                        self._memo_size[gen] -= sum(memo_cost(key, entry) for entry in byname.values())
        self._services_names = _services_names(snap)
        self._fallthrough = bool(snap.config.cluster_fallthrough or snap.config.external_fallthrough)
        self.udp_max = snap.config.udp_max
        if snap.serials != self.snapshot.serials or not self._soa:
            soas = [snap.soa(zone) for zone in self.zones]
            self._soa = tuple(wire.soa_record(zone, *soa) for zone, soa in zip(self.zones, soas, strict=True))
            # (pieces pointing into the question for the zones whose SOA names are CoreDNS's;
            # an external zone names its own: only its owner points there, in the client's case)
            self._soa_parts = tuple(
                packing.soa_parts(zone, serial, ttl) if (mname, rname) == (names.join("ns.dns", zone), names.join("hostmaster", zone))
                else (record[len(names.to_wire(zone)):],)
                for zone, (serial, ttl, mname, rname), record in zip(self.zones, soas, self._soa, strict=True)
            )
            self._soa_at = {}
            self._nxdomains = {}
        self.snapshot = snap

    def drop_replies(self) -> None:
        """Forget every whole reply (on an index change, or when the forwarder changes)."""
        self.replies = {}
        self.replies_old = {}
        self._replies_count_old = 0
        self._replies_size = [0, 0]

    def handle(self, data: bytes, limit: int | None = None, client: str | None = None) -> bytes | UpstreamQuery | TransferQuery | None:
        """The reply to `data`, an `UpstreamQuery` when an upstream must help, a `TransferQuery`
        for AXFR and IXFR (the shell decides, knowing the client), or None to send nothing.

        `limit` is None for UDP (the size then follows EDNS) or the largest reply the
        transport carries (TCP). `client` is the asking address (for autopath).
        """
        if limit is None:
            hit = self.replay_entry(data[2:])
            if hit is not None and len(hit) == 2:
                return data[:2] + cast(bytes, hit[0])
        return self.answer(data, limit, client)

    def answer(self, data: bytes, limit: int | None = None, client: str | None = None) -> bytes | UpstreamQuery | TransferQuery | None:
        """`handle` for a query the caller has already looked up in the replay table."""
        return self.answer_keyed(data, limit, client)[0]

    def answer_keyed(self, data: bytes, limit: int | None = None, client: str | None = None,
                     labels: tuple[str, ...] | None = None) -> tuple[bytes | UpstreamQuery | TransferQuery | None, object]:
        """`answer`, and the statistics key of a reply kept for replay (None for any other):
        the shell counts the reply under it rather than working the labels out again.
        `labels`: the question name's labels (`wire.plain_labels`), when the caller has them."""
        if limit is None:
            quick = self.plain_udp(data, client, labels)
            if quick is not None:
                return quick
        reply, entry, end = self._reply(data, limit, client)
        key = None
        if entry is not None and limit is None and len(data) <= MAX_REPLAYED_QUERY:
            # Stub resolvers send the same bytes for the same question every time: the
            # reply to a UDP query is a function of everything after its ID.
            if self.replay_key is not None:
                key = self.replay_key(data, reply, self.zones, end, entry.zone) if end else self.replay_key(data, reply, self.zones)
            made = cast(bytes, reply)  # (a reply that may be replayed is bytes)
            self._remember(data[2:], (made[2:], key), replay_cost(data, made))
        return reply, key

    def plain_udp(self, data: bytes, client: str | None, labels: tuple[str, ...] | None = None) -> tuple[bytes | UpstreamQuery | None, object] | None:
        """`answer_keyed` for a plain UDP query (one question, at most an OPT record: what stub
        resolvers send), in one piece: the path every first-time name takes. None for any
        other query (the general path then answers it)."""
        n = len(data)
        if n < 17 or n > MAX_REPLAYED_QUERY or data[2] & 0xF8 or data[4:10] != b"\x00\x01\x00\x00\x00\x00":
            return None
        end = data.find(0, 12) + 1
        if not end:
            return None
        qend = end + 4
        arcount = data[10:12]
        if arcount == b"\x00\x00":
            if n != qend:
                return None
            edns = None
        elif (
            arcount == b"\x00\x01"
            and n >= qend + 11
            and data[qend : qend + 3] == b"\x00\x00\x29"
            and data[qend + 6] == 0  # EDNS version 0
            and n == qend + 11 + int.from_bytes(data[qend + 9 : qend + 11], "big")
        ):
            edns = (int.from_bytes(data[qend + 3 : qend + 5], "big"), data[qend + 7] >= 0x80)
        else:
            return None
        qname = data[12:end].lower()
        entry = self._memo_get(qname, data[end:qend]) if qname in self.memo or qname in self.memo_old else None
        soa = None  # the SOA record that ends the reply, when known
        reply: bytes | None = None
        if entry is None:
            if labels is None:
                labels = wire.plain_labels(qname)
                if labels is None:
                    return None
            snap = self.snapshot
            # (class IN and not a zone transfer: `answer` refuses the others)
            quick = self._services_names if data[end + 2 : end + 4] == b"\x00\x01" and data[end : end + 2] not in (b"\x00\xfc", b"\x00\xfb") else ()
            for svc, count, nxdomain, zone in quick:
                # `<name>.<ns>.svc.<zone>` that is not in the index: NXDOMAIN, as `answer` says
                # (tests/test_fastpath.py holds the two to the same replies), without its detours.
                if labels[-count:] == svc:
                    # (A label with a dot in it is NXDOMAIN for `answer` too: no need to look.)
                    if snap.node(".".join(labels[: len(labels) - count + 1])) is None:
                        known = self._nxdomains.get(zone << 9 | len(qname))
                        if known is None:
                            entry = packing.negative_entry(qname, nxdomain, self.zones)
                            known = self._nxdomains[zone << 9 | len(qname)] = (entry, self._soa_for(entry))
                        entry, soa = known
                    break
            if entry is None:
                client_ns = (snap.client_ns.get(client) or None) if client is not None and snap.config.autopath else None
                try:
                    result = ans.answer(snap, labels, data[end] << 8 | data[end + 1], data[end + 2] << 8 | data[end + 3], client_ns, client)
                except Exception:  # noqa: BLE001 - a bug: the general path answers again, SERVFAIL, and says where
                    return None
                if result.answer or result.additional or result.upstream is not None or not result.cacheable or result.authority:
                    query = wire.Query(data[:2], data[2] << 8 | data[3], data[12:qend], qname, labels, data[end] << 8 | data[end + 1],
                                       data[end + 2] << 8 | data[end + 3], None if edns is None else wire.Edns(max(wire.MIN_UDP, edns[0]), 0, edns[1]))
                    got, entry = self._answer(query, None, client, result)
                    if entry is None:
                        return got, None
                    reply = cast(bytes, got)  # (packed: bytes)
                else:  # no records: NXDOMAIN or NODATA, the bulk of first-time names
                    entry = packing.negative_entry(qname, result, self.zones)
        if reply is None:
            reply = wire.render(entry, data[:2], data[2] << 8 | data[3], data[12:qend], self._soa_for(entry) if soa is None else soa, edns,
                                wire.udp_limit(edns, self.udp_max))
        key = None
        if self.replay_key is not None:
            # The statistics key holds only the zone, type, rcode and size buckets: one per kind.
            kind = (entry.zone, data[end : end + 2], reply[3] & 0x0F, _SIZE_INDEX[n], _SIZE_INDEX[len(reply)])
            key = self._keys.get(kind)
            if key is None:
                key = self.replay_key(data, reply, self.zones, end, entry.zone)
                if len(self._keys) >= MAX_KEY_KINDS:
                    self._keys.clear()
                self._keys[kind] = key
        # (`_remember`, written out)
        replies, size = self.replies, self._replies_size
        if len(replies) >= MAX_REPLIES // 2 or size[0] >= REPLAY_BYTES // 2:
            self._rotate_replies()
            replies, size = self.replies, self._replies_size
        tail = data[2:]
        old = replies.get(tail)
        if old is not None:
            size[0] -= REPLAY_OVERHEAD + 4 + len(tail) + len(old[0]) + (FORWARDED_OVERHEAD + len(old[4]) if len(old) > 2 else 0)
        replies[tail] = (reply[2:], key)
        size[0] += REPLAY_OVERHEAD + n + len(reply)
        return reply, key

    def replay_entry(self, key: bytes) -> Replay | None:
        """The replay table's entry for a UDP query's bytes after its ID (promoted to the current
        generation when found in the previous one), or None. The shell's UDP loop asks this
        first, to count a replay under its key, as the C part does."""
        hit = self.replies.get(key)
        if hit is None:
            hit = self.replies_old.get(key)
            if hit is not None:
                self._remember(key, hit, REPLAY_OVERHEAD + 4 + len(key) + len(hit[0]) + (FORWARDED_OVERHEAD + len(hit[4]) if len(hit) > 2 else 0))
        return hit

    def promote(self, key: bytes) -> Replay | None:
        """`replay_entry` for a key the caller did not find in the current generation."""
        hit = self.replies_old.get(key)
        if hit is not None:
            self._remember(key, hit, REPLAY_OVERHEAD + 4 + len(key) + len(hit[0]) + (FORWARDED_OVERHEAD + len(hit[4]) if len(hit) > 2 else 0))
        return hit

    def remember_forwarded(self, data: bytes, reply: bytes, key: object, deadline: float, base: float,
                           patches: bytes) -> None:
        """Keep a reply made from the forwarding cache for replay until `deadline` (the shell's
        `time.monotonic`), to clients the recursion allow list admits, with the TTLs at
        `patches` counted down by the whole seconds since `base` (kdns.ttlpatch; the shell
        checks and patches)."""
        if len(data) <= MAX_REPLAYED_QUERY:
            self._remember(data[2:], (reply[2:], key, deadline, base, patches),
                           replay_cost(data, reply) + FORWARDED_OVERHEAD + len(patches))

    def _remember(self, key: bytes, value: Replay, cost: int) -> None:
        replies = self.replies
        if len(replies) >= MAX_REPLIES // 2 or self._replies_size[0] >= REPLAY_BYTES // 2:
            self._rotate_replies()
            replies = self.replies
        old = replies.get(key)
        if old is not None:
            self._replies_size[0] -= REPLAY_OVERHEAD + 4 + len(key) + len(old[0]) + (FORWARDED_OVERHEAD + len(old[4]) if len(old) > 2 else 0)
        replies[key] = value
        self._replies_size[0] += cost

    def promoted(self, count: int, size: int) -> None:
        """The C loop copied `count` entries of `size` bytes (keys and replies) from the previous
        generation into the current one: count them, and start a new generation if it is full."""
        if count:
            self._replies_size[0] += count * (REPLAY_OVERHEAD + 4) + size
            if len(self.replies) >= MAX_REPLIES // 2 or self._replies_size[0] >= REPLAY_BYTES // 2:
                self._rotate_replies()

    def _rotate_replies(self) -> None:
        self.replies_old = self.replies
        self._replies_count_old = len(self.replies)
        self.replies = {}
        self._replies_size = [0, self._replies_size[0]]

    def _clear_memo(self) -> None:
        self._rewritten = set()
        self.memo = {}
        self.memo_old = {}
        self._memo_count = [0, 0]
        self._memo_size = [0, 0]

    def _memo_get(self, qname: bytes, qtail: bytes) -> packing.Entry | None:
        byname = self.memo.get(qname)
        if byname is not None:
            entry = byname.get(qtail)
            if entry is not None:
                return entry
        byname = self.memo_old.get(qname)
        if byname is not None:
            entry = byname.get(qtail)
            if entry is not None:
                self._memo_put(qname, qtail, entry)  # promoted: asked again
                return entry
        return None

    def _memo_put(self, qname: bytes, qtail: bytes, entry: packing.Entry) -> None:
        if self._memo_count[0] >= MEMO_ENTRIES // 2 or self._memo_size[0] >= MEMO_BYTES // 2:
            self.memo_old = self.memo
            self.memo = {}
            self._memo_count = [0, self._memo_count[0]]
            self._memo_size = [0, self._memo_size[0]]
        byname = self.memo.get(qname)
        if byname is None:
            byname = self.memo[qname] = {}
        old = byname.get(qtail)
        if old is None:
            self._memo_count[0] += 1
        else:
            self._memo_size[0] -= memo_cost(qname, old)
        self._memo_size[0] += memo_cost(qname, entry)
        byname[qtail] = entry

    def _soa_for(self, entry: packing.Entry) -> bytes:
        """The SOA record that ends `entry`'s reply: pointing into the question where it can."""
        if entry.soa < 0:
            return b""
        parts = self._soa_parts[entry.soa]
        if entry.soa_at < 0:
            return self._soa[entry.soa]
        key = entry.soa << 9 | entry.soa_at
        record = self._soa_at.get(key)
        if record is None:
            record = self._soa_at[key] = packing.soa_record(parts, 12 + entry.soa_at)
        return record

    def _reply(self, data: bytes, limit: int | None, client: str | None) -> tuple[bytes | UpstreamQuery | TransferQuery | None, packing.Entry | None, int]:
        """The reply; the packed answer it was made of when it may be replayed for the same
        bytes until the next change (else None); where the question name ends when the fast
        path read it (else 0)."""
        reply: bytes | UpstreamQuery | TransferQuery | None
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
                    qname = data[12:end].lower()
                    entry = self._memo_get(qname, data[end:qend])
                    if entry is not None:
                        reply = wire.render(
                            entry,
                            data[:2],
                            data[2] << 8 | data[3],
                            data[12:qend],
                            self._soa_for(entry),
                            edns,
                            wire.udp_limit(edns, self.udp_max) if limit is None else limit,
                        )
                        return reply, entry, end
                    qtype = data[end] << 8 | data[end + 1]
                    # (AXFR and IXFR go the general way: a zone transfer over TCP, REFUSED over UDP)
                    query = wire.plain_query(data, qend, qname, edns) if qtype != AXFR and qtype != IXFR else None
                    if query is not None:
                        reply, entry = self._answer(query, limit, client)
                        return reply, entry, end
        reply, entry = self._full(data, limit, client)
        return reply, entry, 0

    def _full(self, data: bytes, limit: int | None, client: str | None) -> tuple[bytes | UpstreamQuery | TransferQuery | None, packing.Entry | None]:
        try:
            query = wire.parse_query(data)
        except wire.Malformed as exc:
            log.debug("malformed query: %s", exc)
            return exc.reply, None
        if query.edns is not None and query.edns.version != 0:
            return wire.badvers_reply(query), None
        if query.qtype == AXFR or query.qtype == IXFR:  # (never memoised: only misses get here)
            # Over TCP the shell transfers the zone (kdns.transfer); over UDP: REFUSED, as CoreDNS.
            return (TransferQuery(query, data) if limit is not None else wire.simple_reply(query, REFUSED)), None
        return self._answer(query, limit, client)

    def _answer(self, query: wire.Query, limit: int | None, client: str | None,
                result: ans.Answer | None = None) -> tuple[bytes | UpstreamQuery | None, packing.Entry | None]:
        """The reply to `query` (with `result`, the answer to it, when the caller has it)."""
        snap = self.snapshot
        edns = (query.edns.udp_size, query.edns.do) if query.edns else None
        limit = wire.udp_limit(edns, self.udp_max) if limit is None else limit
        try:
            if result is None:
                client_ns = (snap.client_ns.get(client) or None) if client is not None and snap.config.autopath else None
                result = ans.answer(snap, query.labels, query.qtype, query.qclass, client_ns, client)
            if result.upstream is not None:
                return self._upstream_query(query, result, limit), None
            entry = wire.pack_answer(query, result, self.zones)
        except Exception:  # a bug: answer SERVFAIL, say where, keep serving
            log.exception("failed to answer %r type %d", ".".join(query.labels), query.qtype)
            return wire.simple_reply(query, SERVFAIL), None
        reply = wire.render(entry, query.qid, query.flags, query.question, self._soa_for(entry), edns, limit)
        if not result.cacheable:
            return reply, None
        if entry.body:  # (an answer without records of its own is as cheap to make again: not kept)
            self._memo_put(query.qname, query.qtail, entry)
            if result.via is not None and result.via.rewritten:  # it shows another name's records
                if len(self._rewritten) >= MAX_REWRITTEN:
                    self._clear_memo()
                self._rewritten.add(query.qname)
        return reply, entry

    def _upstream_query(self, query: wire.Query, result: ans.Answer, limit: int) -> UpstreamQuery:
        assert result.upstream is not None
        zones = self.zones
        if self._fallthrough:  # a name of ours that falls through: the upstream's records for it are wanted
            zones = tuple(z for z in zones if not names.within(result.upstream, z))
        if not result.answer and result.upstream == ".".join(query.labels):
            return UpstreamQuery(query, limit, query.question, zones=zones, replayable=not result.per_client)  # as asked, case and all
        question = _client_labels(query, result.upstream) + query.question[-4:]
        prefix = wire.pack_answer(query, ans.Answer(NOERROR, result.answer), self.zones).body if result.answer else b""
        via = result.via
        revert = functools.partial(via.upstream, asked=query.question[:-4]) if via is not None and via.responses else None
        return UpstreamQuery(query, limit, question, prefix, len(result.answer), zones, revert, not result.per_client)


def _services_names(snap: Snapshot) -> tuple[tuple[tuple[str, ...], int, ans.Answer, int], ...]:
    """For the quick NXDOMAIN of names under `svc.<zone>` not in the index: (("svc", *the
    zone's labels), how many, the NXDOMAIN answer, the zone's index) for each forward zone no
    other zone lies in and no --cluster-fallthrough touches (NXDOMAIN may go upstream there);
    none until the first sync, or with autopath (the answer then depends on the client)."""
    config = snap.config
    if not snap.synced or config.autopath:
        return ()
    out = []
    for zone in config.zones:
        if any(other != zone and other.endswith("." + zone) for other in config.all_zones):
            continue
        if config.rules is not None and config.rules.may_see(f"svc.{zone}."):
            continue  # a Corefile's rewrite or template may answer such a name (kdns.rewrite)
        if any(f == "." or names.within(f, zone) or names.within(zone, f) for f in config.cluster_fallthrough):
            continue
        svc = ("svc", *zone.split("."))
        out.append((svc, len(svc), ans.Answer(NXDOMAIN, soa_zone=zone), config.all_zones.index(zone)))
    return tuple(out)


def memo_cost(qname: bytes, entry: packing.Entry) -> int:
    """Bytes one packed answer takes in the memo: its name's share (the key and the per-name
    dict), and the Entry with its bytes unless it is a shared one (`packing.shared_entry`)."""
    own = 0 if packing.is_shared(entry) else MEMO_OVERHEAD + len(entry.body) + (len(entry.short.body) if entry.short is not None else 0)
    return MEMO_NAME_OVERHEAD + len(qname) + own


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
