# Two commands on a fresh machine with only Python:
#   make demo   create .venv, install, run the lessons offline
#   make test   create .venv with the dev extras, run pytest
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Every numbered lesson, in order (until the tiny GPT becomes the main demo).
demo: $(STAMP)
	set -e; for lesson in lessons/[0-9][0-9]_*.py; do $(PY) $$lesson; done

test: $(STAMP)
	$(PY) -m pytest

# Per-op overhead: ours vs NumPy vs PyTorch (PyTorch only when installed in .venv).
bench: $(STAMP)
	$(PY) benchmarks/op_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
