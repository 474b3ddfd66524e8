# Fresh-machine entry points: `make run` and `make test` set up everything they need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.reslab-installed
# torch 2.14.1 / torchvision 0.29.1 install offline on the project's machines; any torch >= 2.10 works.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
PIP    := $(PY) -m pip install --progress-bar off -q

.PHONY: setup run test test-slow lint data clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH)
	$(PIP) -e ".[dev]"
	@touch $(STAMP)

data:
	@scripts/ensure-fashion-mnist.sh

# The main job: ResNet-20 on Fashion-MNIST with the paper's CIFAR recipe, its schedule rescaled to
# RUN_EPOCHS epochs so it fits in 15 minutes on 2 CPU cores; prints the test accuracy and the report.
RUN_EPOCHS ?= 14
run: setup data
	$(PY) -m reslab train --model resnet20 --data fashion-mnist --recipe cifar-paper --epochs $(RUN_EPOCHS)

test: setup
	$(PY) -m pytest -q

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
