"""README.md and docs/*.md stay true to the code.

What a reader copies out of the docs is run or checked here: the `make` commands, the `dig`
lines (against the demo cluster, over real sockets), the `kdns` command lines (their flags
against `kdns serve --help`, the one for tests in other languages run as written), the
config-file example (`kdns check-config`), the Python examples of docs/testing.md (as tests in a
project of their own, and as a script). The lists in the docs are compared with what they list:
the option tables with `kdns.settings.OPTIONS` (every option, with its default), the metric
names with a real `/metrics` scrape, the restart-only options with `settings.RESTART_ONLY`, the
module map with the files under kdns/. Links between the docs, and the repository paths they
name, must exist.

Every process is started with a time limit and killed in a `finally`; only loopback addresses
are used.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import pytest

from kdns import settings
from testkit.docs import KDNS, RUN_TIMEOUT, START_TIMEOUT, code_blocks, kdns_printing_address
from testkit.repo import ROOT, needs

pytest_plugins = ["pytester"]

DOCS = ROOT / "docs"
README = ROOT / "README.md"
DOC_FILES = [README, *sorted(DOCS.glob("*.md"))]
# `kdns serve` flags that are not keys of the config file (kdns/cli.py).
# (the --corefile ones: kdns/corefile/cli.py)
COMMAND_LINE_ONLY = {"config", "print-address", "corefile", "corefile-dns-port", "corefile-ignore-unknown", "pidfile"}
STATUSES = ("NOERROR", "NXDOMAIN", "NODATA", "REFUSED", "SERVFAIL")


# -- reading the docs ----------------------------------------------------------------------------


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def shell_lines(path: Path) -> list[str]:
    """The command lines of a file's ```sh blocks, comments and continuations joined."""
    lines = []
    for block in code_blocks(path, "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line.strip())
    return lines


def documented_digs() -> list[tuple[str, str, str]]:
    """(file, command, expected status) of every `dig @127.0.0.1 -p 5353` line in the docs. A
    comment after the command names the status when it is not NOERROR with records."""
    found = []
    for path in DOC_FILES:
        for line in shell_lines(path):
            command, _, note = line.partition("#")
            if command.startswith("dig @127.0.0.1 -p 5353 "):
                words = note.replace(":", " ").split()
                expected = words[0] if words and words[0] in STATUSES else "NOERROR"
                found.append((rel(path), command.strip(), expected))
    return found


def option_rows() -> dict[str, str]:
    """Option name → its default cell, from the tables of docs/configuration.md (rows whose
    first cell is a backquoted flag; `--no-X` counts as X)."""
    rows: dict[str, str] = {}
    for line in (DOCS / "configuration.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `--"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names = {name.removeprefix("no-") for name in re.findall(r"`--([a-z][a-z-]*)", cells[0])}
        assert len(names) == 1, f"one option per row: {line}"
        name = names.pop()
        assert name not in rows, f"--{name} has two rows"
        rows[name] = cells[1]
    return rows


def shown(default) -> str:
    """How the docs write a default: `none`, `off`, a number as --help prints it without a
    needless `.0`, a string or each list item in backquotes."""
    if default is None or default == []:
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, (int, float)):
        return str(int(default)) if float(default).is_integer() else str(default)
    if isinstance(default, list):
        return ", ".join(f"`{item}`" for item in default)
    return f"`{default}`"


def serve_help() -> str:
    result = subprocess.run([*KDNS, "serve", "--help"], capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- the README: a front door ----------------------------------------------------------------------


def test_readme_starts_with_the_two_commands():
    """The README's first block is `make run` and `make test`, right under the title, and both
    are targets of the Makefile."""
    text = README.read_text(encoding="utf-8")
    title, _, rest = text.partition("\n")
    assert title == "# kdns"
    assert rest.lstrip("\n").startswith("```sh\n"), "the two commands come first"
    first = code_blocks(README)[0]
    assert [line.split("#")[0].strip() for line in first.splitlines()] == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("run", "test"):
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), target


def test_readme_is_short_and_links_every_doc():
    """The README fits on a screen or two and links each page of docs/, which all exist."""
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 60, "the README is a front door: details go to docs/"
    linked = set(re.findall(r"\]\((docs/[^)#]+\.md)\)", text))
    assert linked == {rel(path) for path in DOCS.glob("*.md")}
    assert len(linked) >= 6


# -- links and paths -------------------------------------------------------------------------------


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file (code blocks left out)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("path", DOC_FILES, ids=rel)
def test_links_lead_somewhere(path):
    """Every relative link of a doc names a file that exists, and a heading of it."""
    links = re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8"))
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        assert file.exists(), f"{rel(path)}: {link}: no such file"
        if anchor:
            assert anchor in anchors(file), f"{rel(path)}: {link}: no such heading in {rel(file)}"


@pytest.mark.parametrize("path", DOC_FILES, ids=rel)
def test_repository_paths_exist(path):
    """Every repository path a doc names in backquotes (config/..., kdns/..., tests/..., perf/...,
    docs/..., .ci/...) exists."""
    named = re.findall(r"`((?:config|kdns|tests|perf|docs|\.ci)/[\w./-]*)`", path.read_text(encoding="utf-8"))
    missing = [p for p in named if not (ROOT / p).exists()]
    assert not missing, f"{rel(path)} names paths that do not exist: {missing}"


# -- commands --------------------------------------------------------------------------------------


def test_make_commands_are_targets():
    """Every `make TARGET` the docs show is a target of the Makefile."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.MULTILINE))
    shown_targets = set()
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        shown_targets |= set(re.findall(r"(?:^|`)make ([a-z][\w-]*)", text, flags=re.MULTILINE))
    assert {"run", "test", "bench", "soak"} <= shown_targets
    assert shown_targets <= targets, shown_targets - targets


def test_kdns_command_lines_use_real_flags():
    """Every `kdns serve` line of the docs' shell blocks uses flags `kdns serve --help` knows
    (the usage block of docs/configuration.md has a test of its own, below)."""
    text = serve_help()
    known = set(re.findall(r"--[a-z][a-z-]*", text))
    lines = [line for path in DOC_FILES for line in shell_lines(path) if line.startswith("kdns serve")]
    assert lines, "no kdns serve command in the docs"
    for line in lines:
        flags = {word.split("=")[0] for word in shlex.split(line, comments=True) if word.startswith("--")}
        assert flags <= known, (line, flags - known)


def test_usage_block_lists_every_option():
    """The `kdns serve` usage block of docs/configuration.md names exactly the options of
    `kdns serve` (the option table, --config and --print-address), and --help lists them."""
    usage = next((block for block in code_blocks(DOCS / "configuration.md") if block.startswith("kdns serve")), None)
    assert usage, "docs/configuration.md has no `kdns serve` usage block"
    expected = {f"--{o.name}" for o in settings.OPTIONS} | {f"--{name}" for name in COMMAND_LINE_ONLY}
    assert set(re.findall(r"--[a-z][a-z-]*", usage)) == expected
    assert "kdns check-config PATH" in usage
    text = serve_help()
    for flag in expected:
        assert flag in text, flag


def test_option_tables_list_every_option_with_its_default():
    """docs/configuration.md has one table row per option of `kdns serve`, none more, and each
    row's default is the option's default (as --help has it)."""
    rows = option_rows()
    names = {o.name for o in settings.OPTIONS}
    assert set(rows) - COMMAND_LINE_ONLY == names, {"undocumented": names - set(rows), "unknown": set(rows) - names - COMMAND_LINE_ONLY}
    for name in COMMAND_LINE_ONLY:
        assert name in rows, name
    for option in settings.OPTIONS:
        assert rows[option.name].startswith(shown(option.default)), (option.name, rows[option.name], shown(option.default))
    assert "`config/kdns.yaml` documents every key" in (DOCS / "configuration.md").read_text(encoding="utf-8")


def test_config_file_example_passes_check_config(tmp_path):
    """The config-file example of docs/configuration.md is accepted by `kdns check-config`."""
    examples = code_blocks(DOCS / "configuration.md", "yaml")
    assert examples
    for i, example in enumerate(examples):
        path = tmp_path / f"example{i}.yaml"
        path.write_text(example)
        result = subprocess.run([*KDNS, "check-config", str(path)], capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT,
                                check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == f"{path}: OK"


def test_restart_only_options_are_the_ones_a_reload_keeps():
    """The "Only at start:" line of docs/operating.md names exactly the options a reload
    cannot change."""
    text = (DOCS / "operating.md").read_text(encoding="utf-8")
    paragraph = re.search(r"^Only at start: (.*?)\n\n", text, flags=re.DOTALL | re.MULTILINE)
    assert paragraph, "docs/operating.md has no 'Only at start:' line"
    assert set(re.findall(r"`--([a-z-]+)`", paragraph.group(1))) == set(settings.RESTART_ONLY)


# -- the dig lines, against the demo cluster --------------------------------------------------------


def test_docs_have_dig_lines():
    """The dig test below has something to run: the README's three and those of docs/answers.md."""
    found = documented_digs()
    readme = [command for where, command, _ in found if where == "README.md"]
    assert len(readme) == 3
    assert "dig @127.0.0.1 -p 5353 -x 10.96.100.10" in readme
    assert {expected for where, _, expected in found if where == "docs/answers.md"} >= {"NOERROR", "NXDOMAIN", "NODATA", "REFUSED"}


@pytest.fixture(scope="module")
def demo():
    """`kdns serve --manifests config/demo-cluster.yaml` on a free port: (host, port)."""
    argv = [*KDNS, "serve", "--manifests", "config/demo-cluster.yaml", "--listen", "127.0.0.1:0", "--print-address", "--lameduck", "0"]
    with kdns_printing_address(argv) as (_, host, port):
        yield host, port


@needs("dig")
@pytest.mark.parametrize(
    "command, expected",
    [pytest.param(command, expected, id=f"{where} {command.removeprefix('dig @127.0.0.1 -p 5353 ')}")
     for where, command, expected in documented_digs()],
)
def test_documented_dig_line_gets_what_the_doc_says(demo, command, expected):
    """Each dig line of the docs, run against the demo cluster, gets the status its comment
    names; without a comment, NOERROR with at least one answer record."""
    host, port = demo
    argv = shlex.split(command.replace("-p 5353", f"-p {port}")) + ["+time=2", "+tries=1"]
    assert argv[:3] == ["dig", f"@{host}", "-p"], command
    result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=15)
    assert result.returncode == 0, result.stdout + result.stderr
    status = re.search(r"status: (\w+),", result.stdout)
    answers = re.search(r"ANSWER: (\d+),", result.stdout)
    assert status and answers, result.stdout
    if expected == "NODATA":
        assert (status.group(1), answers.group(1)) == ("NOERROR", "0"), result.stdout
    else:
        assert status.group(1) == expected, result.stdout
    if expected == "NOERROR":
        assert int(answers.group(1)) >= 1, result.stdout


