"""Shared fixtures: a real kdns server on loopback in the test's trio loop, and trio's clock.

The support code they use, and that tests and perf/ import, is the `testkit` package at the
repository's root (its docstring lists what is where).
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from testkit import inprocess
from testkit.corefile import api_objects
from testkit.inprocess import Running
from testkit.kubeapi import KubeAPI
from testkit.netns import pod_kdns, pod_netns  # noqa: F401 - fixtures: a pod's network namespace and kdns for it (root only)
from testkit.repo import DEMO


@pytest.fixture
def kdns(nursery):
    """Start kdns: `await kdns(path, ..., args=[...], clock=...)` → Running (bound to 127.0.0.1:0);
    see testkit.inprocess.start."""

    async def start(*manifests, **kwargs) -> Running:
        return await inprocess.start(nursery, *manifests, **kwargs)

    return start


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """trio's clock for a test that takes this fixture (pytest-trio runs it with the clock),
    and so for the kdns it starts in its loop: it moves with real time, and `clock.jump(s)`
    moves it on at once, so a test waits for no timer of kdns's (timeouts, deadlines)."""
    return trio.testing.MockClock(rate=1)


@pytest.fixture
async def demo(kdns) -> Running:
    """kdns serving the bundled demo cluster."""
    return await kdns(DEMO)


@pytest.fixture(scope="module")
def api():
    """The fake API server holding testkit.corefile's cluster, which the Corefile tests serve
    (a test module with a cluster of its own defines its own `api`, which takes precedence)."""
    server = KubeAPI().start()
    for obj in api_objects():
        server.apply(obj)
    yield server
    server.stop()
