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

# Formatting and import order are checked on FORMAT_PATHS only: the tree is formatted once, in one
# commit, when the parallel branches have merged (`ruff format . && ruff check --select I --fix .`);
# that commit sets `FORMAT_PATHS ?= .`. Until then it lists the files written ruff-formatted.
FORMAT_PATHS ?= tests/test_plain_modules.py \
                tests/test_upload_watch.py \
                tests/test_lineage_record.py \
                tests/test_storage_errors.py \
                tests/test_yaml_attributes.py \
                tests/commands.py \
                tests/manual_clock.py \
                tests/test_source_guards.py \
                tests/test_url_guard.py \
                flux_depth_assets/pipeline/upload_watch.py \
                flux_depth_assets/lineage/record.py \
                flux_depth_assets/defs/lineage.py \
                flux_depth_assets/defs/yaml_attributes.py \
                flux_depth_assets/sources/netguard.py \
                flux_depth_assets/sources/roots.py \
                flux_depth_assets/sources/manifest.py \
                flux_depth_assets/gallery.py \
                flux_depth_assets/depth/subjects.py \
                flux_depth_assets/depth/parallax_check.py \
                flux_depth_assets/depth/normalization.py \
                flux_depth_assets/defs/assets/gallery.py \
                tests/test_subjects_parallax.py \
                tests/test_normalization.py \
                tests/e2e/test_gallery_browser.py \
                tests/test_parallax_holes_check.py \
                benchmarks/depth_figures.py \
	flux_depth_assets/pipeline/parallel.py flux_depth_assets/pipeline/depth_pool.py \
	benchmarks/pipeline_throughput.py benchmarks/profile_run.py tests/test_parallel.py \
	tests/dask_cluster.py tests/test_working_size.py tests/test_incremental.py \
                flux_depth_assets/providers/hosts \
                flux_depth_assets/fakeapi/dialects.py \
                flux_depth_assets/fakeapi/faults.py \
                flux_depth_assets/fakeapi/options.py \
                benchmarks/account_limits.py \
                tests/test_host_adapters.py \
                tests/test_host_plan.py \
                tests/test_host_client.py \
                tests/test_account_limits.py \
                tests/test_account_limits_processes.py \
                tests/test_fakeapi_dialects.py \
                tests/hostcalls.py \
                tests/account_child.py \
                tests/test_hosted_provider_hosts.py \
                tests/provider_child.py
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
