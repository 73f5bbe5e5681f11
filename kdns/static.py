"""Records for names outside the zones: checking them, and building them from hosts lines.

Two origins make `StaticRecords` values today (a third, a Corefile's `hosts` directive with
its inline lines and k3s's NodeHosts, will use `hosts_records` as they do):

* the test double's `record(name, rtype, value, ttl)`: `rrset` checks one call's input and
  says what is wrong in a ValueError, before anything is sent to the index;
* `kdns serve --hosts FILE`: `kdns.hosts.parse_hosts` reads the lines, `hosts_records` turns
  them into A/AAAA records per name and PTR claims per address, as CoreDNS's hosts plugin.

The index (kdns.tables) keeps these beside the Kubernetes names and answers them ahead of
forwarding. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from kdns import codes, names
from kdns.model import Kind, Rrset, StaticRecords

# What `record()` takes; the text of each type as dig writes it.
TYPES = {"A": codes.A, "AAAA": codes.AAAA, "CNAME": codes.CNAME, "TXT": codes.TXT, "SRV": codes.SRV, "MX": codes.MX,
         "PTR": codes.PTR, "NS": codes.NS}
MAX_VALUES = 256  # records of one name and type
MAX_TTL = 2**31 - 1  # RFC 2181
_LABEL = re.compile(r"[a-z0-9_]([-a-z0-9_]{0,61}[a-z0-9_])?\Z")


def owner_name(text: str) -> str:
    """An owner name as kdns keeps it: lowercase, absolute, no trailing dot. Underscores are
    allowed (`_http._tcp.example.com`), and `*` as the first label (a wildcard: any one label
    there, where no exact name exists). ValueError otherwise."""
    name = text.strip().rstrip(".").lower() if isinstance(text, str) else ""
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) or (i == 0 and label == "*") for i, label in enumerate(labels)):
        raise ValueError(f"not a domain name: {text!r}")
    return name


def target_name(text: Any) -> str:
    """A name a record points to (CNAME, SRV, MX, PTR, NS targets): no wildcard."""
    name = owner_name(text)
    if name.startswith("*"):
        raise ValueError(f"a wildcard cannot be a target: {text!r}")
    return name


def rtype_of(text: str | int) -> int:
    """The type number of "A", "mx", 28...; ValueError listing the types kdns takes."""
    if isinstance(text, int) and text in TYPES.values():
        return text
    number = TYPES.get(text.upper()) if isinstance(text, str) else None
    if number is None:
        raise ValueError(f"unknown record type {text!r}; kdns holds {', '.join(TYPES)}")
    return number


def rrset(name: str, rtype: str | int, values: Any, ttl: int) -> Rrset:
    """One record set from a `record()` call: `values` is one value or a list of them, each
    as dig writes it ("10 mail.example.com" for MX, "0 5 443 api.example.com" for SRV) or as
    a tuple ((10, "mail.example.com")). ValueError saying which value is wrong."""
    owner = owner_name(name)
    number = rtype_of(rtype)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL:
        raise ValueError(f"TTL must be a whole number of seconds, 0-{MAX_TTL}: {ttl!r}")
    items = list(values) if isinstance(values, (list, tuple, set, frozenset)) and not _one_tuple(number, values) else [values]
    if len(items) > MAX_VALUES:
        raise ValueError(f"at most {MAX_VALUES} records of one name and type, got {len(items)}")
    parsed = tuple(dict.fromkeys(_value(number, item) for item in items))
    if number == codes.CNAME and len(parsed) > 1:
        raise ValueError(f"{owner}: a name has one CNAME at most, got {len(parsed)}")
    return Rrset(owner, number, ttl, parsed)


def _one_tuple(rtype: int, values: Any) -> bool:
    """(10, "mail.example.com") is one MX, not two values."""
    return rtype in (codes.MX, codes.SRV) and isinstance(values, tuple) and bool(values) and isinstance(values[0], int)


def _value(rtype: int, value: Any) -> Any:
    try:
        if rtype in (codes.A, codes.AAAA):
            ip = names.canonical_ip(value) if isinstance(value, str) else None
            if ip is None or (names.ip_family(ip) == 4) != (rtype == codes.A):
                raise ValueError(f"not an IPv{4 if rtype == codes.A else 6} address")
            return ip
        if rtype in (codes.CNAME, codes.PTR, codes.NS):
            return target_name(value)
        if rtype == codes.TXT:
            return _txt(value)
        fields = value.split() if isinstance(value, str) else list(value)
        if rtype == codes.MX:
            preference, exchange = fields
            return (_number(preference, 65535), target_name(exchange))
        priority, weight, port, target = fields
        return (_number(priority, 65535), _number(weight, 65535), _number(port, 65535), target_name(target))
    except (ValueError, TypeError, AttributeError) as exc:
        detail = str(exc) if isinstance(exc, ValueError) and "unpack" not in str(exc) else _shape(rtype)
        raise ValueError(f"{_type_text(rtype)} value {value!r}: {detail}") from None


def _txt(value: Any) -> tuple[str, ...]:
    """A TXT record: its character-strings. A longer string is cut into pieces of at most 255
    bytes (between characters), as a zone file would need them written: SPF and DKIM records
    often are longer."""
    parts = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for part in parts:
        if not isinstance(part, str):
            raise TypeError("expected text")
        piece: list[str] = []
        size = 0
        for char in part:
            width = len(char.encode())
            if size + width > 255:
                out.append("".join(piece))
                piece, size = [], 0
            piece.append(char)
            size += width
        out.append("".join(piece))
    if sum(len(p.encode()) + 1 for p in out) > 4000:
        raise ValueError("more than 4000 bytes")
    return tuple(out)


def _number(text: Any, top: int) -> int:
    number = int(text)
    if not 0 <= number <= top:
        raise ValueError(f"{number} is not 0-{top}")
    return number


def _shape(rtype: int) -> str:
    return {codes.MX: "expected 'PREFERENCE EXCHANGE'", codes.SRV: "expected 'PRIORITY WEIGHT PORT TARGET'"}.get(rtype, "invalid")


def _type_text(rtype: int) -> str:
    return next(text for text, number in TYPES.items() if number == rtype)


def reverse_claim(name: str) -> str | None:
    """The address a reverse name (`4.3.2.1.in-addr.arpa`) stands for, or None."""
    for zone in names.REVERSE_ZONES:
        if name.endswith("." + zone):
            return names.ip_from_reverse(tuple(name[: -len(zone) - 1].split(".")), zone)
    return None


def name_records(name: str, rrsets: Iterable[Rrset], rank: int = 0) -> StaticRecords:
    """The test double's records of one name (every type given for it so far). PTR records
    on a reverse name become claims on that address. ValueError for a CNAME beside other
    records (RFC 1034: an alias has nothing else)."""
    rrsets = list(rrsets)
    if len(rrsets) > 1 and any(rr.rtype == codes.CNAME for rr in rrsets):
        raise ValueError(f"{name}: a CNAME cannot sit beside other records; remove them first (value None)")
    plain, ptrs, ttl = [], [], 0
    for rr in rrsets:
        ip = reverse_claim(rr.name) if rr.rtype == codes.PTR else None
        if ip is None:
            plain.append(rr)
        else:
            ptrs += [(ip, target) for target in rr.values]
            ttl = rr.ttl
    return StaticRecords(Kind.RECORD, name, tuple(plain), tuple(ptrs), ttl, rank)


def hosts_records(entries: Sequence[tuple[str, Sequence[str]]], origin: str, *, ttl: int, reverse: bool = True,
                  rank: int = 0, kind: Kind = Kind.HOSTS) -> StaticRecords:
    """What hosts lines answer, as CoreDNS's hosts plugin: each name gets the addresses of
    every line naming it (file order, de-duplicated), A or AAAA by family; with `reverse`,
    each address gets a PTR to every name its lines give it. `entries` are (address, names)
    pairs with canonical addresses and lowercase absolute names (kdns.hosts.parse_hosts)."""
    by_name: dict[str, dict[str, None]] = {}
    by_ip: dict[str, dict[str, None]] = {}
    for ip, hostnames in entries:
        for name in hostnames:
            by_name.setdefault(name, {})[ip] = None
            if reverse:
                by_ip.setdefault(ip, {})[name] = None
    rrsets = []
    for name, ips in by_name.items():
        v4 = tuple(ip for ip in ips if ":" not in ip)
        v6 = tuple(ip for ip in ips if ":" in ip)
        if v4:
            rrsets.append(Rrset(name, codes.A, ttl, v4))
        if v6:
            rrsets.append(Rrset(name, codes.AAAA, ttl, v6))
    ptrs = tuple((ip, name) for ip, hostnames in by_ip.items() for name in hostnames)
    return StaticRecords(kind, origin, tuple(rrsets), ptrs, ttl, rank)
