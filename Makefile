# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export FLUX_DEPTH_HOME ?= $(CURDIR)/flux_depth_home

.PHONY: help install demo test test-fast dev validate bench clean

help:
	@echo "make demo       set up .venv and run every asset of the demo catalog (offline)"
	@echo "make test       set up .venv and run the whole test suite"
	@echo "make test-fast  the suite without the slow end-to-end tests"
	@echo "make dev        open the Dagster UI (dagster dev) on http://127.0.0.1:3000"
	@echo "make bench      run the benchmarks in benchmarks/"

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	printf 'telemetry:\n  enabled: false\n' > $@

demo: install
	$(BIN)/flux-depth validate
	$(BIN)/flux-depth materialize --catalog demo
	@echo "Outputs are under $(FLUX_DEPTH_HOME) (catalogs/demo/..., tables/...). Open the UI with: make dev"

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

dev: install
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

validate: install
	$(BIN)/flux-depth validate
	$(BIN)/dagster definitions validate -w workspace.yaml

bench: install
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .dagster_home flux_depth_home .pytest_cache
