"""Zone transfers (AXFR, and IXFR answered as AXFR): every record a query could get, for each
zone kdns is authoritative for, in a fixed order. Pure.

Shaped like CoreDNS's `transfer` plugin over its `kubernetes` one: the SOA first, the apex
NS, then the names, then the SOA again (RFC 5936). The records of each name are what
`kdns.answer.answer` gives for it and each type it holds (no additional section, no CNAME
followed): the transfer reads the same snapshot as the queries do, so the two cannot
disagree. The names come in DNS order (labels compared from the right), so a Service's
names come together: `web.shop.svc`, then `_http._tcp.web.shop.svc`, `10-244-1-10.web...`.

* Cluster zones: every name of the index that holds records (Services, endpoint names, SRV
  names, `dns-version`, `ns.dns`) and, with `--pods verified`, the names of existing Pods'
  addresses. With `--pods insecure` a pod name exists for any address: those are not listed.
* Reverse zones: the PTR record of each address kdns holds one for (cluster and external).
* External zones: every name of that zone in kdns.tables, `ns1.<apex>.<zone>` included.

Rules of the shell (kdns.serve.serving): over TCP only (REFUSED over UDP, as CoreDNS), from
the clients `--allow-transfer` allows (REFUSED for the others), for a zone apex kdns serves
(REFUSED for another name). IXFR needs the client's SOA in the authority section (FORMERR
without): a client whose serial is the current one (or newer, RFC 1982) gets that SOA alone,
the others the whole zone. Messages hold up to `MESSAGE_BYTES` of records each.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from kdns import answer as ans
from kdns import codes, names, wire
from kdns.options import PodsMode
from kdns.result import Answer, Record
from kdns.snapshot import Snapshot

MESSAGE_BYTES = 16_000  # records per message, about (BIND sends ~16 KB messages; a message may hold 64 KB)
TYPES = (codes.A, codes.AAAA, codes.SRV, codes.TXT)  # what a cluster name can hold beside a CNAME


@dataclass(frozen=True, slots=True)
class TransferQuery:
    """A query for AXFR or IXFR: the responder leaves it to the shell, which knows the client
    and the transport."""

    query: wire.Query
    data: bytes  # the query as received (IXFR: the client's SOA is in its authority section)


@dataclass(slots=True)
class Transfer:
    """The messages of a zone transfer, made one at a time as the client takes them."""

    messages: Iterator[bytes]
    zone: str
    records: int = 0  # counted as the messages are made


def allowed(client: str | None, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    """Whether a client address may transfer zones (`networks`: --allow-transfer; none: nobody)."""
    if client is None or not networks:
        return False
    try:
        address = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def zone_of_query(snap: Snapshot, query: wire.Query) -> str | None:
    """The zone a transfer query asks for: its name must be the apex of one of our zones."""
    name = ".".join(query.labels)
    return name if name in snap.config.all_zones and query.qclass == codes.CLASS_IN else None


def client_serial(data: bytes) -> int | None:
    """The serial of the SOA record an IXFR query carries in its authority section, or None."""
    try:
        qdcount, ancount, nscount = struct.unpack_from("!3H", data, 4)
        if qdcount != 1 or nscount < 1:
            return None
        _, pos = wire.read_name(data, 12, compressed=False)
        pos += 4
        for _ in range(ancount):
            _, pos = wire.read_name(data, pos, compressed=True)
            pos += 10 + struct.unpack_from("!H", data, pos + 8)[0]
        _, pos = wire.read_name(data, pos, compressed=True)
        rtype = struct.unpack_from("!H", data, pos)[0]
        if rtype != codes.SOA:
            return None
        pos += 10
        _, pos = wire.read_name(data, pos, compressed=True)  # MNAME
        _, pos = wire.read_name(data, pos, compressed=True)  # RNAME
        serial: int = struct.unpack_from("!I", data, pos)[0]
        return serial
    except (wire.BadName, struct.error, IndexError):
        return None


def current(client: int, ours: int) -> bool:
    """Whether serial `client` is `ours` or newer (RFC 1982 serial number arithmetic)."""
    ours &= 0xFFFFFFFF
    return client == ours or 0 < (client - ours) % (1 << 32) < (1 << 31)


def soa(snap: Snapshot, zone: str) -> Record:
    serial, ttl, mname, rname = snap.soa(zone)
    return Record(zone, codes.SOA, min(ttl, 300), (mname, rname, serial & 0xFFFFFFFF, *wire.SOA_TIMERS, ttl))


def records(snap: Snapshot, zone: str) -> Iterator[Record]:
    """Every record of `zone`, SOA first and last."""
    first = soa(snap, zone)
    yield first
    yield from _at(snap, zone, codes.NS)
    if zone in snap.config.external_zones:
        owners = sorted((name for name, entry in snap.hosts.items() if entry.zone == zone and entry.rrsets and name != zone),
                        key=_dns_order)
        for name in owners:
            kinds = [rr.rtype for rr in snap.hosts[name].rrsets]
            for rtype in ([codes.CNAME] if codes.CNAME in kinds else kinds):
                yield from _at(snap, name, rtype)
    elif zone in names.REVERSE_ZONES:
        family = 4 if zone == names.IN_ADDR_ARPA else 6
        ips = {ip for ip in snap.ptr if names.ip_family(ip) == family}
        ips |= {ip for ip in snap.xptr if names.ip_family(ip) == family}
        for ip in sorted(ips, key=ipaddress.ip_address):
            yield from _at(snap, names.reverse_name(ip), codes.PTR)
    else:
        yield from _cluster(snap, zone)
    yield first


def _cluster(snap: Snapshot, zone: str) -> Iterator[Record]:
    owners: dict[str, int] = {rel: 0 for rel in snap.names if rel}  # name -> the type of a pod name's record
    if snap.config.pods is PodsMode.VERIFIED:
        for namespace, ip in snap.pod_ips:
            owners.setdefault(f"{names.pod_labels(ip)[0]}.{namespace}.pod", codes.A if names.ip_family(ip) == 4 else codes.AAAA)
    for rel in sorted(owners, key=_dns_order):
        node = snap.node(rel)
        name = names.join(rel, zone)
        if node is None:
            yield from _at(snap, name, owners[rel])
        elif node.cname:
            yield from _at(snap, name, codes.CNAME)
        else:
            for rtype, held in zip(TYPES, (node.a, node.aaaa, node.srv, node.txt), strict=True):
                if held:
                    yield from _at(snap, name, rtype)


def _at(snap: Snapshot, name: str, rtype: int) -> tuple[Record, ...]:
    """The records of `name` and `rtype` as a query gets them, without what follows a CNAME."""
    result: Answer = ans.answer(snap, tuple(name.split(".")), rtype)
    return tuple(r for r in result.answer if r.name == name and r.rtype == rtype)


def _dns_order(name: str) -> str:
    """Labels compared from the right, as one string (NUL sorts before any label's byte, so a
    name comes before its children and they all come together): a third of the memory of
    tuples of labels, for sorting a zone of a hundred thousand names."""
    return "\x00".join(reversed(name.split(".")))


def messages(snap: Snapshot, query: wire.Query, zone: str, zones: tuple[str, ...], transfer: Transfer,
             only_soa: bool = False) -> Iterator[bytes]:
    """The replies of a transfer of `zone` (`zones`: the responder's, for packing)."""
    edns = (query.edns.udp_size, query.edns.do) if query.edns else None
    batch: list[Record] = []
    size = 0
    for record in (soa(snap, zone),) if only_soa else records(snap, zone):
        estimate = len(record.name) + 16 + (len(str(record.data)) if record.rtype != codes.SRV else 64)
        if batch and size + estimate > MESSAGE_BYTES:
            yield _pack(query, batch, zones, edns)
            transfer.records += len(batch)
            batch, size = [], 0
        batch.append(record)
        size += estimate
    yield _pack(query, batch, zones, edns)
    transfer.records += len(batch)


def _pack(query: wire.Query, batch: list[Record], zones: tuple[str, ...], edns: tuple[int, bool] | None) -> bytes:
    entry = wire.pack_answer(query, Answer(codes.NOERROR, tuple(batch)), zones)
    return wire.render(entry, query.qid, query.flags, query.question, b"", edns, wire.MAX_TCP)
