# TenantAtlas: the two set-up commands are `make run` and `make test` (see README).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test system-packages serve stop-db

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

# Installs, starts the embedded PostgreSQL (instance/pgdata), migrates, seeds demo data
# when the database is empty, prints the demo sign-ins and serves the app.
run: $(STAMP)
	$(BIN)/flask db upgrade
	$(BIN)/flask seed-demo --if-empty
	@echo "TenantAtlas is serving at http://$(HOST):$(PORT)"
	$(BIN)/gunicorn --bind $(HOST):$(PORT) --workers 1 --threads 8 --no-control-socket --limit-request-line 8190 --preload --access-logfile - wsgi:app

# Stops the embedded PostgreSQL that `make run` (and every flask command) leaves running.
stop-db:
	$(BIN)/python -m app.stop_database

# Chromium drives the browser tests (Debian's package; Playwright never downloads a browser).
system-packages:
	@if ! command -v chromium >/dev/null 2>&1; then \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation >/dev/null; \
	fi

# Installs what the tests need (system packages included) and runs the whole suite.
# Both cores (pytest-xdist; a test file stays on one worker, which has its own PostgreSQL).
test: $(STAMP) system-packages
	$(BIN)/pytest -n auto --dist loadfile
