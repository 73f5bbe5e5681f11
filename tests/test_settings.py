"""`kdns serve` options from a config file and from flags, and `kdns check-config`.

In-process through `kdns.cli._parser` and `kdns.settings.build_config` (the very functions
`kdns serve` runs), and as subprocesses where the user-visible part is the exit status and
the lines printed. Every option is taken from `kdns.settings.OPTIONS`, so an option added
later is covered (or makes a test say what value it needs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import DEMO, ROOT

from kdns import settings
from kdns.cli import _parser
from kdns.config import ConfigError
from kdns.settings import build_config

KDNS = [sys.executable, "-m", "kdns"]
RUN_TIMEOUT = 20.0
SOURCES = ("manifests", "kubeconfig", "apiserver")
ENVIRON: dict[str, str] = {}  # no KUBECONFIG, not in a pod: the environment must not pick the source


# -- helpers ---------------------------------------------------------------------------------


def string_values(tmp_path: Path) -> dict[str, object]:
    """A valid non-default value for every string option that is not a choice."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search example.org\nnameserver 127.0.0.53\nnameserver ::1\n")
    return {
        "manifests": [str(DEMO), str(tmp_path / "more")],
        "kubeconfig": str(tmp_path / "kubeconfig"),
        "apiserver": "http://127.0.0.1:6443",
        "listen": ["127.0.0.1:5300", "[::1]:5301"],
        "zone": ["example.local", "cluster.test"],
        "namespaces": ["shop,web", "kube-system"],
        "labels": "tier in (web,api),dns!=off",
        "upstream": ["127.0.0.1:5399", "::1", "[::1]:5400"],
        "resolv-conf": str(resolv),
        "stub-domain": ["corp.example=127.0.0.4:5300", "lab.example=::1"],
        "health": "127.0.0.1:8080",
        "ready": ":8181",
        "metrics": "[::1]:9153",
        "allow-recursion": ["10.0.0.0/8", "fd00::/8"],
        "allow-transfer": ["10.0.0.0/8", "fd00::/8"],
        "explain": "127.0.0.1:8053",
        "external-zone": ["k8s.example.org", "lb.example.net"],
        "external-apex": "ns",
        "hosts": [str(tmp_path / "hosts"), str(tmp_path / "more-hosts")],
    }


def non_default(option: settings.Option, tmp_path: Path):
    """A valid value different from the option's default, by the option's kind."""
    strings = string_values(tmp_path)
    if option.name in strings:
        return strings[option.name]
    if option.choices:
        return next(c for c in option.choices if c != option.default)
    if option.kind is bool:
        return not option.default
    if option.kind is int:
        return option.default * 2 + 1
    if option.kind is float:
        return option.default * 2 + 0.5
    raise AssertionError(f"no test value for the string option {option.name!r}: add one to string_values()")


def as_flags(values: dict[str, object]) -> list[str]:
    """The command-line flags giving `values` (lists as repeated flags)."""
    argv = []
    for name, value in values.items():
        option = settings.BY_NAME[name]
        if option.kind is bool:
            argv.append(f"--{name}" if value else f"--no-{name}")
        elif option.repeat:
            for item in value:
                argv += [f"--{name}", str(item)]
        else:
            argv += [f"--{name}", str(value)]
    return argv


