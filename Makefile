# ctloop: two commands. `make demo` and `make test` each do all set-up first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export CTLOOP_HOME ?= $(CURDIR)/.ctloop
# telemetry off in everything we start
export DO_NOT_TRACK := true
export SCARF_ANALYTICS := false
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__USAGE_DATA_COLLECTION__ENABLED := False
export AIRFLOW_HOME := $(CTLOOP_HOME)/airflow

.PHONY: setup system-packages demo test lint typecheck secrets audit bench up down suite repro clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || \
	  { echo "ctloop needs Python 3.11 (found: $$($(PYTHON) --version 2>&1))"; exit 2; }
	$(PYTHON) -m venv $(VENV)

# install once per change of requirements.txt / pyproject.toml; uv when it can be had, pip otherwise.
# Bytecode is compiled at install: with PYTHONDONTWRITEBYTECODE set (as on CI machines) every process
# would otherwise recompile GX, Evidently, MLflow and Airflow from source (measured: importing GX and
# Evidently takes 14.4 s without .pyc files, 6.8 s with them).
# requirements-prod.txt (Celery, PostgreSQL drivers, ...) too: the end-to-end loop runs on the production
# topology (PostgreSQL, Redis, two Celery workers).
$(VENV)/.installed: requirements.txt requirements-prod.txt pyproject.toml | $(BIN)/python
	@if $(BIN)/pip install -q uv 2>/dev/null; then \
	  $(BIN)/uv pip install --compile-bytecode --python $(BIN)/python -r requirements.txt -r requirements-prod.txt -e '.[lightgbm]' ; \
	else \
	  $(BIN)/pip install -r requirements.txt -r requirements-prod.txt -e '.[lightgbm]' ; \
	fi
	@touch $@

# Redis (the Celery broker of the end-to-end loop) and Chromium (the offline Data Docs test opens the site
# in it) from Debian when missing; PostgreSQL 15's server binaries come with the machine
system-packages:
	@command -v redis-server >/dev/null || apt-get install -y -q redis-server >/dev/null 2>&1 \
	  || (apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null) \
	  || { echo "setup: could not install redis-server (apt-get install redis-server)"; exit 1; }
	@command -v chromium >/dev/null || apt-get install -y -q chromium >/dev/null 2>&1 \
	  || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null) \
	  || { echo "setup: could not install chromium (apt-get install chromium)"; exit 1; }
	@service redis-server stop >/dev/null 2>&1 || true  # tests start their own on a free port

# the CSS and JavaScript of GX's Data Docs, from the npm registry at install time (the docs then work offline)
DATADOCS := deploy/datadocs
$(DATADOCS)/node_modules/.installed: $(DATADOCS)/package.json $(DATADOCS)/package-lock.json
	@command -v npm >/dev/null || { echo "setup: npm not found (Data Docs will load their assets from CDNs)"; exit 0; }
	@npm ci --prefix $(DATADOCS) --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null \
	  && touch $@ || echo "setup: npm ci failed (Data Docs will load their assets from CDNs)"

setup: $(VENV)/.installed $(DATADOCS)/node_modules/.installed
	@$(BIN)/ctloop init

SCENARIO ?= covariate_shift
demo: setup
	$(BIN)/ctloop demo --scenario $(SCENARIO)

lint: $(VENV)/.installed
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

test: setup system-packages lint typecheck secrets
	$(BIN)/python -m pytest -q --durations=12
	@$(MAKE) --no-print-directory audit

# a secret in any tracked file fails (reviewed false positives: `pragma: allowlist secret` on their line)
secrets: $(VENV)/.installed
	@$(BIN)/python tools/scan_secrets.py

# known vulnerabilities of the installed packages (PyPI's advisory data): a report, not a gate
audit: $(VENV)/.installed
	@timeout 600 $(BIN)/pip-audit --progress-spinner off --skip-editable 2>&1 | grep -v "could not be audited" \
	  || echo "pip-audit: no report (advisory service unreachable?)"

# the DVC pipeline (dvc.yaml: prepare -> train -> evaluate) on the demo's lake; stages call `ctloop`
repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc metrics show

# bench_serving drives the servers with hey (Debian's HTTP load generator)
bench: setup
	@command -v hey >/dev/null || apt-get install -y -q hey >/dev/null 2>&1 \
	  || (apt-get update -q >/dev/null && apt-get install -y -q hey >/dev/null) \
	  || { echo "bench: could not install hey (apt-get install hey)"; exit 1; }
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

up: setup
	$(BIN)/ctloop airflow up

down: $(VENV)/.installed
	$(BIN)/ctloop airflow down

# Regenerate the reviewed batch suite from deterministic reference data (review the diff, then commit).
suite: $(VENV)/.installed
	$(BIN)/ctloop simulate batch --date 2025-12-01 --rows 20000 --out $(CTLOOP_HOME)/reference/reference.parquet
	$(BIN)/ctloop suite build --from $(CTLOOP_HOME)/reference/reference.parquet

clean:
	-$(BIN)/ctloop airflow down
	rm -rf $(CTLOOP_HOME)
