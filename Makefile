# Two commands matter: `make dev` (the whole product locally) and `make test` (the whole suite).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: dev test check chart-test lint typecheck constraints migrate seed bench-feed bench-outbox \
	bench-media bench-booking system-deps clean

# Versions come from constraints.txt (regenerate it with `make constraints`).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || "$$(scripts/find-python.sh)" -m venv $(VENV)
	@echo "Installing Python dependencies into $(VENV) (first run: ~1-2 min)..."
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install --progress-bar on -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

system-deps:
	@scripts/system-deps.sh

dev: $(STAMP) system-deps
	$(VENV)/bin/courtside dev

test: $(STAMP) system-deps
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

chart-test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/chart

# Everything CI runs (.ci/run): style, import rules, types, then the whole suite.
check: lint typecheck test

lint: $(STAMP)
	$(VENV)/bin/ruff check app workers operator courtside tests bench
	$(VENV)/bin/ruff format --check app workers operator courtside tests bench
	$(VENV)/bin/lint-imports --no-cache --no-logo

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

bench-media: $(STAMP) system-deps
	$(PY) bench/media.py

bench-booking: $(STAMP) system-deps
	$(PY) bench/booking.py

# Re-resolve every dependency within pyproject.toml's ranges in a fresh venv and pin the result.
constraints:
	rm -rf .venv-constraints
	"$$(scripts/find-python.sh)" -m venv .venv-constraints
	.venv-constraints/bin/pip install -q --upgrade pip
	.venv-constraints/bin/pip install -q -e '.[dev]'
	{ sed -n '/^#/p' constraints.txt; .venv-constraints/bin/pip freeze --exclude-editable; } \
		> constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-constraints

clean:
	rm -rf .courtside
