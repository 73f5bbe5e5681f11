"""`make bench-tables`: how well the replay table keeps a busy server's questions while a flood
of names asked once goes by, in this process (no sockets).

The workload: `make bench`'s query file (about 15,000 distinct questions, drawn in its
proportions: the "hot" questions a cluster's pods ask again and again) interleaved with
first-time names (`perf/bench/cluster.py`'s, each asked once) at `--unique` of the queries.
Every query goes through `Responder.handle` as over UDP; before each hot query the script
notes whether its bytes after the ID are in the replay table (both generations where there
are two): the hit rate of the hot questions is what a full table's policy costs a busy
server. The figures are taken after a warm-up of one pass through the hot questions, over
`--queries` queries.

Run it on this checkout, and on another one with `--kdns DIR` (a directory holding the
`kdns` package of another revision, e.g. `git archive main kdns | tar -x -C /tmp/main`) to
compare policies; `--bounds old` runs this checkout with the replay table's bounds of the
clear-when-full revision (50,000 replies, 16 MiB), to compare the policies alone.

Usage: python -m perf.tables [--queries N] [--unique SHARE] [--kdns DIR] [--bounds old] [--record]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=1_000_000, help="queries after the warm-up (default 1,000,000)")
    parser.add_argument("--unique", type=float, default=0.5, help="share of first-time names among them (default 0.5)")
    parser.add_argument("--kdns", help="a directory with another revision's kdns package (default: this checkout's)")
    parser.add_argument("--bounds", choices=["ours", "old"], default="ours", help="old: 50,000 replies / 16 MiB (the clear-when-full revision's)")
    parser.add_argument("--record", action="store_true", help="prepend the result to perf/RESULTS.md")
    args = parser.parse_args()
    if not 0 <= args.unique < 1 or args.queries < 1000:
        parser.error("--unique in [0, 1), --queries at least 1000")
    sys.path.insert(0, args.kdns or str(ROOT))
    from kdns import responder as responder_module
    from kdns.config import DnsConfig
    from kdns.index import Index
    from kdns.sources.manifests import ManifestSet
    from perf.bench import cluster, kdns_revision, log, machine, record

    if args.bounds == "old":
        responder_module.MAX_REPLIES, responder_module.REPLAY_BYTES = 50_000, 16 << 20
    model = cluster.make_cluster(1_000)
    with tempfile.TemporaryDirectory() as tmp:
        cluster.write_manifests(model, Path(tmp))
        index = Index(DnsConfig(ns_addresses=("127.0.0.1",)), now=1)
        index.apply(ManifestSet([tmp]).load(), now=1)
    responder = responder_module.Responder(index.snapshot)
    rng = random.Random(7)
    hot = [wire(q.qname, q.qtype) for q in cluster.make_queries(model, cluster.QUERY_LINES)]
    namespaces = len({s.namespace for s in model})
    first_time = iter(cluster.first_time_lines(int(args.queries * args.unique) + 10, namespaces, "t").splitlines())

    def in_table(data: bytes) -> bool:
        key = data[2:]
        return key in responder.replies or key in getattr(responder, "replies_old", {})

    for data in set(hot):  # warm-up: every hot question once
        responder.handle(data)
    asked = hits = unique = 0
    started = time.process_time()
    for _ in range(args.queries):
        if rng.random() < args.unique:
            name, qtype = next(first_time).split()
            responder.handle(with_id(wire(name, qtype), rng))
            unique += 1
        else:
            data = with_id(rng.choice(hot), rng)
            asked += 1
            hits += in_table(data)
            responder.handle(data)
    cpu = time.process_time() - started
    held = len(responder.replies) + len(getattr(responder, "replies_old", {}))
    which = f"kdns from {args.kdns}" if args.kdns else f"kdns at {kdns_revision()}"
    policy = "two generations" if hasattr(responder, "replies_old") else "emptied when full"
    bounds = f"{responder_module.MAX_REPLIES:,} replies / {responder_module.REPLAY_BYTES >> 20} MiB"
    line = (f"| {which} | {policy} | {bounds} | {args.unique:.0%} | {asked:,} | **{hits / max(1, asked):.1%}** | {held:,} | "
            f"{cpu / args.queries * 1e6:.1f} |")
    log(line)
    section = f"""## Replay table under a flood of first-time names: hit rate of the hot questions ({time.strftime('%Y-%m-%d')})

Machine: {machine()}. Command: `python -m perf.tables --queries {args.queries} --unique {args.unique}{' --kdns DIR' if args.kdns else ''}{' --bounds old' if args.bounds == 'old' else ''}`

| kdns | policy when full | bounds | first-time share | hot queries | hot queries replayed | replies held at the end | CPU µs per query |
| --- | --- | --- | --- | --- | --- | --- | --- |
{line}
"""
    print(section)
    if args.record:
        record(section)


def wire(qname: str, qtype: str) -> bytes:
    name = b"".join(len(label).to_bytes(1, "big") + label.encode("ascii") for label in qname.rstrip(".").split("."))
    code = {"A": 1, "AAAA": 28, "SRV": 33, "PTR": 12}[qtype]
    return b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + b"\x00" + code.to_bytes(2, "big") + b"\x00\x01"


def with_id(data: bytes, rng: random.Random) -> bytes:
    return rng.randrange(65536).to_bytes(2, "big") + data[2:]


if __name__ == "__main__":
    main()
