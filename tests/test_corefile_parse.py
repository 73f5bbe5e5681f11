"""kdns.corefile: the Corefile grammar as CoreDNS reads it (coredns/caddy's caddyfile), as tables.

Each row is Corefile text in, and the blocks/directives (or the problems, with file:line) out.
Where CoreDNS has a quirk (a `#` ends a word, `. { log }` on one line is an error, no
backtick strings, no snippet arguments) the row says so.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.corefile import CorefileError, Limits, MemoryReader, parse_text, read_corefile
from kdns.corefile.lexer import substitute, tokenize


def words(text: str) -> list[tuple[int, str]]:
    tokens, problems = tokenize(text, "Corefile")
    assert not problems
    return [(t.origin.line, t.text) for t in tokens]


@pytest.mark.parametrize("text, expected", [
    ("a b\n  c", [(1, "a"), (1, "b"), (2, "c")]),
    ("host:123 {\n  directive\n}", [(1, "host:123"), (1, "{"), (2, "directive"), (3, "}")]),
    ("# a comment\nlog # to the end of the line\n", [(2, "log")]),
    ("foo#bar baz\nnext", [(1, "foo"), (2, "next")]),  # CoreDNS: '#' ends a word too
    ('a "quoted value" b', [(1, "a"), (1, "quoted value"), (1, "b")]),
    (r'A "quoted \"value\" inside" B', [(1, "A"), (1, 'quoted "value" inside'), (1, "B")]),
    (r'"don\'t\escape"', [(1, r"don\'t\escape")]),
    (r'"keep\\both"', [(1, r"keep\\both")]),
    (r'match "^(?:[^.]+\.){4,}internal\.cloudapp\.net\.$"', [(1, "match"), (1, r"^(?:[^.]+\.){4,}internal\.cloudapp\.net\.$")]),
    ('a "line\nbreak" {\n  b\n}', [(1, "a"), (1, "line\nbreak"), (2, "{"), (3, "b"), (4, "}")]),
    ('empty "" string', [(1, "empty"), (1, ""), (1, "string")]),
    ('a"b"c', [(1, 'a"b"c')]),  # a quote inside a word is an ordinary character
    ('"ab"cd', [(1, "ab"), (1, "cd")]),
    ('"# not a comment"', [(1, "# not a comment")]),
    ("`two words`", [(1, "`two"), (1, "words`")]),  # CoreDNS has no backtick strings
    ("skip those\r\nCR characters", [(1, "skip"), (1, "those"), (2, "CR"), (2, "characters")]),
    ("\ufeff:8080", [(1, ":8080")]),
    ("{$A}{b}", [(1, "{$A}{b}")]),  # braces are tokens only when they stand alone
    ("forward . 1.1.1.1 \\\n  8.8.8.8", [(1, "forward"), (1, "."), (1, "1.1.1.1"), (1, "\\"), (2, "8.8.8.8")]),  # no continuation
    ("a\u00a0b\u2003c", [(1, "a"), (1, "b"), (1, "c")]),  # Unicode spaces separate, as in Go
])
def test_lexer(text, expected):
    assert words(text) == expected


def test_an_unterminated_quote_is_an_error_at_its_line():
    tokens, problems = tokenize('a\nmatch "^foo\n', "Corefile")
    assert [t.text for t in tokens] == ["a", "match", "^foo\n"]
    assert [str(p) for p in problems] == ["Corefile:2: this quoted string has no closing '\"'"]


@pytest.mark.parametrize("text, env, expected, missing", [
    ("{$ADDRESS}", {"ADDRESS": "example.org"}, "example.org", []),
    ("di{$PARTIAL}", {"PARTIAL": "r1"}, "dir1", []),
    ("{$ADDRESS}:{$PORT}", {"ADDRESS": "a.org", "PORT": "53"}, "a.org:53", []),
    ("{%ADDRESS%}:{$PORT}", {"ADDRESS": "a.org", "PORT": "53"}, "a.org:53", []),
    ("{$ADDRESS}:{%PORT%}", {"ADDRESS": "a.org", "PORT": "53"}, "a.org:53", []),
    ("{%ADDRESS}", {"ADDRESS": "a.org"}, "{%ADDRESS}", []),  # malformed: kept as written
    (":{$PORT$}", {"PORT": "53"}, ":", ["PORT$"]),  # the name is "PORT$", which is not set
    ("{$}", {}, "{$}", []),
    ("{%%}", {}, "{%%}", []),
    ("{{ .Name }} {$X}", {"X": "x"}, "{{ .Name }} x", []),
    ("{1}svc.cluster.local", {}, "{1}svc.cluster.local", []),  # rewrite's group references stay
    ("{args[0]}", {}, "{args[0]}", []),  # Caddy 2 snippet arguments: not a CoreDNS thing
    ("{$LOOP}", {"LOOP": "{$LOOP}"}, "{$LOOP}", []),  # replaced text is not scanned again
    ("{$UNSET}x", {}, "x", ["UNSET"]),
])
def test_environment_substitution(text, env, expected, missing):
    found: list[str] = []
    assert substitute(text, env, found) == expected
    assert found == missing


def render(text: str, **kw) -> list[tuple[list[str], list[str]]]:
    """[(keys, directives)] of a Corefile that must parse cleanly."""
    corefile = parse_text(text, **kw)
    assert not corefile.errors, [str(e) for e in corefile.errors]
    return [([str(k) for k in b.keys], [str(d) for d in b.directives]) for b in corefile.blocks]


def problems(text: str, **kw) -> list[str]:
    return [str(e) for e in parse_text(text, **kw).errors]


@pytest.mark.parametrize("text, expected", [
    # several keys per block, separated by spaces or commas, continued after a trailing comma
    ("a.org b.org:5353 {\n  log\n}", [(["dns://a.org:53", "dns://b.org:5353"], ["log"])]),
    ("a.org, b.org {\n  log\n}", [(["dns://a.org:53", "dns://b.org:53"], ["log"])]),
    ("a.org,\n  b.org,\n  c.org {\n log\n}", [(["dns://a.org:53", "dns://b.org:53", "dns://c.org:53"], ["log"])]),
    # the opening brace may be on the line after the keys
    ("a.org\n{\n  log\n}", [(["dns://a.org:53"], ["log"])]),
    # a single block may leave out the braces (it runs to the end of the file)
    ("example.org:1053\nlog\nerrors", [(["dns://example.org:1053"], ["log", "errors"])]),
    ("example.org", [(["dns://example.org:53"], [])]),
    # directives: arguments to the end of the line; a block opened on that line
    (".:53 {\n forward . 1.1.1.1 8.8.8.8 {\n  max_fails 3\n  policy sequential\n }\n}",
     [(["dns://.:53"], ["forward . 1.1.1.1 8.8.8.8 { max_fails 3; policy sequential }"])]),
    (".:53 {\n forward . 1.1.1.1 { max_fails 3 }\n}", [(["dns://.:53"], ["forward . 1.1.1.1 { max_fails 3 }"])]),
    (".:53 {\n health {\n }\n}", [(["dns://.:53"], ["health { }"])]),
    (".:53 {\n a {\n  nested {\n   deeper x\n  }\n  after\n }\n b\n}", [(["dns://.:53"], ["a { nested { deeper x }; after }", "b"])]),
    (".:53 {\n a {\n  b { c } }\n}", [(["dns://.:53"], ["a { b { c } }"])]),  # '}' after a nested block may close the outer one
    # a directive may start on the line of the block's '{'
    (".:53 { errors\n log\n}", [(["dns://.:53"], ["errors", "log"])]),
    # quoted arguments; multi-line quoted text is one argument; the word 'import' mid-line is an argument
    ('.:53 {\n template ANY ANY x {\n  answer "{{ .Name }} 60 IN A 1.2.3.4"\n }\n}',
     [(["dns://.:53"], ['template ANY ANY x { answer "{{ .Name }} 60 IN A 1.2.3.4" }'])]),
    ('.:53 {\n a "x\ny" b\n c\n}', [(["dns://.:53"], ['a "x\ny" b', "c"])]),
    (".:53 {\n acl import x\n}", [(["dns://.:53"], ["acl import x"])]),
    # several blocks; comments anywhere; CIDR keys
    ("# top\na.org {\n log # x\n}\n\n10.0.0.0/24 {\n whoami\n}",
     [(["dns://a.org:53"], ["log"]), (["dns://0.0.10.in-addr.arpa:53"], ["whoami"])]),
    # schemes are recognised (a later step refuses the ones kdns does not serve)
    ("tls://.:853 {\n log\n}\nhttps://a.org {\n log\n}",
     [(["tls://.:853"], ["log"]), (["https://a.org:443"], ["log"])]),
    # an empty file name "" is skipped as a key, as in CoreDNS
    ('"" a.org {\n log\n}', [(["dns://a.org:53"], ["log"])]),
])
def test_grammar(text, expected):
    assert render(text) == expected


def test_env_in_keys_directives_and_args():
    env = {"ZONE": "Example.ORG", "PORT": "5353", "UP": "10.0.0.1", "D": "log"}
    assert render("{$ZONE}:{%PORT%} {\n {$D}\n forward . {$UP} \"x {$UP}\"\n}", env=env) == [
        (["dns://example.org:5353"], ["log", 'forward . 10.0.0.1 "x 10.0.0.1"'])]


def test_warnings_for_what_coredns_reads_differently_than_it_looks():
    corefile = parse_text(".:53 {\n forward . 1.1.1.1 \\\n   8.8.8.8\n health{\n}")
    assert [str(d) for d in corefile.blocks[0].directives] == ["forward . 1.1.1.1 \\", "8.8.8.8", "health{"]
    assert [str(w) for w in corefile.warnings] == [
        "Corefile:2: a '\\' at the end of a line does not continue it: CoreDNS passes '\\' to 'forward' as an argument",
        "Corefile:4: 'health{': put a space before '{' to open a block",
    ]


def test_each_argument_keeps_its_own_line():
    directive = parse_text('.:53 {\n template ANY ANY x {\n  answer "a\nb" c\n }\n}').blocks[0].directives[0]
    answer = directive.block[0]
    assert answer.args == ("a\nb", "c")
    assert [str(answer.origin_of(i)) for i in range(2)] == ["Corefile:3", "Corefile:4"]
    assert [str(directive.origin_of(i)) for i in range(3)] == ["Corefile:2"] * 3


def test_an_unset_variable_is_empty_text_and_a_warning():
    corefile = parse_text(".:53 {\n forward . {$UPSTREAM}\n log {$UPSTREAM}\n}", env={})
    assert [str(d) for d in corefile.blocks[0].directives] == ['forward . ""', 'log ""']  # an empty argument, as in CoreDNS
    assert [str(w) for w in corefile.warnings] == [
        "Corefile:2: environment variable UPSTREAM is not set: CoreDNS reads it as empty text"]


@pytest.mark.parametrize("text, expected", [
    # CoreDNS refuses a '}' on the line of a directive when it would close the server block
    (". { log }", ["Corefile:1: '}' must start its own line: CoreDNS reads a '}' after a directive on the same line as an error"]),
    (".:53 {\n forward . 1.1.1.1 {\n  max_fails 3\n } }",
     ["Corefile:4: '}' must start its own line: CoreDNS reads a '}' after a directive on the same line as an error"]),
    # a directive's '{' must be on its line (CoreDNS's plugins read it as a new directive otherwise)
    (".:53 {\n forward . 1.1.1.1\n {\n  max_fails 3\n }\n log\n}",
     ["Corefile:3: '{' must be on the same line as the directive it opens ('forward')"]),
    (".:53 {\n log\n", ["Corefile:1: no '}' closes the server block opened here"]),
    (".:53 {\n cache 30 {\n  success 10\n}", ["Corefile:1: no '}' closes the server block opened here"]),
    (".:53 {\n cache 30 {\n  success 10\n", ["Corefile:2: no '}' closes the '{' opened here",
                                             "Corefile:1: no '}' closes the server block opened here"]),
    ("a.org {\n log\n}\n}", ["Corefile:4: unexpected '}': no block is open here"]),
    ("a.org\nlog\n}", ["Corefile:3: unexpected '}': this server block has no '{'"]),
    (".:53 {\n cache {\n } 30\n}", ["Corefile:3: unexpected '30' after '}' on the same line"]),
    (".:53 {\n {\n  x\n }\n log\n}", ["Corefile:2: unexpected '{' where a directive name was expected"]),
    (".:53 {\n a {\n  {\n   x\n  }\n }\n}", ["Corefile:3: unexpected '{' at the start of a line"]),
    ("a.org\nlog }\nerrors", ["Corefile:2: unexpected '}': this server block has no '{'"]),
    ("{\n log\n}", ["Corefile:1: a server block needs a zone before '{' (for example '.:53 {')"]),
    ("a.org, {\n}", ["Corefile:1: expected another server key after the ',' before '{'"]),
    ("a.org,", ["Corefile:1: the file ends after a ',' that promises another server key"]),
    (".:53{\n log\n}", ["Corefile:1: server key '.:53{': '.:53{' has an empty label (a brace must be separated from other text by a space)",
                        "Corefile:3: unexpected '}': this server block has no '{'"]),
    ("a.org{\n log\n}", [("Corefile:1: server key 'a.org{': 'a.org{' is not a zone name (labels are letters, digits, '-' and '_')"
                          " (a brace must be separated from other text by a space)"),
                         "Corefile:3: unexpected '}': this server block has no '{'"]),
    ("", ["Corefile: no server blocks: CoreDNS would serve nothing"]),
    ("# only a comment\n", ["Corefile: no server blocks: CoreDNS would serve nothing"]),
    # every problem is reported, not only the first
    ("a.org {\n log }\n}\nbad..zone {\n x\n}\nfoo://b {\n}",
     ["Corefile:2: '}' must start its own line: CoreDNS reads a '}' after a directive on the same line as an error",
      "Corefile:3: unexpected '}': no block is open here",
      "Corefile:4: server key 'bad..zone': 'bad..zone' has an empty label",
      ("Corefile:7: unknown scheme 'foo://' in server key 'foo://b': CoreDNS knows dns://, tls://, quic://, grpc://, https://, "
       "https3://, unix://")]),
])
def test_grammar_errors(text, expected):
    assert problems(text) == expected


def test_check_raises_the_first_problem_carrying_all():
    corefile = parse_text("a.org {\n log }\n}\n")
    with pytest.raises(CorefileError) as info:
        corefile.check()
    assert (info.value.file, info.value.line) == ("Corefile", 2)
    assert len(info.value.problems) == 2
    assert str(info.value).endswith("(and 1 more problem)")
    assert parse_text(".:53 {\n log\n}").check().blocks


FILES = {
    "/etc/coredns/Corefile": ".:53 {\n    errors\n    import custom/*.override\n    kubernetes cluster.local {\n        import custom/k8s.opts\n    }\n}\nimport custom/*.server\n",
    "/etc/coredns/custom/b.override": "# second, by name\nlog\n",
    "/etc/coredns/custom/a.override": "rewrite name exact a.example b.example\nrewrite name exact c.example d.example\n",
    "/etc/coredns/custom/k8s.opts": "pods insecure\nttl 30\n",
    "/etc/coredns/custom/corp.server": "corp.example:53 {\n    forward . 10.0.0.53\n}\n",
    "/etc/coredns/custom/.hidden.server": "hidden.example {\n    log\n}\n",
}


def test_imports_splice_files_in_place_relative_to_the_importing_file():
    corefile = read_corefile("/etc/coredns/Corefile", MemoryReader(FILES))
    assert not corefile.errors and not corefile.warnings
    assert [([str(k) for k in b.keys], [str(d) for d in b.directives]) for b in corefile.blocks] == [
        (["dns://.:53"], ["errors", "rewrite name exact a.example b.example", "rewrite name exact c.example d.example", "log",
                          "kubernetes cluster.local { pods insecure; ttl 30 }"]),
        (["dns://hidden.example:53"], ["log"]),  # a '*' matches names starting with a dot, as in Go
        (["dns://corp.example:53"], ["forward . 10.0.0.53"]),
    ]
    main = corefile.blocks[0]
    assert [str(d.origin) for d in main.directives] == [
        "/etc/coredns/Corefile:2",
        "/etc/coredns/custom/a.override:1 (imported from /etc/coredns/Corefile:3)",
        "/etc/coredns/custom/a.override:2 (imported from /etc/coredns/Corefile:3)",
        "/etc/coredns/custom/b.override:2 (imported from /etc/coredns/Corefile:3)",
        "/etc/coredns/Corefile:4",
    ]
    assert str(main.directives[-1].block[1].origin) == "/etc/coredns/custom/k8s.opts:2 (imported from /etc/coredns/Corefile:5)"
    assert str(corefile.blocks[2].origin) == "/etc/coredns/custom/corp.server:1 (imported from /etc/coredns/Corefile:8)"
    assert corefile.files == ("/etc/coredns/Corefile", "/etc/coredns/custom/a.override", "/etc/coredns/custom/b.override",
                              "/etc/coredns/custom/k8s.opts", "/etc/coredns/custom/.hidden.server", "/etc/coredns/custom/corp.server")
    assert corefile.globs == ("/etc/coredns/custom/*.override", "/etc/coredns/custom/*.server")


def test_imported_lines_never_join_the_line_of_the_import():
    # Two one-line files imported on consecutive lines stay two directives (CoreDNS compares only
    # file and line, and would join them into `log log`).
    reader = MemoryReader({"Corefile": ".:53 {\n import a\n import a\n}\n", "a": "log"})
    corefile = read_corefile("Corefile", reader)
    assert [str(d.origin) for d in corefile.blocks[0].directives] == ["a:1 (imported from Corefile:2)", "a:1 (imported from Corefile:3)"]


def test_nested_imports_name_every_hop():
    reader = MemoryReader({"Corefile": "import conf/a\n", "conf/a": "import b\n", "conf/b": "x.org {\n log\n}\n"})
    corefile = read_corefile("Corefile", reader)
    assert str(corefile.blocks[0].directives[0].origin) == "conf/b:2 (imported from conf/a:1, imported from Corefile:1)"


def test_a_glob_matching_nothing_is_a_warning_as_in_coredns():
    corefile = parse_text(".:53 {\n log\n import custom/*.override\n}\nimport custom/*.server\n")
    assert not corefile.errors
    assert [str(w) for w in corefile.warnings] == [
        "Corefile:3: no file matches import pattern 'custom/*.override' (custom/*.override)",
        "Corefile:5: no file matches import pattern 'custom/*.server' (custom/*.server)"]


@pytest.mark.parametrize("files, expected", [
    ({"Corefile": ".:53 {\n import missing.conf\n}"},
     ["Corefile:2: cannot import missing.conf: no such file (and no snippet (missing.conf) is defined above this line)"]),
    ({"Corefile": ".:53 {\n import conf/missing\n}"}, ["Corefile:2: cannot import conf/missing: no such file"]),
    ({"Corefile": "import a\n", "a": "import b\n", "b": "import a\n"},
     ["b:1 (imported from a:1, imported from Corefile:1): import cycle: a is already being imported"]),
    ({"Corefile": ".:53 {\n import Corefile\n}"}, ["Corefile:2: import cycle: Corefile is already being imported"]),
    ({"Corefile": ".:53 {\n import\n}"}, ["Corefile:2: import needs one argument: a file, a glob or a snippet name"]),
    ({"Corefile": '.:53 {\n import ""\n}'}, ["Corefile:2: import needs a non-empty file name"]),
    ({"Corefile": ".:53 {\n import {$NOPE}\n}"}, ["Corefile:2: import needs a non-empty file name"]),
    ({"Corefile": ".:53 {\n import a b\n}", "a": "log"},
     ["Corefile:2: import takes one argument (a file, a glob or a snippet name); CoreDNS has no snippet arguments"]),
    ({"Corefile": ".:53 {\n import conf/*/*.conf\n}"},
     ["Corefile:2: import pattern 'conf/*/*.conf': CoreDNS allows at most one '*' and one '?', and no '[...]'"]),
    ({"Corefile": ".:53 {\n import conf/[ab].conf\n}"},
     ["Corefile:2: import pattern 'conf/[ab].conf': CoreDNS allows at most one '*' and one '?', and no '[...]'"]),
    ({"Corefile": ".:53 {\n import conf\n}", "conf/a": "log"},
     ["Corefile:2: cannot import conf: is a directory"]),
    ({"Corefile": ".:53 {\n import bad\n}", "bad": b"log\n\xff\n"}, ["bad:2 (imported from Corefile:2): not UTF-8 text (byte 0xff)"]),
    ({"Corefile": ".:53 {\n import big\n}", "big": "#" * 2000}, ["Corefile:2: cannot import big: larger than 1000 bytes"]),
])
def test_import_errors(files, expected):
    corefile = read_corefile("Corefile", MemoryReader(files, limit=1000))
    assert [str(e) for e in corefile.errors] == expected


def test_the_corefile_itself_missing_or_too_large():
    assert [str(e) for e in read_corefile("Corefile", MemoryReader({})).errors] == ["Corefile: no such file"]
    big = MemoryReader({"Corefile": ".:53 {\n" + " log\n" * 500 + "}"}, limit=1000)
    assert [str(e) for e in read_corefile("Corefile", big).errors] == ["Corefile: larger than 1000 bytes"]


def test_limits_hold():
    reader = MemoryReader({"Corefile": ".:53 {\n" + " import a\n" * 5 + "}", "a": "log"})
    corefile = read_corefile("Corefile", reader, limits=Limits(files=3))
    assert [str(e) for e in corefile.errors] == [f"Corefile:{n}: more than 3 files imported" for n in (4, 5, 6)]
    snippets = "(s) {\n log\n}\n.:53 {\n" + " import s\n" * 5 + "}"
    assert problems(snippets, limits=Limits(snippet_expansions=2)) == ["Corefile:7: more than 2 snippet imports"]
    # 17 tokens as written, one more per import of `s`
    assert problems(snippets, limits=Limits(tokens=19)) == ["Corefile:7: more than 19 tokens after imports and snippets"]
    assert problems(snippets, limits=Limits(tokens=16)) == ["Corefile: more than 16 tokens after imports and snippets"]
    many = MemoryReader({"Corefile": ".:53 {\n import a\n import a\n}", "a": "log # " + "x" * 60})
    assert [str(e) for e in read_corefile("Corefile", many, limits=Limits(total_bytes=150)).errors] == [
        "Corefile:3: the Corefile and its imports are larger than 150 bytes"]
    nested = ".:53 {\n" + "a {\n" * 5000 + "}\n" * 5000 + "}\n"
    assert problems(nested, limits=Limits(nesting=3)) == ["Corefile:5: blocks nested more than 3 deep"]
    assert problems(nested) == ["Corefile:34: blocks nested more than 32 deep"]  # no RecursionError
    deep = MemoryReader({"Corefile": "import a\n", "a": "import b\n", "b": "import c\n", "c": "x {\n}\n"})
    assert [str(e) for e in read_corefile("Corefile", deep, limits=Limits(depth=2)).errors] == [
        "b:1 (imported from a:1, imported from Corefile:1): imports nested more than 2 deep"]


SNIPPETS = """(common) {
    errors
    cache 30
}
(upstream) {
    forward . 10.0.0.1 {
        import opts
    }
}
(opts) {
    max_fails 3
}
a.org {
    import common
}
b.org {
    import common
    import upstream
}
"""


def test_snippets_are_replayed_where_imported_with_both_origins():
    corefile = parse_text(SNIPPETS)
    assert not corefile.errors
    assert [([str(k) for k in b.keys], [str(d) for d in b.directives]) for b in corefile.blocks] == [
        (["dns://a.org:53"], ["errors", "cache 30"]),
        (["dns://b.org:53"], ["errors", "cache 30", "forward . 10.0.0.1 { max_fails 3 }"]),
    ]
    b = corefile.blocks[1]
    assert str(b.directives[1].origin) == "Corefile:3 (in snippet (common), imported from Corefile:17)"
    # the snippet `opts` is imported inside `upstream`'s body when that is replayed
    assert str(b.directives[2].block[0].origin) == (
        "Corefile:11 (in snippet (opts), imported from Corefile:7, in snippet (upstream), imported from Corefile:18)")


def test_snippets_in_imported_files_and_blocks_from_snippets():
    reader = MemoryReader({"Corefile": "import snippets.conf\nimport zone\n", "snippets.conf": "(zone) {\n z.org {\n  log\n }\n}\n"})
    corefile = read_corefile("Corefile", reader)
    assert not corefile.errors
    assert [str(k) for k in corefile.blocks[0].keys] == ["dns://z.org:53"]
    assert str(corefile.blocks[0].origin) == "snippets.conf:2 (in snippet (zone), imported from Corefile:2)"


@pytest.mark.parametrize("text, expected", [
    (".:53 {\n import common\n}\n(common) {\n log\n}",
     ["Corefile:2: cannot import common: no such file (and no snippet (common) is defined above this line)"]),
    ("(s) {\n log\n}\n(s) {\n errors\n}\n.:53 {\n import s\n}", ["Corefile:4: snippet (s) is already defined at Corefile:1"]),
    ("(loop) {\n import loop\n}\n.:53 {\n import loop\n}", ["Corefile:2: snippet (loop) imports itself",
                                                            ("Corefile:5: cannot import loop: no such file (and no snippet (loop) "
                                                             "is defined above this line)")]),
    ("(a) {\n import b\n}\n(b) {\n import a\n}\n.:53 {\n import a\n}",
     ["Corefile:5 (in snippet (b), imported from Corefile:2, in snippet (a), imported from Corefile:8): snippet (a) imports itself"]),
    ("(s) {\n log\n}\n.:53 {\n import s {args[0]}\n}",
     ["Corefile:5: import takes one argument (a file, a glob or a snippet name); CoreDNS has no snippet arguments"]),
    ("(s)\nlog", ["Corefile:1: snippet (s) needs a block: (s) { ... }"]),
    ("(s) {\n log\n", ["Corefile:1: no '}' closes snippet (s)"]),
    ("() {\n log\n}", ["Corefile:1: a snippet needs a name: (name) { ... }"]),
])
def test_snippet_errors(text, expected):
    assert problems(text) == expected


def test_caddy2_snippet_arguments_stay_as_written():
    # CoreDNS's import has no arguments, so `{args[0]}` in a snippet is literal text.
    assert render("(s) {\n forward . {args[0]}\n}\n.:53 {\n import s\n}") == [(["dns://.:53"], ["forward . {args[0]}"])]


PIECES = ["{", "}", "\n", " ", ".:53", "a.org,", "10.0.0.0/15", "tls://.", "log", "forward", ".", "1.1.1.1", "import",
          "s", "sub/*.conf", "missing", "(s)", "#", '"', '"x y"', "\\", "{$X}", "{$Y}", "cache", "30", "bind", "127.0.0.1"]
FUZZ_FILES = {"s": "log\n", "sub/a.conf": "import ../s\nerrors {\n", "sub/b.conf": "import b.conf\n}\nb.org {\n"}


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60))
def test_any_text_parses_to_a_model_or_problems_with_lines(pieces):
    """Never an exception: every outcome is blocks, errors and warnings, each with a real line."""
    text = " ".join(pieces)
    corefile = parse_text(text, reader=MemoryReader(FUZZ_FILES), env={"X": "x"})
    lines = {"Corefile": text.count("\n") + 1, **{p: t.count("\n") + 1 for p, t in FUZZ_FILES.items()}}
    for problem in corefile.errors + corefile.warnings:
        assert problem.origin is not None and 0 <= problem.line <= lines[problem.origin.file], str(problem)
    for block in corefile.blocks:
        assert block.keys
        for directive in block.directives:
            assert 1 <= directive.origin.line <= lines[directive.origin.file]
