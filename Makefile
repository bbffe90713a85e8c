# Two commands: `make run` starts the server (embedded PostgreSQL unless DATABASE_URL is set),
# `make test` runs the whole suite. Both install what they need first: Python packages into
# .venv, GraphiQL's assets from the npm registry (npm ci, pinned by package-lock.json), and for
# the tests the npm reference clients and Debian's Chromium.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GRAPHIQL := app/graphiql
GRAPHIQL_STAMP := $(GRAPHIQL)/node_modules/.installed
PEERS := tests/peers
PEERS_STAMP := $(PEERS)/node_modules/.installed
NPM_CI := npm ci --no-audit --no-fund --loglevel=error

.PHONY: install install-system graphiql-assets run test bench clean k8s-tier

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(GRAPHIQL_STAMP): $(GRAPHIQL)/package.json $(GRAPHIQL)/package-lock.json
	$(NPM_CI) --prefix $(GRAPHIQL)
	touch $(GRAPHIQL_STAMP)

$(PEERS_STAMP): $(PEERS)/package.json $(PEERS)/package-lock.json
	$(NPM_CI) --prefix $(PEERS)
	touch $(PEERS_STAMP)

# GraphiQL's assets need npm; without it the server still runs (the page says what is missing).
graphiql-assets:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(GRAPHIQL_STAMP); \
	else echo "npm not found: GraphiQL will not load until its assets are installed" >&2; fi

install: $(STAMP) $(GRAPHIQL_STAMP) $(PEERS_STAMP)

# Debian packages the test suite drives: Chromium for the browser tests.
install-system:
	@command -v chromium >/dev/null 2>&1 || ./.ci/apt-install chromium

run: $(STAMP) graphiql-assets
	$(BIN)/fleetgraph demo

test: install install-system
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/pytest -q

# The real control plane for tests/realk8s (kube-apiserver, controller-manager, scheduler,
# kubectl, etcd, KWOK, metrics-server), built from the Go module proxy into a cache outside the
# repository (FLEETGRAPH_K8S_CACHE, default ~/.cache/fleetgraph/k8s) and reused while its
# versions hold. Not part of `make test` (about fourteen minutes cold); .ci/run builds it and
# runs pytest tests/realk8s.
k8s-tier:
	./tests/realk8s/gobuild/build.sh

# Benchmarks print ratios against floors measured in the same run (see bench/).
# bench_graph drives its load with wrk (Debian).
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || ./.ci/apt-install wrk
	PYTHONPATH=. $(BIN)/python bench/bench_sync.py
	PYTHONPATH=. $(BIN)/python bench/bench_graph.py
	PYTHONPATH=. $(BIN)/python bench/bench_cost.py
	PYTHONPATH=. $(BIN)/python bench/bench_loop.py
	PYTHONPATH=. $(BIN)/python bench/bench_fanout.py

# PostGraphile v5 on Node 22 (both from npm, pinned by bench/peers/package-lock.json) against
# the same database, queries and floor as bench_graph; not part of `make bench`.
.PHONY: bench-peers
BENCH_PEERS_STAMP := bench/peers/node_modules/.installed
$(BENCH_PEERS_STAMP): bench/peers/package.json bench/peers/package-lock.json
	$(NPM_CI) --prefix bench/peers
	touch $(BENCH_PEERS_STAMP)

bench-peers: $(STAMP) $(BENCH_PEERS_STAMP)
	@command -v wrk >/dev/null 2>&1 || ./.ci/apt-install wrk
	PYTHONPATH=. $(BIN)/python bench/bench_peers.py

clean:
	rm -rf $(VENV) .fleetgraph $(GRAPHIQL)/node_modules $(PEERS)/node_modules bench/peers/node_modules test-artifacts
