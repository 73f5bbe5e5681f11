"""The answer check of `make bench`: before anything is measured, a sample of each path's
queries is asked of every server, and each must give every query the class of answer its
kind expects and the same answer records as the others."""

from __future__ import annotations

import random

import dns.exception
import dns.message
import dns.rcode

from perf.bench import cluster
from perf.bench.servers import BenchError, Server, ask


def answer_class(reply: dns.message.Message) -> str:
    rcode = dns.rcode.to_text(reply.rcode())
    if rcode == "NOERROR":
        return "NOERROR" if reply.answer else "NODATA"
    return rcode


def answer_set(reply: dns.message.Message, ours_only: bool = False) -> frozenset:
    """The answer section without TTLs, order or case (`ours_only`: only the records of names
    in the cluster's zones; what follows a CNAME out of them is the client's business for an
    authoritative server, a forwarder's for kdns and unbound)."""
    zones = (f".{cluster.ZONE}.", f".{cluster.REVERSE_ZONE}.")
    return frozenset((rrset.name.to_text().lower(), rrset.rdtype, rd.to_text().lower()) for rrset in reply.answer for rd in rrset
                     if not ours_only or ("." + rrset.name.to_text().lower()).endswith(zones))


def check_sample(queries: list[cluster.Query], size: int) -> list[cluster.Query]:
    """`size` queries drawn from the file as it is (so in its proportions), plus a few of
    every category, so that the rare ones are checked too; each distinct query once."""
    rng = random.Random(1)
    picked = set(rng.sample(queries, min(size, len(queries))))
    for category in cluster.CATEGORIES:
        of_category = sorted({q for q in queries if q.category == category})
        picked.update(rng.sample(of_category, min(20, len(of_category))))
    return sorted(picked)


def check_answers(servers: list[Server], queries: list[cluster.Query], size: int) -> tuple[int, dict[str, int]]:
    """Ask every server a sample of the queries. Each must get the answer class its
    category expects (NOERROR with data, NODATA, NXDOMAIN) from every server, and the
    same answer records. Raises BenchError listing the differences; returns (queries
    checked, count per answer class)."""
    mismatches, classes = [], {}
    sample = check_sample(queries, size)
    for query in sample:
        expected = cluster.CATEGORIES[query.category]
        classes[expected] = classes.get(expected, 0) + 1
        got, answers = {}, set()
        for server in servers:
            try:
                reply = ask(server.port, query.qname, query.qtype)
                got[server.name] = answer_class(reply)
                records = answer_set(reply, ours_only=True)
                if query.category == "A/AAAA, ExternalName":  # unbound leaves even a CNAME inside its local zone to the client
                    records = frozenset(r for r in records if r[0] == query.qname.lower().rstrip(".") + ".")
                answers.add(records)
            except dns.exception.Timeout:
                got[server.name] = "TIMEOUT"
        if set(got.values()) != {expected} or len(answers) > 1:
            mismatches.append(f"  {query.qname} {query.qtype} ({query.category}, expected {expected}): "
                              + ", ".join(f"{k} {v}" for k, v in got.items())
                              + ("" if len(answers) <= 1 else "; the answer records differ"))
    if mismatches:
        raise BenchError(f"{len(mismatches)} of {len(sample)} sampled queries were answered wrongly or differently:\n"
                         + "\n".join(mismatches[:20]))
    return len(sample), classes


def check_forwarded(servers: list[Server], queries: list[cluster.Query], size: int) -> tuple[int, dict[str, int]]:
    """Outside names: NOERROR with the same records (the upstream's) from every forwarder."""
    sample = random.Random(2).sample(queries, min(size, len(queries)))
    mismatches = []
    for query in sample:
        replies = {server.name: ask(server.port, query.qname, query.qtype) for server in servers}
        if {answer_class(r) for r in replies.values()} != {"NOERROR"} or len({answer_set(r) for r in replies.values()}) > 1:
            mismatches.append(f"  {query.qname} {query.qtype}: " + ", ".join(f"{k} {answer_class(r)} {sorted(answer_set(r))}" for k, r in replies.items()))
    if mismatches:
        raise BenchError(f"{len(mismatches)} of {len(sample)} outside names were answered wrongly or differently:\n" + "\n".join(mismatches[:20]))
    return len(sample), {"NOERROR": len(sample)}


def check_first_time(servers: list[Server], lines: str) -> tuple[int, dict[str, int]]:
    """First-time names: NXDOMAIN from every server."""
    wrong = []
    sample = [line.split() for line in lines.splitlines()]
    for qname, qtype in sample:
        got = {server.name: answer_class(ask(server.port, qname, qtype)) for server in servers}
        if set(got.values()) != {"NXDOMAIN"}:
            wrong.append(f"  {qname} {qtype}: {got}")
    if wrong:
        raise BenchError(f"{len(wrong)} of {len(sample)} first-time names were not NXDOMAIN everywhere:\n" + "\n".join(wrong[:20]))
    return len(sample), {"NXDOMAIN": len(sample)}
