"""kdns.files on its own: reading only regular files within a size limit, and YAML with a
node limit (aliases counted as copies), a nesting limit, libyaml's parser and the same
answers and error lines as PyYAML's safe loader."""

from __future__ import annotations

import os
import string
import threading

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns import files

PARSERS = sorted(files.LOADERS)


def read_in_thread(path, limit: int):
    """read_regular in a thread, so that a read that blocks fails the test instead of hanging it."""
    result: list = []

    def run() -> None:
        try:
            result.append(files.read_regular(path, limit))
        except Exception as exc:  # noqa: BLE001 - handed to the test
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=5.0)
    assert result, f"read_regular({path}) blocked"
    return result[0]


# -- read_regular -----------------------------------------------------------------------------


def test_a_file_of_exactly_the_limit_is_read_and_one_byte_more_is_refused(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_bytes(b"x" * 100)
    data, signature = files.read_regular(path, 100)
    st = path.stat()
    assert data == b"x" * 100 and signature == (st.st_mtime_ns, st.st_size, st.st_ino)
    path.write_bytes(b"x" * 101)
    with pytest.raises(files.TooLarge, match=r"^101 bytes, more than the limit of 100 \(opt\)$"):
        files.read_regular(path, 100, "opt")


def test_a_file_larger_than_its_stat_says_is_cut_at_the_limit():
    """/proc files say size 0: the limit is applied to what is read (limit + 1 bytes at most)."""
    with pytest.raises(files.TooLarge, match=r"more than the limit of 64 bytes \(opt\) when read"):
        files.read_regular("/proc/self/status", 64, "opt")


@pytest.mark.parametrize("kind", ["fifo", "directory", "char-device"])
def test_only_regular_files_are_opened_for_reading(tmp_path, kind):
    """A FIFO with no writer (opening it would wait for ever), a directory and /dev/zero: refused at once."""
    path = tmp_path / "m.yaml"
    if kind == "fifo":
        os.mkfifo(path)
        what = "a FIFO"
    elif kind == "directory":
        path.mkdir()
        what = "a directory"
    else:
        path.symlink_to("/dev/zero")
        what = "a character device"
    got = read_in_thread(path, 1000)
    assert isinstance(got, files.NotRegular) and str(got) == f"not a regular file ({what}); only regular files are read"


def test_decode_names_the_line_of_a_byte_that_is_not_utf8():
    assert files.decode("a: é\n".encode()) == "a: é\n"
    with pytest.raises(files.FileError, match=r"^line 2: not UTF-8 text \(byte 0xe9\)$"):
        files.decode(b"a: 1\nb: caf\xe9\n")


# -- the node limit -----------------------------------------------------------------------------


def nodes(text: str) -> int:
    """The smallest limit `text` loads under (its node count, aliases expanded)."""
    low, high = 0, 10_000
    while low < high:
        mid = (low + high) // 2
        try:
            files.load_yaml_all(text, mid)
            high = mid
        except files.LimitError:
            low = mid + 1
    return low


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(
    "text, count",
    [
        ("a: 1\n", 3),  # the mapping, a key, a value
        ("[1, 2, 3]\n", 4),
        ("a: &x [1, 2]\nb: *x\nc: *x\n", 1 + 2 * 3 + 3 * 2),  # each alias counts the 3 nodes it names
        ("a: 1\n---\nb: [2]\n---\n", 3 + 4 + 1),  # one limit for all documents (the last is a null)
        ("base: &b {x: 1}\nm: {<<: *b, y: 2}\n", 1 + (1 + 3) + (1 + 1 + (1 + 3) + 2)),  # merge keys too
    ],
)
def test_nodes_are_counted_with_each_alias_as_a_copy(parser, text, count):
    assert nodes(text) == count
    assert files.load_yaml_all(text, count, parser=parser) == list(yaml.safe_load_all(text))
    with pytest.raises(files.LimitError, match=rf"^.*too big: more than {count - 1:,} nodes \(hint\), counting each alias"):
        files.load_yaml_all(text, count - 1, hint="hint", parser=parser)


@pytest.mark.parametrize("parser", PARSERS)
def test_an_alias_bomb_is_refused_from_its_first_lines(parser):
    """Nine levels of nine aliases each (9**9 leaves): refused, in one line, at the line where
    the count passes the limit (a6, with 2 * 9**6 nodes), without building what is below."""
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    text = "\n".join(lines) + "\n"
    with pytest.raises(files.LimitError) as caught:
        files.load_yaml_all(text, 1_000_000, parser=parser)
    assert files.yaml_problem(caught.value, text) == (
        "line 7: too big: more than 1,000,000 nodes, counting each alias as a copy of what it names"
    )


@pytest.mark.parametrize("parser", PARSERS)
def test_recursive_alias_and_deep_nesting_are_refused(parser):
    text = "a: 1\nb: &x {c: [1, *x]}\n"
    with pytest.raises(files.LimitError) as caught:
        files.load_yaml_all(text, 1000, parser=parser)
    assert files.yaml_problem(caught.value, text) == "line 2: recursive: alias *x inside the node it names"
    ok = "[" * files.MAX_DEPTH + "]" * files.MAX_DEPTH + "\n"
    assert files.load_yaml_all(ok, 1000, parser=parser) == [yaml.safe_load(ok)]
    deep = "a: " + ok  # one level more: the mapping
    with pytest.raises(files.LimitError) as caught:
        files.load_yaml_all(deep, 1000, parser=parser)
    assert files.yaml_problem(caught.value, deep) == f"line 1: too deep: nested more than {files.MAX_DEPTH} levels"


def test_the_node_limit_follows_the_size_limit():
    assert files.node_limit(16 << 20) == 1_048_576 == (16 << 20) // files.NODE_BYTES


# -- libyaml and PyYAML's own parser give the same answers and lines -------------------------------


def test_libyaml_is_used_when_pyyaml_has_it():
    assert (files.PARSER == "libyaml") == yaml.__with_libyaml__


BROKEN = {
    "bad-indent": ("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n   namespace: shop\n", 5),
    "unclosed-flow": ("a: 1\nkind: [unclosed\n", 3),
    "tab": ("a:\n\tb: 1\n", 2),
    "duplicate-anchor": ("a: &x 1\nb: &x 2\n", 2),
    "undefined-alias": ("a: 1\nb: *nope\n", 2),
    "control-character": ("a: 1\nb: \x07\n", 2),
    "missing-colon": ("a: 1\nb\nc: 2\n", 3),
    "two-documents-one-broken": ("a: 1\n---\nb: [\n", 4),
}


@pytest.mark.parametrize("text, line", BROKEN.values(), ids=BROKEN.keys())
def test_error_lines_are_the_same_with_both_parsers(text, line):
    problems = []
    for parser in PARSERS:
        with pytest.raises(yaml.YAMLError) as caught:
            files.load_yaml_all(text, 1000, parser=parser)
        problems.append(files.yaml_problem(caught.value, text))
    for problem in problems:
        assert problem.startswith(f"line {line}: invalid YAML: ") and "\n" not in problem, problems


def test_load_yaml_wants_one_document():
    assert files.load_yaml("", 10) is None
    assert files.load_yaml("a: [1]\n", 10) == {"a": [1]}
    with pytest.raises(yaml.YAMLError, match="expected a single document"):
        files.load_yaml("a: 1\n---\nb: 2\n", 10)


TRICKY = """\
base: &base {a: 1, b: [1, 2]}
merged: {<<: *base, c: 3}
merged-list:
  <<: [*base, {d: 4}]
  e: 5
set: !!set {x, y}
omap: !!omap [{k: 1}, {j: 2}]
when: 2001-12-14t21:59:43.10-05:00
day: 2002-12-14
blob: !!binary aGVsbG8=
numbers: [0o17, 0x1f, 1_000, 190:20:30, .inf, -.Inf, 1e3]
words: [yes, No, ~, null, "quoted", 'single', plain text]
shared: [*base, *base]
"""


@pytest.mark.parametrize("parser", PARSERS)
def test_values_are_what_safe_load_makes(parser):
    got = files.load_yaml_all(TRICKY, 1000, parser=parser)
    assert got == list(yaml.safe_load_all(TRICKY))
    assert got[0]["shared"][0] is got[0]["shared"][1]  # an alias is the same object, not a copy


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(string.printable, max_size=12),
                    st.floats(allow_nan=False))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                      max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(st.lists(values, min_size=1, max_size=3), st.booleans())
def test_any_document_loads_as_safe_load_loads_it(docs, flow):
    text = yaml.safe_dump_all(docs, default_flow_style=flow)
    want = list(yaml.safe_load_all(text))
    for parser in PARSERS:
        assert files.load_yaml_all(text, 100_000, parser=parser) == want
