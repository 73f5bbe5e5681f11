"""The answer table's vocabulary: a `Case` (question, rcode, whole answer section, additional
section, the zone whose SOA is the whole authority section) and `check`, which compares a
dnspython reply with it. tests/test_answers.py holds the cluster zone's table; other tables
(the external zone's) use the same."""

from __future__ import annotations

from dataclasses import dataclass

import dns.flags
import dns.rcode
import dns.rdatatype

from testkit.dnswire import rrs

CL = "cluster.local."


@dataclass(frozen=True)
class Case:
    name: str
    qtype: str
    rcode: str = "NOERROR"
    answer: tuple[str, ...] = ()
    additional: tuple[str, ...] | None = None  # None: not checked
    soa: str | None = None  # the zone whose SOA must be the whole authority section
    note: str = ""

    def __str__(self) -> str:
        return f"{self.name} {self.qtype} {self.note}".strip()


def nodata(name: str, qtype: str, zone: str = CL, note: str = "") -> Case:
    return Case(name, qtype, "NOERROR", (), (), soa=zone, note=note or "NODATA")


def nxdomain(name: str, qtype: str = "A", zone: str = CL, note: str = "") -> Case:
    return Case(name, qtype, "NXDOMAIN", (), (), soa=zone, note=note or "NXDOMAIN")


def a(owner: str, *ips: str, ttl: int = 5) -> tuple[str, ...]:
    return tuple(f"{owner} {ttl} IN {'AAAA' if ':' in ip else 'A'} {ip}" for ip in ips)


def check(case: Case, reply) -> None:
    assert dns.rcode.to_text(reply.rcode()) == case.rcode, reply
    assert rrs(reply.answer) == set(case.answer), reply
    if case.additional is not None:
        assert rrs(reply.additional) == set(case.additional), reply
    if case.soa is not None:
        assert [(r.name.to_text().lower(), r.rdtype) for r in reply.authority] == [(case.soa, dns.rdatatype.SOA)], reply
    elif case.rcode == "NOERROR":
        assert reply.authority == [], reply
    if case.rcode != "REFUSED":
        assert reply.flags & dns.flags.AA, "answers from our zones are authoritative"
