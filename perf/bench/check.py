"""The answer check of `make bench`: before anything is measured, a sample of the query file
is asked of every server, and each must give every query the class of answer its kind
expects and the same answer records as the others."""

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


def answer_set(reply: dns.message.Message) -> frozenset:
    """The answer section without TTLs, order or case."""
    return frozenset((rrset.name.to_text().lower(), rrset.rdtype, rd.to_text().lower()) for rrset in reply.answer for rd in rrset)


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
                answers.add(answer_set(reply))
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
