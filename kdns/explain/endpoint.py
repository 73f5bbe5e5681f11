"""The `/explain` endpoint of `kdns serve --explain`, and what it says of forwarding. Pure.

`respond(view, params)` answers `GET /explain?name=NAME&type=TYPE&namespace=NS` with the
explanation as JSON (400 for a request it cannot read; 500, logged, for a bug: the server goes
on). `forward_info` says where the server's forwarder sends a name and what its cache holds
for it (the entry a stub resolver's query would hit: no DO, no CD).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kdns import codes, names
from kdns.explain.why import View, explain

log = logging.getLogger("kdns.http")
TEXT = "text/plain; charset=utf-8"


def respond(view: View, params: dict[str, str]) -> tuple[int, str, bytes]:
    name = params.get("name")
    if not name:
        return 400, TEXT, b"name=NAME is required (and type=TYPE, namespace=NS may follow)\n"
    try:
        found = explain(view, name, params.get("type") or "A", params.get("namespace") or None)
    except ValueError as exc:
        return 400, TEXT, f"{exc}\n".encode()
    except Exception:  # a bug: say so, keep serving
        log.exception("explain failed for %r", name)
        return 500, TEXT, b"explain failed; see kdns's log\n"
    return 200, "application/json", json.dumps(found.to_json(), indent=1).encode() + b"\n"


def forward_info(forwarder: Any, name: str, qtype: int) -> dict[str, Any]:
    """`forwarder`: the server's kdns.serve.forward.Forwarder, or None."""
    if forwarder is None:
        return {"name": f"{name}.", "upstreams": [], "cache": None, "note": "kdns has no upstream"}
    held = forwarder.cache.peek((names.to_wire(name), qtype, codes.CLASS_IN, False, False))
    cache = None
    if held is not None and held[0] > 0:
        cache = {"ttl_left": round(held[0], 1), "rcode": codes.RCODES.get(held[1].rcode, str(held[1].rcode)),
                 "records": held[1].counts[0]}
    return {"name": f"{name}.", "upstreams": [str(u) for u in forwarder.route(name)], "cache": cache,
            "note": "" if cache else "not in the cache: the next query asks the upstream"}
