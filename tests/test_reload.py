"""The reload plan (kdns/reload.py) on its own: two configurations in, what a reload must do out.

Plain synchronous tests, no sockets: configurations are built the way `kdns serve` builds
them (kdns.settings, from option values), and every option of the table is covered, so an
option added later is planned for (or makes a test say what value it needs).
"""

from __future__ import annotations

import argparse

import pytest

from kdns import reload, settings
from kdns.options import OPTIONS
from kdns.reload import FORWARDER_FIELDS
from testkit.options import non_default
from testkit.repo import DEMO

ENVIRON: dict[str, str] = {}  # no KUBECONFIG, not in a pod


def configure(**values):
    """The ServeConfig of a config file holding `values` (keys with dashes as underscores)."""
    data = {name.replace("_", "-"): value for name, value in values.items()}
    return settings.build(settings.merge(argparse.Namespace(), data), ENVIRON)


def every_path(config) -> set[str]:
    """The dotted path of every value of a ServeConfig ("ttl" is "dns.ttl")."""
    paths = set()
    for name in config.__slots__:
        value = getattr(config, name)
        if name in ("dns", "http"):
            paths |= {f"{name}.{inner}" for inner in value.__slots__}
        else:
            paths.add(name)
    return paths


BASE = {"manifests": [str(DEMO)]}


def test_the_same_configuration_needs_nothing():
    old = configure(**BASE)
    plan = reload.plan(old, configure(**BASE))
    assert plan.config == old and plan.kept == ()
    assert not (plan.new_index or plan.new_forwarder or plan.new_logging or plan.new_rate_limiter)


# (in-cluster also brings the pod's resolv.conf as upstreams, unless resolv-conf says none.)
@pytest.mark.parametrize("option", [o for o in OPTIONS if o.name not in ("kubeconfig", "apiserver", "in-cluster")],
                         ids=lambda o: o.name)
def test_each_option_decides_the_fields_the_table_names(option, tmp_path):
    """A non-default value changes the ServeConfig only at the paths `fields` declares, and
    somewhere: the table is what the reload plan (and the restart-only rule) relies on."""
    old = configure()
    new = configure(**{option.name: non_default(option, tmp_path)})
    changed = {path for path in every_path(old) if reload.get(old, path) != reload.get(new, path)}
    assert changed and changed <= set(option.paths), (option.name, changed)


@pytest.mark.parametrize("option", [o for o in OPTIONS if not o.reload], ids=lambda o: o.name)
def test_restart_only_options_are_kept_and_named(option, tmp_path):
    """A reload that changes an option taking effect only at start keeps the running value
    and names the option; nothing else changes."""
    base = {"kubeconfig": {}, "apiserver": {}, "in-cluster": {"resolv-conf": "none"}}.get(option.name, BASE)
    old = configure(**base)
    plan = reload.plan(old, configure(**{**base, option.name: non_default(option, tmp_path)}))
    assert option.name in plan.kept
    assert plan.config == old
    assert not (plan.new_index or plan.new_forwarder or plan.new_logging or plan.new_rate_limiter)


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.reload], ids=lambda o: o.name)
def test_live_options_are_applied(option, tmp_path):
    old = configure(**BASE)
    new = configure(**{**BASE, option.name: non_default(option, tmp_path)})
    plan = reload.plan(old, new)
    assert plan.kept == () and plan.config == new


def test_what_each_difference_requires(tmp_path):
    old = configure(**BASE)
    assert reload.plan(old, configure(**BASE, ttl=30)).new_index
    assert reload.plan(old, configure(**BASE, zone=["corp.example"])).new_index
    upstream = reload.plan(old, configure(**BASE, upstream=["127.0.0.1:5399"]))
    assert upstream.new_forwarder and upstream.new_index  # forwarding changes the answers to outside names
    cache = reload.plan(old, configure(**BASE, cache_size=5))
    assert cache.new_forwarder and not cache.new_index
    assert reload.plan(old, configure(**BASE, log_format="json")).new_logging
    assert reload.plan(old, configure(**BASE, log_level="debug")).new_logging
    assert reload.plan(old, configure(**BASE, rrl_rate=10.0)).new_rate_limiter
    assert reload.plan(old, configure(**BASE, rrl_slip=3)).new_rate_limiter
    tcp = reload.plan(old, configure(**BASE, tcp_idle_timeout=3.0))
    assert tcp.config.tcp_idle_timeout == 3.0
    assert not (tcp.new_index or tcp.new_forwarder or tcp.new_logging or tcp.new_rate_limiter)


def test_a_reload_mixing_both_kinds_applies_one_and_keeps_the_other():
    old = configure(**BASE)
    plan = reload.plan(old, configure(**BASE, ttl=30, listen=["127.0.0.1:5300"], pods="verified"))
    assert plan.kept == ("listen", "pods")
    assert plan.config.dns.ttl == 30 and plan.new_index
    assert plan.config.listen == old.listen and plan.config.dns.pods == old.dns.pods


def test_forwarder_fields_are_the_forwarding_options():
    """Every option that decides a forwarder field makes a new forwarder, and only those."""
    deciding = {o.name for o in OPTIONS if set(o.paths) & set(FORWARDER_FIELDS)}
    assert deciding == {"upstream", "resolv-conf", "stub-domain", "upstream-timeout", "cache-ttl", "cache-size", "cache-max-bytes", "serve-stale",
                        "upstream-max-concurrent", "upstream-except", "upstream-default", "upstream-policy", "upstream-transport", "upstream-max-fails",
                        "upstream-health-check", "upstream-health-domain", "upstream-health-recursion", "cache-zone",
                        "cache-disable-success", "cache-disable-denial", "cache-min-ttl", "cache-denial-min-ttl", "cache-denial-ttl"}
