# Two commands on a fresh machine with only Python:
#   make demo   create .venv, install what the demo needs (no dev extras), train the tiny GPT offline
#   make test   add the dev extras (pytest, hypothesis), run pytest
# and, for the course:
#   make lessons     every lesson in lessons/, in order
#   make exercises   check your answers in lessons/exercises/ (python -m lessons.check)
# Without make (e.g. on Windows), see "不用 make" in README.md.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Two stamps: the runtime install (enough for the demo, the lessons and the exercises)
# and the dev install on top of it (pytest, hypothesis).
RUNTIME := $(VENV)/.installed
DEV     := $(VENV)/.installed-dev

# Every numbered lesson, in order; the first failing check stops the run.
LESSONS = set -e; for lesson in lessons/[0-9][0-9]_*.py; do echo "=== $$lesson"; $(PY) $$lesson; done
# What `make demo` runs: the tiny GPT, trained offline for about two minutes.
# OpenBLAS splits even small matrix products over all cores; on a 2-core machine
# with anything else running, a GPT step then takes several times longer (measured:
# 60 steps in 21-32 s with the default threads, 5.2-5.6 s with one). One BLAS thread
# is the fast choice for a model this small; set OPENBLAS_NUM_THREADS to override.
DEMO = OPENBLAS_NUM_THREADS=$${OPENBLAS_NUM_THREADS:-1} $(PY) -m tinygrad_zh.gpt demo

.PHONY: demo lessons exercises test bench clean

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(DEV): $(RUNTIME)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(RUNTIME)
	$(DEMO)

lessons: $(RUNTIME)
	$(LESSONS)

exercises: $(RUNTIME)
	$(PY) -m lessons.check

# pytest includes tests/test_exercises.py, which runs the checker on the reference
# solutions (lessons/exercises/solutions/): no exercise can be unsolvable.
test: $(DEV)
	$(PY) -m pytest

# Per-op overhead: ours vs NumPy vs PyTorch (PyTorch only when installed in .venv).
bench: $(RUNTIME)
	$(PY) benchmarks/op_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis lesson_output
