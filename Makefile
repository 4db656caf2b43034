# Entry points. `make deploy` and `make test` are the README's quick start.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# scenarios `make test` runs, in order (scripts/molecule-all NAME runs one)
MOLECULE_SCENARIOS ?= default local fleet

.PHONY: setup setup-deploy deploy vault lint test test-app test-role molecule collection bench lock

setup:  ## for the tests: Debian packages, .venv with every pinned tool, app installed editable
	scripts/setup test

setup-deploy:  ## for deploying only: .venv with Ansible (the role installs what the hosts need)
	scripts/setup deploy

# extra ansible-playbook arguments of `make deploy`, e.g. DEPLOY_ARGS="-e ws=4" (bench/deploy.py uses it)
DEPLOY_ARGS ?=

deploy: setup-deploy  ## deploy the chatbot locally (inventories/local, WS=2) and print the chat URL
	$(BIN)/ansible-playbook deploy.yml $(DEPLOY_ARGS)

vault: setup-deploy  ## your production vault: inventories/production/.vault_pass + group_vars/all/vault.yml
	scripts/vault

lint: setup  ## ruff (Python), yamllint and ansible-lint (production profile)
	$(BIN)/ruff check .
	$(BIN)/yamllint -s .
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/ansible-lint --profile production

test-app: setup  ## app tests on real redis-server, uWSGI, Dramatiq and Chromium
	$(BIN)/pytest app/tests

test-role: setup  ## role: variable validation, README table, a real local deploy
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest tests

molecule: setup  ## Molecule scenarios on real Docker (engine: scripts/molecule-all; images: each scenario builds missing ones)
	scripts/molecule-all $(MOLECULE_SCENARIOS)

test: lint test-app test-role molecule  ## everything CI runs

collection: setup-deploy  ## build the collection tarball coinex-chatbot-VERSION.tar.gz into dist/
	$(BIN)/ansible-galaxy collection build --force --output-path dist

bench: setup  ## web and worker benchmarks; writes docs/benchmarks.md
	$(BIN)/python bench/run.py

lock:  ## re-pin the app's runtime dependencies into app/requirements.lock
	scripts/lock
