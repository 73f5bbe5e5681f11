# The two commands of the README:
#   make run   create .venv, install kdns, serve the demo cluster on 127.0.0.1:5353 (UDP and TCP)
#   make test  create .venv, install kdns with its test tools, run the linters, then the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LISTEN ?= 127.0.0.1:5353

.PHONY: run test lint bench bench-core bench-tables bench-scale bench-workers soak image image-check clean

$(BIN)/.installed: pyproject.toml setup.py kdns/_udpbatch.c
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kdns needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

run: $(BIN)/.installed
	@echo "Serving config/demo-cluster.yaml on $(LISTEN). Try, from another terminal:"
	@sed -e 's/^/  /' -e 's/-p 5353/-p $(lastword $(subst :, ,$(LISTEN)))/' config/demo-queries.txt
	@echo
	$(BIN)/kdns serve --manifests config/demo-cluster.yaml --listen $(LISTEN)

test: lint
	$(BIN)/python -m pytest

# ruff (the rules chosen in pyproject.toml) and mypy (strict on the pure tier, normal elsewhere).
# `make test` runs it first, so CI (.ci/run) fails when either does.
lint: $(BIN)/.installed
	$(BIN)/ruff check kdns tests testkit perf tools setup.py
	$(BIN)/mypy

# Throughput per path (repeated questions, forwarding-cache hits, first-time names) and latency
# against knot and unbound under dnsperf (perf/README.md). Needs Debian's dnsperf, knot and
# unbound: apt-get install dnsperf knot unbound. BENCH_ARGS=--record prepends the results to perf/RESULTS.md.
bench: $(BIN)/.installed
	$(BIN)/python -m perf.bench $(BENCH_ARGS)

# The serving core in this process, no sockets: µs per query of Responder.handle for replayed,
# memo-hit, first-time and forwarded queries (perf/README.md). About 30 s; needs no dnsperf or
# knot. CORE_ARGS=--record prepends the results to perf/RESULTS.md.
bench-core: $(BIN)/.installed
	$(BIN)/python -m perf.core $(CORE_ARGS)

# The replay table's hit rate for repeated questions under a flood of first-time names
# (perf/README.md). TABLES_ARGS="--kdns DIR" compares another revision's kdns package.
bench-tables: $(BIN)/.installed
	$(BIN)/python -m perf.tables $(TABLES_ARGS)

# 10,000 Services / 100,000 endpoints through the test API server (perf/README.md).
bench-scale: $(BIN)/.installed
	$(BIN)/python -m perf.scale

# kdns --workers 1 and N against knot with N threads, nothing pinned (perf/README.md).
bench-workers: $(BIN)/.installed
	$(BIN)/python -m perf.workers

# 10 minutes of steady dnsperf load with Service churn, API and upstream faults and bad input;
# every sampled answer checked (perf/README.md). Needs dnsperf. SOAK_ARGS="--minutes 1" for a
# quick look; SOAK_ARGS=--record prepends the results to perf/RESULTS.md.
soak: $(BIN)/.installed
	$(BIN)/python -m perf.soak $(SOAK_ARGS)

# The container image of config/kubernetes/, with docker or podman (ENGINE=podman chooses);
# fails if it is over the size limit of docs/image.md. image-check also runs it as a pod does
# and checks its answers, probes, HEALTHCHECK and SIGTERM; it skips, saying why, where no
# engine runs or the base image cannot be had.
image:
	$(PYTHON) tools/image.py build

image-check: $(BIN)/.installed
	$(BIN)/python tools/image.py check

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
