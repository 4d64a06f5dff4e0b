# Quick start: `make demo` (set up + run the default job), `make test` (set up + run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FMNIST := /usr/share/datasets/fashion-mnist
DATA_ROOT ?=
DEMO_OUT ?= runs/demo

.PHONY: setup data demo test clean

setup: $(VENV)/.installed

# One venv serves both targets: the demo runs DAP (the diffusion extra), the tests need `test`;
# constraints.txt pins the exact versions (pyproject.toml only gives ranges).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all,test]'
	touch $@

# Fashion-MNIST comes from Debian's dataset-fashion-mnist unless DATA_ROOT points at the four files;
# WordNet (Debian's wordnet-base) gives the sense glosses of PRISM-DFKD's prompts.
WORDNET := /usr/share/wordnet/data.noun
data:
	@if { [ -n "$(DATA_ROOT)" ] || [ -f $(FMNIST)/train-images-idx3-ubyte.gz ]; } && [ -f $(WORDNET) ]; then exit 0; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq $(if $(DATA_ROOT),,dataset-fashion-mnist) wordnet-base >/dev/null; \
	else \
		echo "error: Fashion-MNIST or WordNet is missing: run 'sudo apt-get install dataset-fashion-mnist wordnet-base' (or 'make demo DATA_ROOT=DIR' with DIR holding the four *-ubyte.gz files)" >&2; \
		exit 1; \
	fi

demo: setup data
	$(BIN)/ddkit run demo --out $(DEMO_OUT) $(if $(DATA_ROOT),--data-root $(DATA_ROOT))

# The linter (ruff, configured in pyproject.toml) runs first: a lint error fails the tests too.
test: setup data
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
