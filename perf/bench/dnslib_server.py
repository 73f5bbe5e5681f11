"""The dnslib peer: dnslib's stock threaded `DNSServer` answering from zone files.

What a Python user writes today: parse the zones with dnslib, keep the records in a dict
keyed by (name, type), and answer from it in a `BaseResolver`. A name with records of
other types is NODATA, an unknown name in a served zone NXDOMAIN (both with the zone's
SOA, as RFC 2308 wants), a CNAME is answered for every type and followed inside the
zones, anything outside the zones is REFUSED. No additional section, no EDNS handling.

Usage: python dnslib_server.py PORT ZONEFILE...   (serves UDP on 127.0.0.1:PORT until killed)
"""

from __future__ import annotations

import signal
import sys
from collections import defaultdict
from pathlib import Path

from dnslib import QTYPE, RCODE, RR
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class ZoneResolver(BaseResolver):
    def __init__(self, zone_texts: list[str]):
        self.records: dict[tuple[str, int], list[RR]] = defaultdict(list)
        self.names: set[str] = set()  # every owner name and the names between it and its zone
        self.soa: dict[str, RR] = {}  # zone -> its SOA record
        rrs = [rr for text in zone_texts for rr in RR.fromZone(text)]
        for rr in rrs:
            if rr.rtype == QTYPE.SOA:
                self.soa[str(rr.rname).lower().rstrip(".")] = rr
        for rr in rrs:
            name = str(rr.rname).lower().rstrip(".")
            self.records[(name, rr.rtype)].append(rr)
            zone = self.zone_of(name)
            while name != zone:  # empty non-terminals exist too
                self.names.add(name)
                name = name.split(".", 1)[1]
            self.names.add(zone)

    def zone_of(self, name: str) -> str | None:
        while name not in self.soa:
            if "." not in name:
                return None
            name = name.split(".", 1)[1]
        return name

    def resolve(self, request, handler):
        reply = request.reply()
        qname, qtype = str(request.q.qname).lower().rstrip("."), request.q.qtype
        zone = self.zone_of(qname)
        if zone is None:
            reply.header.rcode = RCODE.REFUSED
            return reply
        for _ in range(8):  # follow CNAMEs inside our zones, a bounded number of times
            cname = self.records.get((qname, QTYPE.CNAME))
            if not cname or qtype == QTYPE.CNAME:
                break
            reply.add_answer(*cname)
            qname = str(cname[0].rdata.label).lower().rstrip(".")
            if self.zone_of(qname) is None:
                return reply
        answers = self.records.get((qname, qtype))
        if answers:
            reply.add_answer(*answers)
        elif reply.rr:
            pass  # a CNAME chain ending in NODATA
        else:
            if qname not in self.names:
                reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self.soa[self.zone_of(qname)])
        return reply


def main() -> None:
    port, paths = int(sys.argv[1]), sys.argv[2:]
    texts = [Path(path).read_text() for path in paths]
    logger = DNSLogger("-request,-reply,-truncated")  # errors only: logging every query costs more than answering it
    server = DNSServer(ZoneResolver(texts), address="127.0.0.1", port=port, logger=logger)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.start()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