# -- docs/testing.md ---------------------------------------------------------------------------------


INNER_INI = """
[pytest]
filterwarnings =
    error
"""


def test_testing_doc_examples_pass_as_tests(pytester):
    """The example tests of docs/testing.md, copied as they are into a project of their own
    (the fixture comes from the installed entry point), pass."""
    examples = [block for block in code_blocks(DOCS / "testing.md", "python") if "def test_" in block]
    assert len(examples) >= 2
    assert "kdns_server" in examples[0] and "pod_resolver" in examples[0]
    pytester.makeini(INNER_INI)
    pytester.makepyfile(**{f"test_example{i}": code for i, code in enumerate(examples)})
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=sum(code.count("\ndef test_") for code in examples))


def test_testing_doc_script_runs(tmp_path):
    """The example of docs/testing.md for use outside pytest runs as a script and exits 0."""
    scripts = [block for block in code_blocks(DOCS / "testing.md", "python") if "def test_" not in block]
    assert len(scripts) == 1 and "KdnsServer" in scripts[0]
    path = tmp_path / "example.py"
    path.write_text(scripts[0])
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    name, address = result.stdout.split()
    assert name == "web.shop.svc.cluster.local" and address.startswith("10.")


def test_command_for_other_languages_prints_an_address_that_answers():
    """The `--print-address` command of docs/testing.md, run as written (from the repository
    root), prints HOST:PORT, answers there over UDP and TCP, and stops on SIGTERM with 0."""
    lines = [line for line in shell_lines(DOCS / "testing.md") if "--print-address" in line]
    assert len(lines) == 1
    argv = shlex.split(lines[0])
    assert argv[:2] == ["kdns", "serve"]
    with kdns_printing_address([*KDNS, *argv[1:]]) as (_, host, port):
        query = dns.message.make_query("web.shop.svc.cluster.local", "A")
        for reply in (dns.query.udp(query, host, port=port, timeout=2), dns.query.tcp(query, host, port=port, timeout=2)):
            assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.96.100.10"]


