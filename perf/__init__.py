"""kdns's benchmarks, soak and long fuzzing runs (perf/README.md). Run them as modules from the
repository root (`python -m perf.bench`, `python -m perf.scale`, ...; the Makefile's bench
targets do): the root is then on sys.path, so `perf.*`, `testkit` (the test API server and
stub upstream) and this checkout's `kdns` import as they are, with no sys.path edits."""
