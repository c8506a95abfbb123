# Two entry points: `make sample` and `make test`. Each sets up .venv first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAMPLE := samples/the-keeper-of-lantern-rock.md

.PHONY: sample test lint setup stack clean

$(BIN)/narrator: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/narrator

sample: setup  ## install, then narrate the bundled sample chapter into out/
	$(BIN)/narrator run $(SAMPLE)

stack: setup  ## Prefect server + UI, work pool, deployments and a worker, until Ctrl-C
	$(BIN)/narrator stack

lint: setup
	$(BIN)/ruff check flows tasks gpu_worker local_endpoint tests bench eval deployments
	$(BIN)/ruff format --check flows tasks gpu_worker local_endpoint tests bench eval deployments
	$(BIN)/mypy

test: lint  ## install, lint, type-check, then run the whole test suite
	$(BIN)/pytest

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
