# Two commands for a fresh machine; each creates .venv and installs into it on first use.
#   make demo   synthetic corpus -> train -> evaluate on unseen voices -> transcribe (CPU, ~10 min)
#   make test   lint, format check and the test suite
#   make real / make real-fast   the real-voice recipe (Kathleen + FSDD + synthetic voices;
#                                ~85 min from a clean clone / ~19 with .venv in place)
#   make unseen-voices   that model on Kathleen dev's sentences read by Flite's voices (needs flite)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint fsdd real real-fast unseen-voices clean-venv

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

# KenLM's build_binary for the binary-LM test; best effort: without it that test skips
$(BIN)/build_binary: $(STAMP)
	bash scripts/build_kenlm_tools.sh $(BIN) || echo "build_binary not built: its test will skip"

test: lint $(BIN)/build_binary
	$(BIN)/python -m pytest -q

# Spoken digits from ../shared/data (see data/README.md)
fsdd: $(STAMP)
	$(BIN)/asr-train experiment=fsdd hydra.run.dir=outputs/fsdd train.resume=auto

# Real voices (issue 5): Kathleen + FSDD + synthetic speech, LM, tuned beam search
# ARGS: extra asr-train overrides, e.g. make real ARGS=train.precision=fp32
real: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/real_small.sh $(ARGS)

real-fast: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" EXP=real_small_fast bash scripts/real_small.sh $(ARGS)

# after make real (RUN=outputs/real_small_fast after make real-fast): voices it never heard
unseen-voices: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/unseen_voices.sh

clean-venv:
	rm -rf $(VENV)
