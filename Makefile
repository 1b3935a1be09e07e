# Two commands set everything up on a fresh machine:
#   make run    creates .venv, installs popsim, runs the main job on its embedded defaults
#   make test   creates .venv, installs popsim with its test tools, runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-slow bench bench-quick bench-gradient docs lint-imports clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/popsim

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m slow

lint-imports: $(STAMP)
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/run.py --quick

bench-gradient: $(STAMP)
	$(BIN)/python benchmarks/bench_gradient.py --dt 1/6 --dt 1/2

docs: $(STAMP)
	$(BIN)/python -m popsim.model.docs --write docs/model.md
	JAX_ENABLE_X64=1 $(BIN)/python docs/accuracy.py --write docs/accuracy.md

clean:
	rm -rf $(VENV) outputs multirun
