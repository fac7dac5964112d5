# Two commands a fresh machine with Python 3.11 and make needs:
#   make demo   run the example DAG end to end on bundled sample data (SQLite, local files)
#   make test   install everything and run all tests (what .ci/run calls)
# Packages are installed with their bytecode compiled (as pip does): every process, Airflow's and each
# worker process of a job, then starts without compiling its imports.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test install lint clean bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -c constraints.txt -e '.[test]'
	touch $@

demo: install
	$(BIN)/python scripts/run_example.py

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -rs

bench: install
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -c constraints.txt -e '.[bench]'
	$(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .demo .pytest_cache
