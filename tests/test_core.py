"""The sans-IO core on its own: index updates and the memo of packed answers (the import rules
of the pure tier are tests/test_imports.py).

These tests drive `DnsState.apply` and `Responder.handle` directly with query bytes made by
dnspython, the way the transports do, without sockets: they pin what must stay true while
objects change (no stale answer after any change, no serial bump for a no-op, SERVFAIL
before the first sync).
"""

from __future__ import annotations

import dns.edns
import dns.message
import dns.name
import dns.rcode

from kdns import responder as responder_module
from kdns.config import DnsConfig
from kdns.index import Index
from kdns.model import Delete, Endpoint, EndpointSlice, Kind, Namespace, Port, Service, ServiceType, Synced, Upsert
from kdns.responder import Responder
from kdns.state import DnsState
from testkit.dnswire import rrs

CONFIG = DnsConfig(ns_addresses=("127.0.0.1",))
WEB = Service("shop", "web", ServiceType.CLUSTER_IP, ("10.96.0.20",), (Port("http", "tcp", 80),))
LINK = Service("shop", "link", ServiceType.EXTERNAL_NAME, external_name="web.shop.svc.cluster.local")
DB = Service("shop", "db", ServiceType.HEADLESS, ports=(Port("pg", "tcp", 5432),))


def db_slice(name: str, *ips: str, service: str = "db") -> EndpointSlice:
    return EndpointSlice("shop", name, service, 4, tuple(Endpoint((ip,)) for ip in ips), (Port("pg", "tcp", 5432),))


class Harness:
    """The published state as the server holds it (kdns.state), queried with real DNS bytes."""

    def __init__(self, *events, sources=(), config=CONFIG, now=1000):
        self.state = DnsState(config, sources=sources, now=now)
        self.state.apply(list(events), now=now)

    @property
    def index(self) -> Index:
        return self.state.index

    @property
    def responder(self) -> Responder:
        return self.state.responder

    def apply(self, *events, now=2000):
        return self.state.apply(list(events), now=now)

    def ask(self, name: str, rdtype: str = "A") -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        reply = self.responder.handle(query.to_wire())
        return dns.message.from_wire(reply)

    def serial(self) -> int:
        return self.ask("cluster.local", "SOA").answer[0][0].serial


def test_unchanged_update_changes_nothing():
    h = Harness(Upsert(WEB), Upsert(DB), Upsert(db_slice("db-1", "10.244.0.1")))
    before = h.index.snapshot
    change = h.apply(Upsert(WEB), Upsert(db_slice("db-1", "10.244.0.1")), Upsert(Namespace("shop")))
    assert change.empty and h.index.snapshot is before
    assert h.serial() == before.serial


def test_serial_grows_even_if_the_clock_goes_back():
    h = Harness(Upsert(WEB))
    first = h.serial()
    h.apply(Upsert(Service("shop", "web", ServiceType.CLUSTER_IP, ("10.96.0.21",))), now=10)
    assert h.serial() == first + 1