def write_config(path: Path, values: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def configure(tmp_path: Path, file_values: dict[str, object] | None = None, flags: list[str] = ()):
    """The ServeConfig of `kdns serve [--config FILE] FLAGS` (FILE holding `file_values`)."""
    argv = ["serve"]
    if file_values is not None:
        argv += ["--config", str(write_config(tmp_path / "kdns.yaml", file_values))]
    return build_config(_parser().parse_args([*argv, *flags]), ENVIRON)


def config_error(tmp_path: Path, file_values: dict[str, object], flags: list[str] = ()) -> str:
    with pytest.raises(ConfigError) as caught:
        configure(tmp_path, file_values, flags)
    return str(caught.value)


def run_kdns(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    return subprocess.run([*KDNS, *map(str, args)], check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT, env=env)


# -- every option round-trips between the file and the flags -----------------------------------


@pytest.mark.parametrize("option", settings.OPTIONS, ids=[o.name for o in settings.OPTIONS])
def test_option_in_file_equals_same_option_as_flag(option, tmp_path):
    """Each option, set to a non-default value in the config file or as the flag of the same
    name, gives the same configuration, and one that differs from the default (so the
    value was not silently dropped on either path)."""
    value = non_default(option, tmp_path)
    from_file = configure(tmp_path, {option.name: value})
    from_flags = configure(tmp_path, None, as_flags({option.name: value}))
    assert from_file == from_flags
    assert from_file != configure(tmp_path, None), f"{option.name}={value!r} changed nothing"


@pytest.mark.parametrize("source", SOURCES)
def test_every_option_at_once_in_file_equals_flags(source, tmp_path):
    """All the options together (with one source each time: they exclude each other) give
    the same configuration from a file as from flags, and `kdns check-config` accepts that
    file."""
    values = {o.name: non_default(o, tmp_path) for o in settings.OPTIONS if o.name not in SOURCES or o.name == source}
    from_file = configure(tmp_path, values)
    from_flags = configure(tmp_path, None, as_flags(values))
    assert from_file == from_flags
    result = run_kdns("check-config", tmp_path / "kdns.yaml")
    assert (result.returncode, result.stdout.strip()) == (0, f"{tmp_path / 'kdns.yaml'}: OK"), result.stdout + result.stderr


def test_two_sources_in_a_file_are_an_error_naming_them(tmp_path):
    """A file naming two sources (manifests and apiserver) is refused, naming the options."""
    message = config_error(tmp_path, {"manifests": [str(DEMO)], "apiserver": "http://127.0.0.1:6443"})
    assert message.startswith(f"{tmp_path / 'kdns.yaml'}: manifests: ") and "apiserver" in message, message


def test_option_list_is_the_documented_one(tmp_path):
    """The test values above cover what OPTIONS says: every string option that is not a
    choice has a value, so a new option cannot slip past the round trip unnoticed."""
    strings = {o.name for o in settings.OPTIONS if o.kind is str and not o.choices}
    assert strings == set(string_values(tmp_path))


# -- flags override the file ----------------------------------------------------------------


def test_flags_override_file_values(tmp_path):
    """A flag given with --config wins over the file's key; keys without a flag keep the
    file's value."""
    file_values = {"ttl": 30, "autopath": True, "log-format": "json", "cache-size": 77, "lameduck": 2}
    cfg = configure(tmp_path, file_values, ["--ttl", "7", "--no-autopath", "--log-format", "text"])
    assert cfg.dns.ttl == 7
    assert cfg.dns.autopath is False
    assert cfg.log_format == "text"
    assert cfg.cache_size == 77 and cfg.lameduck == 2


def test_list_flag_replaces_the_file_list(tmp_path):
    """`--zone x` (or `--upstream`, `--listen`) replaces the file's list; it does not add to it."""
    file_values = {
        "zone": ["a.local", "b.local"],
        "upstream": ["127.0.0.1:5301", "127.0.0.1:5302"],
        "listen": ["127.0.0.1:5353", "127.0.0.2:5353"],
        "namespaces": ["shop", "web"],
    }
    cfg = configure(tmp_path, file_values, ["--zone", "x.local", "--upstream", "127.0.0.9", "--listen", "127.0.0.1:5400"])
    assert cfg.dns.zones == ("x.local",)
    assert cfg.upstreams == (("127.0.0.9", 53),)
    assert [str(a) for a in cfg.listen] == ["127.0.0.1:5400"]
    assert cfg.namespaces == frozenset({"shop", "web"})  # no flag: the file's list


@pytest.mark.parametrize("option", [o for o in settings.OPTIONS if o.default not in (None, [])], ids=lambda o: o.name)
def test_flag_with_the_default_value_overrides_a_file_value(option, tmp_path):
    """Per option: the file sets a non-default value, the flag sets the default back; the
    result is the default configuration (the flag is not ignored because it equals the
    default)."""
    cfg = configure(tmp_path, {option.name: non_default(option, tmp_path)}, as_flags({option.name: option.default}))
    assert cfg == configure(tmp_path, None)


# -- errors name the key ------------------------------------------------------------------------


def test_unknown_key_is_an_error_suggesting_the_option(tmp_path):
    """`cache_ttl` is not an option: the error names it and suggests `cache-ttl`; a key like
    nothing known gets no suggestion."""
    message = config_error(tmp_path, {"cache_ttl": 5})
    assert "cache_ttl: unknown option" in message and "'cache-ttl'" in message, message
    message = config_error(tmp_path, {"bogus": 1})
    assert "bogus: unknown option" in message and "did you mean" not in message, message


WRONG_VALUES = {
    "list-item-type": ({"upstream": ["127.0.0.1", 5]}, "upstream[1]: expected a string, got 5"),
    "int-as-string": ({"ttl": "five"}, "ttl: expected a whole number, got 'five'"),
    "int-as-float": ({"cache-size": 1.5}, "cache-size: expected a whole number, got 1.5"),
    "bool-as-string": ({"autopath": "yes"}, "autopath: expected true or false, got 'yes'"),
    "number-as-bool": ({"lameduck": True}, "lameduck: expected a number, got True"),
    "choice": ({"pods": "sometimes"}, "pods: must be one of disabled, insecure, verified, got 'sometimes'"),
    "list-as-mapping": ({"zone": {"a": 1}}, "zone: expected a list of str, got dict"),
    "address-in-list": ({"upstream": ["127.0.0.1", "10.0.0.x"]}, "upstream[1]: not an address: '10.0.0.x'"),
    "ttl-range": ({"ttl": 9999}, "ttl: must be between 0 and 3600 seconds, got 9999"),
    "listen-host": ({"listen": ["127.0.0.1:53", "localhost:53"]}, "listen[1]: not an IP address: 'localhost'"),
    "stub-inside-zone": ({"stub-domain": ["x.cluster.local=127.0.0.1"]}, "stub-domain[0]: 'x.cluster.local' lies inside"),
    "negative": ({"lameduck": -1}, "lameduck: must not be negative, got -1"),
    "http-address": ({"health": "nowhere"}, "health: expected HOST:PORT or :PORT, got 'nowhere'"),
    "nan": ({"tcp-idle-timeout": float("nan")}, "tcp-idle-timeout: must be a finite number, got nan"),
    "infinity": ({"reload-interval": float("inf")}, "reload-interval: must be a finite number, got inf"),
    "zone-too-long": ({"zone": ["cluster.local", "a" * 50 + ".example"]}, "zone[1]: 58 characters, more than 57"),
}


@pytest.mark.parametrize("values, fragment", WRONG_VALUES.values(), ids=WRONG_VALUES.keys())
def test_wrong_value_in_file_names_the_key_path(tmp_path, values, fragment):
    """A value of the wrong type or out of range is an error naming its key path in the
    file (`upstream[1]`, `ttl`), not the flag it would be on the command line."""
    message = config_error(tmp_path, values)
    assert fragment in message, message
    assert not re.search(r"(^|\s)--[a-z]", message), message


def test_key_without_a_value_means_the_default(tmp_path):
    """`ttl:` with nothing after it (YAML null) is the same as leaving the key out."""
    path = tmp_path / "kdns.yaml"
    path.write_text(f"manifests: [{DEMO}]\nttl:\nlisten:\npods: ~\nlameduck: null\n")
    built = build_config(_parser().parse_args(["serve", "--config", str(path)]), ENVIRON)
    default = build_config(_parser().parse_args(["serve", "--manifests", str(DEMO)]), ENVIRON)
    assert (built.dns.ttl, built.listen, built.dns.pods, built.lameduck) == (default.dns.ttl, default.listen, default.dns.pods, default.lameduck)
    result = run_kdns("check-config", path)
    assert (result.returncode, result.stdout) == (0, f"{path}: OK\n"), result.stderr


def test_missing_resolv_conf_names_key_and_file(tmp_path):
    """A resolv-conf that does not exist: the error names the key and the missing file."""
    missing = tmp_path / "nope.conf"
    message = config_error(tmp_path, {"resolv-conf": str(missing)})
    assert f"resolv-conf: {missing}: No such file or directory" in message, message


# -- kdns check-config ------------------------------------------------------------------------


def test_check_config_accepts_the_documented_file():
    """`kdns check-config config/kdns.yaml` prints OK and exits 0."""
    result = run_kdns("check-config", "config/kdns.yaml")
    assert (result.returncode, result.stdout, result.stderr) == (0, "config/kdns.yaml: OK\n", "")


def test_check_config_prints_each_type_problem_on_its_own_line(tmp_path):
    """Several keys of the wrong type or unknown: one line each, prefixed with the file, exit 1."""
    path = write_config(tmp_path / "bad.yaml", {"ttl": "x", "upstream": ["127.0.0.1", 5], "cache_ttl": 5})
    result = run_kdns("check-config", path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{path}: ttl: expected a whole number, got 'x'",
        f"{path}: upstream[1]: expected a string, got 5",
        f"{path}: cache_ttl: unknown option (did you mean 'cache-ttl'?)",
    ]


def test_check_config_prints_each_value_problem_on_its_own_line(tmp_path):
    """Several keys with bad values (well typed): every one is named, each on its own line."""
    path = write_config(tmp_path / "bad.yaml", {"ttl": 9999, "upstream": ["127.0.0.1", "10.0.0.x"], "lameduck": -1})
    result = run_kdns("check-config", path)
    assert result.returncode == 1
    assert sorted(result.stdout.splitlines()) == sorted([
        f"{path}: ttl: must be between 0 and 3600 seconds, got 9999",
        f"{path}: upstream[1]: not an address: '10.0.0.x'",
        f"{path}: lameduck: must not be negative, got -1",
    ])


def test_check_config_prints_type_and_value_problems_together(tmp_path):
    """A file with a wrongly typed key and a well-typed key with a bad value: check-config
    names both (it "prints each problem"), so one run shows everything to fix."""
    path = write_config(tmp_path / "bad.yaml", {"ttl": "x", "upstream": ["10.0.0.x"]})
    result = run_kdns("check-config", path)
    assert result.returncode == 1
    assert sorted(result.stdout.splitlines()) == sorted([
        f"{path}: ttl: expected a whole number, got 'x'",
        f"{path}: upstream[0]: not an address: '10.0.0.x'",
    ])


def test_check_config_missing_file_and_bad_yaml(tmp_path):
    """A file that does not exist, or is not YAML: one line naming the file, exit 1."""
    missing = tmp_path / "nope.yaml"
    result = run_kdns("check-config", missing)
    assert (result.returncode, result.stdout) == (1, f"{missing}: No such file or directory\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("ttl: 5\n  listen: [\n")
    result = run_kdns("check-config", broken)
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 1 and result.stdout.startswith(f"{broken}: line ") and "invalid YAML" in result.stdout


@pytest.mark.parametrize(
    "raw, expected",
    [(b"ttl: 5\n# caf\xe9\n", "line 2: not UTF-8 text (byte 0xe9)"),
     (b"ttl: !!float 5z\n", "invalid YAML value"),
     (b"listen: [2001-12-14t25:59:43]\n", "invalid YAML value"),
     (b"ttl: !!float\n", "invalid YAML value")],
    ids=["latin-1", "bad-float-tag", "bad-timestamp", "empty-float-tag"],
)
def test_unreadable_config_is_one_line_naming_the_file(tmp_path, raw, expected):
    """A file that is not UTF-8, or a tagged value YAML cannot build: `check-config` says so
    in one line naming the file, and `kdns serve --config` refuses it (no traceback)."""
    path = tmp_path / "kdns.yaml"
    path.write_bytes(raw)
    result = run_kdns("check-config", path)
    assert result.returncode == 1 and result.stdout.startswith(f"{path}: ") and expected in result.stdout, result
    result = run_kdns("serve", "--config", path, "--manifests", DEMO, "--listen", "127.0.0.1:0")
    assert result.returncode == 1 and result.stderr.startswith(f"kdns: error: {path}: ") and expected in result.stderr, result.stderr


# -- kdns serve with a bad file or flag ---------------------------------------------------------


@pytest.mark.parametrize(
    "values, key",
    [({"cache_ttl": 5}, "cache_ttl"), ({"upstream": ["127.0.0.1", 5]}, "upstream[1]"), ({"ttl": 9999}, "ttl"),
     ({"upstream": ["127.0.0.1", "10.0.0.x"]}, "upstream[1]")],
    ids=["unknown-key", "wrong-type", "out-of-range", "bad-address"],
)
def test_serve_with_bad_config_exits_1_with_one_line_naming_the_key(tmp_path, values, key):
    """`kdns serve --config BAD` does not start: exit 1, one `kdns: error:` line naming the key."""
    path = write_config(tmp_path / "bad.yaml", {"manifests": [str(DEMO)], **values})
    result = run_kdns("serve", "--config", path, "--listen", "127.0.0.1:0")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdns: error: "), result.stderr
    assert f" {key}: " in lines[0], lines[0]


@pytest.mark.parametrize("values", [{"ttl": "x"}, {"ttl": 9999}], ids=["wrong-type", "out-of-range"])
def test_serve_with_bad_config_names_the_file(tmp_path, values):
    """The error line of `kdns serve --config BAD` names the file, as `check-config` does
    and as kdns does for a bad manifest, whether the key has the wrong type or a bad value."""
    path = write_config(tmp_path / "bad.yaml", {"manifests": [str(DEMO)], **values})
    result = run_kdns("serve", "--config", path, "--listen", "127.0.0.1:0")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"kdns: error: {path}: ttl: "), result.stderr


@pytest.mark.parametrize(
    "flags, fragment",
    [(["--ttl", "9999"], "--ttl"), (["--ttl", "abc"], "--ttl"), (["--pods", "sometimes"], "--pods"),
     (["--no-such-flag"], "--no-such-flag"), (["--upstream", "10.0.0.x"], "--upstream"),
     (["--tcp-idle-timeout", "nan"], "--tcp-idle-timeout: must be a finite number")],
    ids=["ttl-range", "ttl-type", "choice", "unknown", "bad-address", "nan"],
)
def test_serve_with_bad_flag_exits_2(tmp_path, flags, fragment):
    """A bad flag is a command-line mistake: exit 2 naming the flag, even with a good --config."""
    path = write_config(tmp_path / "good.yaml", {"manifests": [str(DEMO)], "ttl": 30})
    result = run_kdns("serve", "--config", path, "--listen", "127.0.0.1:0", *flags)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr, result.stderr


# -- config/kdns.yaml ---------------------------------------------------------------------------


def test_documented_config_file_has_exactly_the_options():
    """config/kdns.yaml documents every option of `kdns serve`: its keys are exactly the
    OPTIONS names (none missing, none extra)."""
    data = yaml.safe_load((ROOT / "config" / "kdns.yaml").read_text())
    assert sorted(data) == sorted(o.name for o in settings.OPTIONS)
