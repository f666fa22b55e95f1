# Two commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck clean env-example client

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The browser client (client/): `npm ci` installs the locked socket.io-client and
# esbuild, redone only when package.json or the lock changes; esbuild bundles
# ChatManager with socket.io-client into one ES module, served at
# /client/chat-manager.js, rebuilt only when a source changed. The output folder is
# git-ignored.
CLIENT_DIR := client
CLIENT_MODULES := $(CLIENT_DIR)/node_modules/.installed
CLIENT_BUNDLE := src/ecigdis_ws/static/build/chat-manager.js

$(CLIENT_MODULES): $(CLIENT_DIR)/package.json $(CLIENT_DIR)/package-lock.json
	cd $(CLIENT_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CLIENT_BUNDLE): $(CLIENT_MODULES) $(wildcard $(CLIENT_DIR)/src/*.js)
	cd $(CLIENT_DIR) && npm run --silent build

client: $(CLIENT_BUNDLE)

# Installs, builds the browser client, applies migrations to the embedded SQLite
# database and serves on :8080 (the demo page at http://localhost:8080/).
run: $(STAMP) client
	$(BIN)/ecigdis-ws migrate
	$(BIN)/ecigdis-ws serve

# Installs, then runs lint, type checks, the dependency audit and the whole test suite.
# The npm tools the tests drive (Artillery, pm2, playwright-core, socket.io-client) and
# the browser client are installed first, so pytest's time is the tests' own.
test: $(STAMP) client
	$(BIN)/ruff check src tests scripts
	$(BIN)/mypy --strict src
	$(BIN)/python scripts/audit_dependencies.py
	$(BIN)/python -m tests.tools
	@# pytest's exit code 5 means it collected no tests: that is a failure, not a pass.
	$(BIN)/pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

env-example: $(STAMP)
	$(BIN)/python -c 'from ecigdis_ws.settings import render_env_example as r; print(r(), end="")' > .env.example

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
