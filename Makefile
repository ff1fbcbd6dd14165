# voronka: `make demo` runs the pipeline end to end; `make test` runs the whole test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test dev lint clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Emulators + real extractors + Dagster job + dbt build + checks + publication, with a summary.
demo: install
	$(BIN)/voronka demo

## The whole suite; PostgreSQL tests run when VORONKA_TEST_POSTGRES=1 (CI sets it).
## Two workers (pytest-xdist); the tests of the shared marts build stay on one of them.
test: install
	$(BIN)/pytest -q -n 2 --dist loadgroup

## The Dagster UI over the same definitions, with the emulators running.
dev: install
	$(BIN)/voronka dev

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf data .voronka .dagster_home dbt_project/target dbt_project/logs
