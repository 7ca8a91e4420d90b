# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install the package with what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-all bench report clean-venv

$(BIN)/bnlab-train: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The quickstart study (BN vs no BN on the Ioffe & Szegedy MNIST MLP, 2 seeds, a few
# minutes on 2 CPU cores), then its figures. Launched again, it trains only what is missing.
# Everything it writes goes under demo/ (git-ignored): the committed results/ stay as they are.
DEMO := $(CURDIR)/demo
demo: $(BIN)/bnlab-train
	$(BIN)/bnlab-train experiments=quickstart paths.results=$(DEMO)
	$(BIN)/bnlab-status quickstart --runs-root $(DEMO)/runs
	$(BIN)/bnlab-plot quickstart --runs-root $(DEMO)/runs --results $(DEMO)

# two workers, one test file each at a time (pytest-xdist). `test`: the fast tier, without the
# end-to-end cases marked slow (kill and resume, the CNN recipes, SLURM); `test-all` (CI,
# .ci/run): everything. The SLURM requeue test mostly waits on the cluster, and the other
# core runs the rest of the suite meanwhile.
test: $(BIN)/bnlab-train
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

test-all: $(BIN)/bnlab-train
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# CSVs, figures and results/REPORT.md from the run store (or the committed CSVs)
report: $(BIN)/bnlab-train
	$(BIN)/bnlab-report
	$(BIN)/bnlab-plot quickstart

bench: $(BIN)/bnlab-train
	$(BIN)/bnlab-bench

clean-venv:
	rm -rf $(VENV)
