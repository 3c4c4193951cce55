# One-command set-up: every target creates .venv and installs the project when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PIP    := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: setup lint test demo bench dev clean device-wheels device-dry-run

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

# A GPU device session (BENCHMARKS.md "GPU", bench/README.md): the wheels the device image lacks, into .whl/,
# and bench/gpu_session.sh run here on the CPU (tiny model, tiny sizes) against only what the device will have:
# a stand-in for its image's packages (links into DEVICE_PY's site-packages, python -S) plus .whl/.
# DEVICE_PY=/path/to/python skips make setup.
DEVICE_PY ?= $(PY)
DRY       := build/device-dry-run
device-wheels: $(if $(filter $(PY),$(DEVICE_PY)),setup)
	$(DEVICE_PY) -m bench.device_wheels

device-dry-run: device-wheels
	rm -rf $(DRY) && mkdir -p $(DRY)/bin
	$(DEVICE_PY) -m bench.device_wheels image-site $(DRY)/image-site \
		--from "$$($(DEVICE_PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	printf '#!/bin/sh\nexec %s -S "$$@"\n' "$(abspath $(DEVICE_PY))" >$(DRY)/bin/python3 && chmod +x $(DRY)/bin/python3
	env -u VIRTUAL_ENV -u PYTHONHOME PATH="$(CURDIR)/$(DRY)/bin:$$PATH" PYTHONPATH="$(CURDIR)/$(DRY)/image-site" \
		GPU_SESSION_SMOKE=1 GPU_SESSION_SITE="$(CURDIR)/$(DRY)/site" OUT="$(CURDIR)/$(DRY)/out" \
		BENCH_CORPUS_DIR="$(CURDIR)/$(DRY)/corpus" \
		bash bench/gpu_session.sh
