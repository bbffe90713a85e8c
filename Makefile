# Two commands: `make run` starts the server (embedded PostgreSQL unless DATABASE_URL is set),
# `make test` runs the whole suite. Both install what they need into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/fleetgraph demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/pytest -q

# Benchmarks print ratios against floors measured in the same run (see bench/).
bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python bench/bench_sync.py
	PYTHONPATH=. $(BIN)/python bench/bench_graph.py
	PYTHONPATH=. $(BIN)/python bench/bench_cost.py

clean:
	rm -rf $(VENV) .fleetgraph
