# Two commands for a fresh machine: `make demo` and `make test`. Everything they need is
# installed here, into .venv, from the package registry.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

DEMO_RECORDS ?= 1000000
DEMO_BUCKET  := demo/bucket
DEMO_INPUT   := $(DEMO_BUCKET)/input/records.jsonl

.PHONY: demo test lint typecheck unit install clean tools lambda-package bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Tools that check the deployment (deploy/terraform), in their own venv: checkov pins versions
# that would fight the project's own. The stamp names the version, so a new pin reinstalls.
CHECKOV_VERSION := 3.3.30
TOOLS_VENV      := .venv-tools
TOOLS_STAMP     := $(TOOLS_VENV)/.checkov-$(CHECKOV_VERSION)

$(TOOLS_STAMP):
	rm -rf $(TOOLS_VENV)
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $@

tools: $(TOOLS_STAMP)

# The Lambda deployment package: the project and its runtime dependencies (with the MSK IAM
# signer) as manylinux x86_64 wheels for Python 3.12, zipped with sorted entries and fixed
# timestamps so that the same sources give the same zip (and Terraform's source_code_hash).
# The python3.12 runtime is Amazon Linux 2023 (glibc 2.34), so manylinux_2_28 wheels run there
# too; without that platform pip falls back to old releases (confluent-kafka 2.4).
LAMBDA_BUILD := build/lambda
LAMBDA_ZIP   := dist/scm-batch-lambda.zip

lambda-package: $(STAMP)
	rm -rf $(LAMBDA_BUILD) build/lambda-wheel
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir build/lambda-wheel .
	$(BIN)/python -m pip install --quiet --no-compile --target $(LAMBDA_BUILD) \
		--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
		--implementation cp --python-version 3.12 \
		--only-binary=:all: "$$(ls build/lambda-wheel/scm_batch-*.whl)[msk]"
	$(BIN)/python deploy/lambda_zip.py $(LAMBDA_BUILD) $(LAMBDA_ZIP)

# The main job end to end on the embedded example: 1,000,000 generated records (a few invalid and
# malformed ones among them), the execution input in examples/demo-event.json.
demo: $(STAMP)
	$(BIN)/scm-batch generate $(DEMO_INPUT) --records $(DEMO_RECORDS) --seed 42 \
		--invalid-rate 0.002 --malformed-rate 0.00005
	$(BIN)/scm-batch run --input examples/demo-event.json --overwrite

# scm-batch raced against its peers (DuckDB, polars, the original approach, a decode-only floor):
# see bench/run.py. The input is generated once per BENCH_RECORDS and kept in bench/data/; the
# results go to BENCHMARKS.md. The peers come from the `bench` extra, installed here.
BENCH_STAMP   := $(VENV)/.installed-bench
BENCH_RECORDS ?= 2000000
BENCH_ROUNDS  ?= 3

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	BENCH_RECORDS=$(BENCH_RECORDS) BENCH_ROUNDS=$(BENCH_ROUNDS) $(BIN)/python -m bench.run

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# SCM_BATCH_REQUIRE_TOOLS=1: the deployment checks fail, rather than skip, without checkov.
test: lint typecheck $(TOOLS_STAMP)
	SCM_BATCH_REQUIRE_TOOLS=1 SCM_BATCH_CHECKOV=$(abspath $(TOOLS_VENV)/bin/checkov) \
		$(BIN)/python -m pytest

clean:
	rm -rf demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
