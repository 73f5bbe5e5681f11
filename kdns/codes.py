"""The DNS numbers kdns uses, and their names in metrics and logs: one place for all of them.

RR types and classes (IANA "Domain Name System (DNS) Parameters"), response codes (RFC 1035,
RFC 6891's BADVERS) and header flags (RFC 1035, 2535's CD). Pure: constants only.
"""

from __future__ import annotations

# RR types
A, NS, CNAME, SOA, PTR, HINFO, MX, TXT, AAAA, SRV, OPT = 1, 2, 5, 6, 12, 13, 15, 16, 28, 33, 41
TKEY, TSIG, IXFR, AXFR, ANY = 249, 250, 251, 252, 255

# classes
CLASS_IN, CLASS_CH, CLASS_ANY = 1, 3, 255

# response codes
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, NOTAUTH = 0, 1, 2, 3, 4, 5, 9
BADVERS = 16  # an extended rcode: its upper 8 bits go in the OPT record
BADKEY = 17  # a TSIG error (RFC 8945), in the TSIG record's error field

# header flags (the second 16-bit word of the header)
QR, AA, TC, RD, RA, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0010
OPCODE_MASK = 0x7800
RCODE_MASK = 0x000F

# Names as CoreDNS's metrics label them; other types are "other" in metrics, their number in logs.
TYPES = {
    A: "A", NS: "NS", CNAME: "CNAME", SOA: "SOA", PTR: "PTR", HINFO: "HINFO", MX: "MX", TXT: "TXT", AAAA: "AAAA",
    SRV: "SRV", 35: "NAPTR", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 52: "TLSA", 64: "SVCB", 65: "HTTPS",
    99: "SPF", 257: "CAA", IXFR: "IXFR", AXFR: "AXFR", ANY: "ANY",
}
RCODES = {NOERROR: "NOERROR", FORMERR: "FORMERR", SERVFAIL: "SERVFAIL", NXDOMAIN: "NXDOMAIN", NOTIMP: "NOTIMP", REFUSED: "REFUSED",
          NOTAUTH: "NOTAUTH"}


def rcode_name(reply: bytes | None) -> str | None:
    """The rcode of a reply as text ("NOERROR", or the number for others); None without a reply."""
    if not reply or len(reply) < 4:
        return None
    rcode = reply[3] & RCODE_MASK
    return RCODES.get(rcode, str(rcode))
