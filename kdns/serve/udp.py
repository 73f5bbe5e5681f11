"""DNS over UDP.

One task per socket. It waits until the socket is readable, then answers the datagrams that
are already queued with non-blocking calls, up to `BATCH` of them, before waiting again:
going through trio's scheduler once per batch instead of once per packet is most of the
difference between 60k and 120k+ queries/s. The `Serving` state (responder, forwarder) is
read once per batch, so a configuration reload swaps it between two batches.

Where the C part is built (kdns/_udpbatch.c, Linux), a batch is one call into it: one
recvmmsg, the replays (queries whose bytes after the ID were seen before) answered with one
sendmmsg, and the rest handed back to this loop. That cuts the CPU per query at full load
by about a third (perf/RESULTS.md). It is skipped while RRL, query logging or kdns.testing's
faults are on, which need each query in Python; KDNS_PURE_PYTHON=1 turns it off."""

from __future__ import annotations

import errno
import logging
import os
import socket
import time

import trio

from kdns import wire
from kdns.config import ListenAddress
from kdns.guard import SEND, SLIP, RateLimiter
from kdns.responder import UpstreamQuery
from kdns.serve import Serving, fault_reply, notify, question_name
from kdns.stats import QueryStats

log = logging.getLogger("kdns.udp")

# The C part (kdns/_udpbatch.c): recvmmsg, replay and sendmmsg in one call per batch. Optional:
# without it (not built, or KDNS_PURE_PYTHON=1 in the environment) the loop is all Python.
try:
    from kdns import _udpbatch
except ImportError:
    _udpbatch = None


def batched() -> bool:
    """Whether UDP sockets opened now get the C loop (read when each socket's loop starts)."""
    return _udpbatch is not None and os.environ.get("KDNS_PURE_PYTHON", "") in ("", "0")


def loop_kind(c_loop: bool) -> str:
    """Which loop UDP sockets get, for the start-up log."""
    if c_loop:
        return "C (kdns._udpbatch: recvmmsg and sendmmsg batches)"
    if _udpbatch is None:
        return "Python (kdns._udpbatch is not built)"
    return "Python (KDNS_PURE_PYTHON is set)"

BATCH = 64
RECV_SIZE = 65535
RECV_BUFFER = 4 * 1024 * 1024
MAX_FORWARDS = 1000  # upstream questions in flight per socket