# -- docs/operating.md and docs/architecture.md --------------------------------------------------------


def test_metric_names_are_the_ones_served():
    """The metric families docs/operating.md names are exactly those a running kdns serves on
    /metrics."""
    documented = {re.sub(r"\{.*", "", name) for name in re.findall(r"`((?:coredns|kdns)_\w+(?:\{[^}`]*\})?)`",
                                                                      (DOCS / "operating.md").read_text(encoding="utf-8"))}
    argv = [*KDNS, "serve", "--manifests", "config/demo-cluster.yaml", "--listen", "127.0.0.1:0", "--print-address",
            "--metrics", "127.0.0.1:0", "--lameduck", "0"]
    with kdns_printing_address(argv) as (process, _, _port):
        http_port = int(process.wait_for(r"listening on http 127\.0\.0\.1:(\d+) for /metrics", START_TIMEOUT).group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as response:
            text = response.read().decode()
    served = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))
    assert served and documented == served, {"undocumented": served - documented, "not served": documented - served}


def test_architecture_names_every_module():
    """docs/architecture.md names every module under kdns/ (and the C part)."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(kdns/[\w/]+\.(?:py|c))`", text))
    modules = {rel(p) for p in (ROOT / "kdns").rglob("*") if p.suffix in (".py", ".c") and "__pycache__" not in p.parts}
    assert modules - named == set(), "modules missing from docs/architecture.md"
