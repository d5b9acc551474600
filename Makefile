# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export FLUX_DEPTH_HOME ?= $(CURDIR)/flux_depth_home

.PHONY: help install demo test test-fast test-e2e lint dev dev-postgres validate bench docker-check docker-smoke clean

help:
	@echo "make demo       set up .venv and run every asset of the demo catalog (offline)"
	@echo "make test       set up .venv and run the whole test suite"
	@echo "make test-fast  the suite without the slow end-to-end tests"
	@echo "make test-e2e   only the browser test (dagster dev + headless Chromium)"
	@echo "make lint       ruff check, ruff format --check and mypy (config in pyproject.toml)"
	@echo "make dev        open the Dagster UI (dagster dev) on http://127.0.0.1:3000"
	@echo "make dev-postgres  the same on a PostgreSQL-backed instance (FLUX_DEPTH_PG_*)"
	@echo "make docker-check  check docker/ without an engine; make docker-smoke: run the stack"
	@echo "make bench      run the benchmarks in benchmarks/"

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_HOME)/dagster.yaml: deploy/local/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/local/dagster.yaml $@

demo: install
	$(BIN)/flux-depth validate
	$(BIN)/flux-depth materialize --catalog demo
	$(BIN)/flux-depth materialize --assets catalog_summary
	@echo "Outputs are under $(FLUX_DEPTH_HOME) (catalogs/demo/..., tables/...). Open the UI with: make dev"

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

test-e2e: install
	$(BIN)/python -m pytest -m browser

# Formatting and import order: the whole tree (narrow FORMAT_PATHS to check a subset).
FORMAT_PATHS ?= .
FORMAT_PATHS ?= .
lint: install
	$(BIN)/ruff check --extend-ignore I001 .
	$(BIN)/ruff check --select I001 $(FORMAT_PATHS)
	$(BIN)/ruff format --check $(FORMAT_PATHS)
	$(BIN)/mypy


# `flux-depth dev` runs dagster dev in its own process group and forwards Ctrl-C/SIGTERM to it,
# so it stops (webserver, daemon, code server) within seconds; see flux_depth_assets/cli/dev.py.
dev: install
	exec $(BIN)/flux-depth dev -w workspace.yaml --host 127.0.0.1 -p 3000

# deploy/postgres/dagster.yaml as the instance; the database is created if missing.
PG_ENV = FLUX_DEPTH_PG_HOST=$(or $(FLUX_DEPTH_PG_HOST),127.0.0.1) \
         FLUX_DEPTH_PG_PORT=$(or $(FLUX_DEPTH_PG_PORT),5432) \
         FLUX_DEPTH_PG_DB=$(or $(FLUX_DEPTH_PG_DB),flux_depth_dagster) \
         FLUX_DEPTH_PG_USER=$(or $(FLUX_DEPTH_PG_USER),postgres) \
         FLUX_DEPTH_PG_PASSWORD=$(FLUX_DEPTH_PG_PASSWORD)
PG_HOME = $(CURDIR)/.dagster_home/postgres

dev-postgres: install
	mkdir -p $(PG_HOME) && cp deploy/postgres/dagster.yaml $(PG_HOME)/dagster.yaml
	$(PG_ENV) deploy/postgres/create_db.sh
	$(PG_ENV) DAGSTER_HOME=$(PG_HOME) exec $(BIN)/flux-depth dev -w workspace.yaml --host 127.0.0.1 -p 3000

validate: install
	$(BIN)/flux-depth validate
	$(BIN)/dagster definitions validate -w workspace.yaml

docker-check: install
	$(BIN)/python -m pytest tests/test_docker_config.py

docker-smoke:
	python3 docker/smoke_test.py

bench: install
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev,bench]'
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .dagster_home flux_depth_home .pytest_cache