def test_answers_follow_every_change_after_being_memoised():
    h = Harness(Upsert(WEB), Upsert(LINK), Upsert(DB), Upsert(db_slice("db-1", "10.244.0.1")))
    questions = [
        ("web.shop.svc.cluster.local", "A"),
        ("link.shop.svc.cluster.local", "A"),
        ("_http._tcp.web.shop.svc.cluster.local", "SRV"),
        ("db.shop.svc.cluster.local", "A"),
        ("1.0.244.10.in-addr.arpa", "PTR"),
        ("2.0.244.10.in-addr.arpa", "PTR"),
        ("20.0.96.10.in-addr.arpa", "PTR"),
        ("21.0.96.10.in-addr.arpa", "PTR"),
    ]
    for q in questions:  # fill the memo
        h.ask(*q)
    h.apply(
        Upsert(Service("shop", "web", ServiceType.CLUSTER_IP, ("10.96.0.21",), (Port("http", "tcp", 8080),))),
        Upsert(db_slice("db-1", "10.244.0.2")),
    )
    assert rrs(h.ask("web.shop.svc.cluster.local").answer) == {"web.shop.svc.cluster.local. 5 IN A 10.96.0.21"}
    assert "web.shop.svc.cluster.local. 5 IN A 10.96.0.21" in rrs(h.ask("link.shop.svc.cluster.local").answer)
    assert rrs(h.ask("_http._tcp.web.shop.svc.cluster.local", "SRV").answer) == {
        "_http._tcp.web.shop.svc.cluster.local. 5 IN SRV 0 100 8080 web.shop.svc.cluster.local."
    }
    assert rrs(h.ask("db.shop.svc.cluster.local").answer) == {"db.shop.svc.cluster.local. 5 IN A 10.244.0.2"}
    assert h.ask("1.0.244.10.in-addr.arpa", "PTR").rcode() == dns.rcode.NXDOMAIN
    assert rrs(h.ask("2.0.244.10.in-addr.arpa", "PTR").answer) == {
        "2.0.244.10.in-addr.arpa. 5 IN PTR 10-244-0-2.db.shop.svc.cluster.local."
    }
    assert h.ask("20.0.96.10.in-addr.arpa", "PTR").rcode() == dns.rcode.NXDOMAIN
    assert h.ask("21.0.96.10.in-addr.arpa", "PTR").rcode() == dns.rcode.NOERROR


def test_negative_answers_carry_the_current_serial():
    h = Harness(Upsert(WEB))
    old = h.ask("nope.shop.svc.cluster.local").authority[0][0].serial
    h.apply(Upsert(DB), Upsert(db_slice("db-1", "10.244.0.1")))
    new = h.ask("nope.shop.svc.cluster.local").authority[0][0].serial
    assert new > old and new == h.serial()


