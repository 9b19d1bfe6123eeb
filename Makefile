# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv on first use (torch==2.13.0 first, then the package) and
# are quick when it is already there.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.spectraldl-installed
DEMO_OUT ?= demo-run

.PHONY: demo test test-fast lint docs system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/spectraldl demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest

# The tests not marked slow or browser: under 3 minutes, for the edit-test loop.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not browser" -q

# Regenerate the measured figures of README.md and docs/ from the benchmark JSON
# (tests/test_docs.py fails when a page and its JSON disagree).
docs: $(STAMP)
	$(BIN)/python tools/docs.py

# Style, size limits, the layers contract and types (docs/CONVENTIONS.md).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# Debian packages the browser and PostgreSQL tests use (needs root or sudo).
system-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver postgresql >/dev/null

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
