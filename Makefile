# Rapport — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install run up down up-status k8s-build infra-up infra-down infra-status migrate test test-reliability test-unit test-integration lint fmt typecheck imports check clean bench bench-ingest bench-context bench-search bench-locomo bench-derive

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml sdk/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[infra,dev]' -e ./sdk
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install Rapport with its dev and local-infra extras

infra-up: $(STAMP) ## Start local NATS JetStream + Postgres (profile run; data in .data/run)
	$(PY) -m scripts.devinfra up --profile run

infra-down: $(STAMP) ## Stop the local servers of both profiles (data is kept)
	$(PY) -m scripts.devinfra down --profile run
	$(PY) -m scripts.devinfra down --profile test
	$(PY) -m scripts.devinfra down --profile faults
	$(PY) -m scripts.devinfra down --profile bench

infra-status: $(STAMP) ## Show the local servers
	-$(PY) -m scripts.devinfra status --profile run

migrate: infra-up ## Apply database migrations to the local database
	eval "$$($(PY) -m scripts.devinfra env --profile run)" && $(PY) -m alembic upgrade head

run: infra-up ## Run everything locally on http://localhost:8000 (all services, one process)
	eval "$$($(PY) -m scripts.devinfra env --profile run)" && $(PY) -m allinone

up: infra-up ## Multi-process mode: ingest, 2 derivers, 2 dialectic, context, console behind nginx on :8000
	$(PY) -m scripts.multiproc up

down: ## Stop the multi-process mode (the local servers keep running; see infra-down)
	$(PY) -m scripts.multiproc down

up-status: ## Show the multi-process mode's processes
	-$(PY) -m scripts.multiproc status

k8s-build: ## Render every deploy/k8s overlay (kubectl kustomize) into .data/k8s/<overlay>.yaml
	@mkdir -p .data/k8s
	@for o in deploy/k8s/overlays/*/; do n=$$(basename $$o); kubectl kustomize $$o > .data/k8s/$$n.yaml && echo ".data/k8s/$$n.yaml"; done

lint: $(STAMP) ## ruff lint + format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

fmt: $(STAMP) ## Format and auto-fix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

typecheck: $(STAMP) ## Strict mypy on libs/, services/, allinone/, scripts/ and the SDK
	$(PY) -m mypy
	cd sdk && ../$(PY) -m mypy

imports: $(STAMP) ## Import boundaries (libs never import services; services never import each other)
	$(VENV)/bin/lint-imports

check: lint typecheck imports ## All static checks

test: check ## Static checks, then the whole test suite against real Postgres and NATS
	cd sdk && ../$(PY) -m pytest -q -p no:cacheprovider
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-reliability: $(STAMP) ## Fault injection, overload, security and fuzzing tests (also part of make test)
	$(PY) -m pytest -q -m reliability $(PYTEST_ARGS)

test-unit: $(STAMP) ## Unit tests only (no servers)
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) ## Integration and e2e tests
	$(PY) -m pytest -q tests/integration tests/contract tests/e2e $(PYTEST_ARGS)

# Benchmarks (bench/README.md): own Postgres + NATS (devinfra profile "bench", .data/bench), a
# server process started by each bench, results in .data/bench-results/. Not run in CI.
BENCH_DURATION ?= 60
LOCOMO_DATA ?= /work/shared/data/locomo10.json
LOCOMO_CONVERSATIONS ?= 10

bench: bench-ingest bench-context bench-derive bench-search bench-locomo ## Every benchmark (~20-30 min)

bench-ingest: $(STAMP) ## Ingest msg/s vs raw psycopg INSERT baseline (BENCH_DURATION=60 s per phase)
	$(PY) -m bench.bench_ingest --duration $(BENCH_DURATION)

bench-context: $(STAMP) ## get_context + message list latency at 1k/10k/100k messages per session
	$(PY) -m bench.bench_context

bench-derive: $(STAMP) ## Derive lag (commit -> searchable) at 200 and 50 msg/s, deriver on (BENCH_DURATION s)
	$(PY) -m bench.bench_derive --duration $(BENCH_DURATION)

bench-search: $(STAMP) ## Conclusion search + extractive dialectic latency at 10k/100k observations
	$(PY) -m bench.bench_search

bench-locomo: $(STAMP) ## LoCoMo evidence recall@5/@10 per category vs BM25 (LOCOMO_DATA=path)
	$(PY) -m bench.bench_locomo --data $(LOCOMO_DATA) --conversations $(LOCOMO_CONVERSATIONS)

clean: ## Stop local servers and delete .venv and .data
	-$(PY) -m scripts.devinfra down --profile run
	-$(PY) -m scripts.devinfra down --profile test
	-$(PY) -m scripts.devinfra down --profile faults
	-$(PY) -m scripts.devinfra down --profile bench
	rm -rf $(VENV) .data .mypy_cache .ruff_cache .pytest_cache
