"""A network namespace that looks like a pod, for tests of glibc's resolver (root only).

`pod_netns` (a fixture) gives the namespace's name: a veth pair with link-local addresses
(kdns on KDNS_IP, the "pod" on POD_IP) and the resolv.conf of a pod in namespace `default`,
which `ip netns exec` mounts over /etc/resolv.conf. `getent(netns, name)` resolves as that
pod's libc would. `NEEDS_ROOT` is the marks that skip such tests, saying why.
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

NEEDS_ROOT = [
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


async def getent(netns: str, name: str) -> set[str]:
    """The IPv4 addresses glibc's getaddrinfo finds for `name` inside the namespace."""
    out = await sh("ip", "netns", "exec", netns, "getent", "ahostsv4", name, check=False)
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@pytest.fixture
async def pod_kdns(pod_netns, kdns, nursery, tmp_path):
    """start(*kdns serve args): kdns on KDNS_IP:53 serving the demo cluster and a Pod at POD_IP
    (namespace default, so that autopath knows who asks), forwarding outside names to a stub
    upstream that knows example.org; returns (the running server, the upstream)."""

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
