# Two entry points: `make sample` and `make test`. Each sets up .venv first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAMPLE := samples/the-keeper-of-lantern-rock.md

.PHONY: sample test lint setup stack clean chatterbox-test browser

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

test: lint browser  ## install, lint, type-check, then run the whole test suite
	$(BIN)/pytest

# The review page's browser test drives Debian's chromium through Debian's chromedriver;
# the speech API's test calls it with curl; the stack's tests run the Prefect server on
# Debian's PostgreSQL.
SYSTEM_PACKAGES := chromium chromium-driver curl postgresql
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v curl >/dev/null && \
		ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null || \
		  { apt-get update -q >/dev/null && \
		    apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; }; } || \
		{ echo "make test: could not install $(SYSTEM_PACKAGES) (run as root, or install them)"; exit 1; }

# The CPU tier: the worker against the real chatterbox-tts 0.1.7 code, with tiny random
# models (tests/gpu_worker/test_chatterbox_library.py). Its own venv: chatterbox pins numpy < 2
# and torch 2.6; here torch is the CPU build (CHATTERBOX_TORCH), and chatterbox and
# torchaudio go in without their pins. torchaudio's PyPI build is CUDA's: its compiled
# extension is removed, leaving the pure-Python parts chatterbox uses (fbank, Resample).
# CI skips these tests (no chatterbox in .venv). About 10 minutes the first time.
CHATTERBOX_VENV := .venv-chatterbox
CHATTERBOX_TORCH ?= torch==2.13.0

$(CHATTERBOX_VENV)/bin/narrator: pyproject.toml tests/gpu_worker/chatterbox-cpu.txt
	$(PYTHON) -m venv $(CHATTERBOX_VENV)
	$(CHATTERBOX_VENV)/bin/pip install --quiet --upgrade pip
	$(CHATTERBOX_VENV)/bin/pip install --quiet "$(CHATTERBOX_TORCH)"
	$(CHATTERBOX_VENV)/bin/pip install --quiet -e ".[dev]" -r tests/gpu_worker/chatterbox-cpu.txt
	$(CHATTERBOX_VENV)/bin/pip install --quiet --no-deps chatterbox-tts==0.1.7 torchaudio==2.11.0
	rm -f $(CHATTERBOX_VENV)/lib/python3*/site-packages/torchaudio/lib/*.so
	touch $@

chatterbox-test: $(CHATTERBOX_VENV)/bin/narrator  ## the worker with the real Chatterbox code, on the CPU
	$(CHATTERBOX_VENV)/bin/pytest -p no:cacheprovider tests/gpu_worker/test_chatterbox_library.py tests/gpu_worker/test_chatterbox.py \
		tests/gpu_worker/test_weights.py  # and the download against the image's huggingface_hub

clean:
	rm -rf $(VENV) $(CHATTERBOX_VENV) out .pytest_cache .mypy_cache .ruff_cache
