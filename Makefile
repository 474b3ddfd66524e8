# Fresh-machine entry points: `make run` and `make test` set up everything they need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BASE   := $(VENV)/.reslab-base
STAMP  := $(VENV)/.reslab-installed
# torch 2.14.1 / torchvision 0.29.1 install offline on the project's machines; any torch >= 2.10 works.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
# --no-compile: Python byte-compiles a module when it is first imported; compiling all of torch's files
# at install time only delays `make run`.
PIP    := $(PY) -m pip install --progress-bar off -q --no-compile

.PHONY: setup run test test-slow lint data gpu-data clean

# `make setup`: the package with its dev extras (tests, lint, ONNX, serve, explain). `make run` needs
# only the package itself ($(BASE)); the extras come with the first `make test` or `make setup`.
setup: $(STAMP)

$(BASE): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH)
	$(PIP) -e .
	@touch $(BASE)

# warm_bytecode: where PYTHONDONTWRITEBYTECODE is set no process caches bytecode, and each test's subprocess
# compiled torch's sources again (about 4.5 s of a 7.8 s import); this writes the cache once.
$(STAMP): $(BASE)
	$(PIP) -e ".[dev]"
	$(PY) scripts/warm_bytecode.py
	@touch $(STAMP)

data:
	@scripts/ensure-fashion-mnist.sh

# The GPU machine reaches no registry and holds no data: this copies Fashion-MNIST's IDX files (30 MB) into
# .data/ (git-ignored), which a device call carries (carry: [".data"]) and scripts/gpu_visit.py finds through
# RESLAB_DATA (docs/gpu.md).
FMNIST_DIR ?= /usr/share/datasets/fashion-mnist
gpu-data: data
	@mkdir -p .data/fashion-mnist
	cp -u $(FMNIST_DIR)/*-idx*-ubyte.gz .data/fashion-mnist/

# The main job: ResNet-20 on Fashion-MNIST with the cifar-budget recipe (the paper's CIFAR recipe with cosine
# decay and weight decay 5e-4, trained on the whole training set, tested on 10 crops: README "Training"), its
# schedule rescaled to RUN_EPOCHS epochs, or fewer whole epochs where the CPU is too slow for set-up and
# training to fit RUN_BUDGET seconds (12 minutes): make notes when it started (RUN_T0, before set-up) and
# passes what is left, less RUN_MARGIN for the interpreter's start and exit, as --time-budget (at least 60 s),
# which measures the step rate and chooses (train/budget.py; README "Training" has the table per CPU kind).
# Prints what it chose and why, the test accuracy and the report. The paper's own recipe: `reslab train
# --recipe cifar-paper --epochs N`.
RUN_EPOCHS ?= 11
RUN_BUDGET ?= 720
RUN_MARGIN ?= 15
RUN_T0     := $(shell date +%s)
RUN_NOW     = $(shell date +%s)
RUN_LEFT    = $(shell t=$$(( $(RUN_BUDGET) - $(RUN_MARGIN) - $(RUN_NOW) + $(RUN_T0) )); [ $$t -gt 60 ] && echo $$t || echo 60)
run: $(BASE) data
	$(PY) -m reslab train --model resnet20 --data fashion-mnist --recipe cifar-budget --epochs $(RUN_EPOCHS) \
	  --time-budget $(RUN_LEFT)s

# The suite on every core (pytest-xdist), one torch thread per worker: most tests are one-core work (process
# start-ups, subprocesses, plots), so on 2 cores this took 322 s against 472 s in one process (AMD EPYC Zen 4;
# docs/benchmarks.md). `make test TEST_WORKERS=0`: one process with every thread, as plain `pytest` runs it.
TEST_WORKERS ?= auto
test: setup
	$(if $(filter 0,$(TEST_WORKERS)),,OMP_NUM_THREADS=1) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check .
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

# The serve page's browser test drives Debian's chromium (never a downloaded browser): installed here
# when run as root with apt-get; anywhere else the test is skipped with the reason.
CHROMIUM_BIN ?= /usr/bin/chromium
.PHONY: browser
test: browser
browser:
	@test -x $(CHROMIUM_BIN) || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "make: chromium not installed (needs root and apt-get); the browser test will be skipped"; }
