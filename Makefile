# One entry for people. `make test` does all set-up itself on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SFE := $(BIN)/sfe
INSTALLED := $(VENV)/.installed

.PHONY: help install stack-up stack-down migrate tools test lint format bench demo soak clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,training]'
	touch $@

install: $(INSTALLED) ## Create the virtualenv and install the project with its dev tools

stack-up: $(INSTALLED) ## Start the local Kafka broker and PostgreSQL cluster
	$(SFE) stack up

stack-down: $(INSTALLED) ## Stop what `make stack-up` started
	$(SFE) stack down

migrate: stack-up ## Apply the database migrations
	$(SFE) db upgrade

tools: ## Fetch promtool and amtool into .stack/tools/ (alert rule, metrics and routing checks)
	scripts/fetch-debian-tool prometheus promtool
	scripts/fetch-debian-tool prometheus-alertmanager amtool

test: migrate tools ## Set everything up and run the whole test suite
	@$(BIN)/pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: the suite is missing" >&2; exit 1; fi; \
	exit $$status

lint: $(INSTALLED) ## Ruff (lint and format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy sfe streams agents projections ml schema_registry simulator

format: $(INSTALLED) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: migrate ## Run the benchmarks in bench/
	@shopt -s nullglob; benches=(bench/bench_*.py); \
	if [ $${#benches[@]} -eq 0 ]; then echo "no benchmarks in bench/ yet"; exit 0; fi; \
	for b in "$${benches[@]}"; do echo "== $$b"; $(BIN)/python "$$b" || exit 1; done

demo: $(INSTALLED) ## Run the end-to-end demonstration (DEMO_ARGS="--duration 60 --rate 40 ...")
	$(SFE) demo $(DEMO_ARGS)

SOAK_SECONDS ?= 300
SOAK_ARGS ?=
soak: $(INSTALLED) ## Run the pipeline under faults for SOAK_SECONDS, then check nothing was lost or duplicated
	$(BIN)/python -m sfe.reliability --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

clean: stack-down ## Stop the stack and remove the virtualenv and local state
	rm -rf $(VENV) .stack
