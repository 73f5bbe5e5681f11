"""kdns.corefile: server keys (zones, ports, schemes, CIDRs), CoreDNS's one-block-per-zone rule,
and which block serves a query (longest zone wins), as tables."""

from __future__ import annotations

import pytest

from kdns.corefile import Origin, parse_key, parse_text

AT = Origin("Corefile", 1)


@pytest.mark.parametrize("key, expected", [
    (".", ["dns://.:53"]),
    (".:53", ["dns://.:53"]),
    (":53", ["dns://.:53"]),  # an empty zone is the root, as in CoreDNS
    ("example.org", ["dns://example.org:53"]),
    ("Example.ORG.:5353", ["dns://example.org:5353"]),
    ("dns://example.org", ["dns://example.org:53"]),
    ("dns://.:1053", ["dns://.:1053"]),
    ("_tcp.Example.org", ["dns://_tcp.example.org:53"]),
    ("tls://.", ["tls://.:853"]),
    ("quic://.", ["quic://.:853"]),
    ("grpc://example.org", ["grpc://example.org:443"]),
    ("https://example.org", ["https://example.org:443"]),
    ("https3://.:8443", ["https3://.:8443"]),
    ("unix://.", ["unix://.:53"]),
    ("example.org:0", ["dns://example.org:0"]),
    # CIDR keys: reverse zones; prefixes off a label boundary split like CoreDNS's plugin/pkg/cidr
    ("10.0.0.0/8:53", ["dns://10.in-addr.arpa:53"]),
    ("10.0.0.0/24", ["dns://0.0.10.in-addr.arpa:53"]),
    ("192.168.1.0/24:5353", ["dns://1.168.192.in-addr.arpa:5353"]),
    ("10.0.0.0/15", ["dns://0.10.in-addr.arpa:53", "dns://1.10.in-addr.arpa:53"]),
    ("10.1.2.3/31", ["dns://2.2.1.10.in-addr.arpa:53", "dns://3.2.1.10.in-addr.arpa:53"]),
    ("0.0.0.0/0", ["dns://in-addr.arpa:53"]),
    ("2001:db8::/32", ["dns://8.b.d.0.1.0.0.2.ip6.arpa:53"]),
    ("2001:db8::/30", [f"dns://{n}.b.d.0.1.0.0.2.ip6.arpa:53" for n in "89ab"]),
    ("2001:db8::/29", [f"dns://{n}.b.d.0.1.0.0.2.ip6.arpa:53" for n in "89abcdef"]),
    ("2001:db8::/115", [f"dns://{n}.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa:53" for n in "01"]),
    ("fd00::/8:5353", ["dns://d.f.ip6.arpa:5353"]),
])
def test_keys(key, expected):
    keys, problem = parse_key(key, AT)
    assert problem is None
    assert [str(k) for k in keys] == expected
    assert all(k.text == key and k.origin == AT for k in keys)


def test_a_cidr_off_the_boundary_gives_every_zone_it_covers():
    keys, _ = parse_key("10.9.3.0/18", AT)  # host bits dropped: 10.9.0.0/18 = 64 /24s
    assert len(keys) == 64
    assert [k.zone for k in keys[:3]] == ["0.9.10.in-addr.arpa", "1.9.10.in-addr.arpa", "2.9.10.in-addr.arpa"]
    assert keys[-1].zone == "63.9.10.in-addr.arpa"


def test_the_default_port_is_a_parameter_like_coredns_dns_port_flag():
    assert [str(k) for k in parse_key(".", AT, default_port=1053)[0]] == ["dns://.:1053"]
    assert [str(k) for k in parse_key("tls://.", AT, default_port=1053)[0]] == ["tls://.:853"]


@pytest.mark.parametrize("key, problem", [
    ("example.org:", "server key 'example.org:' has nothing after its last ':'"),
    ("example.org:99999", "port 99999 in server key 'example.org:99999' is not between 0 and 65535"),
    ("foo://example.org", ("unknown scheme 'foo://' in server key 'foo://example.org': CoreDNS knows dns://, tls://, quic://, "
                          "grpc://, https://, https3://, unix://")),
    ("dns://tls://x", "server key 'dns://tls://x' has two schemes"),
    ("a..b", "server key 'a..b': 'a..b' has an empty label"),
    ("a,b", "server key 'a,b': 'a,b' is not a zone name (labels are letters, digits, '-' and '_')"),
    ("10.0.0/24", "server key '10.0.0/24': '10.0.0/24' is neither a zone name nor a CIDR (address/prefix)"),
    ("::fFFF:B:F/115", "server key '::fFFF:B:F/115': invalid CIDR '::fFFF:B:F/115'"),
    ("x" * 64 + ".org", f"server key '{'x' * 64}.org': label '{'x' * 64}' of '{'x' * 64}.org' is longer than 63 characters"),
])
def test_bad_keys(key, problem):
    assert parse_key(key, AT) == ([], problem)


