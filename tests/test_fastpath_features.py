"""Where the fast paths (issue 15: the replay table, the C loop, the quick NXDOMAIN, fresh
forwarding-cache hits answered in the loop) meet the features built beside them: autopath,
the external zones, hosts data, the test double's records, the recursion allow list. Each
test asks kdns on loopback over real sockets, UDP (the C loop where it is built) against
TCP (which never replays) or against what the feature says the answer must be.
"""

from __future__ import annotations

import json
import socket
import struct

import dns.asyncquery
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


# -- every feature's answers: UDP (replayed or not) against TCP, in the client's case ---------

EXTERNAL = "tests/manifests/external.yaml"
X = "k8s.example.org"
INGRESS = {"apiVersion": "v1", "kind": "List", "items": [
    {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "shop"},
     "spec": {"rules": [{"host": "shop.example.com"}, {"host": "*.apps.example.com"}]},
     "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.50"}]}}},
]}
HOSTS = "10.0.0.5 db.corp.example\n2001:db8::5 db.corp.example\n10.0.0.6 alias.corp.example\n"
FEATURE_NAMES = [
    f"lb.shop.svc.{CL}", f"nope.shop.svc.{CL}", f"_http._tcp.lb.shop.svc.{CL}", f"peer-0.peers.shop.svc.{CL}", CL, f"shop.svc.{CL}",
    f"dns-version.{CL}", f"nope.nope.svc.{CL}", f"elb.shop.svc.{CL}", "2.200.96.10.in-addr.arpa", "5.0.0.10.in-addr.arpa",
    "10.113.0.203.in-addr.arpa", "50.113.0.203.in-addr.arpa", f"www.{X}", f"alt.{X}", "www.elsewhere.example",
    f"lb.shop.{X}", f"both.shop.{X}", f"dual.shop.{X}", f"elb.shop.{X}", f"_http._tcp.lb.shop.{X}", f"nope.shop.{X}", X,
    f"shop.{X}", f"ns1.dns.{X}", f"peers.shop.{X}", "shop.example.com", "x.apps.example.com", "db.corp.example",
    "alias.corp.example", "nope.corp.example", "example.com",
]
FEATURE_TYPES = ["A", "AAAA", "SRV", "PTR", "TXT", "MX", "CNAME", "SOA", "NS", "ANY"]


def mixed(name: str, seed: int) -> str:
    """`name` with letters upper-cased by the bits of `seed` (a 0x20 resolver's spelling)."""
    return "".join(c.upper() if c.isalpha() and seed >> (i % 31) & 1 else c for i, c in enumerate(name))


async def features(kdns, tmp_path, *args: str):
    ingress = write(tmp_path / "ingress.json", json.dumps(INGRESS))
    hosts = write(tmp_path / "hosts", HOSTS)
    return await kdns(EXTERNAL, ingress, args=["--ingress-hosts", "--external-zone", X, "--external-headless",
                                                      "--hosts", str(hosts), *args])


async def tcp(port: int, message: dns.message.Message) -> dns.message.Message:
    return await dns.asyncquery.tcp(message, "127.0.0.1", port=port, timeout=3.0)


async def test_every_feature_answers_the_same_over_udp_replayed_and_tcp_in_the_clients_case(kdns, tmp_path, loop):
    """For names of every table (cluster, reverse, external zone, Ingress hosts, a hosts file,
    the closed world), each type, lower case and two mixed spellings: the first UDP reply,
    its replay and the TCP reply are the same message, and every record owned by the asked
    name carries the client's spelling."""
    kd = await features(kdns, tmp_path, "--outside-names", "nxdomain")
    for n, name in enumerate(FEATURE_NAMES):
        for qtype in FEATURE_TYPES:
            for seed in (0, 0x2AAAAAAA + n, 0x15555555 + n):
                spelled = mixed(name, seed)
                message = dns.message.make_query(spelled + ".", qtype)
                data = message.to_wire()
                first, again = [await ask(kd.port, data) for _ in range(2)]
                over_tcp = await tcp(kd.port, message)
                assert first.to_text() == again.to_text() == over_tcp.to_text(), (spelled, qtype)
                for rrset in first.answer:
                    if rrset.name == message.question[0].name:
                        assert rrset.name.to_text() == spelled + ".", (spelled, qtype, first)
