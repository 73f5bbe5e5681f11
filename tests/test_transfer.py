"""Zone transfers (AXFR, IXFR) of every zone kdns serves, with dig and dnspython over real sockets.

A transfer must hold every record a query gets (the answer table of tests/test_answers.py is
checked against it) and nothing a query does not get (every record of the transfer is asked
for again, one name and type at a time); it comes SOA first and last, in the same order
every time, split into several messages when large. Only clients --allow-transfer allows get
one (a second loopback address, 127.0.0.2, stands for the others); UDP gets REFUSED; IXFR gets
the SOA alone when the client's serial is current, else the whole zone.
"""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.xfr
import dns.zone
import pytest
import trio

from kdns import transfer
from kdns.transfer import client_serial, current
from testkit.answers import CASES, E2E
from testkit.dnswire import rrs
from testkit.repo import DEMO, needs

ZONES = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
EXTERNAL = Path(__file__).parent / "manifests" / "external.yaml"


@pytest.fixture
async def server(kdns):
    return await kdns(DEMO, E2E)


async def axfr(host: str, port: int, zone: str, source: str | None = None) -> list[dns.message.Message]:
    """The messages of an AXFR over TCP, read as dnspython reads them (SOA first and last checked by it)."""
    def run() -> list[dns.message.Message]:
        return list(dns.query.xfr(host, zone, port=port, timeout=5, lifetime=10, source=source, relativize=False))

    return await trio.to_thread.run_sync(run)


def lines(messages: list[dns.message.Message]) -> list[str]:
    out = []
    for message in messages:
        for rrset in message.answer:
            for rd in rrset:
                out.append(f"{rrset.name.to_text().lower()} {rrset.ttl} IN {dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text().lower()}")
    return out


async def test_axfr_holds_soa_first_and_last_and_every_record_a_query_gets(server):
    """Every record the answer table expects, in the zone it lies in, is in that zone's transfer."""
    transfers = {zone: lines(await axfr(server.host, server.port, zone)) for zone in ZONES}
    for zone, got in transfers.items():
        assert got[0].startswith(f"{zone} 5 IN SOA ") and got[-1] == got[0], (zone, got[:2], got[-1:])
        assert f"{zone} 5 IN NS kube-dns.kube-system.svc.cluster.local." in got
    expected = 0
    for case in CASES:
        for line in case.answer:
            owner, _, _, rtype, _ = line.split(" ", 4)
            zone = next((z for z in ZONES if owner == z or owner.endswith("." + z)), None)
            if zone is None or ".pod." in owner or rtype == "SOA":
                continue  # pod names exist for any address under --pods insecure: not listed
            assert line in transfers[zone], f"{case}: {line} is missing from the transfer of {zone}"
            expected += 1
    assert expected > 50


async def test_axfr_holds_nothing_a_query_does_not_get(server):
    """Ask every name and type of each transfer: the answer holds exactly those records."""
    for zone in ZONES:
        got = lines(await axfr(server.host, server.port, zone))[1:-1]
        by_question: dict[tuple[str, str], set[str]] = {}
        for line in got:
            owner, _, _, rtype, _ = line.split(" ", 4)
            by_question.setdefault((owner, rtype), set()).add(line)
        assert len(got) == sum(len(v) for v in by_question.values()), f"{zone}: a record twice"
        for (owner, rtype), expected in by_question.items():
            reply = await server.query(owner, rtype)
            assert reply.rcode() == dns.rcode.NOERROR, (owner, rtype)
            answered = {line for line in rrs(reply.answer) if line.split(" ", 4)[0] == owner and line.split(" ", 4)[3] == rtype}
            assert answered == expected, (owner, rtype)


async def test_axfr_order_is_the_same_every_time(server):
    first = lines(await axfr(server.host, server.port, "cluster.local."))
    assert lines(await axfr(server.host, server.port, "cluster.local.")) == first
    names = [line.split(" ", 1)[0] for line in first[1:-1]]
    service = [n for n in names if n.endswith("web.shop.svc.cluster.local.")]
    start = names.index("web.shop.svc.cluster.local.")
    assert names[start:start + len(service)] == service, "a Service's names come together"


@needs("dig")
async def test_dig_axfr_shows_the_cluster(server):
    result = await trio.run_process(["dig", f"@{server.host}", "-p", str(server.port), "cluster.local", "AXFR", "+nocmd"],
                                    capture_stdout=True, check=False)
    out = result.stdout.decode()
    assert result.returncode == 0, out
    lines_ = [line for line in out.splitlines() if line and not line.startswith(";")]
    assert lines_[0].split()[3] == "SOA" and lines_[-1] == lines_[0]
    assert any(line.split()[0] == "_postgres._tcp.db.shop.svc.cluster.local." and line.split()[3] == "SRV" for line in lines_)
    assert "XFR size:" in out


@needs("dig")
async def test_large_zone_comes_in_several_messages(kdns, tmp_path):
    docs = []
    for i in range(400):
        docs.append(f"apiVersion: v1\nkind: Service\nmetadata: {{name: service-number-{i}, namespace: busy}}\n"
                    f"spec: {{clusterIP: 10.97.{i // 250}.{i % 250 + 1}, ports: [{{name: http, port: 80}}, {{name: grpc, port: 90}}]}}\n")
    manifest = tmp_path / "busy.yaml"
    manifest.write_text("---\n".join(docs))
    kd = await kdns(manifest)
    messages = await axfr(kd.host, kd.port, "cluster.local.")
    assert len(messages) > 1
    got = lines(messages)
    assert sum(1 for line in got if " IN A 10.97." in line) == 400
    zone = await trio.to_thread.run_sync(lambda: dns.zone.from_xfr(iter(messages), relativize=False))
    assert zone.find_rdataset("_grpc._tcp.service-number-399.busy.svc.cluster.local.", "SRV")
    result = await trio.run_process(["dig", f"@{kd.host}", "-p", str(kd.port), "cluster.local", "AXFR"], capture_stdout=True)
    assert f"messages {len(messages)}," in result.stdout.decode()


