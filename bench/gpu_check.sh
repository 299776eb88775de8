#!/usr/bin/env bash
# The GPU check: what must hold on a CUDA GPU, in a few minutes, with no network and nothing
# downloaded (tiny random models built by the tests). Run from the repository root:
#
#   bash bench/gpu_check.sh            # APTUNE_TEST_DEVICE=cuda (default), or cuda:N
#
# It runs tests/test_on_device.py on the GPU (every stage of an APT run with bf16 weights,
# packed scoring against per-choice scoring, ALoRA's cached generation against uncached, a
# checkpoint resumed on the GPU, device and dtype in the manifest, a throughput line) and the
# half-precision training tests of tests/test_model_options.py. CI runs the same file on the CPU.
#
# It needs torch (CUDA build), transformers, peft, accelerate, sentence-transformers (>= 6.3
# imports datasets), pyyaml, pytest and aptune's own source (PYTHONPATH=src; no install). faiss
# is optional: without it the run's retrieval stage uses strategy none. Wheels of missing packages
# in .whl/ (git-ignored) are installed into a scratch folder first; to fetch them on a machine
# with pip access, for a Python 3.12 x86-64 GPU machine:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 faiss-cpu==1.15.1
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/aptune-site .whl/*.whl
  export PYTHONPATH="/tmp/aptune-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export APTUNE_TEST_DEVICE="${APTUNE_TEST_DEVICE:-cuda}"
python3 - <<'PY'
import importlib.util, torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
print("optional: " + ", ".join(f"{m} {'yes' if importlib.util.find_spec(m) else 'no'}" for m in ("faiss", "bitsandbytes", "flash_attn")))
if not torch.cuda.is_available():
    raise SystemExit("gpu_check: no CUDA GPU visible; on a CPU run: APTUNE_TEST_DEVICE=cpu pytest tests/test_on_device.py")
PY
start=$(date +%s)
timeout 420 python3 -m pytest -q -s -p no:cacheprovider tests/test_on_device.py \
  "tests/test_model_options.py::test_half_weights_train_fp32_adapters_and_only_them" \
  "tests/test_model_options.py::test_dtype_and_attention_reach_the_loaded_model"
echo "gpu_check: passed in $(( $(date +%s) - start )) s"
