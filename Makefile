# The course lab's front door. `make demo` and `make test` each do all the set-up they need.
#
#   make venv    create .venv and install the course with every extra (first time ~5 min:
#                llama.cpp compiles for a portable baseline; later installs reuse the wheel)
#   make models  the offline course models in the data dir (COURSELAB_DATA_DIR): course-chat
#                from the shipped checkpoint (hashes checked, never trained), course-bench
#   make demo    venv + models, then the end-to-end course run on the built-in models:
#                the autograder grades a sample class, then a dry run of the class server
#                (up, check, a short load test, status, down; nginx + njs from Debian)
#   make test    venv + lint + models (+ Debian test packages when root), then the tests (CI)
#   make lab     JupyterLab with the labs (student versions, in lab-work/), 127.0.0.1 + token
#   make bench   benchmarks, printed as tables of medians and ratios
#   make check-models  train course-chat from scratch for 3 seeds x 1 and 2 threads; every
#                build must clear the tests' accuracy floors (~1 hour on 2 cores; none published)
#   make doctor  can this machine run the course? one PASS/FAIL line per check
#   make lint    ruff + mypy

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# A CPU build of torch: a bare `torch` requirement pulls a multi-GB CUDA build. On a course GPU
# server, override: make venv TORCH_SPEC='torch==2.13.0 --index-url ...'.
TORCH_SPEC ?= torch==2.13.0
# llama.cpp, built once per machine for a portable baseline: any x86-64 CPU with AVX2 runs the
# same wheel, and ggml's AMX kernels (which die with SIGILL on Sapphire Rapids-class Xeons) are
# never compiled in. Only what the course uses (no multimodal, tests, examples or C++ server).
# The wheel is kept in a folder keyed by the version and these flags, so a later install reuses
# it, and one built with other flags is never handed back (pip's own cache keys by sdist only).
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON \
  -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
  -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF
LLAMA_KEY := $(shell printf '%s %s' '$(LLAMA_CPP_VERSION)' '$(strip $(LLAMA_CMAKE_ARGS))' | sha256sum | cut -c1-12)
WHEEL_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/courselab/wheels
LLAMA_WHEELS := $(WHEEL_CACHE)/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(LLAMA_KEY)
LLAMA_STAMP := $(VENV)/.llama-$(LLAMA_KEY)
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
# Quiet libraries in notebooks and tests; nothing is ever downloaded from a hub.
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: venv models sysdeps demo lab test bench check-models doctor lint clean-models

venv: $(STAMP)

# pip's wheel cache (~/.cache/pip) keeps every other wheel; llama-cpp-python's lives in
# $(LLAMA_WHEELS) (compiled once, ~4 minutes on 2 cores; later installs take seconds).
$(STAMP): pyproject.toml $(LLAMA_STAMP)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (courselab)" >/dev/null
	@# JupyterLab offline: no news feed (and no toast asking to fetch it), no update checks
	mkdir -p $(VENV)/share/jupyter/lab/settings
	printf '%s\n' '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' > $(VENV)/share/jupyter/lab/settings/overrides.json
	@# what is installed, not what was asked for: the portable build, without AMX
	$(PY) -m courselib doctor --only llama-build
	touch $@

# The portable llama-cpp-python: compiled into $(LLAMA_WHEELS) unless a wheel is there, then
# installed over whatever the venv had (a native build from another install included).
$(LLAMA_STAMP):
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if ! ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	  echo "compiling llama.cpp for the portable baseline (AVX2, no AMX; ~4 min on 2 cores) ..."; \
	  rm -rf $(LLAMA_WHEELS).partial && mkdir -p $(LLAMA_WHEELS).partial && \
	  CMAKE_ARGS="$(strip $(LLAMA_CMAKE_ARGS))" $(PY) -m pip wheel --quiet --no-deps --no-cache-dir \
	    --no-binary llama-cpp-python -w $(LLAMA_WHEELS).partial llama-cpp-python==$(LLAMA_CPP_VERSION) && \
	  mv $(LLAMA_WHEELS).partial $(LLAMA_WHEELS); fi
	$(PY) -m pip install --quiet --no-deps --force-reinstall $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	rm -f $(VENV)/.llama-*
	touch $@

# First what would kill the build (llama.cpp, torch, the data dir), each in a child process;
# then course-chat from the shipped checkpoint (seconds) and course-bench (random weights).
models: venv
	$(PY) -m courselib doctor --only llama-build --only torch --only data-dir
	$(PY) -m courselib models build

# The grading demo runs its kernels in the bubblewrap sandbox when bwrap is installed.
DEMO_ISOLATION ?= $(shell command -v bwrap >/dev/null 2>&1 && echo sandbox || echo none)

demo: models
	$(PY) -m courselib demo
	@echo; echo "== 4. Grading a sample class (python -m autograder demo, isolation $(DEMO_ISOLATION)) =="
	$(PY) -m autograder demo "$$(mktemp -d)/course" --workers 2 --isolation $(DEMO_ISOLATION)
	@$(MAKE) --no-print-directory sysdeps SYSTEM_PACKAGES="nginx libnginx-mod-http-js"
	@echo; echo "== 5. The class server, dry run (python -m server_setup dry-run) =="
	$(PY) -m server_setup dry-run

# `make lab`: JupyterLab on this machine with the course kernel, on 127.0.0.1 with a token.
# The labs are copied once into LAB_DIR as student versions (solutions and hidden tests
# removed by nbgrader); your work there is never overwritten, new labs are added.
LAB_DIR ?= lab-work
LAB_PORT ?= 8888
lab: models
	@if [ ! -d "$(LAB_DIR)/.course" ]; then \
	  echo "making the student versions of the labs in $(LAB_DIR)/ ..."; \
	  $(PY) -m autograder setup "$(LAB_DIR)/.course" --labs labs >/dev/null; fi
	@for d in "$(LAB_DIR)"/.course/release/*/; do \
	  name=$$(basename "$$d"); [ -e "$(LAB_DIR)/$$name" ] || cp -r "$$d" "$(LAB_DIR)/$$name"; done
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
	  --ServerApp.root_dir="$(LAB_DIR)" --MultiKernelManager.default_kernel_name=python3 \
	  --LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
	  $(if $(filter 0,$(shell id -u)),--allow-root)

test: lint models sysdeps
	$(PY) -m pytest -q

# Debian packages the tests use beyond Python (bubblewrap: the autograder's sandbox; chromium:
# the browser test of the labs, driven by Playwright without its own browser download; nginx and
# its njs module: the class server's gateway). Installed when missing and this is root with
# apt-get (CI); otherwise the sandbox and browser tests skip and say why, the gateway tests fail.
SYSTEM_PACKAGES ?= bubblewrap chromium nginx libnginx-mod-http-js
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

doctor: venv
	$(PY) -m courselib doctor --for $(or $(ROLE),dev)

lint: venv
	$(PY) -m ruff check courselib autograder server_setup tests bench
	$(PY) -m ruff format --check courselib autograder server_setup tests bench
	$(PY) -m mypy courselib autograder server_setup

clean-models:
	$(PY) -m courselib models clean
