# voronka: `make demo` runs the pipeline end to end; `make test` runs the whole test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test dev lint clean

## uv installs the locked set in ~20 s where pip took ~75 s (the same versions: both read
## requirements.lock as constraints); pip does it where uv cannot (another index, no uv wheel).
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock uv \
		&& $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode \
			-c requirements.lock -e ".[dev]" \
		|| $(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Emulators + real extractors + Dagster job + dbt build + checks + publication, with a summary.
demo: install
	$(BIN)/voronka demo

## The whole suite; PostgreSQL tests run when VORONKA_TEST_POSTGRES=1 (CI sets it).
## Three workers on two cores (pytest-xdist): the whole-pipeline tests spend much of their time
## waiting on the emulators' rate limits, and a third worker fills those waits (543 s against
## 598-622 s with two). The tests of one shared warehouse build stay on one worker.
test: install
	$(BIN)/pytest -q -n 3 --dist loadgroup

## The Dagster UI over the same definitions, with the emulators running.
dev: install
	$(BIN)/voronka dev

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf data .voronka .dagster_home dbt_project/target dbt_project/logs
