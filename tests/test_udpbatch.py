"""The C part of the UDP loop (kdns/_udpbatch.c) against the all-Python loop, over sockets.

Two kdns processes' worth of servers answer the same demo cluster: one with the C loop (the
default where it is built), one started with KDNS_PURE_PYTHON=1. Every check sends the same
packets to both and compares the bytes that come back: the same replies, to the same
sockets, in the same order. Replays (a query whose bytes after the ID were seen before) are
what the C part answers itself; everything else it hands to Python, so the bursts below mix
both, across more than one batch.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import struct
import subprocess
import sys

import dns.message
import dns.rcode
import pytest
import trio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from kdns.serve import udp
from testkit import process
from testkit.dnswire import DEMO_QUESTIONS, QR, SENTINEL_ID, SENTINEL_NAME, TIMEOUT, WEB, is_sentinel_reply, query, with_flags
from testkit.process import KdnsProcess
from testkit.repo import DEMO, have_ipv6_loopback

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the C loop uses recvmmsg/sendmmsg (Linux)")

LOOPS = ["c", "python"]


@pytest.fixture
async def start(kdns, monkeypatch):
    """`await start(loop, *args)`: kdns on the demo cluster with the C or the Python UDP loop."""

    async def started(loop: str, *args: str, listen: str = "127.0.0.1:0"):
        if loop == "c" and udp._udpbatch is None:
            pytest.skip("kdns/_udpbatch.c is not built here (no C compiler; see test_the_c_part_is_built)")
        monkeypatch.setenv("KDNS_PURE_PYTHON", "1" if loop == "python" else "0")
        running = await kdns(DEMO, args=list(args), listen=listen)
        assert running.server.c_loop is (loop == "c")
        return running

    return started


def same_serial(running, replies: list[bytes]) -> list[bytes]:
    """`replies` with the server's SOA serial (a clock reading, different for two servers
    started a second apart) zeroed, so that two servers' negative answers compare equal."""
    serial = struct.pack("!I", running.server.dns.snapshot.serial)
    return [reply.replace(serial, bytes(4)) for reply in replies]


def case_variants(name: str) -> list[str]:
    return [name.lower(), name.upper(), "".join(c.upper() if i % 2 else c for i, c in enumerate(name))]


def demo_packets() -> list[bytes]:
    """Every demo question in three cases, plain, with EDNS and with the DO bit."""
    packets = []
    for i, (name, rdtype, _) in enumerate(DEMO_QUESTIONS):
        for j, variant in enumerate(case_variants(name)):
            for k, make in enumerate([{}, {"use_edns": 0}, {"use_edns": 0, "want_dnssec": True}]):
                packets.append(query(variant, rdtype, qid=(i * 9 + j * 3 + k) & 0xFFFF, **make))
    return packets


def test_the_c_part_is_built():
    """`pip install` builds kdns/_udpbatch.c where a C compiler is there (`.ci/run` installs
    gcc). Without it kdns still works, at two thirds of the speed: with a compiler present,
    a missing build is a broken build, not a skip."""
    if udp._udpbatch is None and shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here, so pip could not build kdns/_udpbatch.c (CI installs gcc)")
    import kdns._udpbatch as c

    assert udp.batched()
    with pytest.raises(ValueError, match="batch must be 1 to"):
        c.Batch(0)