def errors(text: str) -> list[str]:
    return [str(e) for e in parse_text(text).errors]


@pytest.mark.parametrize("text, expected", [
    ("a.org {\n log\n}\na.org:53 {\n log\n}", ["Corefile:4: a.org:53 is already served by the server block at Corefile:1"]),
    ("a.org a.org {\n log\n}", ["Corefile:1: a.org:53 is already served by the server block at Corefile:1"]),
    ("0.10.in-addr.arpa {\n log\n}\n10.0.0.0/15 {\n log\n}",
     ["Corefile:4: 0.10.in-addr.arpa:53 is already served by the server block at Corefile:1"]),
    ("a.org {\n log\n}\na.org {\n bind 127.0.0.1\n}",
     ["Corefile:4: a.org:53 on 127.0.0.1 overlaps the server block at Corefile:1 (a block without 'bind' listens on every address)"]),
    ("a.org {\n bind 127.0.0.1\n}\na.org {\n log\n}",
     ["Corefile:4: a.org:53 on every address overlaps the server block at Corefile:1 (a block without 'bind' listens on every address)"]),
    ("a.org {\n bind 127.0.0.1\n}\na.org {\n bind 127.000.0.1\n}", []),  # not an IP: an interface name, say
    ("a.org {\n bind 127.0.0.1 ::1\n}\na.org {\n bind ::0:1\n}", ["Corefile:4: a.org:53 on ::1 is already served by the server block at Corefile:1"]),
    # what CoreDNS allows
    ("a.org {\n log\n}\na.org:5353 {\n log\n}", []),
    ("a.org {\n bind 127.0.0.1\n}\na.org {\n bind 127.0.0.2\n}", []),
    ("tls://a.org:53 {\n log\n}\na.org:53 {\n log\n}", []),
    ("a.org {\n log\n}\na.org {\n view internal {\n  expr incidr(client_ip(), '10.0.0.0/8')\n }\n}", []),
])
def test_one_block_per_zone_and_port(text, expected):
    assert errors(text) == expected


ROUTES = """
.:53 {
    forward . 1.1.1.1
}
cluster.local:53 {
    log
}
svc.cluster.local {
    errors
}
10.0.0.0/8 {
    whoami
}
example.org:5353 {
    log
}
internal.example:53 {
    bind 127.0.0.1
}
tls://.:853 {
    log
}
"""


@pytest.mark.parametrize("qname, port, kwargs, block_line", [
    ("web.default.svc.cluster.local.", 53, {}, 8),
    ("Web.Default.SVC.Cluster.Local", 53, {}, 8),
    ("svc.cluster.local", 53, {}, 8),
    ("web.default.pod.cluster.local", 53, {}, 5),
    ("cluster.local", 53, {}, 5),
    ("xcluster.local", 53, {}, 2),  # a label boundary, not a string suffix
    ("example.com", 53, {}, 2),
    (".", 53, {}, 2),
    ("4.3.2.10.in-addr.arpa", 53, {}, 11),
    ("4.3.2.11.in-addr.arpa", 53, {}, 2),
    ("www.example.org", 5353, {}, 14),
    ("www.example.com", 5353, {}, None),  # CoreDNS answers REFUSED: nothing serves it on 5353
    ("x.internal.example", 53, {"address": "127.0.0.1"}, 17),
    ("x.internal.example", 53, {"address": "10.1.1.1"}, 2),
    ("x.internal.example", 53, {}, 17),
    ("example.com", 853, {"transport": "tls"}, 20),
    ("example.com", 853, {}, None),
])
def test_longest_zone_wins(qname, port, kwargs, block_line):
    corefile = parse_text(ROUTES).check()
    block = corefile.server_for(qname, port, **kwargs)
    assert (block.origin.line if block else None) == block_line
