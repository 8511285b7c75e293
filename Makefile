# The course lab's front door. `make demo` and `make test` each do all the set-up they need.
#
#   make venv    create .venv and install the course with every extra (first time ~10 min:
#                llama-cpp-python compiles llama.cpp; later installs reuse pip's wheel cache)
#   make models  build the offline course models into the data dir (COURSELAB_DATA_DIR)
#   make demo    venv + models, then the end-to-end course run on the built-in models,
#                ending with the autograder grading a sample class
#   make test    venv + models (+ bubblewrap from Debian when root), then the test suite (CI)
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

.PHONY: venv models sysdeps demo test bench check-models lint clean-models

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

# The grading demo runs its kernels in the bubblewrap sandbox when bwrap is installed.
DEMO_ISOLATION ?= $(shell command -v bwrap >/dev/null 2>&1 && echo sandbox || echo none)

demo: models
	$(PY) -m courselib demo
	@echo; echo "== 4. Grading a sample class (python -m autograder demo, isolation $(DEMO_ISOLATION)) =="
	$(PY) -m autograder demo "$$(mktemp -d)/course" --workers 2 --isolation $(DEMO_ISOLATION)

test: models sysdeps
	$(PY) -m pytest -q

# Debian packages the tests use beyond Python (bubblewrap: the autograder's sandbox). Installed
# when missing and this is root with apt-get (CI); otherwise those tests skip and say why.
SYSTEM_PACKAGES ?= bubblewrap
sysdeps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages the tests use:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq $$missing >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; }; \
	else echo "not installed:$$missing (the tests that use them will skip)"; fi

bench: models
	$(PY) bench/run.py

check-models: venv
	$(PY) bench/check_models.py

lint: venv
	$(PY) -m ruff check courselib autograder server_setup tests bench
	$(PY) -m ruff format --check courselib autograder server_setup tests bench

clean-models:
	$(PY) -m courselib models clean
