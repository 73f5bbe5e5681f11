"""Helpers of the benchmarks in perf/: the generated cluster, the dnslib peer, `record`,
`kdns_revision` and `missing_prerequisite`."""

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "perf" / "RESULTS.md"


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
