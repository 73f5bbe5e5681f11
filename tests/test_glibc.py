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

import os
import secrets
import shutil
from pathlib import Path

import pytest
import trio

from testkit.repo import DEMO, write
from testkit.stubdns import StubDNS

KDNS_IP, POD_IP = "169.254.53.1", "169.254.53.2"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and port 53 (CI runs as root)"),
    pytest.mark.skipif(shutil.which("ip") is None or shutil.which("getent") is None, reason="needs iproute2 and getent"),
]


async def sh(*argv: str, check: bool = True) -> str:
    result = await trio.run_process(list(argv), capture_stdout=True, capture_stderr=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {result.stderr.decode().strip()}")
    return result.stdout.decode()


@pytest.fixture
async def pod_netns():
    """A network namespace with a pod's resolv.conf and a veth link to the host side."""
    name = f"kdns-{secrets.token_hex(3)}"
    host_if, pod_if = f"kd{name[-6:]}h", f"kd{name[-6:]}p"
    etc = Path("/etc/netns") / name
    etc.mkdir(parents=True)
    (etc / "resolv.conf").write_text(
        f"nameserver {KDNS_IP}\nsearch default.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5 timeout:2 attempts:1\n"
    )
    try:
        await sh("ip", "netns", "add", name)
        await sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", pod_if)
        await sh("ip", "link", "set", pod_if, "netns", name)
        await sh("ip", "addr", "add", f"{KDNS_IP}/30", "dev", host_if)
        await sh("ip", "link", "set", host_if, "up")
        await sh("ip", "netns", "exec", name, "ip", "addr", "add", f"{POD_IP}/30", "dev", pod_if)
        await sh("ip", "netns", "exec", name, "ip", "link", "set", pod_if, "up")
        await sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        await sh("ip", "link", "del", host_if, check=False)
        await sh("ip", "netns", "del", name, check=False)
        shutil.rmtree(etc, ignore_errors=True)


def forwarded(upstream: StubDNS) -> list:
    """What the upstream was asked, apart from kdns's loop check at start."""
    return [q for q in upstream.queries if "kdns-loop-check" not in q.name]


async def getent(netns: str, name: str) -> set[str]:
    """The IPv4 addresses glibc's getaddrinfo finds for `name` inside the namespace."""
    out = await sh("ip", "netns", "exec", netns, "getent", "ahostsv4", name, check=False)
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@pytest.fixture
async def setup(pod_netns, kdns, nursery, tmp_path):
    async def start(*args: str):
        upstream = StubDNS("example.org. 300 IN A 127.0.0.11")
        port = await nursery.start(upstream.serve)
        # The "pod" in namespace default, so that autopath knows who asks.
        pods = write(tmp_path / "pod.yaml", f"""
            apiVersion: v1
            kind: Pod
            metadata: {{name: client, namespace: default}}
            status: {{podIP: {POD_IP}, podIPs: [{{ip: {POD_IP}}}]}}
        """)
        server = await kdns(DEMO, pods, listen=f"{KDNS_IP}:53", args=["--upstream", f"127.0.0.1:{port}", *args])
        return server, upstream

    return start


async def test_a_pod_resolves_cluster_and_outside_names(pod_netns, setup):
    server, upstream = await setup()
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


async def test_autopath_answers_the_search_list_in_one_query(pod_netns, setup):
    server, upstream = await setup("--autopath")
    before = server.server.queries_received
    assert await getent(pod_netns, "example.org") == {"127.0.0.11"}
    assert server.server.queries_received - before == 1
    assert len(forwarded(upstream)) == 1
    before = server.server.queries_received
    assert await getent(pod_netns, "web.shop") == {"10.96.100.10"}
    assert server.server.queries_received - before == 1
    assert await getent(pod_netns, "kubernetes.default") == {"10.96.0.1"}
