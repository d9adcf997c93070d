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
GRAPH_ENV := GRAPH_API_URL=https://127.0.0.1:$(SIMULATOR_API_PORT) \
	GRAPH_LOGIN_URL=https://127.0.0.1:$(SIMULATOR_LOGIN_PORT) \
	GRAPH_CA_BUNDLE=$(SIMULATOR_STATE)/ca.pem \
	GRAPH_CLIENT_ID_FILE=$(SIMULATOR_STATE)/client_id \
	GRAPH_CLIENT_SECRET_FILE=$(SIMULATOR_STATE)/client_secret \
	TENANTATLAS_GRAPH_SIMULATED=1
PROCESSES := simulator web worker
SIMULATOR_INIT := $(BIN)/python -m simulator init --state-dir $(SIMULATOR_STATE)
else
PROCESSES := web worker
SIMULATOR_INIT := @echo "Microsoft Graph: using GRAPH_CLIENT_ID and GRAPH_API_URL from the environment"
endif

.PHONY: run test system-packages serve

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

# Installs, starts the embedded PostgreSQL (instance/pgdata), migrates, seeds demo data
# when the database is empty, prints the demo sign-ins and serves the app with its worker
# and (without GRAPH_CLIENT_ID) the Graph simulator, all three under honcho (Procfile).
run: $(STAMP)
	$(BIN)/flask db upgrade
	$(BIN)/flask seed-demo --if-empty
	$(SIMULATOR_INIT)
	@echo "TenantAtlas is serving at http://$(HOST):$(PORT)"
	$(GRAPH_ENV) HOST=$(HOST) PORT=$(PORT) SIMULATOR_API_PORT=$(SIMULATOR_API_PORT) \
		SIMULATOR_LOGIN_PORT=$(SIMULATOR_LOGIN_PORT) $(BIN)/honcho start -f Procfile $(PROCESSES)

# Chromium drives the browser tests (Debian's package; Playwright never downloads a browser).
system-packages:
	@if ! command -v chromium >/dev/null 2>&1; then \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation >/dev/null; \
	fi

# Installs what the tests need (system packages included) and runs the whole suite.
test: $(STAMP) system-packages
	$(BIN)/pytest
