# Two commands set everything up on a fresh machine:
#   make run    creates .venv, installs popsim, runs the main job on its embedded defaults
#   make test   creates .venv, installs popsim with its test tools, runs the test suite
#   make test-cluster   the tests on a real single-node SLURM cluster and across two JAX
#               processes (installs SLURM from the distribution's packages when root)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-slow test-cluster test-arviz1 bench bench-quick bench-gradient docs lint-imports clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,slurm]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/popsim

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m slow

# One at a time: the SLURM jobs and the JAX processes use every core themselves.
test-cluster: $(STAMP)
	tests/slurm_cluster.sh install || echo "SLURM could not be installed: its tests will be skipped"
	$(BIN)/python -m pytest -q -m cluster -rs

# ArviZ 1.x installs only on Python 3.12+: a second environment with it runs the tests
# that go through popsim.analysis.arviz_io (write, open, summary, LOO) and a real SVI fit.
PYTHON312 ?= python3.12
VENV312 := .venv-py312
test-arviz1:
	test -x $(VENV312)/bin/python || $(PYTHON312) -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install --quiet --upgrade pip
	$(VENV312)/bin/python -m pip install --quiet -e ".[dev]"
	$(VENV312)/bin/python -c "import arviz, sys; print('ArviZ', arviz.__version__); sys.exit(arviz.__version__.startswith('0.'))"
	$(VENV312)/bin/python -m pytest -q -p no:cacheprovider tests/test_calibration.py -k "round_trip or svi"

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
	rm -rf $(VENV) $(VENV312) outputs multirun
