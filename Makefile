# eodes-node: `make demo` and `make test` are the two doors; both set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Vhosts the demo and the test suite use on the local RabbitMQ.
VHOSTS ?= eodes-kr eodes-cn eodes-test-kr eodes-test-cn

.PHONY: install lint format test test-core broker schemas demo bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@bash scripts/ensure-python.sh "$(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

broker:
	@bash scripts/ensure-rabbitmq.sh $(VHOSTS)

lint: install
	$(BIN)/ruff check eodes_node tests
	$(BIN)/ruff format --check eodes_node tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff format eodes_node tests
	$(BIN)/ruff check --fix eodes_node tests

test: install broker
	$(BIN)/pytest

# The pure-logic suite alone: no broker, seconds.
test-core: install
	$(BIN)/pytest -m "not broker"

schemas: install
	$(BIN)/eodes-node schemas --out schemas

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis var demo-run

# Two nodes (KR, CN) as processes on the eodes-kr / eodes-cn vhosts; DEMO_COUNT=N e-COs.
demo: install broker
	@$(BIN)/python -m eodes_node.demo
