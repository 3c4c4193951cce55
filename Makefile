# One-command set-up: every target creates .venv and installs the project when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PIP    := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: setup lint test demo bench dev clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -U pip setuptools wheel
	# torch first, pinned with torchvision, so nothing later can swap it
	$(PIP) torch==2.14.1 torchvision==0.29.1
	$(PIP) -e '.[test,ray,daft]'
	touch $(STAMP)

setup: $(STAMP)

# ruff (configured in pyproject.toml): pyflakes, pycodestyle, isort, pyupgrade
lint: setup
	$(VENV)/bin/ruff check .

test: setup
	$(PY) -m pytest

# Real default models when they can be loaded (local VIDEO_ASSETS_MODEL_PATH or the hub); otherwise it says why
# and runs with the built-in tiny model. VIDEO_ASSETS_CLIP_MODEL=... make demo picks a model and never falls back.
# The run goes into make dev's instance (dagster_home/), so the UI shows the demo's partition as materialised.
demo: setup
	DAGSTER_HOME=$(CURDIR)/dagster_home $(PY) -m video_assets.demo --fallback-tiny

# dagster dev on http://127.0.0.1:3000 with the project's instance settings (dagster_home/dagster.yaml)
dev: setup
	DAGSTER_HOME=$(CURDIR)/dagster_home $(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The benchmark suite (bench/suite.py): sampler, operators, pipeline overhead, shared decode, 2-hour video.
# Writes bench/results/<machine>.json and the results table of BENCHMARKS.md. About 15 min on 2 CPU cores.
# BENCH_ARGS="--quick" for a smoke test; BENCH_ARGS="--device cuda --models b32,l14" on a GPU machine.
BENCH_ARGS ?=
bench: setup
	$(PY) -m bench.suite $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
