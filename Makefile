# Two commands for a newcomer: `make demo` and `make test`. Both build .venv from scratch.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
GPT_STAMP := $(VENV)/.gpt-stamp
TEST_STAMP := $(VENV)/.test-stamp
# Demo knobs: `make demo BUDGET=300` runs the real 5-minute protocol.
BUDGET ?= 45
EXPERIMENTS ?= 4
DEMO_DIR ?= demo

.PHONY: demo test test-fast lint venv clean

# The harness and its dev tools only: no torch (the GPT extra comes with demo and test).
venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# torch is pinned below 2.14 in pyproject.toml: an open range pulls a multi-GB CUDA build.
$(GPT_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[gpt,dev,dashboard]'
	touch $(GPT_STAMP)

# The tests exercise every optional part for real: trackers, the browser, a Ray cluster.
$(TEST_STAMP): $(GPT_STAMP)
	$(PY) -m pip install -q -e '.[gpt,dev,dashboard,tracking,browser,ray]'
	touch $(TEST_STAMP)

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples scripts
	$(PY) -m mypy

test: lint $(TEST_STAMP)
	$(PY) -m pytest -q

# Quick iteration: everything but the tests marked slow (`make test` runs them all).
test-fast: lint $(TEST_STAMP)
	$(PY) -m pytest -q -m "not slow"

demo: $(GPT_STAMP)
	$(PY) scripts/demo.py --dir $(DEMO_DIR) --budget $(BUDGET) --experiments $(EXPERIMENTS)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
