# candlecast: `make run` runs the main job on the embedded SQLite database, `make test` the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SYMBOLS ?= BTCUSDT

.PHONY: run test install dev lint format serve clean browser

run: $(VENV)/.installed  ## create .venv, install, migrate the SQLite database, run the main job once
	$(BIN)/candlecast db upgrade
	$(BIN)/candlecast run $(foreach s,$(SYMBOLS),--symbol $(s))

serve: $(VENV)/.installed  ## serve the prefect.yaml deployments against PREFECT_API_URL
	$(BIN)/candlecast db upgrade
	$(BIN)/candlecast serve

test: $(VENV)/.dev-installed browser  ## create .venv with the dev extras and run the whole test suite
	$(BIN)/ruff check .
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

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "candlecast needs Python 3.11+")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

lint: $(VENV)/.dev-installed  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
