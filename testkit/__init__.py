"""Support code for kdns's own tests and for perf/: not part of kdns, not in its wheel
(pyproject.toml packages only `kdns*`).

A top-level package rather than `tests/support/`: `tests/` is not a package (its test files
import each other's fixtures through pytest's rootdir conftest), and a namespace package named
`tests` would be shadowed by any installed distribution that ships one. pytest finds this
package through `pythonpath = ["."]` (pyproject.toml); perf/ scripts run as modules from the
repository root (`python -m perf.scale`), where it is importable as it is. Nothing edits sys.path.

* `repo`: the repository's paths (ROOT, DEMO), `write()`, `needs()` for missing tools;
* `dnswire`: DNS bytes for tests: queries in wire form, header edits, framing, answer sets;
* `clock`: `ManualClock`, a clock a test moves on instead of sleeping;
* `options`: a valid value other than its default for every option of `kdns serve`;
* `inprocess`: kdns in the test's own trio loop (`start`, `Running`);
* `process`: a `kdns serve` process (`KdnsProcess`, `kdns_serve`), ready once it has printed
  its address (`--print-address`);
* `stubdns`: `StubDNS`, an upstream DNS server in the test's trio loop;
* `kubeapi`: `KubeAPI`, an in-memory Kubernetes API server: its `store` and its `http` handler.
"""
