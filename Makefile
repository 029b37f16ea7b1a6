# Every target creates the virtualenv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A local folder of wheels (the CPU build of torch), when the machine has one.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PYTEST_ARGS ?=
# make bench BENCH_ARGS=--quick: every benchmark at a small size.
BENCH_ARGS ?=

.PHONY: install run test check lint typecheck bench clean

$(BIN)/email-sender: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(FIND_LINKS) -e '.[dev,local-model]'
	touch $@

install: $(BIN)/email-sender

## Run the service on the embedded default (SQLite, Qdrant Edge, capture SMTP sink, local model).
run: install
	$(BIN)/email-sender serve --config config/local.yaml

## Run the whole test suite (SQLite, PostgreSQL, Redis, real SMTP, Qdrant Edge).
test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check email_sender tests benchmarks

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

bench: install
	$(BIN)/pip install --quiet $(FIND_LINKS) -e '.[dev,local-model,bench]'
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
