# The two commands a newcomer needs: `make demo` and `make test`. Each installs what it needs first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama.cpp's native build (-march=native) turns on AMX kernels that crash in batch decoding on some
# virtual machines; a portable AVX2 build works everywhere this project runs and is about as fast on 2 cores.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

.PHONY: install install-dev system-deps demo test lint bench bench-dspy-env

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

install: $(BIN)/python
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -e ".[local]"

install-dev: $(BIN)/python system-deps
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -e ".[local,dev]"

# The report tests open the HTML report in headless Chromium; the store tests start a throwaway
# PostgreSQL server (both Debian packages). apt-get waits up to 10 min for another package manager's
# lock (a fresh machine's unattended upgrades) instead of failing at once.
system-deps:
	@command -v chromium >/dev/null || (apt-get update -qq -o DPkg::Lock::Timeout=600 && apt-get install -y -qq -o DPkg::Lock::Timeout=600 chromium) \
		|| (echo "install Chromium (Debian: apt-get install chromium) for the report tests" && false)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
		|| (apt-get update -qq -o DPkg::Lock::Timeout=600 && apt-get install -y -qq -o DPkg::Lock::Timeout=600 postgresql) \
		|| (echo "install PostgreSQL (Debian: apt-get install postgresql) for the store tests" && false)

demo: install
	$(BIN)/prompthone demo

test: install-dev
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: install-dev
	$(BIN)/python benchmarks/lm_overhead.py

# DSPy for the side-by-side benchmarks only (benchmarks/dspy_overhead.py, benchmarks/compare_dspy.py), in a
# venv of its own: dspy's dependencies cannot share prompthone's pins. CI never needs it.
DSPY_VENV ?= .venv-dspy
bench-dspy-env:
	test -x $(DSPY_VENV)/bin/python || $(PY) -m venv $(DSPY_VENV)
	$(DSPY_VENV)/bin/pip install -q -r benchmarks/requirements-dspy.txt
