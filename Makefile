# The two commands a user needs: `make run` and `make test`. Both install what is missing first.
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: install models run test lint bench clean docs-config

install:
	@scripts/install.sh

models: install
	@$(PY) -m tools.models

run: models
	@scripts/run.sh

test: models
	@$(PY) -m ruff check .
	@$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	@$(PY) -m ruff check . && $(PY) -m ruff format --check .

bench: models
	@$(PY) -m bench

docs-config: install
	@$(PY) -m tools.config_table

clean:
	rm -rf .venv .stamps models bench/out tests/artifacts
