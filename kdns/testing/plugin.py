"""The pytest plugin of kdns.testing: the `kdns_server` fixture. Installing kdns registers
it (entry point `pytest11` in pyproject.toml); everything else in kdns.testing works without
pytest.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kdns.testing.server import KdnsServer


@pytest.fixture
def kdns_server() -> Iterator[KdnsServer]:
    """kdns on 127.0.0.1 (a free port, UDP and TCP), in its own thread, with an empty
    cluster: declare what the code under test should find with `.service()`, `.apply()` or
    `.load()`."""
    with KdnsServer() as server:
        yield server
