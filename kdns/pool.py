"""How one group of upstreams is asked: its options, the order of tries, when one is down.

kdns forwards to groups of upstreams: the default one (--upstream, --resolv-conf) and one
per stub domain. Each group has `PoolOptions`, CoreDNS's forward options by kdns names:

- `policy`: the order upstreams are tried in for one question. `random` (a fresh random
  order each time: CoreDNS's default), `round_robin` (successive questions start at
  successive upstreams, the rest following in list order, as CoreDNS's), `sequential`
  (always in list order: the first healthy one gets every question);
- `transport`: `udp` (UDP first, TCP when the reply is truncated: kdns's default and
  CoreDNS's prefer_udp), `client` (TCP when the client asked over TCP, else UDP then TCP on
  truncation: CoreDNS's default), `tcp` (TCP only: CoreDNS's force_tcp);
- `max_fails`: failed exchanges in a row (questions or probes) after which an upstream is
  down: tried only when no healthy one is left, and probed every `health_check` seconds
  until it answers; 0: never down. (CoreDNS counts only its probes, which it starts at
  the first failed question; either way a dead upstream is down after a few failures.)
- `health_domain`, `health_recursion`: the probe asks `<health_domain> IN NS`, with RD set
  unless `health_recursion` is off (CoreDNS's `domain NAME` and `no_rec`).

A stub domain's options are the default group's unless its --stub-domain entry says
otherwise: `DOMAIN=HOST[:PORT],policy=sequential,max-fails=1` (`parse_items`).

Pure: no I/O, no clock; randomness comes in as a parameter (a `random.Random`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from kdns import names
from kdns.options import POOL_POLICIES as POLICIES
from kdns.options import POOL_TRANSPORTS as TRANSPORTS

MIN_PROBE_GAP = 0.01  # seconds between probes at least (health_check 0: back to back, but not a busy loop)
MAX_FAILS_LIMIT = 2**32 - 1


@dataclass(frozen=True, slots=True)
class PoolOptions:
    policy: str = "random"
    transport: str = "udp"
    max_fails: int = 2
    health_check: float = 0.5  # seconds between probes of a down upstream
    health_domain: str = "."  # the probe's question: <health_domain> IN NS
    health_recursion: bool = True  # RD in the probe

    def problem(self) -> str | None:
        """What is wrong with these options, or None."""
        if self.policy not in POLICIES:
            return f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}"
        if self.transport not in TRANSPORTS:
            return f"transport must be one of {', '.join(TRANSPORTS)}, got {self.transport!r}"
        if not 0 <= self.max_fails <= MAX_FAILS_LIMIT:
            return f"max-fails must be between 0 and {MAX_FAILS_LIMIT}, got {self.max_fails}"
        if not 0 <= self.health_check <= 3600 or self.health_check != self.health_check:
            return f"health-check must be between 0 and 3600 seconds, got {self.health_check}"
        if self.health_domain != "." and not names.is_subdomain(self.health_domain.rstrip(".")):
            return f"health-domain is not a domain name: {self.health_domain!r}"
        return None


DEFAULT = PoolOptions()
# The KEY=VALUE items of a --stub-domain entry: key -> (field, kind)
KEYS: dict[str, tuple[str, type]] = {
    "policy": ("policy", str),
    "transport": ("transport", str),
    "max-fails": ("max_fails", int),
    "health-check": ("health_check", float),
    "health-domain": ("health_domain", str),
    "health-recursion": ("health_recursion", bool),
}


def normal_domain(text: str) -> str:
    """A probe domain as kept: lowercase, absolute ('.' for the root)."""
    text = text.strip().lower()
    return "." if text in (".", "") else text.rstrip(".") + "."


def parse_items(items: Sequence[str], base: PoolOptions) -> PoolOptions:
    """`base` with the KEY=VALUE `items` applied; ValueError saying what is wrong."""
    changes: dict[str, object] = {}
    for item in items:
        key, sep, value = item.strip().partition("=")
        key, value = key.strip(), value.strip()
        if key not in KEYS or not sep:
            raise ValueError(f"expected KEY=VALUE with KEY one of {', '.join(KEYS)}, got {item.strip()!r}")
        name, kind = KEYS[key]
        if name in changes:
            raise ValueError(f"{key} given twice")
        try:
            if kind is bool:
                if value.lower() not in ("true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                changes[name] = value.lower() in ("true", "yes", "on")
            elif kind is int:
                changes[name] = int(value)
            elif kind is float:
                changes[name] = float(value)
            else:
                changes[name] = normal_domain(value) if name == "health_domain" else value
        except ValueError:
            raise ValueError(f"{key}: not {'true or false' if kind is bool else 'a number'}: {value!r}") from None
    options = replace(base, **changes)  # type: ignore[arg-type]
    problem = options.problem()
    if problem:
        raise ValueError(problem)
    return options


class Shuffler(Protocol):
    def shuffle(self, x: list[int], /) -> None: ...


def order(healthy: Sequence[bool], policy: str, turn: int, rng: Shuffler) -> list[int]:
    """The indexes of a group's upstreams in the order to try them for one question: the
    healthy ones in the policy's order, then the down ones (asked only when nothing else
    is left). `turn` counts the group's questions (round_robin starts at turn % count)."""
    count = len(healthy)
    if policy == "random":
        listed = list(range(count))
        rng.shuffle(listed)
    elif policy == "round_robin" and count:
        first = turn % count
        listed = [first, *range(first), *range(first + 1, count)]
    else:
        listed = list(range(count))
    return [i for i in listed if healthy[i]] + [i for i in listed if not healthy[i]]


def over_tcp(transport: str, client_tcp: bool) -> bool:
    """Whether to ask over TCP straight away (else UDP, then TCP if truncated)."""
    return transport == "tcp" or (transport == "client" and client_tcp)


def down_after(fails: int, max_fails: int) -> bool:
    """Whether `fails` failures in a row make an upstream down."""
    return max_fails > 0 and fails >= max_fails


def probe_delay(options: PoolOptions) -> float:
    """Seconds between two probes of a down upstream."""
    return max(MIN_PROBE_GAP, options.health_check)


def probe_question(options: PoolOptions) -> bytes:
    """The probe's question in wire form: <health_domain> IN NS."""
    labels = [label for label in options.health_domain.split(".") if label]
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\x00\x00\x02\x00\x01"
