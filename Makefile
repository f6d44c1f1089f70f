# syncbench: two commands do all set-up on a fresh machine.
#   make demo   create .venv, install with the embedded MPICH, train ring on 8 ranks, print a summary
#   make test   create .venv, run unit tests, MPI tests at 1-4 ranks, smoke tests of every command, and the
#               slurm/ scripts on a real Slurm where sbatch is on PATH (.ci/run starts a local one)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MPIEXEC:= $(VENV)/bin/mpiexec
RANKS  ?= 8
DEMO_ARGS ?= --strategy ring --model cnn --dataset digits --steps 200 --lr 0.1 --eval-every 50

.PHONY: venv demo test test-unit test-mpi test-smoke lint mutants clean

venv: $(VENV)/.installed

# pip compiles every installed module to bytecode on one core (45 of the 60 s this target took here, torch the
# most). Instead: compileall on every core, leaving out the packages' own test suites and pip (12 s). Bytecode must
# be on disk: each MPI rank imports torch anew, and where PYTHONDONTWRITEBYTECODE is set (this project's CI) no
# import would cache it. A file for a newer Python (torch ships one) fails to compile, as under pip: never imported.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-compile -c constraints.txt -e '.[bench,mpich,test]'
	$(PY) -m compileall -q -j 0 -x '/site-packages/.*/tests?/|/testing/_internal/|/site-packages/(pip|setuptools)/' \
	  $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') > /dev/null || true
	touch $@

demo: venv
	$(MPIEXEC) -n $(RANKS) $(PY) -m bench train $(DEMO_ARGS) --out results/demo_ring_n$(RANKS).h5

test: venv
	$(PY) -m pytest tests/unit -q --durations=5
	$(PY) tests/run_mpi.py --sizes 1,2,3,4 -q
	$(PY) -m pytest tests/smoke tests/slurm -q -rs --durations=15

test-unit: venv
	$(PY) -m pytest tests/unit -q

test-mpi: venv
	$(PY) tests/run_mpi.py --sizes 1,2,3,4 -q

test-smoke: venv
	$(PY) -m pytest tests/smoke -q

# Mutation testing of the pure modules against the unit tests (pyproject.toml [tool.mutmut]; not in CI, ~15 min
# here). MUTANTS narrows the run, e.g. make mutants MUTANTS='bench.compress.quantize*'. Prints the score per
# module and writes the survivors with their diffs to mutants/survivors.txt (TESTING.md).
mutants: venv
	$(PY) -m pip install --quiet -c constraints.txt -e '.[mutation]'
	$(VENV)/bin/mutmut run --max-children 2 $(MUTANTS)
	$(PY) tests/mutation_score.py

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	shellcheck -x slurm/*.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info mutants
