"""The trio shell: sockets in, `Responder.handle` in the middle, sockets out."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kdns import wire
from kdns.responder import Responder
from kdns.stats import RCODES, TYPES

log = logging.getLogger("kdns.query")


@dataclass
class Serving:
    """What the listeners answer with; a reload swaps the parts between two queries."""

    responder: Responder
    forwarder: object | None = None  # kdns.serve.forward.Forwarder (imported lazily there)
    log_queries: bool = False


def log_query(proto: str, peer, query: bytes, reply: bytes | None) -> None:
    """One line per query (`--log-queries`): client, name, type, rcode, size."""
    try:
        labels, end = wire.read_name(query, 12, compressed=False)
        name = ".".join(label.decode("latin-1") for label in labels) + "."
        qtype = TYPES.get(int.from_bytes(query[end : end + 2], "big"), "other")
    except (wire.BadName, IndexError):
        name, qtype = "?", "?"
    rcode = RCODES.get(reply[3] & 0xF, str(reply[3] & 0xF)) if reply and len(reply) > 3 else "no reply"
    log.info("%s %s %s %s %s %d", peer[0], proto, name, qtype, rcode, len(reply or b""))
