"""Running what the docs show: their code blocks, and the `kdns serve ... --print-address`
commands they give (tests/test_docs.py and the docs' own tests, e.g. tests/test_explain_docs.py)."""

from __future__ import annotations

import contextlib
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from testkit.process import KdnsProcess, start

KDNS = [sys.executable, "-m", "kdns"]
START_TIMEOUT = 15.0
RUN_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def code_blocks(path: Path, lang: str | None = None) -> list[str]:
    """The fenced code blocks of a Markdown file (only those tagged `lang`, if given)."""
    blocks = re.findall(r"^```([^\n]*)\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)
    return [text for tag, text in blocks if lang is None or tag.strip() == lang]


@contextlib.contextmanager
def kdns_printing_address(argv: list[str]) -> Iterator[tuple[KdnsProcess, str, int]]:
    """Run `argv` (a `kdns serve ... --print-address` command); yield (KdnsProcess, host, port)
    once it has printed the address it answers on. SIGTERM at the end: it must exit 0."""
    process = start(argv, timeout=START_TIMEOUT)
    try:
        assert process.host == "127.0.0.1", process.printed
        yield process, process.host, process.port
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(timeout=STOP_TIMEOUT) == 0, process.lines
    finally:
        process.close()
