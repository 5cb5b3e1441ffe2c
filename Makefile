VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PRESET ?= digits500
JOBS ?= -1

.PHONY: modelset test test-fast lint venv clean clean-archives leaderboard bench

# Set-up: a local virtual environment with the project and its test tools, torch pinned.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,lint,cluster]"
	touch $(STAMP)

venv: $(STAMP)

modelset: $(STAMP)
	$(VENV)/bin/modelset build --preset $(PRESET) --out data/$(PRESET).h5 --jobs $(JOBS)

# Scores every built-in method (metrics.methods.BUILTIN) on the default archive (built first if
# missing), LB_JOBS at a time on one torch thread each (on 2 cores, two single-threaded methods
# finish sooner than one on two threads), then renders the board once from every result.
LB_JOBS ?= 2
leaderboard: modelset
	$(PY) -c 'from metrics.methods import BUILTIN; print(*BUILTIN, sep="\n")' \
		| OMP_NUM_THREADS=1 xargs -P $(LB_JOBS) -I{} $(VENV)/bin/modelset leaderboard submit --archive data/$(PRESET).h5 --method {}
	$(VENV)/bin/modelset leaderboard render --results data/leaderboard/$(PRESET) > /dev/null
	cat data/leaderboard/$(PRESET)/leaderboard.md

test: $(STAMP)
	$(PY) -m pytest

# Everything but the tests that build a full-size zoo (marked slow: tests/conftest.py).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# ruff (lint and format, configured in pyproject.toml) and mypy, leniently; CI runs it before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The environment and caches only: archives take up to hours to build (clean-archives removes them).
clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +

clean-archives:
	@echo "removing the built archives and their shards in data/"
	rm -rf data/*.h5 data/.*.shards data/.*.lock

# Batched engine vs reference loop on the same digits500 units, then a timed digits500 build.
bench: $(STAMP)
	$(PY) benchmarks/bench_batched.py $(BENCH_ARGS)
