"""Bad inputs for the soak: bursts of random and malformed UDP packets, and TCP abusers.

Everything is sent to 127.0.0.1 and bounded in count and time.
"""

from __future__ import annotations

import random
import selectors
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field

import dns.message
import dns.rcode

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 16: "BADVERS"}


def qname_wire(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.strip(".").split(".")) + b"\0"


def query(name: str, qtype: int = 1, qclass: int = 1, *, ident: int = 0x1234, flags: int = 0x0100, qdcount: int = 1,
          arcount: int = 0, tail: bytes = b"") -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qdcount, 0, 0, arcount) + qname_wire(name) + struct.pack("!HH", qtype, qclass) + tail


def opt(version: int = 0, payload: int = 1232, do: bool = False, rdata: bytes = b"") -> bytes:
    return b"\0" + struct.pack("!HHBBHH", 41, payload, 0, version, 0x8000 if do else 0, len(rdata)) + rdata


def malformed(rng: random.Random, names: list[str]) -> tuple[str, bytes]:
    """One bad packet and its kind."""
    name = rng.choice(names)
    ident = rng.randrange(65536)
    kind = rng.choices(
        ["random bytes", "shorter than a header", "response (QR set)", "label overrun", "pointer loop", "pointer past the end",
         "qdcount mismatch", "opcode not QUERY", "EDNS version 1", "EDNS bad option length", "two OPT records",
         "ANY/AXFR/IXFR/class CH", "truncated query", "oversized name"],
        [20, 4, 8, 7, 7, 6, 8, 5, 5, 5, 4, 8, 9, 4])[0]
    if kind == "random bytes":
        return kind, rng.randbytes(rng.randrange(12, 600))
    if kind == "shorter than a header":
        return kind, rng.randbytes(rng.randrange(0, 12))
    if kind == "response (QR set)":
        return kind, query(name, ident=ident, flags=0x8180)
    if kind == "label overrun":
        return kind, struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + bytes([63]) + b"abc"
    if kind == "pointer loop":
        return kind, struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    if kind == "pointer past the end":
        return kind, struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + b"\x03abc\xc3\xff" + struct.pack("!HH", 1, 1)
    if kind == "qdcount mismatch":
        return kind, query(name, ident=ident, qdcount=rng.choice([0, 2, 65535]))
    if kind == "opcode not QUERY":
        return kind, query(name, ident=ident, flags=(rng.choice([1, 2, 4, 5, 15]) << 11) | 0x0100)
    if kind == "EDNS version 1":
        return kind, query(name, ident=ident, arcount=1, tail=opt(version=1))
    if kind == "EDNS bad option length":
        return kind, query(name, ident=ident, arcount=1, tail=opt(rdata=struct.pack("!HH", 10, 500) + b"x"))
    if kind == "two OPT records":
        return kind, query(name, ident=ident, arcount=2, tail=opt() + opt(do=True))
    if kind == "ANY/AXFR/IXFR/class CH":
        qtype, qclass = rng.choice([(255, 1), (252, 1), (251, 1), (1, 3), (16, 3), (0, 1), (1, 255)])
        return kind, query(name, qtype, qclass, ident=ident)
    if kind == "truncated query":
        q = query(name, ident=ident)
        return kind, q[: rng.randrange(12, len(q))]
    # a name of 255+ octets in 63-octet labels
    return kind, struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + (bytes([63]) + b"a" * 63) * 5 + b"\0" + struct.pack("!HH", 1, 1)


@dataclass
class UdpBurst:
    sent: int = 0
    kinds: Counter = field(default_factory=Counter)
    replies: Counter = field(default_factory=Counter)  # rcode of the replies kdns sent back


def udp_burst(port: int, count: int, names: list[str], rng: random.Random, rate: int = 10_000) -> UdpBurst:
    """`count` bad packets from 4 sockets at about `rate` packets/s; then read the replies for 0.5 s."""
    result = UdpBurst()
    socks = []
    try:
        for _ in range(4):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            socks.append(s)
        start = time.monotonic()
        for i in range(count):
            kind, data = malformed(rng, names)
            try:
                socks[i % len(socks)].sendto(data, ("127.0.0.1", port))
                result.sent += 1
                result.kinds[kind] += 1
            except (BlockingIOError, OSError):
                result.kinds["not sent (local buffer full)"] += 1
            if i % 100 == 99:  # pace: `rate` packets a second
                ahead = start + (i + 1) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if i % 500 == 499:
                _drain(socks, result)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            _drain(socks, result)
            time.sleep(0.05)
    finally:
        for s in socks:
            s.close()
    return result


