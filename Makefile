# raibid.dgx_spark — the two commands that matter:
#   make lab    set everything up and run site.yml against a local simulated DGX Spark node
#   make test   the whole test suite (lint, unit, integration, Molecule)
SHELL := /bin/bash
VENV := .venv/bin
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
SCENARIOS ?=
# pytest-xdist workers of `make integration` (tests/integration/conftest.py: the tests of each test bed
# on one worker, the rest spread over all); 0 runs the tests in this process.
INTEGRATION_JOBS ?= 3

.PHONY: help setup images lab lab-run lab-down lint unit agent integration molecule test bench clean sanity docs release-check

help:
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/' | expand -t 16

setup: ## install tools into .venv, link the collection, make sure Docker runs
	tests/testbed/setup.sh

images: setup ## build any missing test-node images (bookworm, trixie, trixie-arm64)
	$(VENV)/python molecule/images/build.py

lab: setup ## start the lab-in-a-box node and run site.yml against it
	$(VENV)/ansible-playbook tests/testbed/lab.yml
	$(VENV)/ansible-playbook site.yml -i inventory/local

lab-run: ## re-run site.yml against the running lab node
	$(VENV)/ansible-playbook site.yml -i inventory/local

lab-down: ## remove the lab node
	$(VENV)/ansible-playbook tests/testbed/lab.yml -e lab_state=absent

lint: setup ## yamllint, ansible-lint (production profile), ruff
	$(VENV)/yamllint --strict .
	$(VENV)/ansible-lint --profile production
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

unit: setup ## pytest unit tests of plugins and module_utils, and of the test tooling (tests/tooling)
	$(VENV)/pytest tests/unit tests/tooling

agent: ## the raibid-agent crate (image/agent): rustfmt, clippy, unit tests and the tests against a real redis-server
	@export PATH="$$HOME/.cargo/bin:$$PATH"; command -v cargo >/dev/null || { echo "make agent: cargo not found (a Rust toolchain with rustfmt and clippy)"; exit 1; }; \
	cd image/agent && cargo fmt --check && cargo clippy --locked --all-targets -- -D warnings && cargo test --locked

integration: setup ## pytest integration tests (real ansible-playbook runs, real services)
	$(VENV)/pytest -n $(INTEGRATION_JOBS) --durations=15 tests/integration

molecule: setup ## every Molecule scenario (or SCENARIOS="a b")
	$(VENV)/python tests/molecule_scenario.py $(SCENARIOS)

sanity: setup ## ansible-test sanity + units on the collection as it ships (tests/release/check.py)
	$(VENV)/python tests/release/check.py sanity units

docs: setup ## regenerate role READMEs from meta/argument_specs.yml and CHANGELOG.md from changelogs/
	$(VENV)/python tests/release/role_docs.py
	$(VENV)/python tests/release/check.py changelog-md

release-check: setup ## docs current, defaults = specs, ansible-doc, tarball, galaxy-importer, changelog, EE
	$(VENV)/pytest -q tests/release
	$(VENV)/python tests/release/check.py role-docs drift ansible-doc galaxy-import changelog ee

test: setup ## the whole test suite: lint, unit, integration, Molecule (table of times at the end)
	tests/run-suite.sh

bench: setup ## print benchmark figures (no asserts)
	$(VENV)/python benchmarks/bench.py

clean: ## remove caches (keeps .venv and node images)
	rm -rf .cache/molecule-timings.jsonl .pytest_cache .ruff_cache tests/output
