"""The pure parts behind the Corefile settings once refused (tests/test_corefile_k8s.py has them
over sockets): fallthrough in `answer` and the responder, the cache policy, endpoints named
after their Pods, the UDP limit, and the option checks."""

from __future__ import annotations

import dns.message
import pytest

from kdns import answer, settings, wire
from kdns.cache import ForwardCache
from kdns.codes import NOERROR, NXDOMAIN, SERVFAIL, TXT, A
from kdns.config import CachePolicy, ConfigError, DnsConfig
from kdns.explain import View, explain
from kdns.model import Namespace, Port, Service, ServiceType, Synced, Upsert
from kdns.responder import UpstreamQuery
from kdns.sources.convert import convert
from kdns.state import DnsState
from kdns.upstream import UpstreamAnswer
from testkit.clock import ManualClock

WEB = Service("shop", "web", ServiceType.CLUSTER_IP, ("10.96.0.20",), (Port("http", "tcp", 80),))


def state(synced: bool = True, **config) -> DnsState:
    s = DnsState(DnsConfig(**{"forwarding": True, **config}), sources=("api",), now=1000)
    s.apply([Upsert(Namespace("shop")), Upsert(WEB), *([Synced("api")] if synced else [])], now=1000)
    return s


def ask(s: DnsState, name: str, qtype: int = A) -> answer.Answer:
    return answer.answer(s.snapshot, tuple(name.split(".")), qtype)


# -- fallthrough ---------------------------------------------------------------------------------


def test_only_nxdomain_under_a_fallthrough_zone_goes_upstream():
    s = state(cluster_fallthrough=("cluster.local",))
    assert ask(s, "legacy.shop.svc.cluster.local").upstream == "legacy.shop.svc.cluster.local"
    assert ask(s, "web.shop.svc.cluster.local").answer[0].data == "10.96.0.20"
    nodata = ask(s, "web.shop.svc.cluster.local", TXT)
    assert (nodata.rcode, nodata.answer, nodata.upstream) == (NOERROR, (), None)


def test_fallthrough_needs_the_zone_an_upstream_and_the_sync():
    narrow = state(cluster_fallthrough=("legacy.shop.svc.cluster.local",))
    assert ask(narrow, "legacy.shop.svc.cluster.local").upstream is not None
    assert ask(narrow, "other.shop.svc.cluster.local").rcode == NXDOMAIN
    assert ask(state(cluster_fallthrough=(".",), forwarding=False), "legacy.shop.svc.cluster.local").rcode == NXDOMAIN
    assert ask(state(False, cluster_fallthrough=(".",)), "legacy.shop.svc.cluster.local").rcode == SERVFAIL
    assert ask(state(), "legacy.shop.svc.cluster.local").rcode == NXDOMAIN  # no fallthrough at all


def test_external_fallthrough_is_the_external_zones_own():
    s = state(external_zones=("k8s.example.org",), external_fallthrough=("k8s.example.org",))
    assert ask(s, "old.k8s.example.org").upstream == "old.k8s.example.org"
    assert ask(s, "legacy.shop.svc.cluster.local").rcode == NXDOMAIN  # (the cluster zone has none)
    assert ask(s, "ns2.dns.k8s.example.org").rcode == NXDOMAIN  # under the apex: k8s_external's own, as CoreDNS


def test_the_responder_asks_upstream_and_keeps_the_upstreams_records_for_the_name():
    """No quick NXDOMAIN under a fallthrough zone, nothing memoised or kept for replay, and the
    cluster zone is not among the zones whose upstream records are dropped."""
    s = state(cluster_fallthrough=("cluster.local",))
    query = dns.message.make_query("legacy.shop.svc.cluster.local", "A").to_wire()
    for _ in range(2):
        got = s.responder.handle(query)
        assert isinstance(got, UpstreamQuery) and "cluster.local" not in got.zones and "in-addr.arpa" in got.zones
    assert s.responder.replay_entries == 0 and s.responder.memo_entries == 0
    plain = state()
    reply = dns.message.from_wire(plain.responder.handle(query))
    assert reply.rcode() == NXDOMAIN


def test_explain_says_a_fallthrough_name_is_forwarded():
    s = state(cluster_fallthrough=("cluster.local",))
    data = explain(View(s.snapshot, s.index), "legacy.shop.svc.cluster.local.", "A").to_json()
    assert data["answered_by"] == "forwarding" and "fallthrough" in data["reasons"][-1]
    assert not any("outside the zones" in r for r in data["reasons"])


# -- the UDP limit ---------------------------------------------------------------------------------


def test_udp_limit_takes_the_servers_own():
    assert wire.udp_limit((4096, False)) == 1232
    assert wire.udp_limit((4096, False), 600) == 600
    assert wire.udp_limit((800, False), 1000) == 800
    assert wire.udp_limit((100, False), 600) == 512 and wire.udp_limit(None, 600) == 512


# -- the cache policy -------------------------------------------------------------------------------


