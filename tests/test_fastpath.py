"""The tables of the fast paths (issue 15): what the replay table and the memo keep when full,
what the C loop copies between their generations, and how long a reply made from the
forwarding cache is replayed.

Pure tests drive `Responder.handle` with query bytes; the socket tests run kdns on loopback
with the C loop (where it is built) and dnspython or plain sockets as clients.
"""

from __future__ import annotations

import socket
import struct

import dns.message
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns import responder as responder_module
from kdns.cache import PREFETCH_WINDOW, ForwardCache
from kdns.config import DnsConfig
from kdns.index import Index
from kdns.responder import Responder
from kdns.serve import udp
from kdns.sources.manifests import ManifestSet
from kdns.upstream import UpstreamAnswer
from testkit.repo import DEMO
from testkit.stubdns import StubDNS


@pytest.fixture(scope="module")
def snapshot():
    index = Index(DnsConfig(), now=1)
    index.apply(ManifestSet([str(DEMO)]).load(), now=1)
    return index.snapshot


def query(name: str, qtype: int = 1, qid: int = 0x1234) -> bytes:
    labels = b"".join(bytes([len(x)]) + x.encode() for x in name.split("."))
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


HOT = [query(name, qtype) for name in ("web.shop.svc.cluster.local", "db.shop.svc.cluster.local", "api.shop.svc.cluster.local",
                                       "kubernetes.default.svc.cluster.local") for qtype in (1, 28, 33)]


def held(r: Responder, data: bytes) -> bool:
    return data[2:] in r.replies or data[2:] in r.replies_old


def replay_bytes(r: Responder) -> int:
    """What the replay table's entries take, worked out from them (`replay_cost`)."""
    entries = [*r.replies.items(), *r.replies_old.items()]
    return sum(responder_module.replay_cost(b"..", b"..") + len(k) + len(v[0]) + (responder_module.FORWARDED_OVERHEAD + len(v[4]) if len(v) > 2 else 0)
               for k, v in entries)


def test_a_flood_of_unique_names_does_not_push_out_what_is_asked_again(snapshot, monkeypatch):
    """Replay table bounded at 200 replies: 3,000 names asked once each go by, and the dozen
    questions asked between every 20 of them stay in the table throughout (the table once
    emptied itself when full, and every one of them missed after each emptying)."""
    monkeypatch.setattr(responder_module, "MAX_REPLIES", 200)
    r = Responder(snapshot)
    for data in HOT:
        r.handle(data)
    missed = 0
    for i in range(3_000):
        r.handle(query(f"flood-{i}.shop.svc.cluster.local"))
        if i % 20 == 0:
            for data in HOT:
                missed += not held(r, data)
                r.handle(data)
        assert r.replay_entries <= 200
        assert r.replies_bytes == replay_bytes(r)
    assert missed == 0


def test_the_memo_keeps_what_is_asked_again_and_not_answers_without_records(snapshot, monkeypatch):
    """Memo bounded at 40 answers: positive answers asked again survive 1,000 others (pod names,
    each an answer with a record), and NXDOMAINs take no room at all."""
    monkeypatch.setattr(responder_module, "MEMO_ENTRIES", 40)
    r = Responder(snapshot)
    web = "web.shop.svc.cluster.local"
    for i in range(1_000):
        r.handle(query(f"nope-{i}.shop.svc.cluster.local"))
    assert r.memo_entries == 0
    for i in range(1_000):
        r.handle(query(f"10-244-{i // 250}-{i % 250}.shop.pod.cluster.local"))
        letters = iter(range(len(web)))  # (a new spelling each time: the memo answers, not the replay table)
        spelled = "".join(c.upper() if c != "." and i >> next(letters) & 1 else c for c in web)
        reply = r.handle(query(spelled))
        assert isinstance(reply, bytes) and reply[6:8] == b"\x00\x01"
        assert r.memo_entries <= 40
        assert b"\x00\x01\x00\x01" in r.memo.get(query(web)[12:-4], {})  # asked again: in the current generation
    assert r.memo_bytes == sum(responder_module.memo_cost(name, e) for memo in (r.memo, r.memo_old)
                               for name, byname in memo.items() for e in byname.values())


def test_a_forwarded_reply_is_replayed_until_the_prefetch_window():
    """Kept for replay (its TTLs counted down by the replay: tests/test_ttlpatch.py) until the
    window where a popular entry is refreshed opens (prefetch must see queries), which is
    before its expiry."""
    now = [100.0]
    cache = ForwardCache(clock=lambda: now[0], maxsize=10, max_ttl=300, stale_for=60)
    answer = UpstreamAnswer(0, b"", (1, 0, 0), 0, (), (), 30, False)
    entry = cache.put(("k", 1, 1, False, False), answer)  # type: ignore[arg-type]
    assert entry is not None
    window = entry.expires - 30 * PREFETCH_WINDOW  # 127.0
    assert cache.replay_until(entry) == window < entry.expires


def c_loop_or_skip(monkeypatch) -> None:
    if udp._udpbatch is None:
        pytest.skip("kdns/_udpbatch.c is not built here")
    monkeypatch.setenv("KDNS_PURE_PYTHON", "0")


