# qforge — every target sets up what it needs (venv, the package, Debian's xtb).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Slow builds (Kubernetes binaries, images) are cached outside the checkout, keyed by version.
export QFORGE_CACHE ?= /var/cache/qforge

.PHONY: setup demo test test-unit test-integration lint bench k8s-tools test-infra clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v xtb >/dev/null || { echo ">> installing Debian's xtb"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xtb) >/dev/null; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo ">> installing qforge into $(VENV)"
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[k8s,dev]'
	@touch $@

demo: setup
	@$(PY) -m controller.demo

test: lint test-unit test-integration

test-unit: setup
	$(PY) -m pytest -q tests/unit

test-integration: setup
	$(PY) -m pytest -q tests/integration

lint: setup
	$(VENV)/bin/ruff check controller runner_image tests bench
	$(VENV)/bin/mypy

bench: setup
	@for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf .demo build .pytest_cache .mypy_cache .ruff_cache
