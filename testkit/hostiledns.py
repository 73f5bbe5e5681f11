"""A hostile upstream DNS server (issue 13), in the caller's trio loop: UDP and TCP on 127.0.0.2.

    hostile = HostileDNS()
    port = await nursery.start(hostile.serve)   # then --stub-domain hostile.test=127.0.0.2:PORT

What it answers depends on the first label of the question:

* `bomb...`: over UDP, TC and no records; over TCP, as many A records as fit in 64 KB, each
  owned by a 2-byte compression pointer to the question. Asked with a name of about 250 bytes
  (`bomb_name(i)`), that is ~4,000 records that stand for about 1 MB once their owners are
  written out: the input that made kdns keep a megabyte per cached name.
* `many<N>...`: N A records for the name (over UDP when they fit, else TC and then TCP), TTL
  300: a large but honest answer, for filling a cache.
* `inject...`: an A record for the name, plus what must never reach a client: an answer
  record for another name, records for kdns's cluster names in the authority and additional
  sections (`svc.cluster.local NS`, `web.shop.svc.cluster.local A 6.6.6.6`, a PTR for a
  ClusterIP), and records outside the answered zone; the zone's NS and its glue are kept.
  `inject-chain...` answers a CNAME to `target.hostile.test` first.
* anything else: NXDOMAIN with the SOA of `hostile.test`.

Every query is recorded in `queries` as (name as asked, "udp"/"tcp"). Bounded: it only
answers what it is asked, and it listens on loopback only.
"""

from __future__ import annotations

import re
import socket
import struct

import trio
from dnslib import CNAME, NS, PTR, QTYPE, RR, SOA, A, DNSError, DNSRecord

HOST = "127.0.0.2"
ZONE = "hostile.test"
EVIL = "6.6.6.6"
INJECTED_CLUSTER_NAMES = ("web.shop.svc.cluster.local.", "svc.cluster.local.", "10.100.96.10.in-addr.arpa.")


def bomb_name(i: int, kind: str = "bomb") -> str:
    """A name of 250 bytes in wire form under hostile.test, unique for `i`."""
    head = f"{kind}{i:05d}"
    fill = 250 - (len(head) + 1) - (len(ZONE) + 2) - 1
    labels = [head]
    while fill > 1:
        size = min(63, fill - 1)
        labels.append("x" * size)
        fill -= size + 1
    return ".".join(labels) + "." + ZONE


