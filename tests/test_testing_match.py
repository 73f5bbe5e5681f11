"""kdns.testing.match (pure): a name as the application writes it -> the names a pod asks."""

from __future__ import annotations

import pytest

from kdns.testing.match import expand, name_pattern, search_list

ZONE = "cluster.local"


def test_a_short_name_is_the_search_path_and_itself():
    assert expand("redis", ZONE, "app") == (
        "redis.app.svc.cluster.local", "redis.svc.cluster.local", "redis.cluster.local", "redis",
    )
    assert expand("Redis.App", ZONE, "shop") == (
        "redis.app.shop.svc.cluster.local", "redis.app.svc.cluster.local", "redis.app.cluster.local", "redis.app",
    )
    assert expand("api.stripe.com", "corp.internal", "default")[-1] == "api.stripe.com"
    assert search_list("corp.internal", "shop") == ("shop.svc.corp.internal", "svc.corp.internal", "corp.internal")


@pytest.mark.parametrize("name, expected", [
    ("redis.app.svc.cluster.local.", "redis.app.svc.cluster.local"),  # a trailing dot: absolute
    ("REDIS.app.svc.cluster.local", "redis.app.svc.cluster.local"),  # in the zone
    ("cluster.local", "cluster.local"),
    ("a.b.c.d.e.example", "a.b.c.d.e.example"),  # ndots:5: asked as written first
    ("api.stripe.com.", "api.stripe.com"),
])
def test_absolute_names_are_only_themselves(name, expected):
    assert expand(name, ZONE, "app") == (expected,)


def test_patterns():
    redis = name_pattern("redis", ZONE, "app")
    assert redis.matches("REDIS.app.svc.cluster.local.") and redis.matches("redis")
    assert not redis.matches("redis.other.svc.cluster.local") and not redis.matches("xredis")
    below = name_pattern("*.example.com", ZONE, "app")
    assert below.matches("api.example.com") and below.matches("a.b.example.com")
    assert below.matches("api.example.com.app.svc.cluster.local")
    assert not below.matches("example.com") and not below.matches("badexample.com")
    everything = name_pattern("*", ZONE, "app")
    assert everything.matches("anything.at.all") and everything.matches("")
    assert str(redis) == "redis"


@pytest.mark.parametrize("bad", ["", ".", "a..b", "re*dis", "*.*.example.com", "x" * 64, "a." * 130])
def test_names_that_are_not_names_are_refused(bad):
    with pytest.raises(ValueError):
        name_pattern(bad, ZONE, "app")
