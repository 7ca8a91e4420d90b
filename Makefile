# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install the package with what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean-venv

$(BIN)/bnlab-train: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# A BN vs no-BN pair on the Ioffe & Szegedy MNIST MLP (2,000 steps each, about a minute on CPU).
demo: $(BIN)/bnlab-train
	$(BIN)/bnlab-train name=demo model.norm=batch trainer.max_steps=2000
	$(BIN)/bnlab-train name=demo model.norm=none trainer.max_steps=2000

test: $(BIN)/bnlab-train
	$(BIN)/python -m pytest -q

bench: $(BIN)/bnlab-train
	$(BIN)/bnlab-bench

clean-venv:
	rm -rf $(VENV)
