# The two commands a user needs: `make run` and `make test`. Both install what is missing first.
PY := .venv/bin/python
TEST_EXTRAS := asr,tts,chatterbox,orchestrator,dev
export PYTHONUNBUFFERED := 1

.PHONY: install install-test models models-test run test test-compose lint bench soak clean docs-config

install:
	@scripts/install.sh

install-test:
	@EXTRAS=$(TEST_EXTRAS) scripts/install.sh

# what `make run` loads: real Smart Turn, Whisper tiny.en and the Piper voice (no torch needed)
models: install
	@$(PY) -m tools.models

# plus the generated random models the suite uses
models-test: install-test
	@$(PY) -m tools.models --test

run: models
	@scripts/run.sh

test: models-test
	@$(PY) -m ruff check .
	@$(PY) -m pytest $(PYTEST_ARGS)

# the compose deployment built and started for real (Docker engine started by the script; skipped
# with the reason printed where Docker cannot start). About 5 min cold, 2 min with cached layers.
test-compose: models-test
	@scripts/compose-test.sh

lint: install-test
	@$(PY) -m ruff check . && $(PY) -m ruff format --check .

bench: models-test
	@$(PY) -m bench

# reliability harness (fuzz, soak, faults, bombs) -> bench/out/RELIABILITY.md; not part of `make test`
# (tests/soak runs a short version of each part). Shorten: SOAK_MINUTES=3 make soak, or SOAK_ARGS="--minutes 1"
soak: models-test
	@$(PY) -m bench.soak $(SOAK_ARGS)

docs-config: install
	@$(PY) -m tools.config_table

clean:
	rm -rf .venv .stamps models bench/out tests/artifacts
