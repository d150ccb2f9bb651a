# xpu.parallelcluster — developer and CI entry points.
#
#   make demo     install what is needed, bring the local lab up, run the demo
#   make test     everything CI runs: lint, unit and integration tests on the lab
#   make check    the fast tier: lint + unit tests (under a minute)
#
# Every AWS call made from here goes to the local emulator on 127.0.0.1, with
# dummy credentials; the proxy settings are a fence in case anything tries to
# reach further.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
PYTEST := $(BIN)/python -m pytest

XPU_LAB_AWS_PORT ?= 5055
export XPU_LAB_AWS_PORT
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.cache/collections
export CONTAINERS_CONF := $(CURDIR)/scripts/lab/containers.conf
export AWS_ENDPOINT_URL := http://127.0.0.1:$(XPU_LAB_AWS_PORT)
export AWS_ACCESS_KEY_ID := testing
export AWS_SECRET_ACCESS_KEY := testing
export AWS_SESSION_TOKEN := testing
export AWS_DEFAULT_REGION := us-east-1
export AWS_REGION := us-east-1
export AWS_EC2_METADATA_DISABLED := true
export HTTPS_PROXY := http://127.0.0.1:9
export HTTP_PROXY := http://127.0.0.1:9
export https_proxy := http://127.0.0.1:9
export http_proxy := http://127.0.0.1:9
export NO_PROXY := 127.0.0.1,localhost
export no_proxy := 127.0.0.1,localhost
# Test processes may also reach the lab's podman network (scripts/lab/lab-cluster.yml).
export XPU_FENCE_ALLOW_CIDRS := 10.213.0.0/24
export PYTHONDONTWRITEBYTECODE := 1

SHELL_SCRIPTS := scripts/lab.sh scripts/install-deps.sh scripts/node-bootstrap.sh scripts/lab/build-image.sh \
	scripts/lab/rootfs/usr/local/sbin/xpu-lab-init .ci/run tests/perf/slurm_perf_setup.sh

.PHONY: help deps lint unit check integration pytest test demo lab-up lab-down lab-status lab-clean \
	inventory build changelog-lint perf

help:
	@echo "make demo        bring the local lab up and run the demo (installs what it needs)"
	@echo "make test        lint + unit + integration tests on the lab (what CI runs)"
	@echo "make check       lint + unit tests (fast)"
	@echo "make lab-up | lab-down | lab-status | lab-clean   manage the local lab"
	@echo "make inventory   show the lab's dynamic inventory graph"
	@echo "make build       build the collection artifact"

deps:
	@scripts/install-deps.sh

# ANSIBLE_LINT=cached (make check) skips ansible-lint, the slowest linter (about 40 s on 2 cores),
# when no file of the tree changed since its last clean run here; make lint and make test always run it.
ANSIBLE_LINT ?= always
ANSIBLE_LINT_STAMP := .cache/ansible-lint.clean

lint: deps
	@echo "== lint: yamllint, ansible-lint, ruff, shellcheck, changelog"
	$(BIN)/yamllint --strict .
	@tree=$$( (git ls-files -co --exclude-standard -z | sort -z | xargs -0 sha256sum 2>/dev/null || true) \
	  | sha256sum | cut -c1-64); \
	if [ "$(ANSIBLE_LINT)" = cached ] && [ "$$(cat $(ANSIBLE_LINT_STAMP) 2>/dev/null)" = "$$tree" ]; then \
	  echo "ansible-lint: tree unchanged since its last clean run here, not run again"; \
	else \
	  echo "$(BIN)/ansible-lint --offline -q"; \
	  $(BIN)/ansible-lint --offline -q && echo "$$tree" > $(ANSIBLE_LINT_STAMP); \
	fi
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	shellcheck $(SHELL_SCRIPTS)
	$(BIN)/antsibull-changelog lint
	$(BIN)/cfn-lint files/cloudformation/*.yaml

# The fast tier leaves out tests marked slow (they run ansible-playbook on roles); make test runs all.
unit: deps
	$(PYTEST) -m "not slow" tests/unit

# Lint and unit tests side by side: the fast tier stays under a minute on 2 cores.
check: deps
	@$(MAKE) --no-print-directory -j2 -O lint unit ANSIBLE_LINT=cached

integration: deps
	$(PYTEST) tests/integration

# Benchmarks (not part of make test): slurm_exporter against real Slurm with 2,000 CLOUD nodes
# and 10,000 jobs in a container of its own; prints scrape latency, commands and collection time.
perf: deps
	$(BIN)/python tests/perf/bench_slurm_exporter.py

# Run selected tests with the Makefile's environment: make pytest ARGS="tests/unit/... -k name"
pytest: deps
	$(PYTEST) $(ARGS)

# All tests in one pytest session (one closing summary line); the lab is torn
# down afterwards whatever the outcome.
test: deps lint
	@rc=0; $(PYTEST) tests/unit tests/integration || rc=$$?; \
	scripts/lab.sh down >/dev/null 2>&1 || true; \
	exit $$rc

demo: deps lab-up
	$(BIN)/ansible-playbook -i inventories/lab -e @playbooks/lab/vars/lab.yml playbooks/lab/demo.yml

lab-up: deps
	@scripts/lab.sh up

lab-down:
	@scripts/lab.sh down

lab-clean:
	@scripts/lab.sh down --purge

lab-status:
	@scripts/lab.sh status

inventory: deps
	$(BIN)/ansible-inventory -i inventories/lab --graph

build: deps
	$(BIN)/ansible-galaxy collection build --force --output-path .cache/dist .
