# Two commands for a newcomer: `make demo` and `make test`. Both build .venv from scratch.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Demo knobs: `make demo BUDGET=300` runs the real 5-minute protocol.
BUDGET ?= 45
EXPERIMENTS ?= 4
DEMO_DIR ?= demo

.PHONY: demo test lint venv clean

venv: $(STAMP)

# torch is pinned below 2.14 in pyproject.toml: an open range pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[gpt,dev,dashboard,tracking,browser]'
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples scripts
	$(PY) -m mypy

test: lint
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) scripts/demo.py --dir $(DEMO_DIR) --budget $(BUDGET) --experiments $(EXPERIMENTS)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
