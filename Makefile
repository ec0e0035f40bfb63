# Two commands matter: `make dev` (the whole product locally) and `make test` (the whole suite).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: dev test chart-test lint typecheck migrate seed bench-feed bench-outbox system-deps clean

$(STAMP): pyproject.toml
	@test -x $(PY) || "$$(scripts/find-python.sh)" -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

system-deps:
	@scripts/system-deps.sh

dev: $(STAMP) system-deps
	$(VENV)/bin/courtside dev

test: $(STAMP) system-deps
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

chart-test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/chart

lint: $(STAMP)
	$(VENV)/bin/ruff check app workers operator courtside tests bench
	$(VENV)/bin/ruff format --check app workers operator courtside tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy app workers operator/courtside_operator courtside

migrate: $(STAMP)
	$(VENV)/bin/courtside migrate

seed: $(STAMP)
	$(VENV)/bin/courtside seed

bench-feed: $(STAMP) system-deps
	$(PY) bench/feed.py

bench-outbox: $(STAMP) system-deps
	$(PY) bench/outbox.py

clean:
	rm -rf .courtside
