# dictune: two commands on a fresh machine: `make demo` and `make test`.
# torch 2.13.0 (CPU wheel) is installed first so no other requirement pulls a multi-GB CUDA build.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DICTUNE := $(VENV)/bin/dictune
TORCH_SPEC ?= torch==2.13.0
DEMO_CONFIG ?= configs/radiology_demo.yaml
PYTEST_ARGS ?=

.PHONY: install demo test test-fast bench lint clean-work

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,export,synth]"
	touch $@

demo: install
	$(DICTUNE) run $(DEMO_CONFIG)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -q -m "not integration and not slow" $(PYTEST_ARGS)

bench: install
	@mkdir -p bench
	@ls scripts/bench_*.py >/dev/null 2>&1 || { echo "no benchmark scripts yet"; exit 1; }
	for s in scripts/bench_*.py; do $(PY) $$s || exit 1; done

lint: install
	$(VENV)/bin/ruff check pipeline tests scripts

clean-work:
	rm -rf work