class HostileDNS:
    def __init__(self, host: str = HOST, port: int = 0):
        self.host = host
        self.port = port
        self.queries: list[tuple[str, str]] = []

    def count(self, name: str, proto: str | None = None) -> int:
        name = name.lower().rstrip(".") + "."
        return sum(1 for n, p in self.queries if n.lower() == name and proto in (None, p))

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        udp = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with udp, tcp:
            await udp.bind((self.host, self.port))
            self.port = udp.getsockname()[1]
            await tcp.bind((self.host, self.port))
            tcp.listen(64)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._udp, udp)
                nursery.start_soon(self._tcp, tcp, nursery)
                task_status.started(self.port)

    async def _udp(self, sock) -> None:
        while True:
            data, peer = await sock.recvfrom(65535)
            reply = self.reply(data, "udp")
            if reply is not None:
                await sock.sendto(reply, peer)

    async def _tcp(self, listener, nursery: trio.Nursery) -> None:
        while True:
            conn, _ = await listener.accept()
            nursery.start_soon(self._connection, trio.SocketStream(conn))

    async def _connection(self, stream: trio.SocketStream) -> None:
        buffer = b""
        async with stream:
            with trio.move_on_after(10):
                try:
                    while True:
                        chunk = await stream.receive_some(65537)
                        if not chunk:
                            return
                        buffer += chunk
                        while len(buffer) >= 2 and len(buffer) >= 2 + int.from_bytes(buffer[:2], "big"):
                            size = int.from_bytes(buffer[:2], "big")
                            message, buffer = buffer[2 : 2 + size], buffer[2 + size :]
                            reply = self.reply(message, "tcp")
                            if reply is not None:
                                await stream.send_all(len(reply).to_bytes(2, "big") + reply)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return

    def reply(self, data: bytes, proto: str) -> bytes | None:
        try:
            request = DNSRecord.parse(data)
        except DNSError:
            return None
        qname = str(request.q.qname)
        self.queries.append((qname, proto))
        first = qname.split(".", 1)[0].lower()
        question_end = 12 + len(request.q.qname.label) + sum(len(label) for label in request.q.qname.label) + 1 + 4
        if first.startswith("bomb"):
            return self._pointers(data, question_end, 4000, proto)
        if first.startswith("many"):
            digits = re.match(r"\d*", first[4:]).group()
            return self._pointers(data, question_end, int(digits or 10), proto, expand=True)
        reply = request.reply(ra=1)
        if first.startswith("inject"):
            self._inject(reply, request.q.qname, chain=first.startswith("inject-chain"))
        else:
            reply.header.rcode = 3
            reply.add_auth(RR(ZONE, QTYPE.SOA, ttl=300, rdata=SOA(f"ns.{ZONE}", f"hostmaster.{ZONE}", (1, 7200, 900, 86400, 60))))
        return reply.pack()

    def _pointers(self, query: bytes, question_end: int, count: int, proto: str, expand: bool = False) -> bytes:
        """`count` A records (as many as fit in 64 KB), each owned by a pointer to the question;
        over UDP, TC and no records unless `expand` and they fit in 1,232 bytes."""
        qid = query[:2]
        question = query[12:question_end]
        room = (65535 - 12 - len(question)) // 16
        n = min(count, room)
        records = b"".join(b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([192, 0, 2, i % 250 + 1]) for i in range(n))
        if proto == "udp" and not (expand and 12 + len(question) + len(records) <= 1232):
            return qid + struct.pack("!5H", 0x8380, 1, 0, 0, 0) + question  # QR RD RA TC
        return qid + struct.pack("!5H", 0x8180, 1, n, 0, 0) + question + records

    @staticmethod
    def _inject(reply: DNSRecord, qname, chain: bool) -> None:
        name = str(qname)
        if chain:
            target = f"target.{ZONE}."
            reply.add_answer(RR(name, QTYPE.CNAME, ttl=300, rdata=CNAME(target)))
            reply.add_answer(RR(target, QTYPE.A, ttl=300, rdata=A("192.0.2.2")))
        else:
            reply.add_answer(RR(name, QTYPE.A, ttl=300, rdata=A("192.0.2.1")))
        reply.add_answer(RR("offchain.example.", QTYPE.A, ttl=300, rdata=A(EVIL)))
        reply.add_answer(RR("web.shop.svc.cluster.local.", QTYPE.A, ttl=300, rdata=A(EVIL)))
        reply.add_auth(RR(f"{ZONE}.", QTYPE.NS, ttl=300, rdata=NS(f"ns.{ZONE}.")))
        reply.add_auth(RR("svc.cluster.local.", QTYPE.NS, ttl=300, rdata=NS("evil.example.")))
        reply.add_auth(RR("example.org.", QTYPE.NS, ttl=300, rdata=NS("evil.example.")))
        reply.add_ar(RR(f"ns.{ZONE}.", QTYPE.A, ttl=300, rdata=A("192.0.2.53")))
        reply.add_ar(RR("web.shop.svc.cluster.local.", QTYPE.A, ttl=300, rdata=A(EVIL)))
        reply.add_ar(RR("10.100.96.10.in-addr.arpa.", QTYPE.PTR, ttl=300, rdata=PTR("evil.example.")))
        reply.add_ar(RR("evil.example.", QTYPE.A, ttl=300, rdata=A(EVIL)))
