# Tally: `make run` starts the service, `make test` runs every check. Both set up what they
# need on a fresh machine (virtualenv, packages, redis-server for the tests).
#
# One virtualenv, two install stamps: `make run` (and `make install`) install the runtime only;
# `make test` adds the test tools and the Keras oracle (the `test` extra) and marks the runtime
# as installed too, so switching between the two never reinstalls what is there.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CREATED := $(VENV)/.created
RUNTIME := $(VENV)/.installed-runtime
TESTDEPS := $(VENV)/.installed-test
EXAMPLES := $(VENV)/.examples-installed
CLIENT := $(VENV)/.client-installed
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1

.PHONY: run install test lint typecheck redis-server chromium wrk openapi bench bench-quick clean

$(CREATED):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	touch $@

$(RUNTIME): pyproject.toml | $(CREATED)
	$(BIN)/pip install --quiet -e .
	touch $@

$(TESTDEPS): pyproject.toml | $(CREATED)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(RUNTIME)

# The example plugins are installed for the tests only (they register through the
# `tally.metrics` entry-point group of the virtualenv).
$(EXAMPLES): $(TESTDEPS) examples/plugins/pyproject.toml
	$(BIN)/pip install --quiet -e examples/plugins
	touch $(EXAMPLES)

# The Python client (clients/python, distribution tally-client) is installed for its tests and
# examples; its own pyproject.toml holds its pytest, ruff and mypy settings.
$(CLIENT): $(TESTDEPS) clients/python/pyproject.toml
	$(BIN)/pip install --quiet -e clients/python
	touch $(CLIENT)

install: $(RUNTIME)

# `tally serve` runs the start-up checks, then uvicorn (see app/cli.py).
run: $(RUNTIME)
	$(BIN)/tally serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

redis-server:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

# The dashboard's browser tests drive the system's Chromium (never a downloaded browser build).
# Where it cannot be installed (not Debian, no root nor sudo) they skip and say why.
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null || { \
	  echo "installing chromium and chromium-driver (Debian packages, for the dashboard tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver \
	    >/dev/null; } || echo "could not install Chromium: the dashboard's browser tests skip"; }

wrk:
	@command -v wrk >/dev/null || { \
	  echo "installing wrk (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk >/dev/null; }

lint: $(TESTDEPS)
	$(BIN)/ruff check app tests bench examples clients/python

typecheck: $(TESTDEPS) $(CLIENT)
	$(BIN)/mypy
	cd clients/python && $(CURDIR)/$(BIN)/mypy

test: $(TESTDEPS) $(EXAMPLES) $(CLIENT) redis-server chromium lint typecheck
	KERAS_BACKEND=numpy $(BIN)/pytest -q
	cd clients/python && KERAS_BACKEND=numpy $(CURDIR)/$(BIN)/pytest -q

openapi: $(RUNTIME)
	$(BIN)/python -m app.openapi > openapi/openapi.json

# Every figure of BENCHMARKS.md in one run (~4 minutes): ratios to baselines measured in the
# same run, wrk as load generator. `make bench BENCH_ARGS="--only http"` runs one part;
# `python -m bench.run_all --help` lists them.
BENCH_ARGS ?=
bench: $(TESTDEPS) redis-server wrk
	KERAS_BACKEND=numpy $(BIN)/python -m bench.run_all $(BENCH_ARGS)

# The two headline ratios only (update and read against the bare endpoints), ~40 s.
bench-quick: $(TESTDEPS) redis-server wrk
	$(BIN)/python -m bench.run_all --only http

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
