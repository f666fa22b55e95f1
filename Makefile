# Two commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck clean env-example

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Installs, applies migrations to the embedded SQLite database and serves on :8080.
run: $(STAMP)
	$(BIN)/ecigdis-ws migrate
	$(BIN)/ecigdis-ws serve

# Installs, then runs lint, type checks, the dependency audit and the whole test suite.
test: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/mypy --strict src
	$(BIN)/python scripts/audit_dependencies.py
	@# pytest's exit code 5 means it collected no tests: that is a failure, not a pass.
	$(BIN)/pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

env-example: $(STAMP)
	$(BIN)/python -c 'from ecigdis_ws.settings import render_env_example as r; print(r(), end="")' > .env.example

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
