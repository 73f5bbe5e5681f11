"""Option values for tests: a valid value other than its default for every option of
`kdns serve` (kdns/options.py), by the option's kind."""

from __future__ import annotations

from pathlib import Path

from kdns import settings
from testkit.repo import DEMO


def string_values(tmp_path: Path) -> dict[str, object]:
    """A valid non-default value for every string option that is not a choice."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search example.org\nnameserver 127.0.0.53\nnameserver ::1\n")
    return {
        "manifests": [str(DEMO), str(tmp_path / "more")],
        "kubeconfig": str(tmp_path / "kubeconfig"),
        "apiserver": "http://127.0.0.1:6443",
        "listen": ["127.0.0.1:5300", "[::1]:5301"],
        "zone": ["example.local", "cluster.test"],
        "namespaces": ["shop,web", "kube-system"],
        "labels": "tier in (web,api),dns!=off",
        "upstream": ["127.0.0.1:5399", "::1", "[::1]:5400"],
        "resolv-conf": str(resolv),
        "stub-domain": ["corp.example=127.0.0.4:5300,policy=sequential,max-fails=1", "lab.example=::1"],
        "upstream-except": ["blocked.example", "lab.example.net"],
        "upstream-default": ["open.corp.example", "lab.example.org"],
        "upstream-health-domain": "example.org",
        "health": "127.0.0.1:8080",
        "ready": ":8181",
        "metrics": "[::1]:9153",
        "allow-recursion": ["10.0.0.0/8", "fd00::/8"],
        "allow-transfer": ["10.0.0.0/8", "fd00::/8"],
        "explain": "127.0.0.1:8053",
        "external-zone": ["k8s.example.org", "lb.example.net"],
        "external-apex": "ns",
        "hosts": [str(tmp_path / "hosts"), str(tmp_path / "more-hosts")],
        "ingress-controller": ["nginx=ingress-nginx/ingress-nginx-controller", "*=traefik/traefik"],
        "ingress-class": ["nginx", "internal"],
        "cluster-fallthrough": ["legacy.cluster.local", "."],
        "external-fallthrough": ["k8s.example.org"],
        "cache-zone": ["example.org", "example.net"],
        "cache-disable-success": ["cluster.local"],
        "cache-disable-denial": ["cluster.local", "in-addr.arpa"],
    }


def non_default(option: settings.Option, tmp_path: Path):
    """A valid value different from the option's default, by the option's kind."""
    strings = string_values(tmp_path)
    if option.name in strings:
        return strings[option.name]
    if option.choices:
        return next(c for c in option.choices if c != option.default)
    if option.kind is bool:
        return not option.default
    if option.kind is int:
        return option.default - 208 if option.name == "udp-max-size" else option.default * 2 + 1  # (1232 is its most)
    if option.kind is float:
        return option.default * 2 + 0.5
    raise AssertionError(f"no test value for the string option {option.name!r}: add one to string_values()")
