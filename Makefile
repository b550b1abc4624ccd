# qforge — every target sets up what it needs (venv, the package, Debian's xtb).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Slow builds (Kubernetes binaries, images) are cached outside the checkout, keyed by version.
export QFORGE_CACHE ?= /var/cache/qforge
# Under make every tool is installed or built first: a skipped test fails (tests/conftest.py).
export QFORGE_NO_SKIPS ?= 1

.PHONY: setup demo test test-serial test-unit test-integration test-browser test-cluster test-chaos test-autoscale fuzz lint bench k8s-tools helm prometheus chromium test-infra clean

# Every dependency at one version (constraints.txt): `make setup`, both Dockerfiles and the
# kind workflow install from it. `make lock` regenerates it after a change to pyproject.toml.
CONSTRAINTS := constraints.txt

setup: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@command -v xtb >/dev/null || { echo ">> installing Debian's xtb"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xtb) >/dev/null; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo ">> installing qforge into $(VENV)"
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[k8s,dev]'
	@touch $@

.PHONY: lock
# Resolves the extras make setup installs afresh, in a throwaway venv (not .venv: what is
# installed there must not leak into the lock), and writes what pip chose, qforge left out.
lock:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  echo ">> resolving qforge[k8s,dev] in a fresh venv" && \
	  $(PYTHON) -m venv "$$tmp/venv" && \
	  "$$tmp/venv/bin/python" -m pip install -q --upgrade pip && \
	  "$$tmp/venv/bin/python" -m pip install -q -e '.[k8s,dev]' && \
	  { echo "# Every dependency of qforge[k8s,dev] at one version: make setup, Dockerfile.*"; \
	    echo "# and the kind workflow install with -c $(CONSTRAINTS). Written by make lock"; \
	    echo "# (a fresh venv, pip freeze); do not edit by hand."; \
	    "$$tmp/venv/bin/python" -m pip freeze --exclude-editable --exclude qforge; \
	  } > "$$tmp/$(CONSTRAINTS)" && mv "$$tmp/$(CONSTRAINTS)" $(CONSTRAINTS) && \
	  echo ">> $(CONSTRAINTS): $$(grep -c '==' $(CONSTRAINTS)) packages"

demo: setup
	@$(PY) -m qforge.demo

# Every tier (tools/ci/tiers.py; docs/testing.md, CI): the Kubernetes tools build in the
# background while lint, unit, integration and browser run; then cluster, chaos and
# autoscale side by side, and beside them infra then e2e (the one real node). One log per
# tier in build/test-logs/; a failed tier fails the run, named, with its log's tail.
# TIERS=cluster,chaos runs only those (and the tool builds they need).
TIERS ?=
test: setup
	@$(PYTHON) tools/ci/tiers.py --make "$(MAKE)" $(if $(TIERS),--only $(TIERS))

# The same tiers one after another, each to the console (what `make test` did before).
test-serial: lint test-unit test-integration test-browser test-cluster test-chaos test-autoscale test-infra e2e

test-unit: setup
	$(PY) -m pytest -q tests/unit

# The chart tests render and lint with the real helm: build it (only it) first, so that a
# cold machine runs them rather than skipping them.
test-integration: setup helm prometheus
	$(PY) -m pytest -q --durations=10 tests/integration

# Debian's Prometheus (and promtool) for the metrics tests: a real server scrapes a real
# worker; promtool checks the chart's alert rules. Its systemd unit is left stopped.
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  echo ">> installing Debian's prometheus"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends prometheus) >/dev/null || { \
	    echo "prometheus: apt-get install failed" >&2; exit 1; }; \
	  systemctl disable --now prometheus >/dev/null 2>&1 || true; }

# The web page in Debian's chromium, headless, driven by Playwright (tests/browser): a real
# server, a real worker running real xtb. Screenshots (and, for a failed test, the page's
# HTML and console log) under $(BROWSER_ARTIFACTS). A few minutes.
BROWSER_ARTIFACTS ?= /tmp/qforge-browser-artifacts
test-browser: setup chromium
	QFORGE_BROWSER_ARTIFACTS=$(BROWSER_ARTIFACTS) $(PY) -m pytest -q -p no:cacheprovider \
	  --durations=5 tests/browser

# Debian's chromium for the browser tests (Playwright drives it through
# executable_path; it never downloads a browser of its own).
chromium:
	@test -x /usr/bin/chromium || { \
	  echo ">> installing Debian's chromium"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium) >/dev/null || { \
	    echo "chromium: apt-get install failed" >&2; exit 1; }; }

# The controller against a real control plane (tests/kube: etcd, apiserver, controller-
# manager, scheduler, kwok nodes), the chart installed with the real helm.
test-cluster: setup k8s-tools
	$(PY) -m pytest -q --durations=15 tests/cluster

# Chaos on the control plane (docs/reliability.md): a control plane of its own, whose
# kube-apiserver and etcd it restarts; 300 kwok jobs at cap 30 through 15 controller
# SIGKILLs. About 7 minutes. Replay a failure with QFORGE_CHAOS_SEED=<the printed seed>.
test-chaos: setup k8s-tools
	$(PY) -m pytest -q -s -p no:cacheprovider tests/chaos

