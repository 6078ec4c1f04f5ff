# euca.cloud — project tasks. `make demo` and `make test` set everything up themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT       := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV       ?= $(ROOT)/.venv
BIN        := $(VENV)/bin
PY         := $(BIN)/python
COLLECTION := $(ROOT)/collections/ansible_collections/euca/cloud
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg

PYTEST ?= $(PY) -m pytest
PYTEST_ARGS ?=

# ansible-test sanity, without docker, from the project venv (no --venv: that would
# delegate to a fresh venv). Each sanity test still builds its own venv under
# ~/.ansible/test/venv from PyPI, bootstrapping pip with the offline stand-in that
# scripts/ansible-test-prepare puts in ~/.ansible/test/cache (the usual download host is
# unreachable here). pslint is skipped: it needs PowerShell (pwsh), which Debian lacks,
# and the collection has no PowerShell.
SANITY := $(BIN)/ansible-test sanity --python-interpreter $(PY) --color no --skip-test pslint

LINT := $(BIN)/ansible-lint --profile production --offline playbooks/ roles/ inventories/ molecule/ collections/ansible_collections/euca/cloud/roles/

.PHONY: help setup test pytest unit integration sanity lint bench demo demo-clean clean distclean

help:
	@echo "make demo        set up, then run playbooks/demo.yml (the all-in-one sandbox)"
	@echo "make demo-clean  remove every trace of the demo (playbooks/clean.yml)"
	@echo "make test        set up, then pytest (unit + integration), ansible-test sanity, ansible-lint"
	@echo "make setup       scripts/bootstrap: Debian packages (bindep.txt) + .venv (requirements.txt)"
	@echo "make unit | integration | sanity | lint | bench | clean | distclean"

setup:
	@[ -n "$${EUCA_SETUP_DONE:-}" ] || $(ROOT)/scripts/bootstrap

# Every step runs; the target fails if any step failed. sanity and lint (a few minutes of CPU, no
# root, nothing shared with the tests) run beside pytest, their output kept in .cache/make-test/ and
# printed after pytest's; the integration tests' waits leave room for a loaded machine.
TEST_LOGS := $(ROOT)/.cache/make-test

test: setup
	@mkdir -p $(TEST_LOGS); rm -f $(TEST_LOGS)/*.rc; failed=(); export EUCA_SETUP_DONE=1; \
	for step in sanity lint; do \
	  ( $(MAKE) --no-print-directory $$step > $(TEST_LOGS)/$$step.log 2>&1; echo $$? > $(TEST_LOGS)/$$step.rc ) & \
	done; \
	$(MAKE) --no-print-directory pytest || failed+=(pytest); \
	wait; \
	for step in sanity lint; do \
	  echo "== make $$step"; cat $(TEST_LOGS)/$$step.log; \
	  [ "$$(cat $(TEST_LOGS)/$$step.rc 2>/dev/null)" = 0 ] || failed+=($$step); \
	done; \
	if [ $${#failed[@]} -gt 0 ]; then echo "make test: FAILED: $${failed[*]}"; exit 1; fi; \
	echo "make test: all steps passed"

# Three workers (pytest-xdist), one test file at a time each: the sandbox tests keep to their own
# namespaces, ports, directories and supervisord, so several run side by side; the longest files start
# first (tests/conftest.py). Three on two cores: with two, the CPUs were busy about half of the time
# (the tests wait on guests, daemons and playbook runs). PYTEST_WORKERS=0 runs everything in this process.
PYTEST_WORKERS ?= 3

pytest: setup
	$(PYTEST) -n $(PYTEST_WORKERS) --dist loadfile --durations=25 tests/unit tests/integration $(PYTEST_ARGS)

unit: setup
	$(PYTEST) tests/unit $(PYTEST_ARGS)

integration: setup
	$(PYTEST) tests/integration $(PYTEST_ARGS)

sanity: setup
	@$(ROOT)/scripts/ansible-test-prepare $(PY)
	cd $(COLLECTION) && $(SANITY)

lint: setup
	$(LINT)

bench: setup
	@shopt -s nullglob; benches=($(ROOT)/bench/*.py); \
	if [ $${#benches[@]} -eq 0 ]; then echo "bench: no bench/*.py yet"; exit 0; fi; \
	rc=0; for b in "$${benches[@]}"; do echo "== $${b#$(ROOT)/}"; $(PY) "$$b" || rc=1; done; exit $$rc

demo: setup
	$(BIN)/ansible-playbook playbooks/demo.yml

demo-clean: setup
	$(BIN)/ansible-playbook playbooks/clean.yml

clean:
	rm -rf $(COLLECTION)/tests/output .pytest_cache
	find $(ROOT) -path $(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
