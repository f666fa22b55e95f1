# Two commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-serial test-quick lint typecheck clean env-example client

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
	@# On every core; fails unless every test a serial collection lists ran.
	$(BIN)/python scripts/run_suite.py

# The same suite in one process, for debugging (PYTEST_ARGS: a path, -k, -x ...).
test-serial: $(STAMP) client
	$(BIN)/pytest -p no:xdist $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

# The inner loop: every test that needs no process outside pytest (no MariaDB, Redis,
# Node, Chromium, nginx, pm2 or systemd), on every core, in under a minute.
QUICK := tests/services tests/storage tests/transport tests/fanout tests/test_architecture.py \
	tests/test_docs.py tests/test_settings.py tests/test_json_codec.py
test-quick: $(STAMP)
	$(BIN)/pytest -n auto -q -k "not mariadb" $(QUICK)

env-example: $(STAMP)
	$(BIN)/python -c 'from ecigdis_ws.settings import render_env_example as r; print(r(), end="")' > .env.example

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