def bind_udp(address: ListenAddress, *, reuse_port: bool = False) -> socket.socket:
    """A bound non-blocking UDP socket (raises OSError, e.g. EADDRINUSE)."""
    family = socket.AF_INET6 if address.family == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:  # --workers: several processes share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # Room for a burst while a batch is being answered (the kernel caps it at rmem_max).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        sock.bind((address.host, address.port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_udp(sock: socket.socket, state: Serving, stats: QueryStats, c_loop: bool | None = None) -> None:
    """Answer queries on `sock` until cancelled. Never raises for a bad packet.

    Questions that need an upstream are answered by tasks of their own (at most
    `MAX_FORWARDS` at a time; beyond that, SERVFAIL at once rather than a growing queue).
    `c_loop`: use the C part (default: `batched()`).
    """
    recvfrom, sendto = sock.recvfrom, sock.sendto
    fd = sock.fileno()
    if c_loop is None:
        c_loop = batched()
    batch = _udpbatch.Batch(BATCH) if c_loop and _udpbatch is not None else None
    async with trio.open_nursery() as forwards:
        while True:
            await trio.lowlevel.wait_readable(sock)
            responder, forwarder, rrl = state.responder, state.forwarder, state.rrl
            handle = responder.handle
            observed, faults = state.log_queries or state.on_query is not None, state.faults
            if batch is not None and rrl is None and not observed and not faults:
                # Replayed replies are answered in C; the rest come back as (data, peer).
                try:
                    received, packets, unsent, error = batch.answer(fd, responder.replies, stats.counts)
                except Exception:  # a bug in the C part: log it, keep serving
                    log.exception("udp: batched receive failed")
                    continue
                responder.queries += received - len(packets)
                if error:
                    log.debug("udp receive: %s", os.strerror(error))
                if unsent:  # replies the kernel did not take (a full buffer): once more, in order
                    await trio.lowlevel.wait_writable(sock)
                    for reply, peer in unsent:
                        _send_once_more(sock, reply, peer)
            else:
                packets = []
                for _ in range(BATCH):
                    try:
                        packets.append(recvfrom(RECV_SIZE))
                    except BlockingIOError:
                        break
                    except OSError as exc:  # e.g. ICMP errors reported on the socket
                        log.debug("udp receive: %s", exc)
            for data, peer in packets:
                if faults:  # kdns.testing's fault switches
                    fault = faults.get(question_name(data) or "")
                    if fault is not None:
                        if fault.delay:
                            forwards.start_soon(_late, sock, state, fault.delay, data, peer, stats)
                            continue
                        reply = fault_reply(fault, data)
                        notify(state, "udp", peer, data, reply)
                        if reply is not None:
                            _send_once_more(sock, reply, peer)
                        continue
                try:
                    reply = handle(data, None, peer[0], stats)
                except Exception:  # a bug in the serving core: log it, keep serving
                    log.exception("udp: failed to handle a %d-byte packet from %s", len(data), peer)
                    continue
                if reply is None:
                    continue
                if type(reply) is UpstreamQuery:
                    refused = state.refuse_recursion(reply, peer[0])
                    if refused is not None:
                        reply = refused
                    elif forwarder is not None and len(forwards.child_tasks) < MAX_FORWARDS:
                        forwards.start_soon(_forward, sock, state, reply, data, peer, stats)
                        continue
                    else:
                        reply = wire.upstream_failure(reply.query)  # saturated: fail at once, queue nothing
                if rrl is not None:
                    reply = _rate_limited(rrl, peer, reply)
                    if reply is None:
                        continue
                if observed:
                    notify(state, "udp", peer, data, reply)
                try:
                    sendto(reply, peer)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
                    _send_once_more(sock, reply, peer)
                except OSError as exc:
                    _log_send_error(exc, peer)


async def _forward(sock: socket.socket, state: Serving, uq: UpstreamQuery, data: bytes, peer, stats: QueryStats) -> None:
    started = time.perf_counter()
    reply = await state.ask_upstream(uq)
    state.responder.count(stats, data, reply, time.perf_counter() - started)
    if state.rrl is not None:
        reply = _rate_limited(state.rrl, peer, reply)
    notify(state, "udp", peer, data, reply)
    if reply is not None:
        await _send(sock, reply, peer)


def _rate_limited(rrl: RateLimiter, peer, reply: bytes) -> bytes | None:
    """The reply, its truncated form (a slip), or None (dropped) under --rrl-rate."""
    verdict = rrl.check(peer[0], time.monotonic())
    if verdict == SEND:
        return reply
    return wire.as_truncated(reply) if verdict == SLIP else None


async def _send(sock: socket.socket, reply: bytes, peer) -> None:
    """Send, waiting once for room if the socket's buffer is full (the hot loop inlines this)."""
    try:
        sock.sendto(reply, peer)
    except BlockingIOError:
        await trio.lowlevel.wait_writable(sock)
        _send_once_more(sock, reply, peer)
    except OSError as exc:
        _log_send_error(exc, peer)


async def _late(sock: socket.socket, state: Serving, delay: float, data: bytes, peer, stats: QueryStats) -> None:
    """A delayed answer (kdns.testing's `delay`): the normal reply, `delay` seconds late."""
    await trio.sleep(delay)
    reply = state.responder.handle(data, None, peer[0], stats)
    if type(reply) is UpstreamQuery:
        reply = await state.ask_upstream(reply)
    notify(state, "udp", peer, data, reply)
    if reply is not None:
        await _send(sock, reply, peer)


def _send_once_more(sock: socket.socket, reply: bytes, peer) -> None:
    try:
        sock.sendto(reply, peer)
    except OSError as exc:
        _log_send_error(exc, peer)


def _log_send_error(exc: OSError, peer) -> None:
    level = logging.DEBUG if exc.errno in (errno.EAGAIN, errno.ECONNREFUSED, errno.EHOSTUNREACH) else logging.WARNING
    log.log(level, "udp send to %s: %s", peer, exc)