def rcode_of(data: bytes) -> str:
    """The reply's rcode, extended by its OPT record (BADVERS) when it parses."""
    try:
        return dns.rcode.to_text(dns.message.from_wire(data).rcode())
    except Exception:  # noqa: BLE001 - a reply we cannot parse: its header's rcode
        return RCODES.get(data[3] & 0x0F, str(data[3] & 0x0F)) if len(data) >= 4 else "short"


def _drain(socks: list[socket.socket], result: UdpBurst) -> None:
    for s in socks:
        for _ in range(10_000):
            try:
                data = s.recv(65535)
            except (BlockingIOError, OSError):
                break
            result.replies[rcode_of(data)] += 1


@dataclass
class TcpAbuse:
    """What happened to each kind of abusive connection: opened, closed by kdns, and after how long."""

    opened: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)  # could not connect
    closed: dict = field(default_factory=dict)  # kind -> [seconds from connecting to kdns closing it]
    open_at_end: Counter = field(default_factory=Counter)
    replies: int = 0


def tcp_abuse(port: int, stop, *, idle: int = 1100, slow: int = 2, huge: int = 2, bogus: int = 1, limit: float = 25.0) -> TcpAbuse:
    """Open `idle` silent connections (more than kdns's default cap of 1000), `slow` that send
    a query one byte a second, `huge` that send a 65535-byte length prefix and 50 bytes, and
    `bogus` that send one complete 65535-byte message of random bytes; watch until kdns has
    closed them all or `limit` seconds have passed (or `stop` is set), then close the rest."""
    result = TcpAbuse()
    sel = selectors.DefaultSelector()
    conns: dict[socket.socket, dict] = {}
    slow_query = struct.pack("!H", len(q := query("svc-1.ns-0.svc.cluster.local"))) + q

    def open_one(kind: str, first: bytes = b"") -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2.0)
        try:
            s.connect(("127.0.0.1", port))
            if first:
                s.sendall(first)
        except OSError:
            result.failed[kind] += 1
            s.close()
            return
        s.setblocking(False)
        now = time.monotonic()
        conns[s] = {"kind": kind, "last_sent": now, "sent": len(first), "opened": now}
        sel.register(s, selectors.EVENT_READ)
        result.opened[kind] += 1

    def close(s: socket.socket, by_kdns: bool) -> None:
        info = conns.pop(s)
        sel.unregister(s)
        s.close()
        if by_kdns:
            result.closed.setdefault(info["kind"], []).append(time.monotonic() - info["opened"])
        else:
            result.open_at_end[info["kind"]] += 1

    try:
        for _ in range(slow):
            open_one("byte-a-second sender", slow_query[:1])
        for _ in range(huge):
            open_one("65535-byte length prefix, 50 bytes sent", b"\xff\xff" + b"\0" * 50)
        for _ in range(bogus):
            open_one("complete 65535-byte random message", b"\xff\xff" + random.randbytes(65535))
        for i in range(idle):
            if stop.is_set():
                break
            open_one("idle")
            if i % 50 == 49:
                _watch(sel, conns, close, result, 0)
        deadline = time.monotonic() + limit
        while conns and time.monotonic() < deadline and not stop.is_set():
            now = time.monotonic()
            for s, info in list(conns.items()):
                if info["kind"] == "byte-a-second sender" and info["sent"] < len(slow_query) and now - info["last_sent"] >= 1.0:
                    try:
                        s.send(slow_query[info["sent"] : info["sent"] + 1])
                        info["sent"] += 1
                        info["last_sent"] = now
                    except OSError:
                        close(s, True)
            _watch(sel, conns, close, result, 0.2)
    finally:
        for s in list(conns):
            close(s, False)
        sel.close()
    return result


def _watch(sel, conns, close, result: TcpAbuse, timeout: float) -> None:
    for key, _ in sel.select(timeout):
        s = key.fileobj
        if s not in conns:
            continue
        try:
            data = s.recv(65537)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if data:
            result.replies += 1
        else:
            close(s, True)