def put(policy: CachePolicy, name: str, *, rcode: int = NOERROR, ttl: int = 300, max_ttl: int = 30):
    c = ForwardCache(clock=ManualClock(), maxsize=10, max_ttl=max_ttl, stale_for=0, policy=policy)
    wire_name = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    records = 1 if rcode == NOERROR else 0
    got = UpstreamAnswer(rcode, b"\x00" * 8, (records, 0, 0), 0, (4,), (ttl,), min(ttl, max_ttl), False)
    return c.put((wire_name, 1, 1, False, False), got)


def test_cache_zones_and_disabled_kinds():
    only = CachePolicy(zones=("example.com",))
    assert put(only, "www.example.com") is not None and put(only, "www.example.net") is None
    policy = CachePolicy(no_success=("example.net",), no_denial=(".",))
    assert put(policy, "www.example.net") is None and put(policy, "www.example.com") is not None
    assert put(policy, "nope.example.com", rcode=NXDOMAIN) is None
    assert put(CachePolicy(), "nope.example.com", rcode=NXDOMAIN) is not None


def test_minimum_ttls_raise_lifetime_and_ttls_never_past_the_cap():
    entry = put(CachePolicy(success_min_ttl=10), "www.example.com", ttl=2)
    assert entry is not None and entry.expires - entry.stored == 10 and entry.answer.ttls == (10,)
    capped = put(CachePolicy(success_min_ttl=100), "www.example.com", ttl=2, max_ttl=30)
    assert capped is not None and capped.answer.lifetime == 30
    denial = put(CachePolicy(success_min_ttl=10), "nope.example.com", rcode=NXDOMAIN, ttl=2)
    assert denial is not None and denial.answer.lifetime == 2  # the success minimum only
    assert put(CachePolicy(denial_min_ttl=7), "nope.example.com", rcode=NXDOMAIN, ttl=2).answer.lifetime == 7


def test_denial_maximum_ttl():
    assert put(CachePolicy(denial_max_ttl=5), "nope.example.com", rcode=NXDOMAIN, ttl=60).answer.lifetime == 5
    assert put(CachePolicy(denial_max_ttl=5), "www.example.com", ttl=60).answer.lifetime == 30  # (success: cache-ttl)
    assert put(CachePolicy(denial_max_ttl=50), "nope.example.com", rcode=NXDOMAIN, ttl=60).answer.lifetime == 30


# -- endpoints named after their Pods ------------------------------------------------------------------


def slice_with(*endpoints: dict) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "s", "namespace": "shop", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4", "endpoints": list(endpoints)}


def test_endpoint_pod_names_at_conversion():
    obj = slice_with({"addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": "DB-0"}},
                     {"addresses": ["10.0.0.2"], "hostname": "own", "targetRef": {"kind": "Pod", "name": "db-1"}},
                     {"addresses": ["10.0.0.3"], "targetRef": {"kind": "Pod", "name": "a.b"}},
                     {"addresses": ["10.0.0.4"]})
    named = convert(obj, pod_names=True)
    assert [e.hostname for e in named.endpoints] == ["db-0", "own", "", ""]
    assert [e.hostname for e in convert(obj).endpoints] == ["", "own", "", ""]


# -- the options ---------------------------------------------------------------------------------------


def build(*flags: str):
    return settings.build_config(settings.parse_flags(["--manifests", "x.yaml", *flags]), environ={})


def test_options_reach_the_configuration():
    config = build("--cluster-fallthrough", "Legacy.Cluster.Local.", "--cluster-fallthrough", ".", "--external-fallthrough",
                   "k8s.example.org", "--udp-max-size", "600", "--cache-zone", "example.com", "--cache-disable-denial",
                   ".", "--cache-min-ttl", "5", "--no-endpoints", "--endpoint-pod-names")
    assert config.dns.cluster_fallthrough == ("legacy.cluster.local", ".") and config.dns.udp_max == 600
    assert config.dns.external_fallthrough == ("k8s.example.org",)
    assert config.cache_policy == CachePolicy(("example.com",), (), (".",), 5, 0)
    assert not config.endpoints and config.endpoint_pod_names
    assert build().cache_policy == CachePolicy() and build().dns.udp_max == 1232


@pytest.mark.parametrize(("flags", "message"), [
    (("--udp-max-size", "4096"), "--udp-max-size: must be between 512 and 1232 bytes, got 4096"),
    (("--udp-max-size", "100"), "--udp-max-size: must be between 512 and 1232 bytes, got 100"),
    (("--cluster-fallthrough", "bad name!"), "--cluster-fallthrough: not a domain name: 'bad name!'"),
    (("--cache-zone", "a..b"), "--cache-zone: not a domain name: 'a..b'"),
    (("--cache-min-ttl", "-1"), "--cache-min-ttl: must not be negative, got -1"),
])
def test_bad_values_are_named(flags, message):
    with pytest.raises(ConfigError) as err:
        build(*flags)
    assert str(err.value) == message
