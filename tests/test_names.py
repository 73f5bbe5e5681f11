"""kdns/names.py, the name grammar, on its own: plain synchronous tests, no server."""

from __future__ import annotations

import ipaddress

import pytest

from kdns import names


@pytest.mark.parametrize(("text", "ok"), [
    ("web", True), ("a", True), ("1kubernetes", True), ("a-b", True), ("a" * 63, True),
    ("", False), ("-a", False), ("a-", False), ("A", False), ("a_b", False), ("a.b", False), ("a" * 64, False), ("é", False),
])
def test_label_is_dns_1123(text, ok):
    assert names.is_label(text) is ok


def test_subdomain_is_dotted_labels_of_at_most_253_characters():
    assert names.is_subdomain("web.shop")
    longest = ".".join(["a" * 63] * 3 + ["a" * 61])
    assert len(longest) == 253 and names.is_subdomain(longest)
    assert not names.is_subdomain(longest + "a")
    assert not names.is_subdomain("") and not names.is_subdomain("web..shop") and not names.is_subdomain("web.")


@pytest.mark.parametrize(("text", "canonical"), [
    ("10.0.0.1", "10.0.0.1"), ("2001:DB8:0::1", "2001:db8::1"), ("::ffff:10.0.0.1", "::ffff:a00:1"),
    ("fe80::1%eth0", None), ("10.0.0.256", None), ("010.0.0.1", None), ("web", None), ("", None),
])
def test_canonical_ip(text, canonical):
    assert names.canonical_ip(text) == canonical


@pytest.mark.parametrize(("ip", "label"), [
    ("10.1.2.3", "10-1-2-3"), ("2001:db8::1", "2001-db8--1"), ("::1", "0--1"), ("2001:db8::", "2001-db8--0"), ("::", "0--0"),
])
def test_dashed_ip_is_a_valid_label_and_reads_back(ip, label):
    assert names.dashed_ip(ip) == label
    assert names.is_label(label)
    assert names.ip_from_dashed(label) == ip


def test_pod_labels_add_the_plain_ipv6_spelling():
    assert names.pod_labels("10.1.2.3") == ("10-1-2-3",)
    assert names.pod_labels("2001:db8::") == ("2001-db8--0", "2001-db8--")
    assert names.ip_from_dashed("2001-db8--") == "2001:db8::"


@pytest.mark.parametrize("label", ["10-1-2", "10-1-2-3-4", "10.1.2.3", "web", "1-2-3-999", "10-1-2-3%x", "１-2-3-4", ""])
def test_ip_from_dashed_refuses_what_is_not_an_address(label):
    assert names.ip_from_dashed(label) is None


@pytest.mark.parametrize("ip", ["10.0.0.1", "192.168.100.200", "2001:db8::1", "fd00:10:96::100:a"])
def test_reverse_names_round_trip(ip):
    reverse = names.reverse_name(ip)
    zone = names.IN_ADDR_ARPA if "." in ip else names.IP6_ARPA
    assert reverse.endswith("." + zone)
    rel = tuple(reverse[: -len(zone) - 1].split("."))
    assert names.ip_from_reverse(rel, zone) == str(ipaddress.ip_address(ip))


@pytest.mark.parametrize(("rel", "zone"), [
    (("1", "0", "0"), names.IN_ADDR_ARPA),  # a partial name: a zone cut, not an address
    (("1", "0", "0", "010"), names.IN_ADDR_ARPA),  # leading zero
    (("1", "0", "0", "256"), names.IN_ADDR_ARPA),
    (("x", "0", "0", "10"), names.IN_ADDR_ARPA),
    (("٣", "0", "0", "10"), names.IN_ADDR_ARPA),  # a digit, but not ASCII
    (("1",) * 31, names.IP6_ARPA),
    (("A",) * 32, names.IP6_ARPA),  # names are lowercase inside kdns
    (("10",) + ("0",) * 31, names.IP6_ARPA),
    (("1", "0", "0", "10"), "cluster.local"),
])
def test_ip_from_reverse_takes_only_complete_names(rel, zone):
    assert names.ip_from_reverse(rel, zone) is None


def test_wire_form_is_latin_1_labels():
    assert names.to_wire("") == b"\x00"
    assert names.to_wire("a.bc") == b"\x01a\x02bc\x00"
    assert names.to_wire("\xe9") == b"\x01\xe9\x00"  # every byte of a client's name comes back as itself


def test_join_skips_the_root():
    assert names.join("web", "", "cluster.local") == "web.cluster.local"
    assert names.join("", "") == ""
