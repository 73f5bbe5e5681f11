"""The pytest plugin of kdns.testing: the `kdns_server` and `kdns_server_factory` fixtures
and the `kdns` marker. Installing kdns registers it (entry point `pytest11` in
pyproject.toml); everything else in kdns.testing works without pytest.

    @pytest.mark.kdns(zone="corp.internal", namespace="shop", strict=True)
    def test_something(kdns_server): ...

    def test_two_clusters(kdns_server_factory):
        east, west = kdns_server_factory(zone="east.local"), kdns_server_factory(zone="west.local")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kdns.testing.server import KdnsServer

MARKER = (
    "kdns(zone=..., ttl=..., pods=..., namespace=..., strict=...): options of the kdns_server fixture's server "
    "(the keyword arguments of kdns.testing.KdnsServer)"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)


@pytest.fixture
def kdns_server_factory() -> Iterator[Callable[..., KdnsServer]]:
    """A function that starts a kdns server with KdnsServer's keyword arguments (zone, ttl,
    pods, namespace, strict, host) and returns it; every server it started is stopped after
    the test (and, with strict=True, checked for unused faults)."""
    servers: list[KdnsServer] = []

    def start(**options: Any) -> KdnsServer:
        server = KdnsServer(**options)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    for server in servers:
        if server.strict:
            server.assert_all_used()


@pytest.fixture
def kdns_server(request: pytest.FixtureRequest, kdns_server_factory: Callable[..., KdnsServer]) -> KdnsServer:
    """kdns on 127.0.0.1 (a free port, UDP and TCP), in its own thread, with an empty
    cluster: declare what the code under test should find with `.service()`, `.apply()` or
    `.load()`. `@pytest.mark.kdns(...)` on the test (or its class or module) passes options."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("kdns"))):  # the closest marker wins
        if marker.args:
            raise TypeError("@pytest.mark.kdns takes keyword arguments only (zone=..., ttl=..., pods=..., namespace=..., strict=...)")
        options.update(marker.kwargs)
    return kdns_server_factory(**options)
