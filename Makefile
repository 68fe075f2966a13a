# The project's interface: `make up`, `make test`, `make lint`, `make gen`.
# Needs only python3, pip and npm: uv and buf are installed on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
BUF := node_modules/.bin/buf
BREAKING_AGAINST ?= .git\#ref=HEAD~1

.PHONY: help up test bench chaos cost lint fmt gen breaking deps-run deps-dev deps-bench tools clean chromium

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

tools:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || { \
		echo "installing uv with pip (first run only)"; python3 -m pip install --quiet uv; }

# Bytecode is compiled at install time (uv's --compile-bytecode, compileall for our own
# sources): every process then loads it instead of compiling each module as it imports it,
# which is most of a process's start on a small machine (and with PYTHONDONTWRITEBYTECODE set,
# Python never caches what it compiles).
# The first install (no .venv yet) takes about 40 s: it says so and shows uv's progress; later
# ones, which install nothing or little, stay quiet.
FIRST_RUN := $(if $(wildcard .venv/bin/python),,yes)
SYNC := $(if $(FIRST_RUN),echo "first run: installing the locked Python dependencies into .venv with uv (about 40 s)" && )$(UV) sync --frozen --compile-bytecode $(if $(FIRST_RUN),,--quiet)
COMPILE_OWN := $(if $(FIRST_RUN),echo "compiling EventForge's own modules" && )$(UV) run --frozen --no-sync python -m compileall -q -j 0 services harness bench chaos >/dev/null

deps-run: tools
	@$(SYNC) --inexact --no-default-groups --group local
	@$(COMPILE_OWN)

deps-dev: tools
	@$(SYNC)
	@$(COMPILE_OWN)

deps-bench: tools
	@$(SYNC) --inexact --no-default-groups --group local --group bench
	@$(COMPILE_OWN)

# `npm ci` installs exactly the lock file and never rewrites it (`npm install` adds the
# optional platform entries of the machine it runs on to package-lock.json).
$(BUF): package.json package-lock.json
	@npm ci --no-audit --no-fund --silent
	@touch $(BUF)

up: deps-run  ## Run the whole system locally (emulator, topology, migrations, all services).
	@$(UV) run --frozen --no-sync eventforge up

# The dashboard's browser tests drive Debian's Chromium (Playwright's own browser download
# needs the internet): installed with apt when missing, about 35 s on a fresh machine.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "installing Debian's chromium for the dashboard's browser tests (~35 s)"; \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get update -qq >/dev/null && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

test: deps-dev chromium  ## Run the test suite (needs PostgreSQL on 127.0.0.1:5432).
	@$(UV) run --frozen --no-sync pytest

bench: deps-bench  ## Benchmarks against in-run baselines (needs PostgreSQL); writes bench/results.json.
	@$(UV) run --frozen --no-sync python -m bench

chaos: deps-run  ## Faults under load (kills, DB and AWS outages, poison), then checks; ~5 min.
	@$(UV) run --frozen --no-sync python -m chaos

cost: deps-dev  ## Monthly cost estimate of each stack from its resource graph.
	@$(UV) run --frozen --no-sync python -m infra.cost

security: deps-dev  ## Run the security suite alone (mTLS, authorization, SSRF, uploads, fuzzing).
	@$(UV) run --frozen --no-sync pytest -m security

lint: deps-dev $(BUF)  ## ruff, mypy and buf (lint and format).
	@$(UV) run --frozen --no-sync ruff check .
	@$(UV) run --frozen --no-sync ruff format --check .
	@$(UV) run --frozen --no-sync mypy
	@$(BUF) lint
	@$(BUF) format --exit-code --diff

fmt: deps-dev $(BUF)  ## Format Python and protos in place.
	@$(UV) run --frozen --no-sync ruff format .
	@$(UV) run --frozen --no-sync ruff check --fix .
	@$(BUF) format -w

gen: deps-dev $(BUF)  ## Regenerate the Python stubs from protos/.
	@$(BUF) format -w
	@$(UV) run --frozen --no-sync python services/contracts/generate.py

breaking: $(BUF)  ## Check protos for breaking changes against BREAKING_AGAINST (previous commit).
	@if git rev-parse --verify --quiet HEAD~1:buf.yaml >/dev/null; then \
		$(BUF) breaking --against '$(BREAKING_AGAINST)'; \
	else echo "buf breaking: no previous commit with protos, skipped"; fi

clean:  ## Remove local state (SQLite files, spans, logs).
	rm -rf .eventforge
