.PHONY: install test test-fast lint format typecheck bench demo aps310

PYTHON ?= python3
APS310_DIR := .cache/apscheduler-3.10

install:
	$(PYTHON) -m pip install -e ".[test,dashboards]"

## The one command that runs every check: lint, types, then the whole test suite (what CI runs).
test: lint typecheck aps310
	$(PYTHON) -m pytest

## The inner loop: unit and database tests only (no end-to-end processes, no artefact checks).
test-fast:
	$(PYTHON) -m pytest -q -m "unit or database"

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

typecheck:
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy mixin/render.py mixin/build_dashboards.py mixin/panel_specs.py

## APScheduler 3.10.4 (what Aegis apps pin) for the tests that decode rows it wrote. Installed
## before the tests run, never by them; offline, those tests skip with the reason (fail in CI).
aps310:
	@test -d $(APS310_DIR)/APScheduler-3.10.4.dist-info -a -d $(APS310_DIR)/pytz || \
	  $(PYTHON) -m pip install -q --no-input --disable-pip-version-check --upgrade \
	    --target $(APS310_DIR) apscheduler==3.10.4 pytz tzlocal six || \
	  echo "aps310: could not install APScheduler 3.10.4; its decode tests will skip"

format:
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

bench:
	$(PYTHON) -m bench

demo:
	jobstore-exporter demo
