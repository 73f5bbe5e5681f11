"""Coverage-guided fuzzing of kdns with atheris (libFuzzer), for runs longer than `make test`'s.

`make test` runs the hypothesis targets of tests/test_fuzz.py for a bounded number of
examples. This harness drives the same checks (the functions of tests/test_fuzz.py, which
raise AssertionError when an invariant breaks) from atheris, which instruments kdns and
dnslib and keeps the inputs that reach new code:

    packet    query bytes -> Responder.handle over the demo cluster (several configurations,
              UDP and TCP): no exception, no "bug" SERVFAIL, ID and question kept, size
              limits, dnspython parses the reply, same bytes as a fresh responder
    reply     one byte choosing a client query (test_fuzz.CLIENT_QUERIES), then an upstream
              reply -> upstream.parse_reply (ReplyError only) and upstream.render
    manifest  JSON text (an object, a list of them or a `kind: List`) -> convert.convert
              (ObjectError only), applied to the demo index, its names answered
    config    the bytes of a config file -> load_file / check_config_file / build

Usage:

    python -m perf.fuzz [--target packet|reply|manifest|config] [--workdir DIR] [-- LIBFUZZER ARGS]

    python -m perf.fuzz --target packet -- -max_total_time=300
    python -m perf.fuzz --target reply -- -max_total_time=600 -print_final_stats=1
    python -m perf.fuzz --target packet -- CRASH-FILE          # run one input (reproduce)

The default target is `packet`. The arguments after `--` go to libFuzzer as they are
(`-max_total_time=S`, `-runs=N`, `-max_len=N`, `-jobs=N`, `-print_final_stats=1`, or files to
run once). Unless given there, `-timeout=10` (an input that takes 10 s is reported as a hang)
and `-max_len` (4096 for packets and replies) are added.

The seeds are tests/fuzz_corpus/<target>/ (read, never written); the inputs atheris finds go
to DIR/corpus (default DIR: $TMPDIR/kdns-fuzz-<target>, kept between runs so a run starts
where the last one stopped), and crashes to DIR/crash-* (libFuzzer's artifacts). A crash is
a finding: copy the file into tests/fuzz_corpus/<target>/ under a name saying what it is,
so `make test` replays it, and report it (tests/fuzz_corpus/README.md).

libFuzzer stops at the first crash. `--keep-going` goes on past failures instead: each
failing input is saved as DIR/finding-<sha1>.bin with its message in DIR/finding-<sha1>.txt,
and the first input of each kind of failure (the message with hex, numbers and quoted
bytes blanked out) is printed; the run then ends on -max_total_time/-runs as usual. Use it
when known, unfixed bugs would stop every run at once (the bug-* files of the corpus).

Needs kdns installed with its test extra (hypothesis and dnspython: tests/test_fuzz.py is
imported) and atheris (`pip install atheris`: wheels for CPython 3.8-3.11 on x86_64 Linux;
elsewhere it needs clang to build). Without atheris it says so and exits 2.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import re
import sys
import tempfile
import traceback
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TESTS = ROOT / "tests"
TARGETS = ("packet", "reply", "manifest", "config")
MAX_LEN = {"packet": 4096, "reply": 4096, "manifest": 8192, "config": 4096}


def _load(path: Path) -> types.ModuleType:
    """A test module by its path (tests/ is not a package; its modules are pytest's)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # hypothesis and dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, rest = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="perf/fuzz.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=TARGETS, default="packet")
    parser.add_argument("--workdir", type=Path, help="where found inputs and crashes go (default $TMPDIR/kdns-fuzz-TARGET)")
    parser.add_argument("--keep-going", action="store_true", help="save failing inputs and go on instead of stopping at the first")
    args = parser.parse_args(ours)

    try:
        import atheris
    except ImportError as exc:
        print(f"perf/fuzz.py: atheris is not available ({exc}); install it with `pip install atheris` "
              "(wheels for CPython 3.8-3.11 on x86_64 Linux). The hypothesis targets run in `make test`.", file=sys.stderr)
        return 2

    with atheris.instrument_imports(include=["kdns", "dnslib"]):
        test_fuzz = _load(TESTS / "test_fuzz.py")  # imports kdns (instrumented) and builds the responders

    workdir = args.workdir or Path(tempfile.gettempdir()) / f"kdns-fuzz-{args.target}"
    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = TESTS / "fuzz_corpus" / args.target
    scratch = Path(tempfile.mkdtemp(prefix="kdns-fuzz-config-"))
    one_input = _target(test_fuzz, args.target, scratch)
    if args.keep_going:
        one_input = _keep_going(one_input, workdir)

    libfuzzer = [sys.argv[0], *rest]
    if not any(a.startswith("-timeout=") for a in rest):
        libfuzzer.append("-timeout=10")
    if not any(a.startswith("-max_len=") for a in rest):
        libfuzzer.append(f"-max_len={MAX_LEN[args.target]}")
    if not any(a.startswith("-artifact_prefix=") for a in rest):
        libfuzzer.append(f"-artifact_prefix={workdir}{os.sep}")
    if not any(not a.startswith("-") for a in rest):  # no files or directories of our caller's: ours
        libfuzzer += [str(corpus), str(seeds)]  # new inputs go to the first directory only
    print(f"perf/fuzz.py: target {args.target}; corpus {corpus}; seeds {seeds}; crashes in {workdir}", file=sys.stderr, flush=True)
    atheris.Setup(libfuzzer, one_input)
    atheris.Fuzz()
    return 0  # not reached: atheris.Fuzz() exits the process


def _keep_going(check, workdir: Path):
    kinds: set[str] = set()

    def one_input(data: bytes) -> None:
        try:
            check(data)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, none stops the run
            message = f"{type(exc).__name__}: {exc}"
            name = hashlib.sha1(data).hexdigest()
            (workdir / f"finding-{name}.bin").write_bytes(data)
            (workdir / f"finding-{name}.txt").write_text(message + "\n\n" + "".join(traceback.format_exception(exc)))
            kind = kind_of_failure(exc)
            if kind not in kinds:
                kinds.add(kind)
                print(f"\nperf/fuzz.py: new kind of failure #{len(kinds)} ({workdir}/finding-{name}.bin): {kind}\n  {message[:400]}",
                      file=sys.stderr, flush=True)

    return one_input


def kind_of_failure(exc: BaseException) -> str:
    """What tells failures apart: the exception at the root of the chain, where it was raised,
    and the words of the message (quoted text, reprs, hex and numbers blanked out)."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    frames = traceback.extract_tb(root.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    text = str(root).splitlines()[0] if str(root) else ""
    text = re.sub(r"b?'(?:[^'\\]|\\.)*'|b?\"(?:[^\"\\]|\\.)*\"", "Q", text)
    text = re.sub(r"\(.*\)|\[.*\]|\{.*\}", "R", text)
    text = re.sub(r"[0-9a-f]{8,}", "H", text)
    text = re.sub(r"\d+", "N", text)
    return f"{type(root).__name__} at {where}: {text[:120]}"


def _target(test_fuzz, target: str, scratch: Path):
    if target == "packet":
        return test_fuzz.check_packet
    if target == "reply":
        return test_fuzz.check_upstream
    if target == "manifest":

        def manifest(data: bytes) -> None:
            try:
                objects = test_fuzz.load_objects(data)
            except (ValueError, RecursionError):  # not JSON (json's errors are ValueErrors)
                return
            test_fuzz.check_objects(objects)

        return manifest

    def config(data: bytes) -> None:
        test_fuzz.check_config_text(data, scratch)

    return config


if __name__ == "__main__":
    sys.exit(main())