@pytest.mark.parametrize("pure_python", ["1", ""], ids=["set", "unset"])
def test_the_command_says_which_loop_runs(pure_python, tmp_path):
    """`kdns serve --help` documents KDNS_PURE_PYTHON, and `kdns serve` logs the loop it runs.
    (Run from elsewhere than the repository, so that `-m kdns` imports the installed kdns, as
    this process does, even when that is not an editable install.)"""
    env = {**os.environ, "KDNS_PURE_PYTHON": pure_python}
    help_text = subprocess.run([sys.executable, "-m", "kdns", "serve", "--help"], capture_output=True, text=True, timeout=30, env=env,
                               cwd=tmp_path, check=False)
    assert "KDNS_PURE_PYTHON=1" in help_text.stdout
    proc = subprocess.Popen([sys.executable, "-m", "kdns", "serve", "--manifests", str(DEMO), "--listen", "127.0.0.1:0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=tmp_path)
    k = KdnsProcess(proc)
    try:
        line = k.wait_for(r"udp loop: (.*)$", timeout=15).group(1)
    finally:
        k.close()
    if pure_python:
        assert line == "Python (KDNS_PURE_PYTHON is set)"
    elif udp._udpbatch is not None:
        assert line.startswith("C (kdns._udpbatch")
    else:
        assert line == "Python (kdns._udpbatch is not built)"


async def test_replays_give_the_python_loops_bytes(start):
    """Every demo question (3 cases x plain/EDNS/DO) twice: the first burst is answered fresh,
    the second from the replay table, which the C loop answers without Python. Both loops give
    the same bytes in the same order, and the replays the same bytes as the fresh answers."""
    packets = demo_packets()
    results = {}
    for loop in LOOPS:
        running = await start(loop)
        first = await chunked_replies(running, packets)
        second = await chunked_replies(running, packets)
        assert len(first) == len(packets), loop
        assert second == first, loop
        results[loop] = same_serial(running, first)
    assert results["c"] == results["python"]
    assert [r[:2] for r in results["c"]] == [p[:2] for p in packets]


def rmem_max() -> int:
    try:
        with open("/proc/sys/net/core/rmem_max") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 212992  # Linux's usual default


async def burst_replies(running, packets: list[bytes]) -> list[bytes]:
    """Send `packets` and the sentinel with blocking calls, so that they are all queued before
    kdns (in this trio loop) reads any: it then meets them in full batches. Returns the replies
    that came before the sentinel's, in the order they came."""
    with socket.socket(socket.AF_INET6 if ":" in running.host else socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.connect((running.host, running.port))
        sock.settimeout(TIMEOUT)
        for packet in packets:
            sock.send(packet)
        sock.send(query(SENTINEL_NAME, qid=SENTINEL_ID))
        got = []
        while True:
            reply = await trio.to_thread.run_sync(sock.recv, 65535)
            if is_sentinel_reply(reply):
                return got
            got.append(reply)


async def chunked_replies(running, packets: list[bytes], size: int = 100) -> list[bytes]:
    """`burst_replies` for `size` packets at a time (what any receive buffer holds)."""
    out = []
    for i in range(0, len(packets), size):
        out += await burst_replies(running, packets[i : i + size])
    return out


def junk(rng: random.Random, packets: list[bytes]) -> bytes:
    """A packet the fast paths must not answer: short, cut, a response, or flipped bits."""
    base = rng.choice(packets)
    kind = rng.randrange(4)
    if kind == 0:
        return base[: rng.randrange(12)]  # shorter than a header: dropped
    if kind == 1:
        return base[: rng.randrange(12, len(base))]  # cut in the question: FORMERR
    if kind == 2:
        return with_flags(base, set_bits=QR)  # a response: dropped
    flipped = bytearray(base)
    for _ in range(2):
        flipped[rng.randrange(2, len(flipped))] ^= 1 << rng.randrange(8)
    return bytes(flipped)


async def test_mixed_bursts_keep_order_across_batches(start):
    """Bursts of 100 packets (more than one batch) mixing replays, first-time questions and
    junk, in a seeded random order: both loops send the same replies in the same order."""
    rng = random.Random(5353)
    known = demo_packets()
    cold = [query(f"svc-{i}.shop.svc.cluster.local", "A", qid=0x4000 + i) for i in range(100)]
    bursts = []
    for _ in range(6):
        burst = [rng.choice(known) for _ in range(60)] + rng.sample(cold, 10) + [junk(rng, known) for _ in range(30)]
        rng.shuffle(burst)
        bursts.append(burst)
    results = {}
    for loop in LOOPS:
        running = await start(loop)
        await chunked_replies(running, known)  # the replay table holds these now
        results[loop] = [same_serial(running, await burst_replies(running, burst)) for burst in bursts]
        await assert_still_serving(running)
    assert results["c"] == results["python"]
    for replies in results["c"]:
        assert len(replies) >= 70  # every well-formed query is answered (some junk is too)
        assert all(reply[2] & 0x80 for reply in replies)  # all are responses


async def assert_still_serving(running) -> None:
    reply = await running.query(WEB, "A")
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer


async def test_replies_go_to_the_socket_that_asked(start):
    """Three clients send the same questions with their own IDs, interleaved in one burst:
    each gets exactly its own replies (the C loop sends each replay to the address its query
    came from)."""
    running = await start("c")
    names = [WEB, "db.shop.svc.cluster.local", "kubernetes.default.svc.cluster.local"]
    socks = [trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for s in socks:
            await s.connect((running.host, running.port))
        for s in socks:  # warm: the next copies are replays
            for name in names:
                await s.send(query(name, qid=1))
                with trio.fail_after(TIMEOUT):
                    await s.recv(65535)
        for round_ in range(20):
            for n, s in enumerate(socks):
                for name in names:
                    await s.send(query(name, qid=(n << 8) | round_))
        for n, s in enumerate(socks):
            got = []
            with trio.fail_after(TIMEOUT):
                while len(got) < 60:
                    got.append(await s.recv(65535))
            assert sorted(r[0] for r in got) == [n] * 60, f"client {n} got another client's replies"
            assert sorted(r[1] for r in got) == sorted(list(range(20)) * 3)
    finally:
        for s in socks:
            s.close()


@pytest.mark.skipif(not have_ipv6_loopback(), reason="no IPv6 loopback here")
@pytest.mark.parametrize("loop", LOOPS)
async def test_ipv6_clients_get_replays_and_fresh_answers(start, loop):
    """On [::1] the C loop sends replays to an IPv6 address and hands first-time questions to
    Python with the same (host, port, flowinfo, scope) address socket.recvfrom gives."""
    running = await start(loop, listen="[::1]:0")
    packets = [query(WEB, "A", qid=1), query(WEB, "A", qid=2), query("nope.shop.svc.cluster.local", "A", qid=3)]
    replies = await burst_replies(running, packets * 3)
    assert [r[:2] for r in replies] == [p[:2] for p in packets * 3]
    assert [dns.message.from_wire(r).rcode() for r in replies] == [dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.NXDOMAIN] * 3


async def test_a_full_receive_queue_is_answered_in_order(start):
    """As many replays as the receive buffers hold (up to 1,000) queued before kdns reads any:
    every one is answered, in order, across many batches of the C loop."""
    running = await start("c")
    packet = query(WEB, "SRV")
    count = min(1000, min(rmem_max(), 4 << 20) // 2048)
    assert count > udp.BATCH
    await burst_replies(running, [packet])
    replies = await burst_replies(running, [struct.pack("!H", i) + packet[2:] for i in range(count)])
    assert [struct.unpack("!H", r[:2])[0] for r in replies] == list(range(count))
    assert len({r[2:] for r in replies}) == 1


# -- random sequences -------------------------------------------------------------------------

POOL = [(name, rdtype) for name, rdtype, _ in DEMO_QUESTIONS] + [(f"cold-{i}.shop.svc.cluster.local", "A") for i in range(5)]


@st.composite
def packet_sequences(draw) -> list[bytes]:
    """Up to 60 packets: demo questions in random case, flags, IDs and EDNS, exact repeats of
    earlier ones under a new ID (replays), and random bytes."""
    packets: list[bytes] = []
    for _ in range(draw(st.integers(1, 60))):
        kind = draw(st.sampled_from(["query", "query", "repeat", "repeat", "junk"]))
        qid = struct.pack("!H", draw(st.integers(0, 0xFFFF)))
        if kind == "repeat" and packets:
            packets.append(qid + packets[draw(st.integers(0, len(packets) - 1))][2:])
        elif kind == "junk":
            packets.append(draw(st.binary(max_size=80)))
        else:
            name, rdtype = draw(st.sampled_from(POOL))
            rng = random.Random(draw(st.integers(0, 2**16)))
            name = "".join(c.upper() if rng.random() < 0.5 else c for c in name)
            edns = draw(st.sampled_from([None, 512, 1232, 4096]))
            packet = query(name, rdtype, **({} if edns is None else {"use_edns": 0, "payload": edns}))
            flags = struct.unpack("!H", packet[2:4])[0] | draw(st.sampled_from([0, 0x0010, 0x0020, 0x0030]))  # CD, AD
            if draw(st.booleans()):
                flags &= ~0x0100  # RD off
            packets.append(qid + struct.pack("!H", flags) + packet[4:])
    return packets


def burst_replies_blocking(port: int, packets: list[bytes]) -> list[bytes]:
    """`burst_replies` for a server in another process: plain blocking sockets."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.connect(("127.0.0.1", port))
        sock.settimeout(TIMEOUT)
        for packet in packets:
            sock.send(packet)
        sock.send(query(SENTINEL_NAME, qid=SENTINEL_ID))
        got = []
        while not is_sentinel_reply(reply := sock.recv(65535)):
            got.append(reply)
        return got


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """`kdns serve` on the demo cluster twice, with each loop, for the whole module:
    {loop: (port, SOA serial)}."""
    if udp._udpbatch is None:
        pytest.skip("kdns/_udpbatch.c is not built here (no C compiler; see test_the_c_part_is_built)")
    servers, out = [], {}
    try:
        for loop in LOOPS:
            env = {**os.environ, "KDNS_PURE_PYTHON": "1" if loop == "python" else "0"}
            k = process.start([sys.executable, "-m", "kdns", "serve", "--manifests", str(DEMO), "--listen", "127.0.0.1:0", "--print-address"],
                      env=env, cwd=tmp_path_factory.mktemp(loop))
            servers.append(k)
            port = k.port
            assert k.wait_for(r"udp loop: (.*)$", timeout=15).group(1).startswith("C" if loop == "c" else "Python")
            soa = dns.message.from_wire(burst_replies_blocking(port, [query("cluster.local", "SOA")])[0])
            out[loop] = (port, soa.answer[0][0].serial)
        yield out
    finally:
        for k in servers:
            k.close()


@settings(max_examples=60, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.generate])  # reported as found, not shrunk (as in test_fuzz)
@given(packets=packet_sequences())
def test_random_sequences_get_the_same_replies_from_both_loops(both, packets):
    """Hypothesis (derandomised, 60 sequences, against the same two servers throughout, so
    their replay tables fill as they would): each sequence is sent twice, the second time
    mostly replays, and the C loop's replies are the Python loop's, byte for byte and in order."""
    got = {}
    for loop, (port, serial) in both.items():
        replies = burst_replies_blocking(port, packets) + burst_replies_blocking(port, packets)
        got[loop] = [r.replace(struct.pack("!I", serial), bytes(4)) for r in replies]
    assert got["c"] == got["python"]
