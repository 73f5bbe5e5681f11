"""kdns.pool on its own (pure): an upstream group's options, the order of its tries, when an
upstream is down, the probe's question; and how `kdns serve` reads the options (settings)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from kdns import pool
from kdns.pool import DEFAULT, PoolOptions
from kdns.settings import ConfigError, build_config, parse_flags


def test_sequential_is_list_order_healthy_first():
    assert pool.order([True, True, True], "sequential", 7, random.Random(1)) == [0, 1, 2]
    assert pool.order([False, True, True], "sequential", 7, random.Random(1)) == [1, 2, 0]
    assert pool.order([False, False], "sequential", 0, random.Random(1)) == [0, 1]  # nothing healthy: still asked


def test_round_robin_starts_at_the_turn_as_coredns():
    rng = random.Random(1)
    assert [pool.order([True] * 3, "round_robin", turn, rng)[0] for turn in range(6)] == [0, 1, 2, 0, 1, 2]
    assert pool.order([True] * 4, "round_robin", 2, rng) == [2, 0, 1, 3]  # CoreDNS: p[i], p[:i], p[i+1:]
    assert pool.order([True, False, True], "round_robin", 1, rng) == [0, 2, 1]  # the down one last


def test_random_is_a_permutation_and_uses_every_order():
    rng = random.Random(5)
    firsts = Counter(pool.order([True] * 3, "random", 0, rng)[0] for _ in range(300))
    assert set(firsts) == {0, 1, 2} and min(firsts.values()) > 50
    assert sorted(pool.order([True, False, True], "random", 0, rng)) == [0, 1, 2]
    assert pool.order([True, False, True], "random", 0, rng)[-1] == 1


@pytest.mark.parametrize(("transport", "client_tcp", "tcp"), [
    ("udp", False, False), ("udp", True, False), ("client", False, False), ("client", True, True),
    ("tcp", False, True), ("tcp", True, True)])
def test_over_tcp(transport, client_tcp, tcp):
    assert pool.over_tcp(transport, client_tcp) is tcp


def test_down_after():
    assert not pool.down_after(1, 2) and pool.down_after(2, 2) and pool.down_after(1, 1)
    assert not pool.down_after(10**6, 0)  # max_fails 0: never


def test_probe_question_and_delay():
    assert pool.probe_question(DEFAULT) == b"\x00\x00\x02\x00\x01"  # . IN NS
    assert pool.probe_question(PoolOptions(health_domain="example.org.")) == b"\x07example\x03org\x00\x00\x02\x00\x01"
    assert pool.probe_delay(PoolOptions(health_check=2.0)) == 2.0
    assert pool.probe_delay(PoolOptions(health_check=0.0)) == pool.MIN_PROBE_GAP  # never a busy loop


def test_parse_items():
    got = pool.parse_items(["policy=sequential", " max-fails=0", "transport=tcp", "health-check=1.5",
                            "health-domain=Example.ORG", "health-recursion=false"], DEFAULT)
    assert got == PoolOptions("sequential", "tcp", 0, 1.5, "example.org.", False)
    assert pool.parse_items([], PoolOptions(policy="round_robin")) == PoolOptions(policy="round_robin")  # the base's


@pytest.mark.parametrize(("items", "message"), [
    (["policy=fastest"], "policy must be one of random, round_robin, sequential"),
    (["transport=quic"], "transport must be one of udp, client, tcp"),
    (["max-fails=-1"], "max-fails must be between"),
    (["max-fails=two"], "max-fails: not a number"),
    (["health-check=nan"], "health-check must be between"),
    (["health-recursion=maybe"], "health-recursion: not true or false"),
    (["health-domain=bad..name"], "health-domain is not a domain name"),
    (["speed=11"], "expected KEY=VALUE with KEY one of policy"),
    (["policy"], "expected KEY=VALUE"),
    (["policy=random", "policy=sequential"], "policy given twice"),
])
def test_parse_items_errors(items, message):
    with pytest.raises(ValueError, match=message):
        pool.parse_items(items, DEFAULT)


# -- through the settings -------------------------------------------------------------------


def config(*flags: str):
    return build_config(parse_flags(["--manifests", "demo", *flags]))


def error(*flags: str) -> str:
    with pytest.raises(ConfigError) as info:
        config(*flags)
    return str(info.value)


def test_settings_build_each_groups_options():
    cfg = config("--upstream", "127.0.0.1:5300", "--upstream-policy", "round_robin", "--upstream-max-fails", "4",
                 "--stub-domain", "corp.example=127.0.0.2,transport=tcp,max-fails=1", "--stub-domain", "corp.example=127.0.0.3",
                 "--stub-domain", "lab.example=127.0.0.4", "--upstream-except", "hidden.example")
    assert cfg.upstream_options == PoolOptions(policy="round_robin", max_fails=4)
    assert dict(cfg.stub_options) == {"corp.example": PoolOptions("round_robin", "tcp", 1),
                                      "lab.example": PoolOptions(policy="round_robin", max_fails=4)}
    assert dict(cfg.stub_domains) == {"corp.example": (("127.0.0.2", 53), ("127.0.0.3", 53)),
                                      "lab.example": (("127.0.0.4", 53),), "hidden.example": ()}
    assert "hidden.example" in cfg.dns.stub_domains  # forwarded (to nobody: SERVFAIL), not REFUSED as outside names


@pytest.mark.parametrize(("flags", "message"), [
    (["--stub-domain", "corp.example=127.0.0.2,policy=fast"], "stub-domain"),
    (["--stub-domain", "corp.example=127.0.0.2,policy=sequential", "--stub-domain", "corp.example=127.0.0.3,policy=random"],
     "differ from entry 1's"),
    (["--upstream-except", "corp.example", "--stub-domain", "corp.example=127.0.0.2"], "also a stub-domain"),
    (["--upstream-except", "svc.cluster.local"], "lies inside a zone kdns serves itself"),
    (["--upstream-except", "not a zone"], "not a domain name"),
    (["--upstream-max-fails", "-1"], "upstream-max-fails"),
    (["--upstream-health-check", "-1"], "upstream-health-check"),
    (["--upstream-health-domain", "a..b"], "upstream-health-domain"),
])
def test_settings_errors_name_the_option(flags, message):
    assert message in error(*flags)
