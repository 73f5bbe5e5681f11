"""The answer table's vocabulary: a `Case` (question, rcode, whole answer section, additional
section, the zone whose SOA is the whole authority section) and `check`, which compares a
dnspython reply with it. tests/test_answers.py holds the cluster zone's table; other tables
(the external zone's) use the same. `CASES` is the cluster zone's table, for the demo cluster
plus E2E: tests/test_answers.py asks it of the core and over UDP and TCP; `kdns explain` and
zone transfers are checked against it too."""

from __future__ import annotations

from dataclasses import dataclass

import dns.flags
import dns.rcode
import dns.rdatatype

from testkit.dnswire import rrs
from testkit.repo import ROOT

CL = "cluster.local."
E2E = ROOT / "tests" / "manifests" / "e2e.yaml"  # the objects of the Kubernetes e2e DNS tests, and edge cases


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


WEB = "web.shop.svc.cluster.local."
DB = "db.shop.svc.cluster.local."
CACHE = "cache.shop.svc.cluster.local."
API = "api.shop.svc.cluster.local."

CASES = [
    # 2.3.1 ClusterIP A/AAAA, dual stack, with or without endpoints; NodePort as ClusterIP.
    Case(WEB, "A", answer=a(WEB, "10.96.100.10")),
    Case(WEB, "AAAA", answer=a(WEB, "fd00:10:96::100:a")),
    Case(API, "A", answer=a(API, "10.96.100.20"), note="NodePort"),
    nodata(API, "AAAA", note="IPv4-only service"),
    Case("kubernetes.default.svc.cluster.local.", "A", answer=a("kubernetes.default.svc.cluster.local.", "10.96.0.1")),
    Case("lonely.e2e.svc.cluster.local.", "A", answer=a("lonely.e2e.svc.cluster.local.", "10.96.55.3"), note="no endpoints"),
    Case("1kubernetes.e2e.svc.cluster.local.", "A", answer=a("1kubernetes.e2e.svc.cluster.local.", "10.96.55.1")),
    nodata(WEB, "TXT"),
    nodata(WEB, "MX"),
    nodata(WEB, "CNAME"),
    nodata(WEB, "PTR"),
    nodata(WEB, "SOA"),
    # Endpoint names of a ClusterIP service (CoreDNS): dashed addresses.
    Case("10-244-1-10.web.shop.svc.cluster.local.", "A", answer=a("10-244-1-10.web.shop.svc.cluster.local.", "10.244.1.10")),
    # 2.3.2 ClusterIP SRV: named ports only; weight 100 / entries (50 for two ClusterIPs).
    Case(
        f"_http._tcp.{WEB}", "SRV",
        answer=(f"_http._tcp.{WEB} 5 IN SRV 0 50 80 {WEB}",),
        additional=a(WEB, "10.96.100.10", "fd00:10:96::100:a"),
    ),
    Case(f"_http._tcp.{API}", "SRV", answer=(f"_http._tcp.{API} 5 IN SRV 0 100 8080 {API}",), additional=a(API, "10.96.100.20")),
    Case(f"_grpc._tcp.{API}", "SRV", answer=(f"_grpc._tcp.{API} 5 IN SRV 0 100 9090 {API}",), additional=a(API, "10.96.100.20")),
    Case(
        f"_dns._udp.kube-dns.kube-system.svc.{CL}", "SRV",
        answer=(f"_dns._udp.kube-dns.kube-system.svc.{CL} 5 IN SRV 0 100 53 kube-dns.kube-system.svc.{CL}",),
    ),
    Case(f"_HTTP._TCP.{WEB}", "SRV", answer=(f"_http._tcp.{WEB} 5 IN SRV 0 50 80 {WEB}",), note="case-insensitive"),
    nxdomain(f"_http._udp.{WEB}", "SRV", note="no such protocol"),
    nxdomain(f"_https._tcp.{WEB}", "SRV", note="no such port"),
    nodata(f"_http._tcp.{WEB}", "A", note="SRV-only name"),
    nodata(f"_tcp.{WEB}", "SRV", note="empty non-terminal"),
    nxdomain(f"_udp.{WEB}", "SRV", note="no UDP port"),
    nxdomain(f"_https._tcp.1kubernetes.e2e.svc.{CL}", "SRV", note="unnamed port"),
    # Bare-name SRV: every port (CoreDNS).
    Case(API, "SRV", answer=(f"{API} 5 IN SRV 0 50 8080 {API}", f"{API} 5 IN SRV 0 50 9090 {API}"), additional=a(API, "10.96.100.20")),
    # 2.4.1 headless A/AAAA: ready endpoints only, across slices, de-duplicated.
    Case(DB, "A", answer=a(DB, "10.244.1.30", "10.244.2.31"), note="db-2 not ready"),
    nodata(DB, "AAAA"),
    Case(CACHE, "A", answer=a(CACHE, "10.244.1.40", "10.244.2.41")),
    Case(CACHE, "AAAA", answer=a(CACHE, "fd00:10:244:1::28")),
    Case("twins.e2e.svc.cluster.local.", "A", answer=a("twins.e2e.svc.cluster.local.", "10.244.7.1", "10.244.7.2")),
    nxdomain("starting.e2e.svc.cluster.local.", "A", note="no ready endpoints"),
    nxdomain("starting.e2e.svc.cluster.local.", "AAAA", note="no ready endpoints"),
    nxdomain("starting.e2e.svc.cluster.local.", "SRV", note="no ready endpoints"),
    nxdomain("_http._tcp.starting.e2e.svc.cluster.local.", "SRV", note="no ready endpoints"),
    nxdomain("starting-0.starting.e2e.svc.cluster.local.", "A", note="not ready"),
    # Endpoint hostnames; dashed names for endpoints without one; both families.
    Case(f"db-0.{DB}", "A", answer=a(f"db-0.{DB}", "10.244.1.30")),
    nodata(f"db-0.{DB}", "AAAA"),
    nxdomain(f"db-2.{DB}", note="not ready"),
    Case(f"10-244-1-40.{CACHE}", "A", answer=a(f"10-244-1-40.{CACHE}", "10.244.1.40")),
    Case(f"fd00-10-244-1--28.{CACHE}", "AAAA", answer=a(f"fd00-10-244-1--28.{CACHE}", "fd00:10:244:1::28")),
    Case("same.twins.e2e.svc.cluster.local.", "A", answer=a("same.twins.e2e.svc.cluster.local.", "10.244.7.1", "10.244.7.2")),
    Case("ds-0.ds.e2e.svc.cluster.local.", "A", answer=a("ds-0.ds.e2e.svc.cluster.local.", "10.244.6.1")),
    Case("ds-0.ds.e2e.svc.cluster.local.", "AAAA", answer=a("ds-0.ds.e2e.svc.cluster.local.", "fd00:10:244:6::1")),
    Case(
        "dns-querier-1.dns-test-service.e2e.svc.cluster.local.", "A",
        answer=a("dns-querier-1.dns-test-service.e2e.svc.cluster.local.", "10.244.5.7"),
    ),
    # 2.4.2 headless SRV: one per ready endpoint and port, port from the slice; glue.
    Case(
        f"_postgres._tcp.{DB}", "SRV",
        answer=(f"_postgres._tcp.{DB} 5 IN SRV 0 50 5432 db-0.{DB}", f"_postgres._tcp.{DB} 5 IN SRV 0 50 5432 db-1.{DB}"),
        additional=a(f"db-0.{DB}", "10.244.1.30") + a(f"db-1.{DB}", "10.244.2.31"),
    ),
    Case(
        f"_redis._tcp.{CACHE}", "SRV",
        answer=(
            f"_redis._tcp.{CACHE} 5 IN SRV 0 33 6379 10-244-1-40.{CACHE}",
            f"_redis._tcp.{CACHE} 5 IN SRV 0 33 6379 10-244-2-41.{CACHE}",
            f"_redis._tcp.{CACHE} 5 IN SRV 0 33 6379 fd00-10-244-1--28.{CACHE}",
        ),
        additional=a(f"10-244-1-40.{CACHE}", "10.244.1.40") + a(f"10-244-2-41.{CACHE}", "10.244.2.41")
        + a(f"fd00-10-244-1--28.{CACHE}", "fd00:10:244:1::28"),
    ),
    Case(
        "_http._tcp.ds.e2e.svc.cluster.local.", "SRV",
        answer=(
            "_http._tcp.ds.e2e.svc.cluster.local. 5 IN SRV 0 25 8080 ds-0.ds.e2e.svc.cluster.local.",
            "_http._tcp.ds.e2e.svc.cluster.local. 5 IN SRV 0 25 8080 ds-1.ds.e2e.svc.cluster.local.",
        ),
        additional=a("ds-0.ds.e2e.svc.cluster.local.", "10.244.6.1", "fd00:10:244:6::1")
        + a("ds-1.ds.e2e.svc.cluster.local.", "10.244.6.2", "fd00:10:244:6::2"),
        note="dual stack: one SRV per hostname",
    ),
    Case(
        "_http._tcp.dns-test-service.e2e.svc.cluster.local.", "SRV",
        answer=("_http._tcp.dns-test-service.e2e.svc.cluster.local. 5 IN SRV 0 100 80 dns-querier-1.dns-test-service.e2e.svc.cluster.local.",),
    ),
    Case(
        "_http._tcp.test-service-2.e2e.svc.cluster.local.", "SRV",
        answer=("_http._tcp.test-service-2.e2e.svc.cluster.local. 5 IN SRV 0 100 80 test-service-2.e2e.svc.cluster.local.",),
    ),
    # 2.5 ExternalName: CNAME; in-cluster targets followed; names below it do not exist.
    Case("payments.shop.svc.cluster.local.", "CNAME", answer=("payments.shop.svc.cluster.local. 5 IN CNAME payments.example.com.",)),
    Case("payments.shop.svc.cluster.local.", "A", answer=("payments.shop.svc.cluster.local. 5 IN CNAME payments.example.com.",)),
    Case("dns-test-service-3.e2e.svc.cluster.local.", "CNAME", answer=("dns-test-service-3.e2e.svc.cluster.local. 5 IN CNAME foo.example.com.",)),
    Case(
        "storefront.shop.svc.cluster.local.", "A",
        answer=("storefront.shop.svc.cluster.local. 5 IN CNAME web.shop.svc.cluster.local.",) + a(WEB, "10.96.100.10"),
    ),
    Case(
        "storefront.shop.svc.cluster.local.", "AAAA",
        answer=("storefront.shop.svc.cluster.local. 5 IN CNAME web.shop.svc.cluster.local.",) + a(WEB, "fd00:10:96::100:a"),
    ),
    Case(
        "storefront.shop.svc.cluster.local.", "TXT", answer=("storefront.shop.svc.cluster.local. 5 IN CNAME web.shop.svc.cluster.local.",),
        soa=CL, note="CNAME then NODATA",
    ),
    Case(
        "hop1.e2e.svc.cluster.local.", "A",
        answer=(
            "hop1.e2e.svc.cluster.local. 5 IN CNAME hop2.e2e.svc.cluster.local.",
            "hop2.e2e.svc.cluster.local. 5 IN CNAME test-service-2.e2e.svc.cluster.local.",
        ) + a("test-service-2.e2e.svc.cluster.local.", "10.96.55.2"),
        note="chain",
    ),
    Case(
        "loop-a.e2e.svc.cluster.local.", "A",
        answer=(
            "loop-a.e2e.svc.cluster.local. 5 IN CNAME loop-b.e2e.svc.cluster.local.",
            "loop-b.e2e.svc.cluster.local. 5 IN CNAME loop-a.e2e.svc.cluster.local.",
        ),
        note="loop stops",
    ),
    Case(
        "dangling.e2e.svc.cluster.local.", "A", "NXDOMAIN",
        answer=("dangling.e2e.svc.cluster.local. 5 IN CNAME nothing-here.e2e.svc.cluster.local.",),
        soa=CL, note="target does not exist",
    ),
    nxdomain("literal.e2e.svc.cluster.local.", note="IP literal ExternalName is not served"),
    nxdomain("x.payments.shop.svc.cluster.local."),
    nxdomain("_https._tcp.payments.shop.svc.cluster.local.", "SRV"),
    # 2.3.3 / 2.4.3 PTR, IPv4 and IPv6.
    Case("10.100.96.10.in-addr.arpa.", "PTR", answer=(f"10.100.96.10.in-addr.arpa. 5 IN PTR {WEB}",)),
    Case(
        "a.0.0.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.", "PTR",
        answer=(f"a.0.0.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa. 5 IN PTR {WEB}",),
    ),
    Case("30.1.244.10.in-addr.arpa.", "PTR", answer=(f"30.1.244.10.in-addr.arpa. 5 IN PTR db-0.{DB}",)),
    Case("40.1.244.10.in-addr.arpa.", "PTR", answer=(f"40.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-40.{CACHE}",)),
    Case(
        "8.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa.", "PTR",
        answer=(f"8.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa. 5 IN PTR fd00-10-244-1--28.{CACHE}",),
    ),
    Case("10.1.244.10.in-addr.arpa.", "PTR", answer=(f"10.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-10.{WEB}",), note="ClusterIP endpoint"),
    Case(
        "7.5.244.10.in-addr.arpa.", "PTR",
        answer=(
            "7.5.244.10.in-addr.arpa. 5 IN PTR dns-querier-1.dns-test-service.e2e.svc.cluster.local.",
            "7.5.244.10.in-addr.arpa. 5 IN PTR 10-244-5-7.test-service-2.e2e.svc.cluster.local.",
        ),
        note="one IP, two services",
    ),
    Case("2.7.244.10.in-addr.arpa.", "PTR", answer=("2.7.244.10.in-addr.arpa. 5 IN PTR same.twins.e2e.svc.cluster.local.",), note="dedup"),
    Case("2.55.96.10.in-addr.arpa.", "PTR", answer=("2.55.96.10.in-addr.arpa. 5 IN PTR test-service-2.e2e.svc.cluster.local.",)),
    nxdomain("32.3.244.10.in-addr.arpa.", "PTR", zone="in-addr.arpa.", note="not ready"),
    nxdomain("1.2.3.4.in-addr.arpa.", "PTR", zone="in-addr.arpa.", note="unknown"),
    nxdomain("10.in-addr.arpa.", "PTR", zone="in-addr.arpa.", note="partial"),
    nxdomain("010.100.96.10.in-addr.arpa.", "PTR", zone="in-addr.arpa.", note="leading zero"),
    nodata("10.100.96.10.in-addr.arpa.", "A", zone="in-addr.arpa."),
    nxdomain("1.0.0.0.ip6.arpa.", "PTR", zone="ip6.arpa."),
    # Pod records (--pods insecure, the default): the namespace must exist.
    Case("10-244-1-10.shop.pod.cluster.local.", "A", answer=a("10-244-1-10.shop.pod.cluster.local.", "10.244.1.10")),
    Case("10-9-9-9.e2e.pod.cluster.local.", "A", answer=a("10-9-9-9.e2e.pod.cluster.local.", "10.9.9.9"), note="any address"),
    Case("fd00-10-244-1--a.shop.pod.cluster.local.", "AAAA", answer=a("fd00-10-244-1--a.shop.pod.cluster.local.", "fd00:10:244:1::a")),
    nodata("10-244-1-10.shop.pod.cluster.local.", "AAAA"),
    nxdomain("10-244-1-10.nosuchns.pod.cluster.local."),
    nxdomain("web.shop.pod.cluster.local.", note="not an address"),
    nxdomain("10-244-1-300.shop.pod.cluster.local."),
    nxdomain("x.10-244-1-10.shop.pod.cluster.local."),
    nodata("shop.pod.cluster.local.", "A"),
    nodata("pod.cluster.local.", "A"),
    # The zone: SOA, NS, dns-version, empty non-terminals, unknown names.
    Case("cluster.local.", "NS", answer=(f"cluster.local. 5 IN NS kube-dns.kube-system.svc.{CL}",), additional=a(f"kube-dns.kube-system.svc.{CL}", "10.96.0.10")),
    Case(f"ns.dns.{CL}", "A", answer=a(f"ns.dns.{CL}", "10.96.0.10"), note="SOA MNAME resolves"),
    nodata("cluster.local.", "A"),
    nodata("cluster.local.", "SRV"),
    Case("dns-version.cluster.local.", "TXT", answer=('dns-version.cluster.local. 28800 IN TXT "1.1.0"',)),
    nodata("dns-version.cluster.local.", "A"),
    nodata("svc.cluster.local.", "A"),
    nodata("shop.svc.cluster.local.", "A"),
    nodata("empty.svc.cluster.local.", "A", note="namespace without services"),
    nxdomain("nosuchns.svc.cluster.local."),
    nxdomain("nope.shop.svc.cluster.local."),
    nxdomain("foo.cluster.local."),
    nxdomain(f"a.b.{WEB}", note="too deep"),
    nxdomain(f"x.y.z.{WEB}", note="too deep"),
    nxdomain("*.shop.svc.cluster.local.", note="no wildcards"),
    nxdomain(f"*.{WEB}", note="no wildcards"),
    # e2e partial names arrive fully expanded by the search path; the wrong expansions are NXDOMAIN.
    nxdomain("kubernetes.default.svc.cluster.local.e2e.svc.cluster.local."),
    nxdomain("dns-test-service.e2e.svc.cluster.local.svc.cluster.local."),
    nxdomain("dns-test-service.e2e.cluster.local.", note="missing svc label"),
    # Names outside the zones, other classes, zone transfers.
    Case("example.com.", "A", "REFUSED"),
    Case("local.", "SOA", "REFUSED"),
    Case("arpa.", "SOA", "REFUSED"),
]
