"""The name grammar: labels, the names kdns derives from IP addresses, and reverse names.

Names inside kdns are lowercase text without the trailing dot; "" is the root. Relative
names (below a zone) are dotted text too: "web.default.svc" below "cluster.local".
"""

from __future__ import annotations

import ipaddress
import re

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")

IN_ADDR_ARPA = "in-addr.arpa"
IP6_ARPA = "ip6.arpa"
REVERSE_ZONES = (IN_ADDR_ARPA, IP6_ARPA)


def is_label(text: str) -> bool:
    """A DNS-1123 label: what Kubernetes accepts as a Service or namespace name."""
    return bool(_LABEL.match(text))


def is_subdomain(text: str) -> bool:
    """A DNS-1123 subdomain: dot-separated labels, 253 characters at most."""
    return 0 < len(text) <= 253 and all(is_label(label) for label in text.split("."))


def canonical_ip(text: str) -> str | None:
    """The canonical text of an IP address (`2001:db8::1`), or None if `text` is not one.

    IPv6 addresses with a zone (`fe80::1%eth0`) are not addresses a Service or a Pod has."""
    if "%" in text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def ip_family(ip: str) -> int:
    return 6 if ":" in ip else 4


def dashed_ip(ip: str) -> str:
    """The label CoreDNS gives an endpoint without a hostname: `10-1-2-3`, `2001-db8--1`.

    A dashed IPv6 address that would begin or end with a dash gets a `0` there, so the
    label stays a valid hostname (`::1` → `0--1`, `2001:db8::` → `2001-db8--0`).
    """
    label = ip.replace(".", "-").replace(":", "-")
    if label.startswith("-"):
        label = "0" + label
    if label.endswith("-"):
        label += "0"
    return label


def pod_labels(ip: str) -> tuple[str, ...]:
    """The spellings of a pod name kdns recognises as canonical for `ip`: the dashed form,
    and for IPv6 also the plain one without the `0` that keeps the label from ending in `-`
    (what `tr ":." "-"` makes of an address, as the Kubernetes e2e tests do)."""
    plain = ip.replace(".", "-").replace(":", "-")
    dashed = dashed_ip(ip)
    return (dashed,) if dashed == plain else (dashed, plain)


def ip_from_dashed(label: str) -> str | None:
    """The inverse of `dashed_ip` for pod names: `10-1-2-3` → `10.1.2.3`, else None."""
    if "." in label or ":" in label or "%" in label or not label.isascii():
        return None
    if label.count("-") == 3:
        v4 = _ipv4(label.replace("-", "."))
        if v4 is not None:
            return v4
    try:
        return str(ipaddress.IPv6Address(label.replace("-", ":")))
    except ValueError:
        return None


def _ipv4(text: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def reverse_name(ip: str) -> str:
    """`10.0.0.1` → `1.0.0.10.in-addr.arpa`; IPv6 → its 32 nibbles under `ip6.arpa`."""
    return ipaddress.ip_address(ip).reverse_pointer


def ip_from_reverse(rel: tuple[str, ...], zone: str) -> str | None:
    """The address a reverse name stands for, given its labels relative to `zone`.

    Only complete names count: four decimal octets (no leading zeros) under in-addr.arpa,
    32 single hex nibbles under ip6.arpa. Anything else is None.
    """
    if zone == IN_ADDR_ARPA:
        if len(rel) != 4 or not all(o.isascii() and o.isdigit() and o == str(int(o)) for o in rel):
            return None
        return _ipv4(".".join(reversed(rel)))
    if zone == IP6_ARPA:
        if len(rel) != 32 or not all(len(n) == 1 and n in "0123456789abcdef" for n in rel):
            return None
        digits = "".join(reversed(rel))
        return str(ipaddress.IPv6Address(int(digits, 16)))
    return None


def to_wire(name: str) -> bytes:
    """Wire form of a lowercase dotted name (`a.b` → `\\x01a\\x01b\\x00`).

    Latin-1, as query names are decoded (`wire.Query.labels`): every byte of a client's name
    comes back as itself. Names from Kubernetes and the config are ASCII."""
    if not name:
        return b"\x00"
    out = bytearray()
    for label in name.split("."):
        raw = label.encode("latin-1")
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out)


def join(*parts: str) -> str:
    """Join dotted names, skipping empty parts (the root)."""
    return ".".join(p for p in parts if p)


def within(name: str, zone: str) -> bool:
    """Whether absolute lowercase `name` is `zone` or below it ("." holds every name)."""
    return zone == "." or name == zone or name.endswith("." + zone)
