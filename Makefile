# The two commands a newcomer needs: `make demo` and `make test`. Each installs what it needs first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama.cpp's native build (-march=native) turns on AMX kernels that crash in batch decoding on some
# virtual machines; a portable AVX2 build works everywhere this project runs and is about as fast on 2 cores.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

.PHONY: install install-dev demo test lint bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

install: $(BIN)/python
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -e ".[local]"

install-dev: $(BIN)/python
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -e ".[local,dev]"

demo: install
	$(BIN)/prompthone demo

test: install-dev
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: install-dev
	$(BIN)/python benchmarks/lm_overhead.py
