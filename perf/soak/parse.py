"""Summarise one dnsperf `-v` output file; run by the soak (load.py) as a child at nice 19, so
that reading 600,000 lines does not take core 0 from the dnsperf run going on meanwhile.

    python -m perf.soak.parse FILE RATE  ->  one JSON object on stdout

Lines "> RCODE name type seconds" are the answered queries, in the order they came back;
queries leave at RATE a second, so each RATE lines are about one second of the run.
Percentiles are NaN (JSON `NaN`) when no query was answered.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter

from perf.bench import percentile


def summarise(path: str, rate: int) -> dict:
    latencies: list[float] = []
    rcodes: Counter = Counter()
    summary = []
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("> "):
                parts = line.split()
                try:
                    latencies.append(float(parts[-1]) * 1e6)
                    rcodes[parts[1]] += 1
                except (ValueError, IndexError):
                    pass
            else:
                summary.append(line)
    text = "".join(summary)
    numbers = {}
    for label in ("Queries sent", "Queries completed", "Queries lost"):
        m = re.search(rf"^\s*{label}:\s+([\d.]+)", text, re.MULTILINE)
        numbers[label] = int(float(m.group(1))) if m else None
    windows = []
    for w in range(0, len(latencies), rate):
        part = sorted(latencies[w : w + rate])
        windows.append((w / rate, percentile(part, 0.99), part[-1]))
    ordered = sorted(latencies)
    return {
        "sent": numbers["Queries sent"], "completed": numbers["Queries completed"], "lost": numbers["Queries lost"],
        "rcodes": dict(rcodes), "p50": percentile(ordered, 0.5), "p99": percentile(ordered, 0.99), "p999": percentile(ordered, 0.999),
        "max": ordered[-1] if ordered else None, "windows": windows, "tail": text[-2000:],
    }


if __name__ == "__main__":
    json.dump(summarise(sys.argv[1], int(sys.argv[2])), sys.stdout)
