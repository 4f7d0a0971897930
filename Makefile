# One obvious entry point per task. Every target creates .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo bench bench-gpu reproduce reproduce-synthetic clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest

# JS-GAN vs RS-GAN on the two-cluster data, 20 seeds each, on CPU: a table and plots in demo/.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/python scripts/bench_synthetic.py
	$(BIN)/python scripts/bench_fid.py

bench-gpu: $(STAMP)
	$(BIN)/python scripts/bench_gpu.py

reproduce: $(STAMP)
	$(BIN)/python scripts/reproduce.py

reproduce-synthetic: $(STAMP)
	$(BIN)/python scripts/reproduce.py --synthetic-only

clean:
	rm -rf $(VENV) runs sweeps demo
