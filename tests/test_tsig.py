"""TSIG (RFC 8945) through real sockets: kdns knows no keys, so a signed query gets NOTAUTH
with a TSIG record saying BADKEY, unsigned (section 5.2.2), as NSD and knot answer; dnspython,
which signed it, reports that the server did not know the key."""

from __future__ import annotations

import struct

import dns.asyncquery
import dns.message
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import pytest

from testkit.dnswire import rrs
from testkit.repo import DEMO

WEB = "web.shop.svc.cluster.local"
KEYRING = dns.tsigkeyring.from_text({"transfer.key.": "c2VjcmV0LXNlY3JldC1zZWNyZXQ="})
NOTAUTH, BADKEY = 9, 17


def signed(edns: bool) -> dns.message.Message:
    q = dns.message.make_query(WEB, "A", use_edns=0 if edns else False)
    q.use_tsig(KEYRING, keyname="transfer.key.")
    return q


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
async def test_signed_query_gets_notauth_badkey(kdns, tcp, edns):
    server = await kdns(DEMO)
    ask = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    with pytest.raises(dns.tsig.PeerBadKey):
        await ask(signed(edns), server.host, port=server.port, timeout=3)
    # The same, read byte by byte: NOTAUTH, no records but (OPT and) the TSIG record, which
    # has no MAC, error BADKEY and no other data.
    q = signed(edns)
    reply = await server.udp_raw(q.to_wire()) if not tcp else None
    if reply is not None:
        assert reply[:2] == q.to_wire()[:2]
        assert reply[3] & 0xF == NOTAUTH
        assert struct.unpack("!4H", reply[4:12]) == (1, 0, 0, 2 if edns else 1)
        assert struct.unpack("!HHH", reply[-6:]) == (q.id, BADKEY, 0)
        assert reply[-8:-6] == b"\0\0"  # MAC size 0
    assert rrs((await server.query(WEB)).answer) == {f"{WEB}. 5 IN A 10.96.100.10"}


async def test_tsig_not_last_is_formerr(kdns):
    """RFC 8945 section 5.1: a TSIG record anywhere but last in the additional section is FORMERR."""
    server = await kdns(DEMO)
    q = signed(edns=False)
    data = q.to_wire()
    # Move the TSIG record before an OPT record: header arcount 2, TSIG then OPT.
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    question_end = data.index(b"\x00\x00\x01\x00\x01", 12) + 5
    moved = data[:10] + struct.pack("!H", 2) + data[12:] + opt
    assert question_end < len(moved)
    reply = await server.udp_raw(moved)
    assert reply is not None and reply[3] & 0xF == dns.rcode.FORMERR
