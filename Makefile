# candlecast: `make run` runs the main job on the embedded SQLite database, `make test` the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SYMBOLS ?= BTCUSDT
UV_VERSION ?= 0.13.9
# uv installs exactly what uv.lock says; --locked fails when pyproject.toml and the lock disagree.
UV_SYNC := UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON_DOWNLOADS=never $(BIN)/uv sync --locked --inexact

.PHONY: run test install dev lint format serve clean browser lock

run: $(VENV)/.installed  ## create .venv, install, migrate the SQLite database, run the main job once
	$(BIN)/candlecast db upgrade
	$(BIN)/candlecast run $(foreach s,$(SYMBOLS),--symbol $(s))

serve: $(VENV)/.installed  ## serve the prefect.yaml deployments against PREFECT_API_URL
	$(BIN)/candlecast db upgrade
	$(BIN)/candlecast serve

test: $(VENV)/.dev-installed browser  ## create .venv with the dev extras and run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest

CHROMIUM := /usr/bin/chromium
browser:  ## Debian's chromium for the browser test (tests/e2e/test_ui.py), installed as root
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else \
		echo "note: $(CHROMIUM) is missing, so the browser test skips (fails with CI=true);" \
			"install it with: sudo apt-get install chromium"; \
	fi

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed

$(BIN)/uv:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "candlecast needs Python 3.11+")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: pyproject.toml uv.lock $(BIN)/uv
	$(UV_SYNC) --quiet
	touch $@

$(VENV)/.dev-installed: pyproject.toml uv.lock $(VENV)/.installed
	$(UV_SYNC) --quiet --extra dev
	touch $@

lock: $(BIN)/uv  ## upgrade every locked version to the newest allowed by pyproject.toml
	$(BIN)/uv lock --upgrade

lint: $(VENV)/.dev-installed  ## ruff lint and format check, and the import layers
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(VENV)/.dev-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
