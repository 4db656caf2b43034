# Entry points. `make deploy` and `make test` are the README's quick start.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup deploy lint test test-app bench lock

setup:  ## Debian packages, .venv with pinned tools, app installed editable
	scripts/setup

lint: setup  ## ruff (app), yamllint
	$(BIN)/ruff check .
	$(BIN)/yamllint -s .

test-app: setup  ## app tests on real redis-server, uWSGI, Dramatiq and Chromium
	$(BIN)/pytest app/tests

test: lint test-app  ## everything CI runs

bench: setup  ## web and worker benchmarks; writes docs/benchmarks.md
	$(BIN)/python bench/run.py

lock:  ## re-pin the app's runtime dependencies into app/requirements.lock
	scripts/lock
