"""Where the fast paths (issue 15: the replay table, the C loop, the quick NXDOMAIN, fresh
forwarding-cache hits answered in the loop) meet the features built beside them: autopath,
the external zones, hosts data, the test double's records, the recursion allow list. Each
test asks kdns on loopback over real sockets, UDP (the C loop where it is built) against
TCP (which never replays) or against what the feature says the answer must be.
"""

from __future__ import annotations

import socket
import struct

import dns.message
import dns.rcode
import pytest
import trio

from kdns.serve import udp
from testkit.repo import DEMO, write
from testkit.stubdns import StubDNS

CL = "cluster.local"


@pytest.fixture(params=["c", "python"])
def loop(request, monkeypatch) -> str:
    """Each test runs with the C loop (skipped where it is not built) and the Python one."""
    if request.param == "c":
        if udp._udpbatch is None:
            pytest.skip("kdns/_udpbatch.c is not built here")
        monkeypatch.setenv("KDNS_PURE_PYTHON", "0")
    else:
        monkeypatch.setenv("KDNS_PURE_PYTHON", "1")
    return request.param


@pytest.fixture
def stub(nursery):
    async def start(*zone_lines: str) -> StubDNS:
        server = StubDNS(*zone_lines)
        await nursery.start(server.serve)
        return server

    return start


def query(name: str, qtype: int = 1, qid: int = 0x1234, flags: int = 0x0100) -> bytes:
    labels = b"".join(bytes([len(x)]) + x.encode() for x in name.split("."))
    return struct.pack("!6H", qid, flags, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def _ask(port: int, packet: bytes, source: str) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(3.0)
        sock.sendto(packet, ("127.0.0.1", port))
        return sock.recv(65535)


async def ask(port: int, packet: bytes, source: str = "127.0.0.1") -> dns.message.Message:
    """`packet` over UDP from `source` (a loopback address), the reply parsed."""
    return dns.message.from_wire(await trio.to_thread.run_sync(_ask, port, packet, source))


def pods(*pods: str) -> str:
    """Pod manifests, `<namespace>/<name>/<ip>` each."""
    docs = []
    for pod in pods:
        namespace, name, ip = pod.split("/")
        docs.append(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
                    f"spec: {{containers: [{{name: c, image: busybox}}]}}\nstatus: {{podIP: {ip}, podIPs: [{{ip: {ip}}}]}}\n")
    return "---\n".join(docs)


# -- autopath: the answer depends on who asks ----------------------------------------------------


async def test_an_autopath_answer_from_the_forwarding_cache_is_not_replayed_to_other_clients(kdns, stub, tmp_path, loop):
    """A pod in `default` (127.0.0.1) asks `example.org.default.svc.cluster.local` twice: the
    second reply comes from the forwarding cache (CNAME + the upstream's A). The same bytes
    from a client that is no pod (127.0.0.2), and from a pod in `shop` (127.0.0.3), must get
    NXDOMAIN, as over TCP: autopath answers are the asking pod's alone."""
    up = await stub("example.org. 300 IN A 127.0.0.141")
    manifest = write(tmp_path / "pods.yaml", pods("default/client/127.0.0.1", "shop/other/127.0.0.3"))
    kd = await kdns(DEMO, manifest, args=["--upstream", up.address, "--autopath"])
    data = query(f"example.org.default.svc.{CL}")
    for _ in range(3):
        reply = await ask(kd.port, data)
        assert reply.rcode() == dns.rcode.NOERROR and len(reply.answer) == 2
    for source in ("127.0.0.2", "127.0.0.3", "127.0.0.2"):
        reply = await ask(kd.port, data, source)
        assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer, (source, reply)
    assert up.count("example.org") == 1
