# Two commands a fresh machine with Python 3.11 and make needs:
#   make demo   run the example DAG end to end on bundled sample data (SQLite, local files)
#   make test   install everything and run all tests (what .ci/run calls)
# Packages are installed with their bytecode compiled (as pip does): every process, Airflow's and each
# worker process of a job, then starts without compiling its imports. This checkout's own package is an
# editable install, compiled (COMPILE) before each command: a process started with
# PYTHONDONTWRITEBYTECODE=1 would otherwise compile it on every start (~0.2 s per worker process).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
COMPILE = $(BIN)/python -m compileall -q airflow_provider_strm

.PHONY: demo test install lint clean bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -c constraints.txt -e '.[test]'
	touch $@

demo: install
	$(COMPILE)
	$(BIN)/python scripts/run_example.py

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(COMPILE)
	$(BIN)/python -m pytest -rs

bench: install
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -c constraints.txt -e '.[bench]'
	$(COMPILE)
	$(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .demo .pytest_cache
