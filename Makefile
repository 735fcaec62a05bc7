# Two commands for a fresh machine: `make demo` and `make test`. Everything they need is
# installed here, into .venv, from the package registry.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

DEMO_RECORDS ?= 1000000
DEMO_BUCKET  := demo/bucket
DEMO_INPUT   := $(DEMO_BUCKET)/input/records.jsonl

.PHONY: demo test lint typecheck unit install clean tools lambda-package bench native native-check chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The native record engine (native/, Rust): built by cargo and maturin into .venv. maturin comes
# from PyPI; without cargo (rustup.rs is where to get it) one line says so and scm-batch runs
# its Python engine: the same results, slower. A build that fails stops here.
MATURIN_VERSION := 1.16.0
NATIVE_STAMP    := $(VENV)/.installed-native
NATIVE_SOURCES  := native/Cargo.toml native/Cargo.lock native/pyproject.toml $(wildcard native/src/*.rs)
HAVE_CARGO      := $(shell command -v cargo 2>/dev/null)

$(NATIVE_STAMP): $(STAMP) $(NATIVE_SOURCES)
ifneq ($(HAVE_CARGO),)
	$(BIN)/python -m pip install --quiet 'maturin==$(MATURIN_VERSION)'
	rm -rf build/native-wheel
	$(BIN)/maturin build --release --quiet -m native/Cargo.toml -o build/native-wheel
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps build/native-wheel/scm_batch_native-*.whl
else
	@echo "cargo not found: the native engine is not built; scm-batch runs its Python engine (same results, slower)"
	@$(BIN)/python -m pip uninstall -qq --yes scm-batch-native
endif
	touch $@

native: $(NATIVE_STAMP)

# The engine's own checks: formatting, clippy with warnings as errors, and its Rust tests.
native-check:
ifneq ($(HAVE_CARGO),)
	cargo fmt --manifest-path native/Cargo.toml --check
	cargo clippy --quiet --manifest-path native/Cargo.toml --all-targets -- -D warnings
	cargo clippy --quiet --manifest-path native/Cargo.toml --features python -- -D warnings
	cargo test --quiet --manifest-path native/Cargo.toml
else
	@echo "cargo not found: the native engine's checks are skipped"
endif

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

# The run report's tests open it in headless Chromium: Debian's package, installed here when no
# Chromium is on the machine (as root, through apt-get; otherwise one line says what to do, and
# `make test` stops rather than skip those tests).
HAVE_CHROMIUM := $(shell command -v chromium || command -v chromium-browser || command -v google-chrome)

chromium:
ifeq ($(HAVE_CHROMIUM),)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	else \
		echo "the report's tests need Chromium: sudo apt-get install chromium (or put chromium on PATH)"; \
		exit 1; \
	fi
endif

# The Lambda deployment package: the project and its runtime dependencies (with the MSK IAM
# signer) as manylinux x86_64 wheels for Python 3.12, zipped with sorted entries and fixed
# timestamps so that the same sources give the same zip (and Terraform's source_code_hash).
# The python3.12 runtime is Amazon Linux 2023 (glibc 2.34), so manylinux_2_28 wheels run there
# too; without that platform pip falls back to old releases (confluent-kafka 2.4).
LAMBDA_BUILD := build/lambda
LAMBDA_ZIP   := dist/scm-batch-lambda.zip

# The native engine goes in too, built for manylinux_2_34 (maturin refuses a build that needs a
# newer glibc than that policy allows; tests/deploy/test_lambda_package.py reads the symbol
# versions again). Without cargo the package carries the Python engine only, and says so.
lambda-package: $(NATIVE_STAMP)
	rm -rf $(LAMBDA_BUILD) build/lambda-wheel
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir build/lambda-wheel .
ifneq ($(HAVE_CARGO),)
	$(BIN)/maturin build --release --quiet -m native/Cargo.toml --target x86_64-unknown-linux-gnu \
		--compatibility manylinux_2_34 -o build/lambda-wheel
endif
	$(BIN)/python -m pip install --quiet --no-compile --target $(LAMBDA_BUILD) \
		--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
		--platform manylinux_2_34_x86_64 \
		--implementation cp --python-version 3.12 \
		--only-binary=:all: "$$(ls build/lambda-wheel/scm_batch-*.whl)[msk]" \
		$$(ls build/lambda-wheel/scm_batch_native-*.whl 2>/dev/null)
	$(BIN)/python deploy/lambda_zip.py $(LAMBDA_BUILD) $(LAMBDA_ZIP)

# The main job end to end on the embedded example: 1,000,000 generated records (a few invalid and
# malformed ones among them), the execution input in examples/demo-event.json.
demo: $(NATIVE_STAMP)
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

bench: $(BENCH_STAMP) $(NATIVE_STAMP)
	BENCH_RECORDS=$(BENCH_RECORDS) BENCH_ROUNDS=$(BENCH_ROUNDS) $(BIN)/python -m bench.run

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# SCM_BATCH_REQUIRE_TOOLS=1: the deployment checks fail, rather than skip, without checkov.
# The whole suite runs with the native engine when it is built (SCM_BATCH_ENGINE=native: a chunk
# fails without it), then the record-level suites again with the Python engine.
TEST_ENGINE := $(if $(HAVE_CARGO),native,python)

test: lint typecheck native-check chromium $(TOOLS_STAMP) $(NATIVE_STAMP)
	SCM_BATCH_ENGINE=$(TEST_ENGINE) SCM_BATCH_REQUIRE_TOOLS=1 \
		SCM_BATCH_CHECKOV=$(abspath $(TOOLS_VENV)/bin/checkov) $(BIN)/python -m pytest
ifneq ($(HAVE_CARGO),)
	SCM_BATCH_ENGINE=python $(BIN)/python -m pytest tests/unit tests/e2e
endif

clean:
	rm -rf demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
