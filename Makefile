# The names a newcomer types first: make run, make test, make lint, make bench.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# Pinned versions for every install (run, test, CI): a fresh venv gets what the suite passed with.
CONSTRAINTS := constraints.txt
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint bench venv dev system-deps clean rules demo

# Runtime dependencies only: what `make run` needs.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e .
	touch $(STAMP)

# Plus the dev extra (pytest, ruff, mypy, aiosmtpd, ...) for tests, lint, benches and the demo.
$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[dev]'
	touch $(DEV_STAMP)

venv: $(STAMP)

dev: $(DEV_STAMP)

# Real Prometheus and Alertmanager for the tests and the demo, Chromium for the console test
# and systemd-analyze for the unit in deploy/ (Debian packages), installed only when missing.
system-deps:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null \
	   || ! command -v prometheus-alertmanager >/dev/null || ! command -v amtool >/dev/null \
	   || ! command -v chromium >/dev/null || ! command -v systemd-analyze >/dev/null; then \
	  echo "installing prometheus, prometheus-alertmanager, chromium, systemd (Debian packages)"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q \
	    prometheus prometheus-alertmanager chromium systemd; \
	fi

run: venv
	$(VENV)/bin/receiver serve

lint: dev
	$(VENV)/bin/ruff check receiver tests bench
	$(VENV)/bin/ruff format --check receiver tests bench
	$(VENV)/bin/mypy receiver tests bench

test: system-deps dev lint
	$(VENV)/bin/pytest -q

bench: system-deps dev
	$(PY) bench/ingest.py
	$(PY) bench/worker.py
	$(PY) bench/load.py
	$(PY) bench/detect.py
	$(PY) bench/nab.py
	$(PY) bench/poller.py
	$(PY) bench/enrich.py
	$(PY) bench/rca.py

demo: system-deps dev
	$(PY) -m receiver.demo $(DEMO_ARGS)

rules: venv
	$(VENV)/bin/receiver rules generate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
