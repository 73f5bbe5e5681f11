"""kdns soak: a steady dnsperf load for a bounded time while Services churn, the API server and
the upstream fail on a schedule and bad packets arrive; answers checked all along.

The run, all on 127.0.0.1:

1. A cluster in the test API server of testkit/kubeapi/, in this process (`--services`,
   default 300: ClusterIP with endpoints, 10% headless, 5% of those with StatefulSet
   hostnames, a few ExternalName inside and outside the cluster; perf/soak/cluster.py), and
   the stub upstream of testkit/stubdns.py in a thread of its own, holding the outside names.
2. `kdns serve --apiserver URL --listen 127.0.0.1:0 --upstream 127.0.0.1:U --stub-domain
   hostile.test=127.0.0.2:H --metrics 127.0.0.1:0 --lameduck 0` (H: testkit/hostiledns.py's
   hostile upstream, in a thread), pinned to core 1; dnsperf pinned to core 0 (as this process)
   at `--rate` queries/s (`-Q`, default 20,000) for the whole run, in `--chunk`-second runs
   back to back (default 30), each with `-v` so that every query's latency is known. The
   mix is perf/bench's (pods' search paths, ndots:5) plus the outside names themselves
   (forwarded, then cached) and names of Services that come and go.
3. On a 60-second schedule, repeated: Service churn through the API all the time
   (`--churn-rate` changes/s: new ClusterIPs, new endpoints, deletions, creations); API
   faults (down for 10 s, compaction + dropped watches for a relist, 500s on reconnect);
   upstream faults (drop for 10 s, SERVFAIL for 10 s, stopped for 5 s); bad input (bursts of
   3,000 malformed UDP packets; 1,100 idle TCP connections, byte-a-second senders, huge
   length prefixes; 300 names from the hostile upstream, whose answers are 64 KB of
   compressed records or carry records for cluster names, with kdns's RSS and cache bytes
   read before and after; a flood of 20,000 UDP queries each padded to another length, with
   the statistics' counters and the /metrics scrape time read before and after).
4. Every 5 s: kdns's RSS and CPU, and about 25 answers checked against what the API holds
   (recently changed Services, stable ones, deleted ones, StatefulSet hostnames, outside
   names, ExternalNames, search-path misses, PTR; two over TCP). A change must be served
   once it is GRACE (2 s) old and the API was reachable meanwhile; during an API fault, and
   until kdns has its watches open again, the last state kdns could know (or any later one)
   is right and nothing else: NXDOMAIN or SERVFAIL for a name that exists is wrong. Before
   and after the load every name is checked once more (initial and final sweeps).
5. A report: queries sent and answered, p99 per dnsperf run, latency during each kind of
   fault, RSS over time, faults and bad inputs made, checks and wrong answers (each printed
   in full), what kdns logged at WARNING and above (by kind), whether kdns stayed up.
   `--record` prepends it to perf/RESULTS.md.

Exit status: 0 if every check was right and kdns ran throughout; 1 if an answer was wrong, a
check query went unanswered outside an upstream fault, or kdns died; 2 if the soak could not
run. Every process and thread started is stopped on the way out (also on Ctrl-C and SIGTERM;
kdns and dnsperf also get a signal if this process is killed outright).

Usage: python -m perf.soak [--minutes N] [--rate QPS] [--services N] [--churn-rate N]
                        [--chunk S] [--record] [--log PATH] [--baseline]
"""

from __future__ import annotations

import argparse
import signal
import sys

from perf.bench import log, record
from perf.soak import SoakError
from perf.soak.report import readme_row, report
from perf.soak.run import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="how long the load runs (default 10; 1 for a quick check)")
    parser.add_argument("--rate", type=int, default=20_000, help="dnsperf's queries/s (default 20000)")
    parser.add_argument("--services", type=int, default=300, help="Services in the cluster (default 300)")
    parser.add_argument("--churn-rate", type=float, default=3, help="Service changes per second (default 3)")
    parser.add_argument("--chunk", type=float, default=30, help="seconds per dnsperf run (default 30)")
    parser.add_argument("--record", action="store_true", help="prepend the results to perf/RESULTS.md (below its intro)")
    parser.add_argument("--log", metavar="PATH", help="write kdns's whole log there")
    parser.add_argument("--baseline", action="store_true", help="the same load and checks without churn, faults or bad input")
    args = parser.parse_args()
    if not 0.5 <= args.minutes <= 240 or not 100 <= args.rate <= 200_000 or not 100 <= args.services <= 20_000 \
            or not 0 < args.churn_rate <= 50 or not 5 <= args.chunk <= 120:
        parser.error("--minutes 0.5-240, --rate 100-200000, --services 100-20000, --churn-rate 0-50, --chunk 5-120")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("soak: terminated"))  # unwind: stop everything started
    try:
        results = run(args)
    except SoakError as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        sys.exit(130)
    section = report(results)
    print(section)
    log("README table:\n" + readme_row(results))
    if args.record:
        record(section)
        log("prepended to perf/RESULTS.md")
    wrong = sum(1 for c in results.checks if c.verdict in ("wrong", "unanswered"))
    if wrong or results.died:
        log(f"FAILED: {wrong} wrong or unanswered checks" + ("; kdns died" if results.died else ""))
        sys.exit(1)


if __name__ == "__main__":
    main()
