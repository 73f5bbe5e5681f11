"""Names as an application writes them, matched against the names a pod's resolver asks.

A pod in namespace NS has `search NS.svc.ZONE svc.ZONE ZONE` and `options ndots:5` in its
resolv.conf, so `getaddrinfo("redis")` sends `redis.NS.svc.ZONE`, then `redis.svc.ZONE`,
`redis.ZONE` and finally `redis` itself, until one of them exists. A fault or a query-log
filter given "redis" must match all four (`NamePattern`), or it would silently match
nothing. The rule, in `name_pattern`:

* `redis.` (a trailing dot): that name only; it is absolute, as in a zone file.
* a name in the zone (`redis.app.svc.cluster.local`, `cluster.local` itself), or one with at
  least five dots (ndots:5: the resolver asks it as written first): that name only.
* any other name (`redis`, `redis.app`, `redis.app.svc`, `api.stripe.com`): the name with
  each search domain appended, and the name itself.
* `*.SUFFIX`: any name strictly below one of the names SUFFIX stands for by the rules above
  (`*.example.com` matches `api.example.com` and `api.example.com.NS.svc.ZONE`).
* `*`: every name.

Case and a trailing dot in the question do not matter. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

NDOTS = 5  # a pod's resolv.conf: names with this many dots are asked as written first


@dataclass(frozen=True, slots=True)
class NamePattern:
    """What one name as written (`text`) stands for: exact names and `.suffix`es."""

    text: str
    names: frozenset[str]  # lowercased, no trailing dot
    suffixes: tuple[str, ...] = ()  # each starts with a dot; "" (in `everything`) matches all
    everything: bool = False

    def matches(self, qname: str) -> bool:
        """Whether a question name (any case, trailing dot or not) is one of these names."""
        name = qname.rstrip(".").lower()
        return self.everything or name in self.names or (bool(self.suffixes) and name.endswith(self.suffixes))

    def __str__(self) -> str:
        return self.text


def search_list(zone: str, namespace: str) -> tuple[str, ...]:
    """A pod's search domains in `namespace`."""
    return (f"{namespace}.svc.{zone}", f"svc.{zone}", zone)


def expand(name: str, zone: str, namespace: str) -> tuple[str, ...]:
    """The names a pod in `namespace` may ask for `name` as written (see the module's rules)."""
    text = name.strip().lower()
    if text.endswith("."):
        return (_checked(text[:-1], name),)
    text = _checked(text, name)
    zone = zone.strip(".").lower()
    if text == zone or text.endswith("." + zone) or text.count(".") >= NDOTS:
        return (text,)
    return (*(f"{text}.{domain}" for domain in search_list(zone, namespace)), text)


def name_pattern(name: str, zone: str, namespace: str) -> NamePattern:
    """The pattern for `name` as an application writes it, `*.suffix` or `*` (module docstring)."""
    if not isinstance(name, str):
        raise TypeError(f"a name is a str, got {type(name).__name__}")
    text = name.strip()
    if text == "*":
        return NamePattern(name, frozenset(), everything=True)
    if text.startswith("*."):
        return NamePattern(name, frozenset(), tuple("." + n for n in expand(text[2:], zone, namespace)))
    return NamePattern(name, frozenset(expand(text, zone, namespace)))


def _checked(text: str, given: str) -> str:
    """`text` if it is a domain name one could ask for, else ValueError."""
    labels = text.split(".")
    if not text or any(not label for label in labels):
        raise ValueError(f"not a domain name: {given!r}")
    if any("*" in label for label in labels):
        raise ValueError(f"{given!r}: '*' is allowed only as a whole first label ('*.example.com') or alone ('*')")
    if len(text) > 253 or any(len(label) > 63 for label in labels):
        raise ValueError(f"{given!r}: too long for a domain name (253 characters, 63 a label)")
    return text
