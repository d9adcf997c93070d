# TenantAtlas: the two set-up commands are `make run` and `make test` (see README).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 5000
SIMULATOR_API_PORT ?= 8443
SIMULATOR_LOGIN_PORT ?= 8444
SIMULATOR_STATE := instance/simulator

# Without GRAPH_CLIENT_ID in the environment, `make run` points the app at the project's own
# Graph simulator (a real HTTPS server with its own CA under instance/simulator).
ifeq ($(strip $(GRAPH_CLIENT_ID)$(GRAPH_CLIENT_ID_FILE)),)
PROCESSES := simulator web worker
# The simulator's CA and app registration exist before web and worker start; they read graph.env.
SIMULATOR_INIT := $(BIN)/python -m simulator env --state-dir $(SIMULATOR_STATE) \
	--api-port $(SIMULATOR_API_PORT) --login-port $(SIMULATOR_LOGIN_PORT) > $(SIMULATOR_STATE)/graph.env.new \
	&& mv $(SIMULATOR_STATE)/graph.env.new $(SIMULATOR_STATE)/graph.env
GRAPH_ENV_FILE := -e $(SIMULATOR_STATE)/graph.env
else
PROCESSES := web worker
SIMULATOR_INIT := @echo "Microsoft Graph: using GRAPH_CLIENT_ID and GRAPH_API_URL from the environment"
GRAPH_ENV_FILE := -e /dev/null
endif

.PHONY: run test system-packages serve stop-db

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

# Installs, starts the embedded PostgreSQL (instance/pgdata), migrates, seeds demo data
# when the database is empty, prints the demo sign-ins and serves the app with its worker
# and (without GRAPH_CLIENT_ID) the Graph simulator, all three under honcho (Procfile).
run: $(STAMP)
	@mkdir -p $(SIMULATOR_STATE)
	$(BIN)/flask db upgrade
	$(BIN)/flask seed-demo --if-empty
	$(SIMULATOR_INIT)
	@echo "TenantAtlas is serving at http://$(HOST):$(PORT)"
	HOST=$(HOST) WEB_PORT=$(PORT) SIMULATOR_API_PORT=$(SIMULATOR_API_PORT) \
		SIMULATOR_LOGIN_PORT=$(SIMULATOR_LOGIN_PORT) $(BIN)/honcho start -f Procfile $(GRAPH_ENV_FILE) $(PROCESSES)

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
