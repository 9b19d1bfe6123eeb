# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv on first use (torch==2.13.0 first, then the package) and
# are quick when it is already there.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.spectraldl-installed
DEMO_OUT ?= demo-run

.PHONY: demo test test-fast lint docs bench system-deps clean

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

# Measure the CPU benchmarks (simulate, ingest, DR8 tables, classify, smoothing; each ratio
# against its baseline measured in the same run), keep their JSON and regenerate the pages'
# figures: about 10-15 minutes on 2 cores. classify's GPU rows say "skipped: no GPU" without one
# (benchmarks/gpu.sh measures them on a GPU machine). Sizes: BENCH_INGEST_FILES (ingest's
# tree), BENCH_FILES (simulate, classify's FITS tree), BENCH_SPECTRA.
# BENCH_THREADS: PyTorch thread counts of classify's dataset rows, each measured (0: all cores).
BENCH_JSON := src/spectraldl/data/benchmarks
BENCH_FILES ?= 2000
BENCH_INGEST_FILES ?= 5000
BENCH_SPECTRA ?= 30000
BENCH_THREADS ?= 1,0
# simulate runs first: it times the making of thousands of files, which is slower for a while
# after others were deleted (benchmarks/simulate.py says why), as ingest's trees are at its end.
bench: $(STAMP)
	$(BIN)/python benchmarks/simulate.py --n $(BENCH_FILES) --json $(BENCH_JSON)/simulate.json
	$(BIN)/python benchmarks/ingest.py --files $(BENCH_INGEST_FILES) --thesis-files 500 \
		--json $(BENCH_JSON)/ingest.json
	$(BIN)/python benchmarks/tables.py --files 1000 --json $(BENCH_JSON)/tables.json
	$(BIN)/python benchmarks/classify.py --n-files $(BENCH_FILES) --n-spectra $(BENCH_SPECTRA) \
		--threads $(BENCH_THREADS) --model-dir cnn=src/spectraldl/data/models/cnn \
		--json $(BENCH_JSON)/classify.json
	$(BIN)/python benchmarks/smoothing.py --json $(BENCH_JSON)/smoothing.json
	$(BIN)/python tools/docs.py

# Style, size limits, the layers contract and types (docs/CONVENTIONS.md).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# Debian packages: python3-venv (`python3 -m venv` with Debian's own Python), and the ones
# the browser and PostgreSQL tests use (needs root or sudo).
system-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv chromium chromium-driver \
		postgresql >/dev/null

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
