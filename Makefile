# The two commands a new user needs: `make up` and `make test`.
# Both create .venv and install the project into it, once, again only when
# pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install up test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

up: install
	$(BIN)/tether up

test: install lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Layering contracts, lint and strict typing: part of `make test`, so CI enforces them.
lint: install
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/mypy schemas broker cloud_api edge_runtime launcher tether.py

bench: install
	$(BIN)/tether bench roundtrip

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
