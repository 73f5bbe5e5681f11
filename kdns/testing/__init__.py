"""kdns as a stand-in for cluster DNS in other projects' tests: an in-process server, a
resolver that asks it as a pod would, and a pytest plugin.

    def test_checkout_finds_payments(kdns_server):
        kdns_server.service("payments", "billing", ports=[("http", 8080)])
        with pod_resolver(kdns_server, namespace="shop"):
            assert socket.gethostbyname("payments.billing") == kdns_server.cluster_ip("payments", "billing")

* `KdnsServer` (kdns/testing/server.py) runs the real kdns in a thread of its own; use it as
  a context manager from unittest, scripts or any test runner.
* `pod_resolver` (kdns/testing/resolver.py) makes this process resolve names through it.
* The `kdns_server` and `kdns_server_factory` fixtures and the `kdns` marker
  (kdns/testing/plugin.py) are registered with pytest when kdns is installed (entry point
  `pytest11`). Only that module imports pytest.
* Faults (kdns/testing/tap.py) and the query log (kdns/testing/querylog.py) take names as
  the application writes them (kdns/testing/match.py).

Importing this package is cheap: the rest of kdns is loaded when a server starts.
"""

from __future__ import annotations

from kdns.testing.querylog import Query, QueryLog
from kdns.testing.resolver import pod_resolver
from kdns.testing.server import KdnsServer, ServiceInfo
from kdns.testing.tap import Fault

__all__ = ["Fault", "KdnsServer", "Query", "QueryLog", "ServiceInfo", "kdns_server", "pod_resolver"]


def __getattr__(name: str):
    # `from kdns.testing import kdns_server` keeps working, importing pytest only then.
    if name == "kdns_server":
        from kdns.testing.plugin import kdns_server

        return kdns_server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
