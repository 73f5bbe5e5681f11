"""docs/deploying.md's table of what kdns does with each directive, checked against the
translator and the review: every row's example, put in a Corefile, gets the kind the row
states (and a refusal at its line when the row says refused); every directive kdns reads has
a row, as have rewrite, template and the other plugins."""

from __future__ import annotations

import re

import pytest

from kdns.corefile import parse_text
from kdns.corefile.review import UNDERSTOOD, review
from kdns.corefile.translate import translate
from kdns.corefile.translate.values import KINDS
from testkit.repo import ROOT

DEPLOYING = ROOT / "docs" / "deploying.md"
MAIN = ".:53 {\n    kubernetes cluster.local {\n        endpoint http://127.0.0.1:6443\n    }\n"  # the row goes on line 5


def rows() -> list[tuple[str, str, str]]:
    """(example, kind, meaning) of each row of the directive table."""
    text = DEPLOYING.read_text(encoding="utf-8")
    section = text.split("## What kdns does with each directive", 1)[1].split("\n## ", 1)[0]
    out = []
    for line in section.splitlines():
        m = re.match(r"^\| `([^`]+)` \| ([a-z ]+) \| (.*) \|$", line)
        if m:
            out.append((m[1], m[2], m[3]))
    return out


ROWS = rows()


def corefile_of(example: str) -> tuple[str, int]:
    """The example as a Corefile (its `{ a; b }` block on lines of their own) and the line of
    the last line written in it: what the row is about."""
    head, _, block = example.partition(" {")
    lines = [head + (" {" if block else "")] + [f"    {part.strip()}" for part in block.rstrip("} ").split(";") if part.strip()] + (["}"] if block else [])
    if head.startswith("kubernetes "):
        return ".:53 {\n" + "\n".join(lines) + "\n}\n", 1 + len(lines) - (1 if block else 0)
    return MAIN + "\n".join(lines) + "\n}\n", 4 + len(lines) - (1 if block else 0)


def test_the_table_has_rows():
    assert len(ROWS) > 50


@pytest.mark.parametrize(("example", "kind", "meaning"), ROWS, ids=[r[0] for r in ROWS])
def test_each_row_says_what_the_translator_and_the_review_do(example, kind, meaning):
    assert kind in KINDS, kind
    text, line = corefile_of(example)
    corefile = parse_text(text)
    r = review(translate(corefile), corefile)
    directive = text.splitlines().index(next(x for x in text.splitlines() if x.strip().startswith(example.split()[0]))) + 1
    if not any(e.origin.line == line for e in r.explanations):
        line = directive  # a line the translator explains with its directive (k8s_external's)
    kinds = {e.kind for e in r.explanations if e.origin.line == line}
    assert kind in kinds, (text, line, [str(e) for e in r.explanations])
    refused = [str(p) for p in r.problems if p.origin is not None and p.origin.line == line]
    if kind == "refused":
        assert refused, (text, [str(p) for p in r.problems])
    else:
        assert r.ok, (text, [str(p) for p in r.problems])


def test_every_directive_kdns_reads_has_a_row():
    named = {example.split()[0] for example, _, _ in ROWS}
    assert set(UNDERSTOOD) | {"rewrite", "template", "etcd"} <= named, sorted(set(UNDERSTOOD) - named)
