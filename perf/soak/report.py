"""The soak's report: the markdown section printed (and, with --record, prepended to
perf/RESULTS.md), and the one-line table of the README."""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter

from perf.bench import dnsperf_version, machine
from perf.bench.cluster import mix
from perf.soak import CLIENT_CORE, SERVER_CORE
from perf.soak import cluster as soak_cluster
from perf.soak.faults import API_FAULTS, CYCLE, SCHEDULE, UPSTREAM_FAULTS, window_end
from perf.soak.load import DNSPERF_OPTIONS
from perf.soak.run import SAMPLE_EVERY, Results
from perf.soak.server import KDNS_COMMAND


def us(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:,.0f}"


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def latency_by_fault(res: Results) -> list[str]:
    """p99 of the one-second windows overlapping each kind of fault, against quiet windows."""
    windows = [w for c in res.chunks for w in c.windows]
    rows = []
    busy = [(f.start - 1.0, window_end(f)) for f in res.faults]
    quiet = [w for w in windows if not any(s < w[0] + 1 and w[0] < e for s, e in busy)]
    if quiet:
        rows.append(f"| no fault in progress | {len(quiet)} | {us(statistics.median(w[1] for w in quiet))} | "
                    f"{us(max(w[1] for w in quiet))} | {us(max(w[2] for w in quiet))} |")
    kinds = list(dict.fromkeys(f.kind for f in res.faults))
    for kind in kinds:
        spans = [(f.start, window_end(f)) for f in res.faults if f.kind == kind]
        ws = [w for w in windows if any(s < w[0] + 1 and w[0] < e for s, e in spans)]
        if ws:
            rows.append(f"| {kind} | {len(ws)} | {us(statistics.median(w[1] for w in ws))} | {us(max(w[1] for w in ws))} | "
                        f"{us(max(w[2] for w in ws))} |")
    return rows


