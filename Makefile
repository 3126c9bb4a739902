# eodes-node: `make demo` and `make test` are the two doors; both set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Vhosts the demo and the test suite use on the local RabbitMQ.
VHOSTS ?= eodes-kr eodes-cn eodes-test-kr eodes-test-cn eodes-conf-kr eodes-conf-cn

BENCH_VHOSTS := eodes-bench-kr eodes-bench-cn

.PHONY: install lint format test test-cluster test-core coverage broker browser schemas demo bench bench-quick bench-aged soak soak-ha fuzz clean dist

install: $(STAMP)

$(STAMP): pyproject.toml
	@bash scripts/ensure-python.sh "$(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

broker:
	@bash scripts/ensure-rabbitmq.sh $(VHOSTS)

# Debian's chromium for the browser tests (tests/browser); Playwright drives it.
browser:
	@bash scripts/ensure-chromium.sh

lint: install
	$(BIN)/ruff check eodes_node tests bench soak fuzz
	$(BIN)/ruff format --check eodes_node tests bench soak fuzz
	$(BIN)/mypy

format: install
	$(BIN)/ruff format eodes_node tests bench soak fuzz
	$(BIN)/ruff check --fix eodes_node tests bench soak fuzz

test: install broker browser
	$(BIN)/pytest

# The broker high-availability tests alone (part of `make test`): quorum queues on private
# three-node RabbitMQ clusters, members stopped and killed while certificates are in flight.
test-cluster: install broker
	$(BIN)/pytest tests/e2e/test_broker_ha.py

# The unit tests alone: core and service on in-memory fakes, no broker, no database.
test-core: install
	$(BIN)/pytest tests/unit

# Branch coverage of the unit tests alone, with a floor per layer.
CORE_FLOOR ?= 96
SERVICE_FLOOR ?= 95
coverage: install
	$(BIN)/pytest -q tests/unit --cov=eodes_node --cov-branch --cov-report=
	$(BIN)/coverage report --include='eodes_node/core/*' --fail-under=$(CORE_FLOOR)
	$(BIN)/coverage report --include='eodes_node/service/*' --fail-under=$(SERVICE_FLOOR)

schemas: install
	$(BIN)/eodes-node schemas --out schemas

# The wheel and the sdist in dist/, as deploy/container/Containerfile installs them.
dist: install
	rm -rf dist
	$(BIN)/python -m build --outdir dist

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .coverage var demo-run

# Two nodes (KR, CN) as processes on the eodes-kr / eodes-cn vhosts; DEMO_COUNT=N e-COs.
demo: install broker
	@$(BIN)/python -m eodes_node.demo

# Throughput, latency and memory of the real nodes against a bare relay's ceiling.
bench: install
	@bash scripts/ensure-rabbitmq.sh $(BENCH_VHOSTS)
	$(BIN)/python bench/run.py

# The same in about a minute (smaller counts, one repeat).
bench-quick: install
	@bash scripts/ensure-rabbitmq.sh $(BENCH_VHOSTS)
	$(BIN)/python bench/run.py --quick

# The nodes against stores aged to AGED_CERTIFICATES certificates each (cloned rows), on
# SQLite and on PostgreSQL (127.0.0.1:5432, user postgres), with UUIDv7 and UUIDv4 ids,
# against fresh stores; about 30 minutes and 17 GB of disk for a million.
AGED_CERTIFICATES ?= 1000000
AGED_BACKENDS ?= sqlite,postgresql
bench-aged: install
	@bash scripts/ensure-rabbitmq.sh $(BENCH_VHOSTS)
	$(BIN)/python bench/aged.py --certificates $(AGED_CERTIFICATES) --backends $(AGED_BACKENDS)

# The fault soak: both nodes as processes on a private RabbitMQ node (never the shared
# one), seeded faults, counted at the local queues; about 5 minutes. SOAK_FULL=1 for the
# long run, SOAK_SEED=N to replay, SOAK_FAULTS=0 to check the counting alone. Needs root.
soak: install
	@$(BIN)/python -m soak.run

# The same with two instances of each node on PostgreSQL (127.0.0.1:5432, user postgres):
# the active one SIGKILLed, and once SIGSTOPped past its lease; about 4 minutes.
# SOAK_FULL=1 for ten kills. Same as SOAK_HA=1 make soak.
soak-ha: install
	@SOAK_HA=1 $(BIN)/python -m soak.run

# Fuzz the three doors (partner envelopes, local records and feedback, the config file)
# with atheris, one target at a time, FUZZ_SECONDS each; fails on any finding, saved in
# fuzz/findings/. FUZZ_TARGETS="envelope-bytes config" for some of them.
FUZZ_SECONDS ?= 30
fuzz: install
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/python -m fuzz.run $(FUZZ_TARGETS)
