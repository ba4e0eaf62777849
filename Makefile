# The whole developer interface. `make run` and `make test` work on a fresh
# machine with Python 3.11 and make: they create .venv and install the pinned
# dependencies (requirements/constraints.txt) first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The browser tests drive Debian's chromium through Playwright, never a
# browser Playwright downloads (ZTGATE_CHROMIUM names another executable).
CHROMIUM := $(or $(ZTGATE_CHROMIUM),chromium)
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: run run-cluster test lint format typecheck unit browser sandbox redis postgres haproxy demo bench clean lock

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	@touch $(STAMP)

## Set up, initialise (first time) and run the gateway on 127.0.0.1:8470 with the demo tools.
run: $(STAMP)
	@$(MAKE) --no-print-directory sandbox || echo "ztgate: no bubblewrap: stdio MCP servers will not start (they need an enclave); everything else runs" >&2
	@test -f ztgate.toml || $(BIN)/ztgate init --demo
	$(BIN)/ztgate serve

## A local cluster on loopback (docs/deployment.md): PostgreSQL, Redis, 3 gateway
## replicas (ports 8481-8483) and HAProxy in front on 127.0.0.1:8470, checking
## /readyz; config and keys in .cluster/. Ctrl-C stops everything.
REPLICAS ?= 3
run-cluster: $(STAMP) redis postgres haproxy
	@$(MAKE) --no-print-directory sandbox || echo "ztgate: no bubblewrap: stdio MCP servers will not start (they need an enclave); everything else runs" >&2
	$(BIN)/ztgate cluster up --replicas $(REPLICAS)

## Set up and run every check: lint, format, types, tests (the browser tests need chromium).
test: $(STAMP) browser sandbox redis postgres haproxy lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks scripts
	$(BIN)/ruff format src tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite runs on every core (pytest-xdist); TEST_WORKERS=0 runs it in one process.
# Work stealing: a worker that runs out of tests takes some of the other's, so
# the long integration tests do not leave one core idle at the end.
TEST_WORKERS ?= auto

unit: $(STAMP) browser sandbox redis postgres haproxy
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

## Chromium for the browser tests: Debian's package, installed when missing and we are root.
browser:
	@command -v $(CHROMIUM) >/dev/null || { \
	  if [ "$$(id -u)" -eq 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "The browser tests need chromium: run 'sudo apt-get install chromium' (or set ZTGATE_CHROMIUM)." >&2; exit 1; \
	  fi; }

## $(call debian_package,CHECK,PACKAGE,WHY): unless CHECK succeeds, install Debian's
## PACKAGE when we are root, else say WHY and how, and fail.
define debian_package
@$(1) >/dev/null 2>&1 || { \
  if [ "$$(id -u)" -eq 0 ]; then \
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2); \
  else \
    echo "$(3): run 'sudo apt-get install $(2)'." >&2; exit 1; \
  fi; }
endef

## bubblewrap, for the enclaves stdio MCP servers run in: Debian's package, installed when missing and we are root.
sandbox:
	$(call debian_package,command -v bwrap,bubblewrap,Enclaves need bubblewrap)

## redis-server, for the tests of the shared hot state (each test run starts its own on a
## free port): Debian's package, installed when missing and we are root.
redis:
	$(call debian_package,command -v redis-server,redis-server,The hot-state tests need redis-server)

## PostgreSQL, for the durable store's tests (each test run makes its own cluster with
## initdb in a scratch directory and starts it on a free port): Debian's package,
## installed when missing and we are root.
postgres:
	$(call debian_package,{ command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; },postgresql,The store tests need PostgreSQL)

## HAProxy, the load balancer of make run-cluster and of the cluster tests: Debian's
## package, installed when missing and we are root.
haproxy:
	$(call debian_package,command -v haproxy,haproxy,The cluster needs HAProxy)

demo: $(STAMP)
	$(BIN)/ztgate demo

## Benchmarks (not timed tests), in one run with progress bars (under 15 minutes
## on 2 cores): the summary goes to docs/performance.md and
## docs/performance-summary.svg, every figure to benchmarks/results/. Needs wrk
## (Debian's package; installed here when missing and we are root); the peer
## MCP bridge's venv is made from benchmarks/peer-requirements.txt; bubblewrap
## (make sandbox) for the MCP server in an enclave.
bench: $(STAMP) redis sandbox postgres haproxy
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python benchmarks/run_all.py

## The AgentDojo evaluation (docs/security-evaluation.md) in a venv of its own,
## .venv-eval: agentdojo pulls in LLM SDKs and langchain (pinned by
## requirements/eval-constraints.txt beside requirements/constraints.txt).
EVAL_VENV := .venv-eval
EVAL_STAMP := $(EVAL_VENV)/.installed

$(EVAL_STAMP): pyproject.toml requirements/constraints.txt requirements/eval-constraints.txt
	@test -x $(EVAL_VENV)/bin/python || $(PYTHON) -m venv $(EVAL_VENV)
	$(EVAL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(EVAL_VENV)/bin/python -m pip install --quiet -c requirements/constraints.txt -c requirements/eval-constraints.txt -e . agentdojo
	@touch $(EVAL_STAMP)

eval: $(EVAL_STAMP)
	$(EVAL_VENV)/bin/ztgate eval agentdojo --results benchmarks/results/agentdojo.json --chart docs/agentdojo.svg --document docs/security-evaluation.md

## Re-pin the dependencies after changing pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^ztgate' > requirements/constraints.txt

clean:
	rm -rf $(VENV) $(EVAL_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .coverage
