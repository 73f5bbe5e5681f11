"""Helpers of the benchmarks in perf/: the generated cluster, the dnslib peer, and `record`."""

from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "RESULTS.md"


def record(section: str) -> None:
    """Prepend `section` to perf/RESULTS.md, below its intro paragraph."""
    text = RESULTS.read_text()
    at = text.find("\n## ")
    at = len(text) if at < 0 else at + 1
    RESULTS.write_text(text[:at] + section + "\n" + text[at:])