def report(res: Results) -> str:
    args = res.args
    chunks = res.chunks
    sent = sum(c.sent for c in chunks)
    completed = sum(c.completed for c in chunks)
    lost = sum(c.lost for c in chunks)
    rcodes: Counter = Counter()
    for c in chunks:
        rcodes.update(c.rcodes)
    loaded = sum(c.seconds for c in chunks)
    p99s = [c.p99 for c in chunks]
    rss = [kb for _, kb, _ in res.samples]
    cpu = [(b[2] - a[2]) / (b[0] - a[0]) for a, b in zip(res.samples, res.samples[1:]) if b[0] > a[0]]
    per_minute = []
    if res.samples:
        per_minute.append(res.samples[0][1])
        for m in range(1, int(res.seconds // 60) + 1):
            per_minute.append(min(res.samples, key=lambda s: abs(s[0] - 60 * m))[1])
    faults = Counter(f.kind for f in res.faults if f.kind in API_FAULTS + UPSTREAM_FAULTS)
    rec_by_kind = {k: [f.recovered - f.end for f in res.faults if f.kind == k and f.recovered is not None and f.end is not None]
                   for k in API_FAULTS}
    udp_sent = sum(b.sent for b in res.udp)
    udp_kinds: Counter = Counter()
    udp_replies: Counter = Counter()
    for b in res.udp:
        udp_kinds.update(b.kinds)
        udp_replies.update(b.replies)
    tcp_opened: Counter = Counter()
    tcp_failed: Counter = Counter()
    tcp_open_end: Counter = Counter()
    tcp_closed: dict[str, list[float]] = {}
    for t in res.tcp:
        tcp_opened.update(t.opened)
        tcp_failed.update(t.failed)
        tcp_open_end.update(t.open_at_end)
        for k, v in t.closed.items():
            tcp_closed.setdefault(k, []).extend(v)
    hostile_text, padding_text = hostile_summary(res), padding_summary(res)
    checks = res.checks
    verdicts = Counter(c.verdict for c in checks)
    wrong = [c for c in checks if c.verdict == "wrong"]
    unanswered = [c for c in checks if c.verdict == "unanswered"]
    during_api = sum(1 for c in checks if any(k in API_FAULTS for k in c.during))
    during_up = sum(1 for c in checks if any(k in UPSTREAM_FAULTS for k in c.during))
    by_cat = Counter(c.category for c in checks)
    warn = [ln for ln in res.log_lines if ln.level in ("WARNING", "ERROR", "CRITICAL", "UNSTRUCTURED")]
    warn_kinds = Counter(ln.kind for ln in warn)
    tracebacks = [ln for ln in res.log_lines if ln.extra]
    m0, m1 = res.metrics_start, res.metrics_end

    def mdelta(name: str) -> str:
        return f"{m1.get(name, 0) - m0.get(name, 0):,.0f}" if m1 else "-"

    def joined(counter, sep: str = ", ") -> str:
        return sep.join(f"{k} {v:,}" for k, v in counter.items())

    def median_or(values, fmt) -> str:
        return fmt(statistics.median(values)) if values else "-"

    header = (f"{args.minutes:g} minute{'' if args.minutes == 1 else 's'} of load, Service churn, API and upstream faults, bad input"
              + (" (baseline: load and checks only)" if args.baseline else ""))
    schedule_text = "; ".join(f"{int(o)} s {k}" + (f" for {int(d)} s" if d else "") for o, k, d in SCHEDULE)
    skipped = f" (skipped, kdns not watching again yet: {joined(res.skipped)})" if res.skipped else ""
    failed = f"; could not connect: {joined(tcp_failed)}" if tcp_failed else ""
    rss_line = f"{mb(min(rss))} / {mb(statistics.median(rss))} / {mb(max(rss))} MB" if rss else "-"
    first = mb(rss[0]) if rss else "-"
    growth = mb(res.rss_end_kb - rss[0]) if rss else "-"
    rows = [
        ("duration", f"{res.seconds:.0f} s under load ({loaded:.0f} s of dnsperf runs)"),
        ("queries sent / answered", f"{sent:,} / {completed:,} (**{completed / max(1, sent):.4%}** answered)"),
        ("lost (no reply within 2 s)", f"{lost:,}"),
        ("response codes", ", ".join(f"{k} {v:,}" for k, v in rcodes.most_common())),
        ("p99 per dnsperf run: median / worst", f"{median_or(p99s, us)} / {us(max(p99s, default=math.nan))} µs"),
        ("p50 per run (median), slowest query", f"{median_or([c.p50 for c in chunks], us)} µs, {us(max((c.max for c in chunks), default=math.nan))} µs"),
        (f"kdns RSS min / median / max (every {SAMPLE_EVERY:g} s)", rss_line),
        ("kdns RSS after sync → first sample → end",
         f"{mb(res.rss_synced_kb)} → {first} → {mb(res.rss_end_kb)} MB (growth under load {growth} MB; peak VmHWM {mb(res.hwm_kb)} MB)"),
        (f"kdns core busy (median of {SAMPLE_EVERY:g} s samples)", median_or(cpu, lambda x: f"{x:.0%}")),
        ("API faults", ", ".join(f"{k} ×{faults[k]}" for k in API_FAULTS) + skipped
         + f"; kdns had its watches open {res.healthy_share:.0%} of the time"),
        ("kdns watching again after an API fault: median / max",
         "; ".join(f"{k}: {statistics.median(v):.1f} / {max(v):.1f} s" for k, v in rec_by_kind.items() if v) or "-"),
        ("upstream faults", ", ".join(f"{k} ×{faults[k]}" for k in UPSTREAM_FAULTS) + f" (the stub upstream was asked {res.stub_queries:,} queries)"),
        ("bad UDP packets", f"{udp_sent:,} in {len(res.udp)} bursts; kdns replied {joined(Counter(dict(udp_replies.most_common())))}"),
        ("TCP abusers", f"{len(res.tcp)} round{'' if len(res.tcp) == 1 else 's'}: {joined(tcp_opened)}{failed}"),
        ("hostile upstream (tests/hostiledns.py on 127.0.0.2)", hostile_text),
        ("padding flood", padding_text),
        ("answer checks", (f"{len(checks):,} ({during_api} during API faults, {during_up} during upstream faults, "
                          f"{sum(1 for c in checks if c.proto == 'tcp')} over TCP): {joined(Counter(dict(verdicts.most_common())))}")),
        ("**wrong answers**", f"**{len(wrong)}**"),
        ("check queries unanswered (3 tries) outside upstream faults", f"{len(unanswered)}"),
        ("kdns restarts", "died: see below" if res.died else f"0 (pid {res.pid} up from start to end)"),
        ("kdns log lines at WARNING and above", f"{len(warn):,}" + (f" ({len(tracebacks)} with a traceback)" if tracebacks else "")),
        ("kdns metrics over the load", (f"requests {mdelta('coredns_dns_requests_total')}, panics {mdelta('coredns_panics_total')}, "
                                       f"relists {mdelta('kdns_source_relists_total')}, watch restarts {mdelta('kdns_source_watch_restarts_total')}, "
                                       f"cache hits {mdelta('coredns_cache_hits_total')} / misses {mdelta('coredns_cache_misses_total')}")),
        ("the rest of the machine during the load", (f"other processes {res.foreign_cpu / res.seconds:.0%} of a core, interrupts and softirq "
                                                    f"(the loopback traffic) {res.irq_cpu / res.seconds:.0%}, stolen by the hypervisor "
                                                    f"{res.steal_cpu / res.seconds:.0%} (load average before: {res.loadavg_before})")),
    ]
    lines = [f"## Soak: {header} ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {machine()}; dnsperf {dnsperf_version()}; kdns at {res.revision}.",
             (f"Command: `python -m perf.soak --minutes {args.minutes:g} --rate {args.rate} --services {args.services} "
             f"--churn-rate {args.churn_rate:g} --chunk {args.chunk:g}{' --baseline' if args.baseline else ''}`"),
             "",
             (f"* Cluster in the test API server (testkit/kubeapi/): {res.cluster}; plus {soak_cluster.CHURN_NAMES} `churn-K` names "
             f"that come and go. kdns: `{KDNS_COMMAND}`, pinned to core {SERVER_CORE}; upstream: testkit/stubdns.py in a thread, "
             f"holding the outside names."),
             (f"* Load: `taskset -c {CLIENT_CORE} dnsperf -Q {args.rate} {' '.join(DNSPERF_OPTIONS)} -l {args.chunk:g}` back to back "
             f"({len(chunks)} runs, {loaded:.0f} s of {res.seconds:.0f} s); {len(res.queries):,} query lines, "
             f"{len(set(res.queries)):,} distinct: {mix(res.queries)}.")]
    if not args.baseline:
        lines += [(f"* Every {CYCLE:.0f} s: {schedule_text}. An API fault waits until kdns watches again after the previous one "
                  "(until the next one is due; then it is skipped)."),
                  f"* Churn through the API, {args.churn_rate:g}/s: {joined(res.churn)}."]
    lines += ["", "| measure | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows), ""]
    if per_minute:
        lines += [f"kdns RSS at the first sample and then every minute (MB): {', '.join(mb(kb) for kb in per_minute)}.", ""]
    rises = sorted(((b[1] - a[1], b[0]) for a, b in zip(res.samples, res.samples[1:])), reverse=True)[:5]
    rises = [(kb, t) for kb, t in rises if kb >= 256]
    if rises:
        lines += ["Largest rises of RSS between two samples: " + "; ".join(
            f"+{mb(kb)} MB by t={t:.0f} s ({', '.join(dict.fromkeys(k for f in res.faults for k in [f.kind] if f.start < t and window_end(f) > t - SAMPLE_EVERY)) or 'no fault'})"
            for kb, t in rises) + ".", ""]
    lines += ["Per dnsperf run:", "",
              "| start (s) | length (s) | sent | answered | lost | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | faults during the run |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in chunks:
        during = Counter(f.kind for f in res.faults if f.start < c.start + c.seconds and window_end(f) > c.start)
        lines.append(f"| {c.start:.0f} | {c.seconds:g} | {c.sent:,} | {c.completed:,} | {c.lost:,} | {us(c.p50)} | {us(c.p99)} | "
                     f"{us(c.p999)} | {us(c.max)} | {', '.join(f'{k} ×{v}' if v > 1 else k for k, v in during.items()) or '-'} |")
    lines += ["", ("Latency over time: each second's worth of queries (the n-th answer of a run is about n / rate seconds into it), "
              "grouped by the fault in progress (API faults until kdns watches again), ±1 s:"), "",
              "| while | seconds | p99, median of the seconds (µs) | p99, worst second (µs) | slowest query (µs) |",
              "| --- | --- | --- | --- | --- |", *latency_by_fault(res), ""]
    lines += ["Checks by kind: " + ", ".join(f"{k} {v}" for k, v in by_cat.most_common()) + ".", ""]
    if any(rec_by_kind.values()):
        lines += ["Seconds from each API fault's end to kdns watching every resource again, in order: " + "; ".join(
            f"{k}: {', '.join(f'{x:.1f}' for x in v)}" for k, v in rec_by_kind.items() if v) + ".", ""]
    if tcp_closed or tcp_open_end:
        lines += ["TCP abusers, seconds from connecting to kdns closing the connection (median / max): " + "; ".join(
            f"{k}: {statistics.median(v):.1f} / {max(v):.1f} ({len(v)} closed)" for k, v in tcp_closed.items())
            + (f"; still open when the round ended (after 25 s): {', '.join(f'{k} {v}' for k, v in tcp_open_end.items())}" if tcp_open_end else "")
            + ".", ""]
    if udp_kinds:
        lines += ["Bad UDP packets by kind: " + ", ".join(f"{k} {v:,}" for k, v in udp_kinds.most_common()) + ".", ""]
    if warn_kinds:
        lines += ["kdns's WARNING and ERROR lines by kind:", "", "| count | kind |", "| --- | --- |"]
        lines += [f"| {v} | `{k}` |" for k, v in warn_kinds.most_common(30)]
        lines.append("")
    if tracebacks:
        lines += ["Tracebacks logged by kdns (first 3):", "", "```"]
        for ln in tracebacks[:3]:
            lines += [f"{ln.level} {ln.logger}: {ln.message}", *ln.extra[-15:]]
        lines += ["```", ""]
    if wrong or unanswered:
        lines += ["Wrong or unanswered checks:", ""]
        for c in (wrong + unanswered)[:50]:
            lines.append(f"* t={c.t:.1f}s {c.verdict}: {c.name} {c.qtype} over {c.proto} ({c.category}): got {c.got}, "
                         f"expected {c.expected}; during {', '.join(c.during) or 'no fault'}. {c.detail}")
        lines.append("")
    if res.died:
        lines += ["kdns died:", "", "```", res.died, "```", ""]
    if res.errors:
        lines += ["Problems of the soak itself: " + "; ".join(res.errors), ""]
    return "\n".join(lines)


def hostile_summary(res: Results) -> str:
    """What the hostile upstream rounds cost kdns, and what reached its clients."""
    if not res.hostile:
        return "-"
    growth = [(h.rss_after_kb - h.rss_before_kb) for h in res.hostile]
    names = sum(h.names for h in res.hostile)
    return (f"{len(res.hostile)} round{'' if len(res.hostile) == 1 else 's'} of 300 names answered with 64 KB of compressed records "
            f"(~1 MB each written out), and answers carrying records for cluster names: RSS growth per round "
            f"{', '.join(f'{mb(g)}' for g in growth)} MB; forwarding cache after each round "
            f"{', '.join(f'{h.cache_bytes_after / 1e6:.2f}' for h in res.hostile)} MB; TC {sum(h.truncated for h in res.hostile):,} "
            f"of {names:,}, unanswered {sum(h.unanswered for h in res.hostile)}; **{sum(h.injected_seen for h in res.hostile)}** "
            f"injected records reached a client; cluster name answered after each round: "
            f"{'yes' if all(h.cluster_answered for h in res.hostile) else 'NO'}")


def padding_summary(res: Results) -> str:
    if not res.padding:
        return "-"
    scrapes = [s for p in res.padding for s in p.scrape_seconds]
    return (f"{sum(p.sent for p in res.padding):,} UDP queries padded to 0-1,199 bytes in {len(res.padding)} floods, "
            f"{sum(p.answered for p in res.padding):,} answered; statistics counters before → after each flood: "
            f"{', '.join(f'{p.keys_before:.0f} → {p.keys_after:.0f}' for p in res.padding)}; /metrics scrape "
            f"{1000 * max(scrapes):.0f} ms at most")


def readme_row(res: Results) -> str:
    """The README's summary table: load held, faults survived, bad inputs tried, wrong answers."""
    sent = sum(c.sent for c in res.chunks)
    completed = sum(c.completed for c in res.chunks)
    faults = Counter(f.kind for f in res.faults if f.kind in API_FAULTS + UPSTREAM_FAULTS)
    bad = sum(b.sent for b in res.udp)
    tcp = sum(sum(t.opened.values()) for t in res.tcp)
    hostile_names = sum(h.names for h in res.hostile)
    padded = sum(p.sent for p in res.padding)
    growth = max((h.rss_after_kb - h.rss_before_kb for h in res.hostile), default=0)
    checks = [c for c in res.checks if c.verdict in ("ok", "wrong", "unanswered")]
    wrong = sum(1 for c in res.checks if c.verdict == "wrong")
    p99s = [c.p99 for c in res.chunks]
    length = f"{res.seconds / 60:.0f} min" if res.seconds >= 60 else f"{res.seconds:.0f} s"
    survived = ", ".join(f"{k} ×{v}" for k, v in faults.items()) + f", {sum(res.churn.values()):,} Service changes; "
    survived += "kdns died" if res.died else "kdns up throughout, 0 restarts"
    return ("| load held | faults survived | bad inputs tried | wrong answers |\n| --- | --- | --- | --- |\n"
            f"| {length} at {res.args.rate:,} q/s: {completed / max(1, sent):.3%} of {sent:,} queries answered, "
            f"p99 {us(statistics.median(p99s)) if p99s else '-'} µs (median of {len(p99s)} runs; worst {us(max(p99s, default=math.nan))} µs) "
            f"| {survived} | {bad:,} malformed UDP packets, {tcp:,} abusive TCP connections, {hostile_names:,} names from a hostile upstream "
            f"(64 KB compressed answers, records for cluster names; RSS +{mb(growth)} MB at most per 300 names, "
            f"{sum(h.injected_seen for h in res.hostile)} injected records reached a client), {padded:,} padded queries "
            f"(statistics counters {max((p.keys_after for p in res.padding), default=0):.0f} at most) "
            f"| **{wrong}** of {len(checks):,} answers checked |")
