"""The kube-dns ConfigMap (`stubDomains`, `upstreamNameservers`) as the Corefile it stands for.

GKE-style clusters and clusters that came from kube-dns configure DNS with a `kube-dns`
ConfigMap instead of a Corefile:

    data:
      stubDomains: '{"acme.local": ["1.2.3.4"], "corp.example": ["10.0.0.53:5353"]}'
      upstreamNameservers: '["8.8.8.8", "8.8.4.4"]'

This becomes the Corefile kubeadm's kube-dns migration wrote: a root block that serves the
cluster zone and forwards the rest to `upstreamNameservers` (or /etc/resolv.conf when the key
is absent), and one block per stub domain forwarding to its nameservers:

    .:53 {                                        <- what kube-dns does with no configuration
        errors
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        forward . 8.8.8.8 8.8.4.4                 <- data.upstreamNameservers
        cache 30
        loop
    }
    acme.local:53 {                               <- data.stubDomains (line of "acme.local")
        errors
        cache 30
        loop
        forward . 1.2.3.4
    }

kube-dns accepts only IP addresses (with an optional port) as nameservers, at most three
upstreams, and kube-dns's `federations` have no CoreDNS equivalent any more: each is an error
naming the key, as are malformed JSON and duplicate domains.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from kdns.corefile.keys import DNS_PORT, check_overlaps, normalise_zone
from kdns.corefile.model import Corefile, CorefileError, Directive, Origin, ServerBlock, ServerKey

KEYS = ("stubDomains", "upstreamNameservers", "federations")
MAX_UPSTREAMS = 3  # kube-dns's own limit


def _default_label(key: str) -> str:
    return f"kube-dns ConfigMap data.{key}" if key else "kube-dns ConfigMap"


def from_kube_dns(data: Mapping[str, object], *, label: Callable[[str], str] = _default_label,
                  cluster_domain: str = "cluster.local", default_port: int = DNS_PORT) -> Corefile:
    """The Corefile model a kube-dns ConfigMap's `data` stands for.

    `label(key)` names a data key in messages and origins (`label("")` names the ConfigMap)."""
    errors: list[CorefileError] = []
    warnings: list[CorefileError] = []
    base = Origin(label(""), 0)
    for key in data:
        if key not in KEYS:
            warnings.append(CorefileError(Origin(label(key), 0), "ignored: kube-dns reads only stubDomains and upstreamNameservers"))
    if "federations" in data:
        errors.append(CorefileError(Origin(label("federations"), 1),
                                    "kube-dns federations have no CoreDNS equivalent (the federation plugin was removed)"))

    upstream_origin = Origin(label("upstreamNameservers"), 1)
    upstreams = ["/etc/resolv.conf"]
    value = _json(data, "upstreamNameservers", label, errors)
    if value is not None:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            errors.append(CorefileError(upstream_origin, "expected a JSON list of nameserver addresses"))
        elif len(value) > MAX_UPSTREAMS:
            errors.append(CorefileError(upstream_origin, f"{len(value)} upstream nameservers: kube-dns allows at most {MAX_UPSTREAMS}"))
        else:
            problems = [p for p in map(_nameserver_problem, value) if p]
            errors += [CorefileError(upstream_origin, p) for p in problems]
            if not problems:
                upstreams = list(value)

    zone = cluster_domain.lower().rstrip(".")
    main = ServerBlock(
        (ServerKey(".", default_port, "dns", f".:{default_port}", base),),
        (
            Directive("errors", (), base),
            Directive("kubernetes", (zone, "in-addr.arpa", "ip6.arpa"), base, (
                Directive("pods", ("insecure",), base),
                Directive("fallthrough", ("in-addr.arpa", "ip6.arpa"), base),
            )),
            Directive("forward", (".", *upstreams), upstream_origin if value is not None else base),
            Directive("cache", ("30",), base),
            Directive("loop", (), base),
        ),
        base,
    )
    blocks = [main]
    stubs = _json(data, "stubDomains", label, errors, pairs=True)
    if stubs is not None:
        blocks += _stub_blocks(stubs, str(data["stubDomains"]), label("stubDomains"), default_port, errors)
    check_overlaps(blocks, errors)
    return Corefile(tuple(blocks), tuple(errors), tuple(warnings))


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs, in order, duplicates kept."""


def _stub_blocks(pairs: object, text: str, name: str, port: int, errors: list[CorefileError]) -> list[ServerBlock]:
    if not isinstance(pairs, _Pairs):
        errors.append(CorefileError(Origin(name, 1), "expected a JSON object: {\"domain\": [\"nameserver IP\", ...]}"))
        return []
    blocks = []
    seen: set[str] = set()
    for domain, servers in pairs:
        origin = Origin(name, _line_of(text, domain))
        zone, problem = normalise_zone(domain)
        if problem:
            errors.append(CorefileError(origin, f"stub domain {problem}"))
            continue
        if zone in seen:
            errors.append(CorefileError(origin, f"stub domain {domain!r} is given twice"))
            continue
        seen.add(zone)
        if not isinstance(servers, list) or not servers or not all(isinstance(s, str) for s in servers):
            errors.append(CorefileError(origin, f"stub domain {domain!r}: expected a non-empty list of nameserver addresses"))
            continue
        problems = [p for p in map(_nameserver_problem, servers) if p]
        if problems:
            errors += [CorefileError(origin, f"stub domain {domain!r}: {p}") for p in problems]
            continue
        blocks.append(ServerBlock(
            (ServerKey(zone, port, "dns", f"{domain}:{port}", origin),),
            (
                Directive("errors", (), origin),
                Directive("cache", ("30",), origin),
                Directive("loop", (), origin),
                Directive("forward", (".", *servers), origin),
            ),
            origin,
        ))
    return blocks


def _json(data: Mapping[str, object], key: str, label: Callable[[str], str], errors: list[CorefileError], pairs: bool = False) -> object:
    if key not in data:
        return None
    text = data[key]
    if not isinstance(text, str):
        errors.append(CorefileError(Origin(label(key), 0), "expected JSON text"))
        return None
    try:
        return json.loads(text, object_pairs_hook=_Pairs if pairs else None)
    except json.JSONDecodeError as exc:
        errors.append(CorefileError(Origin(label(key), exc.lineno), f"invalid JSON: {exc.msg}"))
        return None


def _line_of(text: str, domain: object) -> int:
    at = text.find(json.dumps(domain)) if isinstance(domain, str) else -1
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


_HOST_PORT = re.compile(r"\[(?P<v6>[^\]]+)\]:(?P<p6>[0-9]+)\Z|(?P<v4>[0-9.]+):(?P<p4>[0-9]+)\Z")


def _nameserver_problem(text: str) -> str | None:
    """None for an IP address with an optional port, else why not (kube-dns takes no names)."""
    host, port = text, None
    m = _HOST_PORT.match(text)
    if m:
        host, port = (m["v6"], m["p6"]) if m["v6"] else (m["v4"], m["p4"])
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"nameserver {text!r} is not an IP address (with an optional :port); kube-dns accepts no host names"
    if port is not None and not 1 <= int(port) <= 65535:
        return f"nameserver {text!r}: port {port} is not between 1 and 65535"
    return None
