# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint typecheck bench-memory clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned, so nothing later pulls a CUDA build
	$(BIN)/python -m pip install -q -c constraints.txt torch
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/skillbank demo

lint: $(STAMP)
	$(BIN)/ruff format --check skillbank tests
	$(BIN)/ruff check skillbank tests

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q -n 2 -m "not slow and not gpu"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "slow"

bench-memory: $(STAMP)
	$(BIN)/skillbank bench memory --skills 1000 --skills 10000 --skills 100000 --skills 1000000 --dim 64 --json runs/bench-memory.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
