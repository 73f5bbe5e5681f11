"""DNS bytes for tests: queries in wire form and edits of their header, TCP framing, replies
as sets of zone-file lines, and the demo cluster's questions with the rcode each gets."""

from __future__ import annotations

import struct

import dns.message
import dns.rdatatype
import dns.reversename

TIMEOUT = 3.0  # seconds a test waits for a reply
QR, AA, TC, RD, RA, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0010
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5

SENTINEL_NAME = "kube-dns.kube-system.svc.cluster.local"
SENTINEL_ID = 0xBEEF
KUBERNETES = "kubernetes.default.svc.cluster.local"



def query(name: str = KUBERNETES, rdtype: str | int = "A", qid: int = 0x1234, **make) -> bytes:
    """A query in wire form (dnspython sets RD; `make` goes to make_query: use_edns, ...)."""
    q = dns.message.make_query(name, rdtype, **make)
    q.id = qid
    return q.to_wire()


def with_flags(packet: bytes, set_bits: int = 0, clear_bits: int = 0) -> bytes:
    flags = (int.from_bytes(packet[2:4], "big") | set_bits) & ~clear_bits & 0xFFFF
    return packet[:2] + flags.to_bytes(2, "big") + packet[4:]


def with_counts(packet: bytes, qd: int, an: int, ns: int, ar: int) -> bytes:
    return packet[:4] + struct.pack("!4H", qd, an, ns, ar) + packet[12:]


def header(reply: bytes) -> tuple[int, int, int, int, int, int]:
    """(id, flags, qdcount, ancount, nscount, arcount)."""
    return struct.unpack_from("!6H", reply)


def rcode(reply: bytes) -> int:
    return reply[3] & 0x0F


def question_len(packet: bytes) -> int:
    """Length of the (uncompressed) question section starting at offset 12."""
    pos = 12
    while packet[pos]:
        pos += 1 + packet[pos]
    return pos + 1 + 4 - 12


def qsection(packet: bytes) -> bytes:
    return packet[12 : 12 + question_len(packet)]


def parse(reply: bytes) -> dns.message.Message:
    return dns.message.from_wire(reply)


def frame(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


def is_sentinel_reply(reply: bytes) -> bool:
    return reply[:2] == SENTINEL_ID.to_bytes(2, "big") and reply[12:].startswith(qsection(query(SENTINEL_NAME))) and reply[2] & 0x80



def rrs(section) -> set[str]:
    """A message section as a set of zone-file lines, lowercased: `name. ttl IN TYPE data`."""
    out = set()
    for rrset in section:
        for rd in rrset:
            out.add(f"{rrset.name.to_text().lower()} {rrset.ttl} IN {dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text().lower()}")
    return out


# Questions covering the demo cluster, with the rcode each gets.
WEB = "web.shop.svc.cluster.local"
DEMO_QUESTIONS = [
    (WEB, "A", NOERROR),
    (WEB, "AAAA", NOERROR),
    (WEB, "SRV", NOERROR),
    (WEB, "MX", NOERROR),  # NODATA
    (WEB, "ANY", NOERROR),
    (KUBERNETES, "A", NOERROR),
    ("_http._tcp.api.shop.svc.cluster.local", "SRV", NOERROR),
    ("_grpc._tcp.api.shop.svc.cluster.local", "SRV", NOERROR),
    ("_http._tcp.api.shop.svc.cluster.local", "A", NOERROR),  # NODATA
    ("_postgres._tcp.db.shop.svc.cluster.local", "SRV", NOERROR),
    ("db.shop.svc.cluster.local", "A", NOERROR),
    ("db-0.db.shop.svc.cluster.local", "A", NOERROR),
    ("db-2.db.shop.svc.cluster.local", "A", NXDOMAIN),  # not ready
    ("cache.shop.svc.cluster.local", "AAAA", NOERROR),
    ("10-244-1-40.cache.shop.svc.cluster.local", "A", NOERROR),
    ("storefront.shop.svc.cluster.local", "A", NOERROR),  # CNAME followed inside the zone
    ("storefront.shop.svc.cluster.local", "SRV", NOERROR),
    ("payments.shop.svc.cluster.local", "A", NOERROR),  # CNAME left to the client
    ("payments.shop.svc.cluster.local", "CNAME", NOERROR),
    ("below.payments.shop.svc.cluster.local", "A", NXDOMAIN),
    (dns.reversename.from_address("10.96.100.10").to_text(), "PTR", NOERROR),
    (dns.reversename.from_address("fd00:10:96::100:a").to_text(), "PTR", NOERROR),
    (dns.reversename.from_address("10.244.1.30").to_text(), "PTR", NOERROR),
    (dns.reversename.from_address("10.96.100.10").to_text(), "A", NOERROR),  # NODATA
    (dns.reversename.from_address("10.9.9.9").to_text(), "PTR", NXDOMAIN),
    ("10-244-1-10.shop.pod.cluster.local", "A", NOERROR),
    ("10-244-1-10.nowhere.pod.cluster.local", "A", NXDOMAIN),
    ("dns-version.cluster.local", "TXT", NOERROR),
    ("dns-version.cluster.local", "A", NOERROR),  # NODATA
    ("cluster.local", "SOA", NOERROR),
    ("cluster.local", "NS", NOERROR),
    ("cluster.local", "MX", NOERROR),  # NODATA
    ("shop.svc.cluster.local", "A", NOERROR),  # NODATA: the namespace exists
    ("nope.shop.svc.cluster.local", "A", NXDOMAIN),
    ("nope.shop.svc.cluster.local", "AAAA", NXDOMAIN),
    ("example.com", "A", REFUSED),
    (WEB, "AXFR", REFUSED),
]
