# One obvious entry point per task. Every target creates the venv on first use.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The GPU targets run where the project is installed or, on a bare GPU machine whose image has
# torch, with the system python (see the README's performance section).
GPU_PY ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)

.PHONY: install test test-newest demo bench bench-gpu gpu-check reproduce reproduce-synthetic clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest

# The same suite on the newest Python installed (pip resolves newer libraries there, e.g. scipy 1.18).
test-newest:
	$(MAKE) test VENV=.venv-newest PY="$$(scripts/newest_python.sh)"

# JS-GAN vs RS-GAN on the two-cluster data, 20 seeds each, on CPU: a table and plots in demo/.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/python scripts/bench_synthetic.py
	$(BIN)/python scripts/bench_fid.py

# Every row of the README's GPU table; BENCH_ARGS="--quick --seconds 2" for a short one. Exits 1
# when a graph figure ran eagerly (the capture fell back).
bench-gpu:
	$(GPU_PY) scripts/bench_gpu.py $(BENCH_ARGS)

# Everything that needs a GPU, in one command of a few minutes; DATA=<cifar-10-batches-py folder>
# (default: data/cifar10-subset, then ../shared/data/cifar10-subset, then random pixels).
gpu-check:
	$(GPU_PY) scripts/gpu_check.py $(DATA)

reproduce: $(STAMP)
	$(BIN)/python scripts/reproduce.py

reproduce-synthetic: $(STAMP)
	$(BIN)/python scripts/reproduce.py --synthetic-only

clean:
	rm -rf $(VENV) .venv-newest runs sweeps demo
