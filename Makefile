# Two commands: `make demo` and `make test`. Everything else is for the curious.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest browser docs dist mutation bench test-thorough chaos bench-peers clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/actorq demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian's chromium for the dashboard's browser tests (installed when missing and root).
browser:
	.ci/browser

# Two passes under coverage: every test not marked `serial` on one worker per core (pytest-xdist),
# then the serial ones (chaos: real processes, a server restart) alone. Exit 5 is "nothing
# collected", when PYTEST_ARGS picks no serial test. Tests marked `no_cover` (the simulator sweeps,
# the mutant suites, the shrink hunts) run with line tracing paused: they prove invariants, and
# tracing made them three to four times slower.
WORKERS ?= auto
pytest: $(STAMP) browser
	$(BIN)/coverage erase
	$(BIN)/pytest -n $(WORKERS) --dist worksteal --cov --cov-report= --durations=25 -m "not serial" $(PYTEST_ARGS)
	$(BIN)/pytest --cov --cov-append --cov-report= -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/coverage report

# The docs site, strict: a broken link or a docstring griffe cannot read fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

# The sdist and the wheel an upload would carry (tests/packaging installs and runs the wheel).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist

test: lint typecheck pytest docs

test-thorough: $(STAMP)
	HYPOTHESIS_PROFILE=thorough $(BIN)/pytest property_tests $(PYTEST_ARGS)

# Not part of `make test`. Prints, per group, killed / non-equivalent mutants in each family the
# aim names (claim, renew, finalize, reap, dedupe, leader, cron) apart from "other", and every
# survivor; `make mutation ARGS="schedule --children 1"` runs one group, `--survivors` re-runs
# the last survivors against new tests. With one child on two shared cores: schedule 3-6 min,
# memory 14 min (asyncio), sqlite 10-19 min (aim methods only), runtime 21-50 min (50 beside another
# test run), postgres 61 min (aim methods only). Last measured, aim families: schedule 100% (365/365), memory 99.7%
# (940/943), sqlite 100% (566/566), runtime 97.9% (1208/1234), postgres 100% (428/428);
# other code: schedule 79.3% (169/213), memory 87.1% (1068/1226), runtime 100% (107/107).
# On a loaded machine mutmut's timeouts can misjudge: judge a timed-out mutant again by running
# its tests in .mutation/<group>/mutants with MUTANT_UNDER_TEST=<name>.
mutation: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,docs,mutation]'
	$(BIN)/python -m property_tests.mutation $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

chaos: $(STAMP)
	ACTORQ_CHAOS=long $(BIN)/pytest tests/chaos -p no:randomly -s

bench-peers: $(STAMP)
	$(BIN)/python -m bench.peers

clean:
	rm -rf $(VENV) .coverage .mypy_cache .ruff_cache site dist artifacts
