"""`:PORT` is every address of both families (issue 21): DNS over UDP and TCP and the HTTP
endpoints answer on IPv4 and IPv6 on the same port, and the shipped config listens that way.

The tests need an IPv6 loopback (::1); where the host has none they skip saying so.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import trio
import yaml

from kdns import settings
from kdns.app import Server
from kdns.config import ListenAddress
from testkit.repo import needs_ipv6

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo-cluster.yaml"



def config(**flags: object):
    args = argparse.Namespace(manifests=[str(DEMO)], **flags)
    return settings.build_config(args, environ={})


async def http_get(host: str, port: int, path: str) -> bytes:
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        with trio.fail_after(3):
            while chunk := await stream.receive_some(4096):
                data += chunk
    return data


def test_colon_port_means_every_address():
    cfg = config(listen=[":5353", "127.0.0.1:5354"], health=":8080")
    assert cfg.listen == (ListenAddress("", 5353), ListenAddress("127.0.0.1", 5354))
    assert str(cfg.listen[0]) == ":5353"
    assert cfg.http.health == ListenAddress("", 8080)
    # `ns.dns.<zone>` glue names only specific addresses, never a wildcard.
    assert cfg.dns.ns_addresses == ("127.0.0.1",)


def test_shipped_config_listens_on_both_families():
    shipped = yaml.safe_load((ROOT / "config" / "kdns.yaml").read_text())
    for key in ("health", "ready", "metrics"):
        assert shipped[key].startswith(":"), f"config/kdns.yaml {key} is not every address: {shipped[key]!r}"
    assert all(address.startswith(":") for address in shipped["listen"]), shipped["listen"]


@needs_ipv6
async def test_dns_and_http_answer_on_both_families(nursery):
    server = Server(config(listen=[":0"], health=":0", ready=":0", lameduck=0.0))
    bound = await nursery.start(server.serve)
    hosts = sorted({(b.proto, b.address.host) for b in bound})
    assert hosts == [("tcp", "0.0.0.0"), ("tcp", "::"), ("udp", "0.0.0.0"), ("udp", "::")]
    ports = {b.address.port for b in bound}
    assert len(ports) == 1, f"one port for both families and transports, got {ports}"
    port = ports.pop()
    for client in ("127.0.0.1", "::1"):
        query = dns.message.make_query("web.shop.svc.cluster.local", "A")
        udp = await dns.asyncquery.udp(query, client, port=port, timeout=3)
        tcp = await dns.asyncquery.tcp(query, client, port=port, timeout=3)
        for reply in (udp, tcp):
            assert reply.rcode() == dns.rcode.NOERROR and reply.answer, (client, reply)
    for path, address in server.http_bound.items():
        for client in ("127.0.0.1", "::1"):
            response = await http_get(client, address.port, path)
            assert response.startswith(b"HTTP/1.1 200"), (client, path, response[:60])
