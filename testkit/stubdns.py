"""A stub upstream DNS server for the forwarding tests, in the test's own trio loop.

    stub = StubDNS("example.org. 300 IN A 127.0.0.11")
    port = await nursery.start(stub.serve)   # UDP and TCP on 127.0.0.1:port (or host=, port=)

It answers from the records it holds (zone-file lines, parsed by dnslib): NOERROR with the
records of the asked name and type; NODATA (no records, an SOA in the authority section) when
the name has records of other types only; NXDOMAIN with the SOA otherwise. The SOA's TTL is
300 and its minimum `negative_ttl` (60 unless changed), so RFC 2308 caching lasts
`negative_ttl` seconds. Answer records are named as the question spells the name, as a real
server's compression pointers to the question do.

Every query is recorded in `queries` (name as asked, type, "udp"/"tcp", trio time, RD), including
the ones it does not answer. Behaviour, changeable at any time:

* `delay`: seconds to wait before replying;
* `mode`: "ok"; "servfail" / "refused" (that rcode, no records); "drop" (no reply);
  "truncate" (UDP replies have TC and no records, TCP answers in full); "truncate-all"
  (UDP and TCP replies have TC and carry only the first answer record); "decoy" (over UDP,
  before the real reply: one with a wrong ID, one with the right ID but another question,
  and one right in every way but sent from another port; each with a bogus A record
  127.6.6.6); "reset" (UDP replies have TC as in "truncate"; TCP connections are reset,
  RST, once a query has arrived on them);
* `stop()`: close the sockets, so the port refuses; `restart()`: listen on the same port again.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

import trio
from dnslib import QTYPE, RCODE, RR, SOA, A, DNSError, DNSHeader, DNSQuestion, DNSRecord

HOST = "127.0.0.1"
BOGUS = "127.6.6.6"


class Query(NamedTuple):
    name: str  # as asked, with the trailing dot: "ExAmple.org."
    type: str  # "A", "AAAA", ...
    proto: str  # "udp" or "tcp"
    time: float  # trio.current_time() when it arrived
    rd: bool = True  # the query's RD flag


class StubDNS:
    def __init__(self, *zone_lines: str, host: str = HOST, port: int = 0):
        self.records: list[RR] = [rr for line in zone_lines for rr in RR.fromZone(line)]
        self.queries: list[Query] = []
        self.delay = 0.0
        self.mode = "ok"
        self.negative_ttl = 60
        self.host = host
        self.port = port
        self._udp: trio.socket.SocketType | None = None
        self._tcp: trio.socket.SocketType | None = None
        self._scope = trio.CancelScope()
        self._restarted = trio.Event()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def count(self, name: str | None = None, type: str | None = None, proto: str | None = None) -> int:
        """How many queries matched every filter given (names compare without case)."""

        def norm(n: str) -> str:
            return n.lower().rstrip(".") + "."

        return sum(
            1 for q in self.queries if (name is None or norm(q.name) == norm(name)) and type in (None, q.type) and proto in (None, q.proto)
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled (across stop/restart); `task_status.started(port)`."""
        self._bind()
        task_status.started(self.port)
        try:
            while True:
                with self._scope:  # stop() cancels it
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._serve_udp, nursery)
                        nursery.start_soon(self._serve_tcp, nursery)
                await self._restarted.wait()
                self._restarted = trio.Event()
        finally:
            self._close()

    def stop(self) -> None:
        """Go away at once: pending replies are dropped and the port refuses."""
        self._scope.cancel()
        self._close()

    def restart(self) -> None:
        """Listen again on the same port (bound when this returns)."""
        self.stop()  # in case it was not stopped
        self._bind()
        self._restarted.set()

    def _bind(self) -> None:
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                udp.bind((self.host, self.port))
                tcp.bind((self.host, udp.getsockname()[1]))
            except OSError:
                udp.close()
                tcp.close()
                if self.port:
                    raise
                continue  # that UDP port is taken for TCP: pick another
            tcp.listen(16)
            self.port = udp.getsockname()[1]
            self._udp, self._tcp = trio.socket.from_stdlib_socket(udp), trio.socket.from_stdlib_socket(tcp)
            self._scope = trio.CancelScope()
            return
        raise OSError("no port free for both UDP and TCP")

    def _close(self) -> None:
        for sock in (self._udp, self._tcp):
            if sock is not None:
                sock.close()

    # -- serving -------------------------------------------------------------------------

    def _stopped(self, exc: BaseException) -> bool:
        """Whether `exc` (on a socket) only says that stop() closed it under a running task."""
        return isinstance(exc, (OSError, trio.ClosedResourceError, trio.BrokenResourceError)) and self._scope.cancel_called

    async def _serve_udp(self, nursery: trio.Nursery) -> None:
        sock = self._udp
        while True:
            try:
                data, peer = await sock.recvfrom(65535)
            except Exception as exc:  # stop() closed the socket between two reads
                if self._stopped(exc):
                    return
                raise
            nursery.start_soon(self._answer_udp, sock, data, peer)

    async def _answer_udp(self, sock, data: bytes, peer) -> None:
        try:
            await self._answer_udp_now(sock, data, peer)
        except Exception as exc:  # stop() closed the socket while the reply was being made
            if not self._stopped(exc):
                raise

    async def _answer_udp_now(self, sock, data: bytes, peer) -> None:
        reply = await self._reply(data, "udp")
        if reply is None:
            return
        if self.mode == "decoy":
            q = reply.q
            wrong_id = DNSRecord(DNSHeader(id=(reply.header.id + 1) % 65536, qr=1, ra=1), q=q)
            wrong_id.add_answer(RR(q.qname, QTYPE.A, ttl=300, rdata=A(BOGUS)))
            other = DNSRecord(DNSHeader(id=reply.header.id, qr=1, ra=1), q=DNSQuestion("decoy.example.net.", QTYPE.A))
            other.add_answer(RR("decoy.example.net.", QTYPE.A, ttl=300, rdata=A(BOGUS)))
            spoof = DNSRecord(DNSHeader(id=reply.header.id, qr=1, ra=1), q=q)
            spoof.add_answer(RR(q.qname, QTYPE.A, ttl=300, rdata=A(BOGUS)))
            await sock.sendto(wrong_id.pack(), peer)
            await sock.sendto(other.pack(), peer)
            with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as elsewhere:
                await elsewhere.bind((self.host, 0))
                await elsewhere.sendto(spoof.pack(), peer)
        await sock.sendto(reply.pack(), peer)

    async def _serve_tcp(self, nursery: trio.Nursery) -> None:
        listener = self._tcp
        while True:
            try:
                conn, _ = await listener.accept()
            except Exception as exc:  # stop() closed the listener between two accepts
                if self._stopped(exc):
                    return
                raise
            nursery.start_soon(self._tcp_connection, trio.SocketStream(conn))

    async def _tcp_connection(self, stream: trio.SocketStream) -> None:
        buffer = b""
        async with stream:
            try:
                while True:
                    chunk = await stream.receive_some(65537)
                    if not chunk:
                        return
                    buffer += chunk
                    while len(buffer) >= 2 and len(buffer) >= 2 + int.from_bytes(buffer[:2], "big"):
                        size = int.from_bytes(buffer[:2], "big")
                        message, buffer = buffer[2 : 2 + size], buffer[2 + size :]
                        reply = await self._reply(message, "tcp")
                        if self.mode == "reset":  # close with SO_LINGER 0: the peer gets RST
                            stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                            return
                        if reply is not None:
                            data = reply.pack()
                            await stream.send_all(len(data).to_bytes(2, "big") + data)
            except trio.BrokenResourceError:
                return

    async def _reply(self, data: bytes, proto: str) -> DNSRecord | None:
        """Record the query; the reply to send (None: send nothing)."""
        try:
            request = DNSRecord.parse(data)
        except DNSError:
            return None
        qname, qtype = request.q.qname, request.q.qtype
        self.queries.append(Query(str(qname), QTYPE.get(qtype, str(qtype)), proto, trio.current_time(), bool(request.header.rd)))
        if self.mode == "drop":
            return None
        if self.delay:
            await trio.sleep(self.delay)
        reply = request.reply(ra=1, aa=1)
        if self.mode in ("servfail", "refused"):
            reply.header.rcode = RCODE.SERVFAIL if self.mode == "servfail" else RCODE.REFUSED
            return reply
        same_name = [rr for rr in self.records if rr.rname == qname]
        answers = [RR(qname, rr.rtype, rr.rclass, rr.ttl, rr.rdata) for rr in same_name if rr.rtype == qtype]
        if answers:
            reply.add_answer(*answers)
        else:
            reply.header.rcode = RCODE.NOERROR if same_name else RCODE.NXDOMAIN
            soa = SOA("ns.stub.test.", "hostmaster.stub.test.", (1, 7200, 900, 86400, self.negative_ttl))
            reply.add_auth(RR(".", QTYPE.SOA, ttl=300, rdata=soa))
        if self.mode == "truncate-all" or (self.mode in ("truncate", "reset") and proto == "udp"):
            reply.header.tc = 1
            reply.rr = reply.rr[:1] if self.mode == "truncate-all" else []
            reply.auth = []
        return reply
