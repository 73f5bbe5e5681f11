"""docs/explain.md's examples run as written, and docs/answers.md's zone transfer lines.

A ```sh block of docs/explain.md whose commands are `kdns ...` is run from the repository's
root (`python -m kdns`), and its stdout must be the ```text block that follows it, but for the
SOA serial (the time of the last change). `# exit status N` after a command says its status
(0 otherwise). A block that starts `kdns serve ... &` runs that server (on free ports, which
replace the ones written) while the next command asks it. The `dig -p 5353 @127.0.0.1 ... AXFR`
lines of docs/answers.md are run against the demo cluster.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess

import pytest

from testkit.docs import KDNS, RUN_TIMEOUT, START_TIMEOUT, code_blocks, kdns_printing_address
from testkit.repo import ROOT, needs

DOCS = ROOT / "docs"


def examples() -> list[tuple[list[str], str]]:
    """(commands, expected stdout) of each ```sh block of docs/explain.md followed by ```text."""
    text = (DOCS / "explain.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    found = []
    for (tag, body), (next_tag, next_body) in itertools.pairwise(blocks):
        if tag == "sh" and next_tag == "text":
            found.append(([line for line in body.splitlines() if line.strip()], next_body))
    return found


def normalized(text: str) -> str:
    return re.sub(r"(IN SOA \S+ \S+ )\d+", r"\1SERIAL", text)


def run(command: str) -> tuple[int, str, str]:
    words, _, comment = command.partition("#")
    status = re.search(r"exit status (\d+)", comment)
    argv = shlex.split(words)
    assert argv[0] == "kdns", command
    result = subprocess.run([*KDNS, *argv[1:]], capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT, check=False)
    assert result.returncode == (int(status.group(1)) if status else 0), result.stdout + result.stderr
    return result.returncode, result.stdout, result.stderr


def test_the_page_has_examples_of_both_commands():
    commands = [line for lines, _ in examples() for line in lines]
    assert any(c.startswith("kdns explain") for c in commands) and any(c.startswith("kdns lint") for c in commands)
    assert any("--server" in c for c in commands) and any("--namespace" in c for c in commands)
    sh = [block for block in code_blocks(DOCS / "explain.md", "sh") if block.startswith("kdns")]
    assert len(sh) == len(examples()), "every kdns command of the page shows its output"


@pytest.mark.parametrize("commands, expected", examples(), ids=lambda v: v[-1] if isinstance(v, list) else None)
def test_example_prints_what_the_page_shows(commands, expected):
    if commands[0].startswith("kdns serve") and commands[0].endswith("&"):
        serve = shlex.split(commands[0].removesuffix("&"))
        written = re.search(r"--explain (\S+)", commands[0]).group(1)
        argv = [*KDNS, *serve[1:], "--listen", "127.0.0.1:0", "--print-address", "--lameduck", "0"]
        argv[argv.index("--explain") + 1] = "127.0.0.1:0"
        with kdns_printing_address(argv) as (process, _, _port):
            port = process.wait_for(r"listening on http 127\.0\.0\.1:(\d+) for /explain", START_TIMEOUT).group(1)
            _, out, _ = run(commands[1].replace(written, f"127.0.0.1:{port}"))
    else:
        [command] = commands
        _, out, _ = run(command)
    assert normalized(out) == normalized(expected)


@needs("dig")
def test_answers_page_zone_transfer_lines():
    lines = [line for block in code_blocks(DOCS / "answers.md", "sh") for line in block.splitlines() if " AXFR" in line]
    assert len(lines) >= 2
    argv = [*KDNS, "serve", "--manifests", "config/demo-cluster.yaml", "--listen", "127.0.0.1:0", "--print-address", "--lameduck", "0"]
    with kdns_printing_address(argv) as (_, host, port):
        for line in lines:
            command = shlex.split(line.replace("-p 5353", f"-p {port}").replace("@127.0.0.1", f"@{host}"))
            result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
            records = [r for r in result.stdout.splitlines() if r and not r.startswith(";")]
            assert result.returncode == 0 and records[0].split()[3] == "SOA" and records[-1] == records[0], result.stdout
            assert "XFR size" in result.stdout
