# The course lab's front door. `make demo` and `make test` each do all the set-up they need.
#
#   make venv    create .venv and install the course with every extra (first time ~10 min:
#                llama-cpp-python compiles llama.cpp; later installs reuse pip's wheel cache)
#   make models  build the offline course models into the data dir (COURSELAB_DATA_DIR)
#   make demo    venv + models, then the end-to-end course run on the built-in models
#   make test    venv + models, then the test suite (what CI runs)
#   make bench   benchmarks, printed as tables of medians and ratios
#   make check-models  build course-chat for 3 seeds x 1 and 2 threads; every build must clear
#                the tests' accuracy floors (~40 min on 2 cores; nothing is published)
#   make lint    ruff

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# A CPU build of torch: a bare `torch` requirement pulls a multi-GB CUDA build. On a course GPU
# server, override: make venv TORCH_SPEC='torch==2.13.0 --index-url ...'.
TORCH_SPEC ?= torch==2.13.0
# Build only what the course uses from llama.cpp (no multimodal, tests, examples or C++ server).
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
# Quiet libraries in notebooks and tests; nothing is ever downloaded from a hub.
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: venv models demo test bench check-models lint clean-models

venv: $(STAMP)

# pip's wheel cache (~/.cache/pip) keeps the compiled llama-cpp-python wheel, so the second
# install of the same version takes seconds, not the ~9-minute compile.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (courselab)" >/dev/null
	touch $@

models: venv
	$(PY) -m courselib models build

demo: models
	$(PY) -m courselib demo

test: models
	$(PY) -m pytest -q

bench: models
	$(PY) bench/run.py

check-models: venv
	$(PY) bench/check_models.py

lint: venv
	$(PY) -m ruff check courselib autograder server_setup tests bench
	$(PY) -m ruff format --check courselib autograder server_setup tests bench

clean-models:
	$(PY) -m courselib models clean
