"""The repository as tests see it: where things are, files written for a test, tools needed."""

from __future__ import annotations

import shutil
import socket
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo-cluster.yaml"


def write(path: Path, text: str) -> Path:
    """Write `text` (dedented) to `path`, making its directory; the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def needs(tool: str) -> pytest.MarkDecorator:
    """Skip, saying why, where `tool` is not installed."""
    return pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} is not installed (CI installs it)")


def have_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not have_ipv6_loopback(), reason="this host has no IPv6 loopback (::1)")
