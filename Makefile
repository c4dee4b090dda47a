# sis2fhir: every set-up step a fresh machine needs (Python 3.11, git, make; npm for the profile tools).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
AS_OF   ?= 2026-03-31
EXAMPLE ?= examples/district
OUT     ?= out/demo

.PHONY: demo test fuzz crash lint profiles test-tools bench clean

$(VENV)/.runtime: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.runtime
	$(BIN)/pip install -q -e '.[test,postgres]'
	touch $@

## The main job on the bundled example district (SQLite state and NDJSON output in $(OUT)).
demo: $(VENV)/.runtime
	$(BIN)/sis2fhir sync $(EXAMPLE) --as-of $(AS_OF) --out $(OUT)
	$(BIN)/sis2fhir validate $(OUT)

## Everything the tests need (profile compiler, FHIR core package, Medplum's validator and CDS client, a real FHIR server,
## PostgreSQL, Chromium for the chart), then the whole suite
## (with a fixed sample of the fuzz variants, tests/fuzz: about 30 across every kind).
test: $(VENV)/.test test-tools
	$(BIN)/ruff check src tests scripts examples
	$(BIN)/mypy
	$(BIN)/pytest -q

## Every fuzz variant of the example district through the CLI, two at a time; the failure list in out/fuzz-results.txt.
fuzz: $(VENV)/.test
	mkdir -p out
	FUZZ=all FUZZ_RESULTS=out/fuzz-results.txt $(BIN)/pytest -q tests/fuzz

test-tools:
	bash scripts/install-fhir-tools.sh
	bash scripts/install-medplum.sh
	bash scripts/install-sekmet.sh
	bash scripts/install-postgres.sh
	bash scripts/install-chromium.sh

## kill -9 at every seeded moment of FHIR REST and MLLP delivery, revoke, re-run (`make test` runs a sample).
crash: $(VENV)/.test test-tools
	SIS2FHIR_CRASH_ALL=1 $(BIN)/pytest -q tests/end_to_end/test_crash_recovery.py

lint: $(VENV)/.test
	$(BIN)/ruff check src tests scripts examples
	$(BIN)/ruff format --check src tests scripts examples

## Recompile profiles/ with SUSHI, refresh the package data and the IG package (profiles/package/, profiles/package.tgz);
## commit the result.
profiles: test-tools
	bash scripts/build-profiles.sh

clean:
	rm -rf $(OUT) .pytest_cache
