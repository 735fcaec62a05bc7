# Two commands for a fresh machine: `make demo` and `make test`. Everything they need is
# installed here, into .venv, from the package registry.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

DEMO_RECORDS ?= 1000000
DEMO_BUCKET  := demo/bucket
DEMO_INPUT   := $(DEMO_BUCKET)/input/records.jsonl

.PHONY: demo test lint typecheck unit install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job end to end on the embedded example: 1,000,000 generated records (a few invalid and
# malformed ones among them), the execution input in examples/demo-event.json.
demo: $(STAMP)
	$(BIN)/scm-batch generate $(DEMO_INPUT) --records $(DEMO_RECORDS) --seed 42 \
		--invalid-rate 0.002 --malformed-rate 0.00005
	$(BIN)/scm-batch run --input examples/demo-event.json --overwrite

lint: $(STAMP)
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest

clean:
	rm -rf demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
