# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint ui bench clean

# llm-compressor (bench/llm.py only) pins torch<=2.14.0: it is installed without its pins, on our
# torch 2.14.1; the packages it imports are in the dev extra (pyproject.toml).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llmcompressor==0.14.0.1 compressed-tensors==0.19.0
	touch $(STAMP)

run: $(STAMP)
	$(PY) run.py $(ARGS)

test: lint
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

# ruff and mypy (configured in pyproject.toml): lint, format and type checks, zero findings; `make test` runs them first.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Opens the MLflow dashboard on the default store (outputs/mlflow.db).
ui: $(STAMP)
	@$(PY) -m framework.tracking.ui_view --uri sqlite:///$(CURDIR)/outputs/mlflow.db --server http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/outputs/mlflow.db --host 127.0.0.1 --port 5000

bench: $(STAMP)
	$(PY) bench/train_step.py
	$(PY) bench/mask_update.py
	$(PY) bench/thinning.py

clean:
	rm -rf $(VENV) outputs/runs outputs/multirun outputs/mlflow.db outputs/mlartifacts
