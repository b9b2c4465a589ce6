# Two entry points for a fresh machine: `make train` and `make test`. Both create .venv and install
# everything first (torch pinned to the CPU build before anything else can pull a CUDA one).
VENV  ?= .venv
PY    := $(VENV)/bin/python
TORCH ?= torch==2.13.0
CONFIG ?= configs/conll03-minilm.toml

.PHONY: install train test lint browser
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,onnx,ray,parquet]"
	touch $@

train: install
	$(VENV)/bin/nerkit train --config $(CONFIG)

# Debian's Chromium for the browser test (the test skips with a reason when it is absent).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed: the browser test will be skipped"

test: install browser
	$(VENV)/bin/python -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests bench docs
	$(VENV)/bin/mypy
