"""DNS over UDP.

One task per socket. It waits until the socket is readable, then answers the datagrams that
are already queued with non-blocking calls, up to `BATCH` of them, before waiting again:
going through trio's scheduler once per batch instead of once per packet is most of the
difference between 60k and 120k+ queries/s. What the C part does not answer goes through
`Serving.answer`, the slow path TCP shares.

Where the C part is built (kdns/_udpbatch.c, Linux), a batch is a few calls into it: one
recvmmsg, the replays (queries whose bytes after the ID were seen before, and fresh answers
from the forwarding cache) answered with one sendmmsg, and each run of other datagrams handed
back to this loop, whose replies the next call sends with the replays after them: replies
leave in the order the queries came, and the Python path makes no system call of its own.
That cuts the CPU per query at full load by about a third for replays (perf/RESULTS.md). It
is skipped while RRL, query logging or kdns.testing's tap are on, which need each query in
Python; KDNS_PURE_PYTHON=1 turns it off."""

from __future__ import annotations

import errno
import logging
import os
import socket

import trio

from kdns.serve.serving import Pending, Serving
from kdns.stats import QueryStats

log = logging.getLogger("kdns.udp")

# The C part (kdns/_udpbatch.c): recvmmsg, replay and sendmmsg in one call per batch. Optional:
# without it (not built, or KDNS_PURE_PYTHON=1 in the environment) the loop is all Python.
try:
    from kdns import _udpbatch  # type: ignore[attr-defined]  # C, without type information
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
MAX_WAITING = 1000  # questions waiting for an upstream, per socket


async def serve_udp(sock: socket.socket, state: Serving, stats: QueryStats, c_loop: bool | None = None) -> None:
    """Answer queries on `sock` until cancelled. Never raises for a bad packet.

    Questions that must wait (for an upstream) are answered by tasks of their own (at most
    `MAX_WAITING` at a time; beyond that, SERVFAIL at once rather than a growing queue).
    `c_loop`: use the C part (default: `batched()`).
    """
    recvfrom, sendto = sock.recvfrom, sock.sendto
    fd = sock.fileno()
    if c_loop is None:
        c_loop = batched()
    batch = _udpbatch.Batch(BATCH) if c_loop and _udpbatch is not None else None
    async with trio.open_nursery() as waiting:

        def answered_later(pending: Pending) -> bytes | None:
            """A task of its own answers it (None now), or SERVFAIL at once when too many wait."""
            if len(waiting.child_tasks) < MAX_WAITING:
                waiting.start_soon(_answer_later, sock, state, pending)
                return None
            return state.give_up(pending)

        def answered(data: bytes, peer) -> bytes | None:
            """The reply to send now (None: nothing now, or later by a task of its own)."""
            reply = state.answer(data, peer, stats)
            return reply if type(reply) is not Pending else answered_later(reply)  # type: ignore[return-value]

        while True:
            await trio.lowlevel.wait_readable(sock)
            if batch is not None and state.fast:
                await _c_batch(batch, fd, sock, state, stats, answered_later)
                continue
            packets = []
            for _ in range(BATCH):
                try:
                    packets.append(recvfrom(RECV_SIZE))
                except BlockingIOError:
                    break
                except OSError as exc:  # e.g. ICMP errors reported on the socket
                    log.debug("udp receive: %s", exc)
            for data, peer in packets:
                reply = answered(data, peer)
                if reply is None:
                    continue
                try:
                    sendto(reply, peer)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
                    _send_once_more(sock, reply, peer)
                except OSError as exc:
                    _log_send_error(exc, peer)


async def _c_batch(batch, fd: int, sock: socket.socket, state: Serving, stats: QueryStats, answered_later) -> None:
    """One wake-up of the C loop: one receive, the replays sent from C, each run of other
    datagrams answered here and its replies sent by the next call (with the replays after
    it), until every datagram received is done."""
    answers: list | None = None
    receive = True
    while True:
        responder = state.dns.responder
        try:
            replayed, packets, unsent, error, more, promoted, promoted_bytes = batch.answer(
                fd, responder.replies, responder.replies_old, stats.counts, state.acl.packed, answers, receive)
        except Exception:  # a bug in the C part: log it, keep serving
            log.exception("udp: batched receive failed")
            return
        receive = False  # (one receive per wake-up: other tasks get their turn)
        stats.received += replayed  # (the others are counted by state.answer)
        responder.promoted(promoted, promoted_bytes)
        if error:
            log.debug("udp receive: %s", os.strerror(error))
        if unsent:  # replies the kernel did not take (a full buffer): once more, in order
            await trio.lowlevel.wait_writable(sock)
            for reply, peer in unsent:
                _send_once_more(sock, reply, peer)
        if not packets:
            if not more:
                return
            answers = None
            continue
        answer = state.answer_udp
        answers = []
        for data, peer, labels in packets:
            reply = answer(data, peer, stats, labels)
            answers.append(reply if type(reply) is not Pending else answered_later(reply))


async def _answer_later(sock: socket.socket, state: Serving, pending: Pending) -> None:
    reply = await state.finish(pending)
    if isinstance(reply, bytes):  # (a zone transfer is refused over UDP: never a Transfer here)
        await _send(sock, reply, pending.peer)


async def _send(sock: socket.socket, reply: bytes, peer) -> None:
    """Send, waiting once for room if the socket's buffer is full (the hot loop inlines this)."""
    try:
        sock.sendto(reply, peer)
    except BlockingIOError:
        await trio.lowlevel.wait_writable(sock)
        _send_once_more(sock, reply, peer)
    except OSError as exc:
        _log_send_error(exc, peer)


def _send_once_more(sock: socket.socket, reply: bytes, peer) -> None:
    try:
        sock.sendto(reply, peer)
    except OSError as exc:
        _log_send_error(exc, peer)


def _log_send_error(exc: OSError, peer) -> None:
    level = logging.DEBUG if exc.errno in (errno.EAGAIN, errno.ECONNREFUSED, errno.EHOSTUNREACH) else logging.WARNING
    log.log(level, "udp send to %s: %s", peer, exc)