# Hypothesis at full budget: 10,000 examples a test (make test runs 200, derandomized).
fuzz: setup
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -p no:cacheprovider tests/integration/fuzz \
	  tests/unit/core/test_corruption.py tests/integration/server/test_fuzz_openapi.py

# qforge on an autoscaled cluster: the control plane, Karpenter's KWOK provider and kwok
# (tests/kube autoscale mode; no runner node at the start), the controller out of cluster.
test-autoscale: setup k8s-tools
	$(PY) -m pytest -q --durations=0 tests/autoscale

lint: setup
	$(VENV)/bin/ruff check controller runner_image tests tools $(wildcard bench)
	@mkdir -p build/typecheck && ln -sfn ../../controller build/typecheck/qforge && \
	  ln -sfn ../../runner_image build/typecheck/qforge_runner
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict tools/ci

bench: setup
	@for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf .demo build .pytest_cache .mypy_cache .ruff_cache

# ---- Real Kubernetes for the tests (tools/k8s, tests/kube, tests/infra) ----------------
# Binaries built from the Go module proxy, cached by version under $(QFORGE_CACHE)/k8s.
# `make cluster-up` / `make node-up` start a cluster by hand and print its kubeconfig path.
KUBE_CLUSTER ?= dev
.PHONY: cluster-up cluster-down node-up node-down node-deps images-base autoscale-up autoscale-down

k8s-tools:
	@tools/k8s/build.sh

helm:
	@tools/k8s/build.sh helm

# Debian packages the real-node mode needs (dockerd, containerd, runc, CNI, debootstrap).
node-deps:
	@command -v dockerd >/dev/null && command -v debootstrap >/dev/null && \
	  test -x /usr/lib/cni/bridge && command -v iptables >/dev/null || { \
	  echo ">> installing docker.io containernetworking-plugins debootstrap iptables (Debian)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends docker.io containernetworking-plugins debootstrap iptables) \
	    >/dev/null || { echo "node-deps: apt-get install failed" >&2; exit 1; }; }

images-base: setup k8s-tools node-deps
	@$(PY) -m tests.kube images

test-infra: setup k8s-tools node-deps
	$(PY) -m pytest -q --durations=10 tests/infra

cluster-up: setup k8s-tools
	@$(PY) -m tests.kube up --name $(KUBE_CLUSTER)

cluster-down: setup
	@$(PY) -m tests.kube down --name $(KUBE_CLUSTER)

# The autoscaling mode by hand (cluster "autoscale"): runner pods need the NodePool's
# placement, NODE_SELECTOR='{"qforge.io/pool":"runners"}' and TOLERATIONS (docs/autoscaling.md).
autoscale-up: setup k8s-tools
	@$(PY) -m tests.kube up --autoscale --name autoscale

autoscale-down: setup
	@$(PY) -m tests.kube down --autoscale --name autoscale

node-up: setup k8s-tools node-deps
	@$(PY) -m tests.kube up --node --name node

node-down: setup
	@$(PY) -m tests.kube down --node --name node

# ---- End to end (tests/e2e): the real node here; kind in .github/workflows/e2e.yaml ----
# `make e2e`: starts the real-node cluster (tests/kube), builds both images from the
# Dockerfiles, helm-installs charts/qforge, runs tests/e2e, tears everything down (dumps
# under /tmp/qforge-e2e-artifacts when a test fails). Waits up to 10 min for another
# suite's real node on this machine to go (one node per machine).
.PHONY: e2e e2e-images e2e-workflow
e2e: setup k8s-tools node-deps
	QFORGE_E2E_LOAD=node QFORGE_E2E_WAIT_NODE=$${QFORGE_E2E_WAIT_NODE:-600} \
	  $(PY) -m pytest -v -p no:cacheprovider --timeout=1800 --durations=0 tests/e2e

# Build both images ahead of a run (the e2e suite's own dockerd; warms its cache).
e2e-images: setup node-deps
	$(PY) -m tests.e2e.images

# End to end on kind, here (docs/kind.md): a kind node image built on this machine from
# the Go module proxy and Debian's archive (cached by version in the kind dockerd's data
# root), then tools/kind/e2e.sh all -- the steps .github/workflows/e2e.yaml runs: kind
# create cluster, both images built from the Dockerfiles, kind load docker-image,
# tests/e2e with QFORGE_E2E_LOAD=kind, dumps on failure, kind delete cluster (always).
# Not part of `make test`: run it before every change to the chart, the images,
# tests/e2e or the workflow.
.PHONY: kind-image e2e-kind
kind-image: setup k8s-tools node-deps
	@$(PY) -m tests.kube.kind image

e2e-kind: setup k8s-tools node-deps
	$(PY) -m tests.kube.kind e2e

# The kind workflow checked with the real actionlint (no cluster); part of `make test`.
e2e-workflow: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/e2e/test_workflow.py
