"""A real client: glibc's resolver in a network namespace that looks like a pod.

The namespace gets a veth pair with link-local addresses (kdns on 169.254.53.1:53, the
"pod" on 169.254.53.2) and the resolv.conf of a pod in namespace `default`:
`search default.svc.cluster.local svc.cluster.local cluster.local`, `options ndots:5`.
`ip netns exec` mounts /etc/netns/<name>/resolv.conf over /etc/resolv.conf for the command,
so `getent ahostsv4 NAME` resolves exactly as a pod's libc would. kdns runs in the test's
trio loop and forwards outside names to a stub upstream on loopback.

Needs root (network namespaces, port 53) and iproute2; CI runs as root.
"""

from __future__ import annotations

from testkit.netns import NEEDS_ROOT, getent
from testkit.stubdns import StubDNS

pytestmark = NEEDS_ROOT


def forwarded(upstream: StubDNS) -> list:
    """What the upstream was asked, apart from kdns's loop check at start."""
    return [q for q in upstream.queries if "kdns-loop-check" not in q.name]


async def test_a_pod_resolves_cluster_and_outside_names(pod_netns, pod_kdns):
    server, upstream = await pod_kdns()
    assert await getent(pod_netns, "kubernetes.default") == {"10.96.0.1"}
    assert await getent(pod_netns, "web.shop") == {"10.96.100.10"}
    assert await getent(pod_netns, "kubernetes.default.svc.cluster.local") == {"10.96.0.1"}
    before = server.server.queries_received
    assert await getent(pod_netns, "example.org") == {"127.0.0.11"}
    # Without autopath glibc walks the search list: three NXDOMAINs answered from the index,
    # then the bare name, the only query that reaches the upstream.
    assert server.server.queries_received - before == 4
    assert upstream.count("example.org.") == 1
    assert len(forwarded(upstream)) == 1


async def test_autopath_answers_the_search_list_in_one_query(pod_netns, pod_kdns):
    server, upstream = await pod_kdns("--autopath")
    before = server.server.queries_received
    assert await getent(pod_netns, "example.org") == {"127.0.0.11"}
    assert server.server.queries_received - before == 1
    assert len(forwarded(upstream)) == 1
    before = server.server.queries_received
    assert await getent(pod_netns, "web.shop") == {"10.96.100.10"}
    assert server.server.queries_received - before == 1
    assert await getent(pod_netns, "kubernetes.default") == {"10.96.0.1"}
