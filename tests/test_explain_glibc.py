"""`kdns explain --namespace`'s search-path walk against what glibc's resolver sends on the wire.

The pod-like network namespace of tests/test_glibc.py (resolv.conf of a pod in `default`,
ndots:5) runs `getent ahosts NAME` (getaddrinfo, A and AAAA); kdns records every query that
comes from the pod. The walk `explain` works out for the same name must name the same names
in the same order, stop at the same one, and count the same queries: for a short name, a
multi-label name and a name outside the cluster (forwarded to a stub upstream), and with
autopath. Needs root (network namespaces, port 53): it skips without, saying so.
"""

from __future__ import annotations

import pytest

from kdns import wire
from kdns.codes import TYPES
from kdns.explain import explain
from testkit.netns import NEEDS_ROOT, POD_IP, sh

pytestmark = NEEDS_ROOT


class Recorder:
    """A tap (kdns.serve.serving.Tap) that notes the pod's queries and changes nothing."""

    def __init__(self) -> None:
        self.queries: list[tuple[str, str]] = []

    def detour(self, query: bytes) -> None:
        return None

    def seen(self, proto: str, peer: tuple, query: bytes, reply: bytes | None) -> None:
        if peer[0] == POD_IP:
            name = wire.question_name(query) or "?"
            end = 12 + len(name) + 2 if name else 13
            self.queries.append((name + ".", TYPES.get(int.from_bytes(query[end:end + 2], "big"), "?")))


@pytest.mark.parametrize("name, args, steps", [
    ("kubernetes", (), 1),  # a short name: the pod's own namespace first
    ("web.shop", (), 2),  # <svc>.<ns>
    ("example.org", (), 4),  # outside: three NXDOMAINs, then the name as it is, forwarded
    ("web.shop", ("--autopath",), 1),  # kdns answers the whole walk at the first name
])
async def test_walk_is_what_glibc_does(pod_netns, pod_kdns, name, args, steps):
    server, _ = await pod_kdns(*args)
    recorder = Recorder()
    server.server.state.tap = recorder
    out = await sh("ip", "netns", "exec", pod_netns, "getent", "ahosts", name)
    assert out.strip(), f"glibc found no address for {name}"
    walk = explain(server.server.view(), name, "A", "default").search
    assert walk is not None and walk.stops_at == steps
    asked = list(dict.fromkeys(q for q, _ in recorder.queries))
    assert asked == [step.name for step in walk.steps], (recorder.queries, walk)
    assert len(recorder.queries) == walk.queries, recorder.queries
    for step in walk.steps:
        assert {t for q, t in recorder.queries if q == step.name} == {"A", "AAAA"}