def test_names_appear_and_vanish_with_their_namespace():
    h = Harness()
    assert h.ask("shop.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert h.ask("10-1-2-3.shop.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN
    h.apply(Upsert(Namespace("shop")))
    assert h.ask("shop.svc.cluster.local").rcode() == dns.rcode.NOERROR
    assert rrs(h.ask("10-1-2-3.shop.pod.cluster.local").answer) == {"10-1-2-3.shop.pod.cluster.local. 5 IN A 10.1.2.3"}
    h.apply(Delete((Kind.NAMESPACE, "", "shop")))
    assert h.ask("shop.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert h.ask("10-1-2-3.shop.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_a_slice_moving_to_another_service_updates_both():
    other = Service("shop", "other", ServiceType.HEADLESS)
    h = Harness(Upsert(DB), Upsert(other), Upsert(db_slice("s", "10.244.0.1")))
    assert h.ask("db.shop.svc.cluster.local").rcode() == dns.rcode.NOERROR
    h.apply(Upsert(db_slice("s", "10.244.0.1", service="other")))
    assert h.ask("db.shop.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert rrs(h.ask("other.shop.svc.cluster.local").answer) == {"other.shop.svc.cluster.local. 5 IN A 10.244.0.1"}


def test_ptr_shared_by_two_services_survives_one_of_them():
    a = Service("shop", "a", ServiceType.HEADLESS)
    b = Service("shop", "b", ServiceType.HEADLESS)
    h = Harness(Upsert(a), Upsert(b), Upsert(db_slice("sa", "10.244.0.1", service="a")), Upsert(db_slice("sb", "10.244.0.1", service="b")))
    assert len(h.ask("1.0.244.10.in-addr.arpa", "PTR").answer[0]) == 2
    h.apply(Delete(a.key))
    assert rrs(h.ask("1.0.244.10.in-addr.arpa", "PTR").answer) == {"1.0.244.10.in-addr.arpa. 5 IN PTR 10-244-0-1.b.shop.svc.cluster.local."}


def test_verified_pod_names_count_every_pod_on_an_address():
    """Two Pods on one address (a restart): the name lives until the last one goes."""
    from kdns.config import PodsMode
    from kdns.model import Pod

    h = Harness(config=DnsConfig(pods=PodsMode.VERIFIED), now=1)
    name = "10-244-0-9.shop.pod.cluster.local"
    h.apply(Upsert(Pod("shop", "old", ("10.244.0.9",))))
    h.apply(Upsert(Pod("shop", "new", ("10.244.0.9",))))
    h.apply(Delete((Kind.POD, "shop", "old")))
    assert rrs(h.ask(name).answer) == {f"{name}. 5 IN A 10.244.0.9"}
    h.apply(Delete((Kind.POD, "shop", "new")))
    assert h.ask(name).rcode() == dns.rcode.NXDOMAIN


def test_servfail_not_nxdomain_before_the_first_sync():
    h = Harness(Upsert(WEB), sources=("api",))
    assert h.ask("nope.shop.svc.cluster.local").rcode() == dns.rcode.SERVFAIL
    assert h.ask("1.2.3.4.in-addr.arpa", "PTR").rcode() == dns.rcode.SERVFAIL
    assert rrs(h.ask("web.shop.svc.cluster.local").answer) == {"web.shop.svc.cluster.local. 5 IN A 10.96.0.20"}
    h.apply(Synced("api"))
    assert h.ask("nope.shop.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_reverse_zone_ns_follows_kube_dns():
    kube_dns = Service("kube-system", "kube-dns", ServiceType.CLUSTER_IP, ("10.96.0.10",))
    h = Harness(Upsert(kube_dns))
    for zone in ("cluster.local", "in-addr.arpa", "ip6.arpa"):
        assert rrs(h.ask(zone, "NS").additional) == {"kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10"}
    h.apply(Upsert(Service("kube-system", "kube-dns", ServiceType.CLUSTER_IP, ("10.96.0.11",))))
    for zone in ("cluster.local", "in-addr.arpa", "ip6.arpa"):
        assert rrs(h.ask(zone, "NS").additional) == {"kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.11"}
    h.apply(Delete(kube_dns.key))
    for zone in ("cluster.local", "in-addr.arpa", "ip6.arpa"):
        reply = h.ask(zone, "NS")
        assert rrs(reply.answer) == {f"{zone}. 5 IN NS ns.dns.cluster.local."}
        assert rrs(reply.additional) == {"ns.dns.cluster.local. 5 IN A 127.0.0.1"}


def test_strange_labels_are_nxdomain_not_servfail(caplog):
    """Non-ASCII digits and scoped addresses parse as numbers/addresses in Python: not here."""
    h = Harness(Upsert(WEB))
    for labels in ([b"\xb2", b"0", b"96", b"10", b"in-addr", b"arpa", b""], [b"fe80--1%eth0", b"shop", b"pod", b"cluster", b"local", b""]):
        query = dns.message.make_query(dns.name.Name(labels), "PTR" if b"arpa" in labels else "AAAA")
        reply = dns.message.from_wire(h.responder.handle(query.to_wire()))
        assert reply.rcode() == dns.rcode.NXDOMAIN
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_memory_of_replies_is_bounded(monkeypatch):
    """Padded queries are not kept whole, and the memo counts entries, not names."""
    h = Harness(Upsert(WEB))
    padded = dns.message.make_query("web.shop.svc.cluster.local", "A", use_edns=0, payload=4096, options=[dns.edns.GenericOption(65001, b"x" * 2000)])
    h.responder.handle(padded.to_wire(max_size=65535))
    assert not h.responder.replies
    monkeypatch.setattr(responder_module, "MEMO_ENTRIES", 50)
    for qtype in range(1000, 1200):  # one name, many types
        h.responder.handle(dns.message.make_query("web.shop.svc.cluster.local", qtype).to_wire())
    assert sum(len(types) for types in h.responder.memo.values()) <= 50


# -- property: incremental updates end where a rebuild from scratch ends --------------------

NSS = ["a", "b", "kube-system"]
SVCS = ["x", "y", "kube-dns"]
V4 = ["10.0.0.1", "10.0.0.2", "10.96.0.10"]
V6 = ["fd00::1", "fd00::2"]
ZONES_CONFIG = DnsConfig(zones=("cluster.local", "corp.example"), ns_addresses=("127.0.0.1",))


def random_event(rng):
    r = rng.random()
    ns, svc = rng.choice(NSS), rng.choice(SVCS)
    ports = tuple(rng.sample([Port("http", "tcp", 80), Port("dns", "udp", 53), Port("", "tcp", 9)], rng.randrange(3)))
    if r < 0.3:
        kind = rng.randrange(3)
        if kind == 0:
            ips = tuple(rng.sample(V4, 1)) + tuple(rng.sample(V6, rng.randrange(2)))
            return Upsert(Service(ns, svc, ServiceType.CLUSTER_IP, ips, ports))
        if kind == 1:
            return Upsert(Service(ns, svc, ServiceType.HEADLESS, ports=ports))
        target = rng.choice([f"{rng.choice(SVCS)}.{rng.choice(NSS)}.svc.cluster.local", "foo.example.com", "h1.x.a.svc.corp.example"])
        return Upsert(Service(ns, svc, ServiceType.EXTERNAL_NAME, external_name=target))
    if r < 0.6:
        family = rng.choice([4, 6])
        endpoints = tuple(Endpoint((rng.choice(V4 if family == 4 else V6),), rng.choice(["", "h1", "h2"])) for _ in range(rng.randrange(4)))
        return Upsert(EndpointSlice(ns, rng.choice(["s1", "s2", "s3"]), svc, family, endpoints, ports))
    if r < 0.65:
        return Upsert(Namespace(rng.choice(NSS + ["c"])))
    kind = rng.choice([Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.NAMESPACE])
    if kind is Kind.NAMESPACE:
        return Delete((kind, "", rng.choice(NSS + ["c"])))
    return Delete((kind, ns, svc if kind is Kind.SERVICE else rng.choice(["s1", "s2", "s3"])))


QUESTIONS = [(f"{ip_name}", "PTR") for ip_name in ("1.0.0.10.in-addr.arpa", "2.0.0.10.in-addr.arpa", "10.0.96.10.in-addr.arpa")]
for zone in ZONES_CONFIG.zones:
    QUESTIONS += [(zone, "NS"), (f"ns.dns.{zone}", "A")]
    for ns in NSS:
        QUESTIONS.append((f"{ns}.svc.{zone}", "A"))
        for svc in SVCS:
            base = f"{svc}.{ns}.svc.{zone}"
            QUESTIONS += [(base, "A"), (base, "AAAA"), (base, "SRV"), (f"_http._tcp.{base}", "SRV"), (f"h1.{base}", "A")]


def test_incremental_updates_match_a_rebuild_and_the_memo_stays_exact():
    """Random batches of changes: the index equals one built from the final objects, and
    every memoised answer equals a fresh one. Seeded, so a failure reproduces."""
    import random

    for seed in range(25):
        rng = random.Random(seed)
        state = DnsState(ZONES_CONFIG, now=1)
        index, responder = state.index, state.responder
        objects = {}
        for step in range(12):
            batch = [random_event(rng) for _ in range(rng.randrange(1, 4))]
            for event in batch:
                if isinstance(event, Upsert):
                    objects[event.obj.key] = event.obj
                else:
                    objects.pop(event.key, None)
            for name, rdtype in QUESTIONS[step % 3 :: 3]:  # fill the memo with a third of them
                responder.handle(dns.message.make_query(name, rdtype).to_wire())
            state.apply(batch, now=10 + step)
            rebuilt = Index(ZONES_CONFIG, now=1)
            rebuilt.apply([Upsert(obj) for obj in objects.values()], now=1)
            assert dict(index.snapshot.names) == dict(rebuilt.snapshot.names), (seed, step)
            assert dict(index.snapshot.ptr) == dict(rebuilt.snapshot.ptr), (seed, step)
            assert index.snapshot.namespaces == rebuilt.snapshot.namespaces, (seed, step)
            fresh = Responder(rebuilt.snapshot)
            for name, rdtype in rng.sample(QUESTIONS, 25):
                query = dns.message.make_query(name, rdtype)
                query.id = 1
                wire = query.to_wire()
                mine, theirs = dns.message.from_wire(responder.handle(wire)), dns.message.from_wire(fresh.handle(wire))
                theirs.authority = mine.authority = []  # the serials differ by construction
                assert mine.to_text() == theirs.to_text(), (seed, step, name, rdtype)
