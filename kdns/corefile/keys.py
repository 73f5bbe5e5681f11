"""Server block keys as CoreDNS reads them: `[scheme://]zone-or-CIDR[:port]`.

- The scheme names the transport: `dns://` (the default), and `tls://`, `quic://`, `grpc://`,
  `https://`, `https3://`, `unix://`, recognised so that a later step can refuse them with
  the key's file:line. A port left out is the transport's default (53 for dns, or whatever
  `-dns.port` says).
- The port is the text after the last `:` when it is a number.
- A CIDR (`10.0.0.0/24`, `fd00::/64`) becomes the reverse zones it covers. A prefix that is
  not on a label boundary (8 bits for IPv4, 4 for IPv6) is split into the subnets on the next
  boundary, one zone each, as CoreDNS does: `10.0.0.0/15` -> `0.10.in-addr.arpa` and
  `1.10.in-addr.arpa`.
- Zone names are lowercased, lose their trailing dot, and the root is ".".

`check_overlaps` applies CoreDNS's rule that one zone:port is served by one block.
"""

from __future__ import annotations

import ipaddress
import re

from kdns.corefile.model import CorefileError, Origin, ServerBlock, ServerKey

DNS_PORT = 53
# Default ports per transport, as CoreDNS sets them; None means "the DNS port" (-dns.port).
TRANSPORTS: dict[str, int | None] = {"dns": None, "tls": 853, "quic": 853, "grpc": 443, "https": 443, "https3": 443, "unix": None}
_LABEL = re.compile(r"[a-z0-9_*-]{1,63}\Z")
_PORT = re.compile(r"[+-]?[0-9]+\Z")


def parse_key(text: str, origin: Origin, default_port: int = DNS_PORT) -> tuple[list[ServerKey], str | None]:
    """The zones one key stands for, or an error message saying what is wrong with it."""
    transport = "dns"
    rest = text
    scheme, sep, after = text.partition("://")
    if sep:
        if scheme not in TRANSPORTS:
            return [], f"unknown scheme {scheme + '://'!r} in server key {text!r}: CoreDNS knows {', '.join(s + '://' for s in TRANSPORTS)}"
        transport, rest = scheme, after
        if "://" in rest:
            return [], f"server key {text!r} has two schemes"
    port: int | None = None
    colon = rest.rfind(":")
    if colon >= 0 and colon == len(rest) - 1:
        return [], f"server key {text!r} has nothing after its last ':'"
    if colon >= 0 and _PORT.match(rest[colon + 1 :]):
        port = int(rest[colon + 1 :])
        if not 0 <= port <= 65535:
            return [], f"port {port} in server key {text!r} is not between 0 and 65535"
        rest = rest[:colon]
    if port is None:
        port = TRANSPORTS[transport] or default_port
    if len(rest) > 255:
        return [], f"zone in server key {text!r} is longer than 255 characters"
    if "/" in rest:
        zones, problem = _cidr_zones(rest)
        if problem:
            return [], f"server key {text!r}: {problem}"
    else:
        zone, problem = normalise_zone(rest)
        if problem:
            return [], f"server key {text!r}: {problem}"
        zones = [zone]
    return [ServerKey(zone, port, transport, text, origin) for zone in zones], None


def normalise_zone(text: str) -> tuple[str, str | None]:
    """("example.org", None) for "Example.ORG." ; (".", None) for "" or "."; else a problem."""
    name = text.lower()
    if name in ("", "."):
        return ".", None
    name = name.removesuffix(".")
    if len(name) > 253:
        return "", f"{text!r} is longer than 253 characters"
    for label in name.split("."):
        if not label:
            return "", f"{text!r} has an empty label"
        if not _LABEL.match(label):
            if len(label) > 63:
                return "", f"label {label!r} of {text!r} is longer than 63 characters"
            return "", f"{text!r} is not a zone name (labels are letters, digits, '-' and '_')"
    return name, None


def _cidr_zones(text: str) -> tuple[list[str], str | None]:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return [], f"{text!r} is neither a zone name nor a CIDR (address/prefix)"
    if net.version == 6 and text.startswith((":", "0")):
        return [], f"invalid CIDR {text!r}"  # CoreDNS refuses these (IPv4-mapped and friends)
    return reverse_zones(net), None


def reverse_zones(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    """The reverse zones that together cover `net`, split on label boundaries like CoreDNS."""
    step = 8 if net.version == 4 else 4
    prefix = -(-net.prefixlen // step) * step
    subnets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [net] if prefix == net.prefixlen else list(net.subnets(new_prefix=prefix))
    return [_reverse(sub, step) for sub in subnets]


def _reverse(net: ipaddress.IPv4Network | ipaddress.IPv6Network, step: int) -> str:
    count = net.prefixlen // step
    if net.version == 4:
        labels = str(net.network_address).split(".")[:count]
        return ".".join([*reversed(labels), "in-addr", "arpa"])
    nibbles = net.network_address.exploded.replace(":", "")[:count]
    return ".".join([*reversed(nibbles), "ip6", "arpa"])


def _canonical_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def check_overlaps(blocks: list[ServerBlock], errors: list[CorefileError]) -> None:
    """CoreDNS's rule: each zone:port (per transport) is served by one block per listen address,
    and an unbound block (no `bind`) takes every address. Blocks with a `view` may share."""
    registered: dict[tuple[str, str, str, int], ServerKey] = {}  # (transport, zone, host, port)
    unbound: dict[tuple[str, str, int], ServerKey] = {}  # (transport, zone, port)
    for block in blocks:
        hosts = [_canonical_host(h) for h in block.listen_hosts]
        for key in block.keys:
            name = f"{key.zone}:{key.port}" if key.transport == "dns" else str(key)
            for host in hosts:
                exact = registered.get((key.transport, key.zone, host, key.port))
                if exact is not None:
                    if not block.filtered:
                        on = f" on {host}" if host else ""
                        errors.append(CorefileError(key.origin, f"{name}{on} is already served by the server block at {exact.origin}"))
                    continue
                overlap = None
                already = unbound.get((key.transport, key.zone, key.port))
                if already is not None:
                    overlap = already if host == "" else registered.get((key.transport, key.zone, "", key.port))
                if overlap is not None:
                    what = "every address" if host == "" else host
                    errors.append(CorefileError(key.origin, f"{name} on {what} overlaps the server block at {overlap.origin} "
                                                            "(a block without 'bind' listens on every address)"))
                elif not block.filtered:
                    registered[(key.transport, key.zone, host, key.port)] = key
                    unbound[(key.transport, key.zone, key.port)] = key
