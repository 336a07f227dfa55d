# Two commands for a fresh machine; each creates .venv and installs into it on first use.
#   make demo   synthetic corpus -> train -> evaluate on unseen voices -> transcribe (CPU, ~12 min)
#   make test   lint, format check and the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint fsdd clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

# Spoken digits from ../shared/data (see data/README.md)
fsdd: $(STAMP)
	$(BIN)/asr-train experiment=fsdd hydra.run.dir=outputs/fsdd train.resume=auto

clean-venv:
	rm -rf $(VENV)