def burst(port: int, packets: list[bytes]) -> list[bytes]:
    """Send `packets` with a blocking socket (queued before kdns, in this trio loop, reads
    any), then read the replies."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.connect(("127.0.0.1", port))
        sock.settimeout(3.0)
        for packet in packets:
            sock.send(packet)
        return [sock.recv(65535) for _ in packets]


async def test_the_c_loop_keeps_the_replay_table_within_its_bound(kdns, monkeypatch):
    """With a replay table of 100 replies, hot questions replayed by the C loop from the
    previous generation are copied into the current one, and the table's size (as counted
    against its bound) stays exactly what its entries take, within the bound."""
    c_loop_or_skip(monkeypatch)
    monkeypatch.setattr(responder_module, "MAX_REPLIES", 100)
    promoted = []
    original = responder_module.Responder.promoted
    monkeypatch.setattr(responder_module.Responder, "promoted", lambda self, count, size: (promoted.append(count), original(self, count, size)))
    server = await kdns(DEMO)
    assert server.server.c_loop
    r = server.server.responder
    for round_ in range(6):
        await trio.to_thread.run_sync(burst, server.port, [query(f"cold-{round_}-{i}.shop.svc.cluster.local") for i in range(40)])
        replies = await trio.to_thread.run_sync(burst, server.port, [struct.pack("!H", i) + HOT[i % len(HOT)][2:] for i in range(48)])
        assert [reply[:2] for reply in replies] == [struct.pack("!H", i) for i in range(48)]
        r = server.server.responder
        assert r.replay_entries <= 100 + len(HOT)
        assert r.replies_bytes == replay_bytes(r)
    assert all(held(r, data) for data in HOT)
    assert sum(promoted) > 0  # (the C loop did copy entries from the previous generation)


async def test_a_replayed_forwarded_answer_counts_down_when_the_second_turns(kdns, nursery, monkeypatch):
    """A name answered from the forwarding cache is replayed with the same TTLs, then, once the
    second turns, answered again with TTLs one second lower (the upstream is asked once)."""
    c_loop_or_skip(monkeypatch)
    upstream = StubDNS("example.org. 300 IN A 127.0.0.77")
    port = await nursery.start(upstream.serve)
    server = await kdns(DEMO, args=["--upstream", f"127.0.0.1:{port}"])
    ttls = []
    for round_ in range(2):
        replies = await trio.to_thread.run_sync(burst, server.port, [query("example.org", qid=round_ * 100 + i) for i in range(10)])
        ttls.append([dns.message.from_wire(reply).answer[0].ttl for reply in replies])
        await trio.sleep(1.2)
    assert all(a >= b for a, b in zip(ttls[0], ttls[0][1:])) and ttls[0][-1] <= 30
    assert max(ttls[1]) <= ttls[0][-1] - 1, ttls
    assert upstream.count("example.org") == 1


# -- the quick NXDOMAIN against `answer` --------------------------------------------------------

LABELS = ["web", "db", "db-0", "api", "cache", "kubernetes", "kube-dns", "payments", "storefront", "nope", "_http", "_tcp",
          "_dns", "_udp", "shop", "default", "kube-system", "svc", "pod", "10-244-1-10", "a.b", "WeB", "x" * 63]
QTYPES = [1, 28, 33, 16, 15, 5, 255, 12, 2, 6, 13]


@st.composite
def service_names(draw) -> bytes:
    """A plain query for a name under `<ns>.svc.cluster.local` (most of them), or near it."""
    head = draw(st.lists(st.sampled_from(LABELS), min_size=0, max_size=4))
    ns = draw(st.sampled_from(["shop", "default", "kube-system", "nope", "SHOP"]))
    tail = draw(st.sampled_from([["svc", "cluster", "local"], ["svc", "cluster", "local"], ["SVC", "Cluster", "local"],
                                 ["pod", "cluster", "local"], ["svc", "corp", "internal"]]))
    labels = [*head, ns, *tail]
    wire_name = b"".join(bytes([len(x)]) + x.encode() for x in labels) + b"\0"
    qid = draw(st.integers(0, 0xFFFF))
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + wire_name + struct.pack("!HH", draw(st.sampled_from(QTYPES)), 1)


@pytest.fixture(scope="module")
def snapshots():
    """The demo cluster synced (with and without autopath, over two zones) and before its sync."""
    out = []
    for config, synced in [(DnsConfig(), True), (DnsConfig(zones=("cluster.local", "corp.internal")), True),
                           (DnsConfig(autopath=True), True), (DnsConfig(), False)]:
        index = Index(config, sources=() if synced else ("manifests",), now=1)
        index.apply(ManifestSet([str(DEMO)]).load(), now=1)
        out.append(index.snapshot)
    return out


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(data=service_names())
def test_the_quick_nxdomain_is_what_answer_says(snapshots, data):
    """Over UDP, a name under `<ns>.svc.<zone>` that is not in the index is answered NXDOMAIN
    without `answer`; over TCP (same bytes, no size limit hit) every query goes through
    `answer`: the two replies are the same bytes, for names that exist or not, synced or not,
    with autopath or not."""
    for snap in snapshots:
        assert Responder(snap).handle(data) == Responder(snap).handle(data, limit=65535), (snap.config, data)