async def test_external_zone_transfer_is_what_queries_get(kdns):
    kd = await kdns(EXTERNAL, args=["--external-zone", "k8s.example.org", "--external-headless"])
    got = lines(await axfr(kd.host, kd.port, "k8s.example.org."))
    assert got[0].split()[3] == "SOA" and got[-1] == got[0]
    assert "k8s.example.org. 5 IN NS ns1.dns.k8s.example.org." in got
    assert "ext-only.shop.k8s.example.org. 5 IN A 198.51.100.1" in got
    assert "elb.shop.k8s.example.org. 5 IN CNAME lb-123.elb.example.com." in got
    for line in got[1:-1]:
        owner, _, _, rtype, _ = line.split(" ", 4)
        assert line in rrs((await kd.query(owner, rtype)).answer), line


async def test_refused_to_a_client_not_allowed(kdns):
    """--allow-transfer 127.0.0.1/32: a client on 127.0.0.2 gets REFUSED; 127.0.0.1 gets the zone."""
    kd = await kdns(DEMO, args=["--allow-transfer", "127.0.0.1/32"])
    query = dns.message.make_query("cluster.local", "AXFR")
    reply = await trio.to_thread.run_sync(lambda: dns.query.tcp(query, kd.host, port=kd.port, timeout=5, source="127.0.0.2"))
    assert reply.rcode() == dns.rcode.REFUSED and not reply.answer
    with pytest.raises(dns.xfr.TransferError):
        await axfr(kd.host, kd.port, "cluster.local.", source="127.0.0.2")
    assert lines(await axfr(kd.host, kd.port, "cluster.local.", source="127.0.0.1"))


@needs("dig")
async def test_dig_from_a_client_not_allowed_is_refused(kdns):
    kd = await kdns(DEMO, args=["--allow-transfer", "127.0.0.1/32"])
    result = await trio.run_process(["dig", "-b", "127.0.0.2", f"@{kd.host}", "-p", str(kd.port), "cluster.local", "AXFR"],
                                    capture_stdout=True, check=False)
    out = result.stdout.decode()
    assert "Transfer failed" in out and " IN\tSOA" not in out, out


async def test_axfr_over_udp_is_refused(server):
    reply = await server.query("cluster.local", "AXFR")
    assert reply.rcode() == dns.rcode.REFUSED


async def test_ixfr_with_the_current_serial_gets_the_soa_alone(server):
    [soa] = (await server.query("cluster.local", "SOA")).answer
    serial = soa[0].serial

    def ixfr(client_serial: int) -> list[dns.message.Message]:
        return list(dns.query.xfr(server.host, "cluster.local.", port=server.port, timeout=5, lifetime=10,
                                  rdtype=dns.rdatatype.IXFR, serial=client_serial, relativize=False))

    messages = await trio.to_thread.run_sync(lambda: ixfr(serial))
    assert lines(messages) == list(rrs([soa]))
    query, _ = dns.xfr.make_query(dns.zone.Zone("cluster.local."), serial=serial + 1)
    newer = await trio.to_thread.run_sync(lambda: dns.query.tcp(query, server.host, port=server.port, timeout=5))
    assert lines([newer]) == list(rrs([soa])), "a newer serial (a secondary ahead of us) gets the SOA too"
    whole = lines(await trio.to_thread.run_sync(lambda: ixfr(serial - 10)))
    assert len(whole) > 50 and whole[0] == whole[-1], "an older serial gets the whole zone, as AXFR"
    # dnspython's own IXFR client into a zone: it takes the whole zone when asked from serial 0.
    zone = dns.zone.Zone("cluster.local.", relativize=False)
    await trio.to_thread.run_sync(lambda: dns.query.inbound_xfr(server.host, zone, port=server.port, timeout=5, lifetime=10))
    assert zone.find_rdataset("web.shop.svc.cluster.local.", "A")


async def test_ixfr_without_a_soa_is_formerr(server):
    """RFC 1995: an IXFR query carries the client's SOA in its authority section."""
    reply = await server.query("cluster.local", "IXFR", tcp=True)
    assert reply.rcode() == dns.rcode.FORMERR


# -- the pure parts ------------------------------------------------------------------------------


def test_serial_arithmetic():
    """RFC 1982: a serial equal or newer (within half the space) is current."""
    assert current(5, 5) and current(6, 5) and not current(4, 5)
    assert current(1, 0xFFFFFFFF), "the serial wraps"
    assert not current(0x80000005, 5)


def test_client_serial_reads_the_authority_soa():
    zone = dns.zone.Zone("cluster.local.")
    query, _ = dns.xfr.make_query(zone, serial=123456)
    assert client_serial(query.to_wire()) == 123456
    assert client_serial(dns.message.make_query("cluster.local", "IXFR").to_wire()) is None
    assert client_serial(b"\x00" * 5) is None
    assert client_serial(query.to_wire()[:-19]) is None, "the serial cut short"


def test_allowed():
    import ipaddress

    loopback = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert transfer.allowed("127.0.0.2", loopback) and transfer.allowed("::1", loopback)
    assert transfer.allowed("::ffff:127.0.0.1", loopback), "IPv4-mapped addresses are IPv4"
    assert not transfer.allowed("10.0.0.1", loopback) and not transfer.allowed("127.0.0.1", ())
    assert not transfer.allowed("not an address", loopback)
