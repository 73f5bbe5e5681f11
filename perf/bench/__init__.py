"""`make bench` (run as `python -m perf.bench`, see __main__.py), and the helpers every benchmark
in perf/ shares: `record`, `kdns_revision`, `missing_prerequisite`, `machine`,
`dnsperf_version`, `log`, `percentile`, and readers of /proc for a process's CPU and memory.

The modules of the package: `cluster` (the generated cluster and query mix), `servers` (kdns,
knotd and the dnslib peer as processes), `dnsperf` (one run and its output), `check` (the
answer check), `dnslib_server` (the dnslib peer itself, run as a script).
"""

from __future__ import annotations

import math
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "perf" / "RESULTS.md"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def record(section: str) -> None:
    """Prepend `section` to perf/RESULTS.md, below its intro paragraph."""
    text = RESULTS.read_text()
    at = text.find("\n## ")
    at = len(text) if at < 0 else at + 1
    RESULTS.write_text(text[:at] + section + "\n" + text[at:])


def kdns_revision() -> str:
    """The commit kdns was measured at, and whether kdns/ had uncommitted changes."""
    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], check=False, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    return commit + (" with uncommitted changes in kdns/" if git("status", "--porcelain", "--", "kdns") else "")


def missing_prerequisite() -> str | None:
    """What this machine lacks for a pinned run (dnsperf, taskset, two cores), or None."""
    for tool in ("dnsperf", "taskset"):
        if shutil.which(tool) is None:
            return f"{tool} not found (Debian: apt-get install dnsperf util-linux)"
    if (os.cpu_count() or 1) < 2:
        return "needs 2 cores: the server runs on core 1, dnsperf on core 0"
    return None


def machine() -> str:
    """The CPU, kernel and Python, for the head of a results section."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    cores = len(re.findall(r"^processor\s*:", cpuinfo, re.MULTILINE))
    return (f"{cores} × {model.group(1) if model else platform.machine()} ({platform.machine()}), Linux {platform.release()}, "
            f"{platform.python_implementation()} {platform.python_version()}")


def dnsperf_version() -> str:
    try:
        out = subprocess.run(["dnsperf", "-h"], check=False, capture_output=True, text=True, timeout=10)
        return re.search(r"Version (\S+)", out.stdout + out.stderr).group(1)
    except (OSError, subprocess.TimeoutExpired, AttributeError):
        return "?"


def log(message: str) -> None:
    """Progress on stderr, as a comment line (stdout carries the results section)."""
    print(f"# {message}", file=sys.stderr, flush=True)


def percentile(values: Iterable[float], q: float) -> float:
    """The value at rank `q` (0 to 1) of `values`: the sorted values' item int(q × n), the
    largest for q = 1; NaN when there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


def cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all its threads, ended ones included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, field: str) -> int:
    """A kB figure of /proc/PID/status (VmRSS, VmHWM)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))
