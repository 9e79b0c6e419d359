.PHONY: install test lint format typecheck bench demo

PYTHON ?= python3

install:
	$(PYTHON) -m pip install -e ".[test]"

## The one command that runs every check: lint, types, then the test suite.
test: lint typecheck
	$(PYTHON) -m pytest

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

typecheck:
	$(PYTHON) -m mypy

format:
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

bench:
	$(PYTHON) -m bench

demo:
	jobstore-exporter demo
