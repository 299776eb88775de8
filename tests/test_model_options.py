"""The ``model:`` section: short and long forms, the weights' dtype, attention implementation,
quantization refused clearly where it cannot run, and half-precision weights that still train
fp32 adapters; plus the DPO reference of ``rounds.reference: original`` held in one copy."""

from __future__ import annotations

import gc
import os
import importlib.util
import re
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch

from aptune.adapters import attach_adapter
from aptune.adapters.config import AdapterConfig
from aptune.config import RunConfig, load_run_config
from aptune.config_loader import ConfigError
from aptune.io import read_json
from aptune.memory_plan import planned_dtypes
from aptune.methods.apt import APTRun
from aptune.model_config import (
    ModelConfig,
    ModelOptionError,
    check_model_options,
    compute_dtype,
    model_label,
    resolve_weight_dtype,
)
from aptune.models import load_model
from aptune.packing import packing_is_exact
from aptune.run.run_dir import config_changes
from aptune.train.config import TrainConfig
from aptune.train.pairs import PreferencePair
from aptune.train.trainer import train_preference
from test_apt_loop import run_config  # noqa: F401  (fixture)
from tiny import save_tiny, tiny_tokenizer

CPU = torch.device("cpu")
#: the half-precision loading and training tests also run on the GPU check's device (bench/gpu_check.sh)
DEVICE = torch.device(os.environ.get("APTUNE_TEST_DEVICE") or "cpu")


# --- the config ------------------------------------------------------------------------------

def test_short_and_long_forms_and_set_reach_the_same_section(tmp_path: Path):
    short = tmp_path / "short.yaml"
    short.write_text("model: smollm2-135m\n")
    assert load_run_config(short).model == ModelConfig(name="smollm2-135m")
    # --set on a key of a section the file wrote in its short form
    cfg = load_run_config(short, ["model.dtype=bf16", "model.attn_implementation=eager"])
    assert cfg.model == ModelConfig(name="smollm2-135m", dtype="bf16", attn_implementation="eager")
    long = tmp_path / "long.yaml"
    long.write_text("model:\n  name: org/model\n  dtype: fp16\n")
    # --set model=NAME changes the name and keeps the file's other model keys
    assert load_run_config(long, ["model=other/model"]).model == ModelConfig(name="other/model", dtype="fp16")
    assert RunConfig(model="x").model == ModelConfig(name="x")  # the Python API's short form


@pytest.mark.parametrize("text, message", [
    ("model:\n  name: m\n  dtype: fp64\n", "bad.yaml:3: model.dtype: must be one of auto, bf16, fp16, fp32, got 'fp64'"),
    ("model:\n  name: m\n  quantization: 3bit\n", "model.quantization: must be one of none, 4bit, 8bit, got '3bit'"),
    ("model:\n  name: m\n  quantization: 4bit\n  dtype: fp32\n", "computes in half precision"),
    ("model:\n  name: m\n  quantization: 4bit\n", "rounds.between: stack"),  # merge would re-quantize
    ("model:\n  name: m\n  flash: true\n", "model.flash: unknown key"),
])
def test_bad_model_section_is_a_one_line_error_with_its_line(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    assert "\n" not in str(info.value) and message.replace("bad.yaml", str(path)) in str(info.value)


def test_a_run_started_before_the_model_section_resumes_unchanged():
    """Runs saved ``model: NAME`` before the section existed: the same model is no change."""
    now = RunConfig(model="m").to_dict()
    saved = {**now, "model": "m"}
    assert config_changes(saved, now, RunConfig().to_dict()) == []
    assert config_changes({**now, "model": "other"}, now, RunConfig().to_dict()) == ["model.name"]
    assert model_label("m") == "m" and model_label({"name": "m", "dtype": "bf16", "quantization": "4bit"}) == "m, 4bit, bf16"


# --- resolution and refusals -----------------------------------------------------------------

@pytest.mark.parametrize("cuda_bf16, device, expected", [
    (True, "cuda", torch.bfloat16), (False, "cuda", torch.float16), (True, "cpu", torch.float32),
    (True, "mps", torch.float32),
])
def test_auto_dtype_follows_the_device(monkeypatch: pytest.MonkeyPatch, cuda_bf16: bool, device: str,
                                       expected: torch.dtype):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)
    assert resolve_weight_dtype("auto", torch.device(device)) == expected
    assert resolve_weight_dtype("fp16", CPU) == torch.float16 and resolve_weight_dtype("fp32", torch.device(device)) == torch.float32
    # half weights compute in their own dtype; fp32 weights keep the precision rule
    assert compute_dtype("fp32", torch.float16, CPU) == torch.float16
    assert compute_dtype("fp32", torch.float32, CPU) == torch.float32


def _without(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in packages else real(name, *a))


def _with(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name in packages else real(name, *a))


def test_quantization_and_flash_attention_are_refused_in_one_line_where_they_cannot_run(monkeypatch: pytest.MonkeyPatch):
    four_bit = ModelConfig(name="m", quantization="4bit")
    _without(monkeypatch, "bitsandbytes", "flash_attn")
    with pytest.raises(ModelOptionError, match=r"needs bitsandbytes: pip install \"aptune\[qlora\]\""):
        check_model_options(four_bit, torch.device("cuda", 0))
    with pytest.raises(ModelOptionError, match="flash-attn"):
        check_model_options(ModelConfig(name="m", attn_implementation="flash_attention_2", dtype="bf16"), torch.device("cuda", 0))
    _with(monkeypatch, "bitsandbytes", "flash_attn")
    with pytest.raises(ModelOptionError, match="runs on a CUDA GPU .* this run computes on cpu"):
        check_model_options(four_bit, CPU)
    with pytest.raises(ModelOptionError, match="needs bf16 or fp16 weights"):
        check_model_options(ModelConfig(name="m", attn_implementation="flash_attention_2", dtype="fp32"),
                            torch.device("cuda", 0))
    check_model_options(ModelConfig(name="m", attn_implementation="eager"), CPU)  # fine anywhere


def test_cli_asks_for_4bit_without_bitsandbytes_one_line_before_any_work(tmp_path: Path):
    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here")
    model = save_tiny(tmp_path / "model")
    proc = subprocess.run([sys.executable, "-m", "aptune.cli", "eval", "--model", model, "--quantization", "4bit",
                           "--tasks", "sciq", "--limit", "2", "--out", str(tmp_path / "e")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == ('aptune: error: model.quantization: 4bit needs bitsandbytes: '
                                   'pip install "aptune[qlora]" (bitsandbytes)')
    assert not (tmp_path / "e").exists()


def test_plan_counts_the_weights_the_run_would_load():
    from aptune.config import RoundsConfig

    cfg = RunConfig(model=ModelConfig(name="m", quantization="4bit"),
                    rounds=RoundsConfig(between="stack", reference="original"))
    assert planned_dtypes(cfg, "cuda")[0] == "4bit"
    assert planned_dtypes(RunConfig(), "cpu") == ("fp32", planned_dtypes(RunConfig(), "cpu")[1])
    if not torch.cuda.is_available():  # planning for a GPU this machine lacks: auto = bf16
        assert planned_dtypes(RunConfig(), "cuda") == ("bf16", "bf16")


# --- loading and training in half precision ----------------------------------------------------

def test_dtype_and_attention_reach_the_loaded_model(tmp_path: Path):
    folder = save_tiny(tmp_path / "model")
    bf16 = load_model(folder, device=str(DEVICE),
                      options=ModelConfig(name=folder, dtype="bf16", attn_implementation="eager"))
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert bf16.config._attn_implementation == "eager" and packing_is_exact(bf16, 32)
    fp32 = load_model(folder)  # no options: today's fp32 loading
    assert {p.dtype for p in fp32.parameters()} == {torch.float32}


@pytest.mark.parametrize("kind", ["lora", "alora"])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_weights_train_fp32_adapters_and_only_them(tmp_path: Path, kind: str, dtype: str):
    folder = save_tiny(tmp_path / "model")
    model = load_model(folder, device=str(DEVICE), options=ModelConfig(name=folder, dtype=dtype))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(0)
    model = attach_adapter(model, AdapterConfig(kind=kind, r=4, alpha=8.0, heads=2))
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and {p.dtype for p in trainable.values()} == {torch.float32}
    before = {n: p.detach().clone() for n, p in trainable.items()}
    pairs = [PreferencePair(f"p{i}", f"what is the {w}?", f" {w}", " the moon") for i, w in
             enumerate(["sun", "cat", "dog", "tree"])]
    cfg = TrainConfig(lr=0.05, epochs=2, batch_size=2, precision=dtype, progress=False, save_adapter=False)
    result = train_preference(model, tiny_tokenizer(), pairs, cfg, tmp_path / "train", device=DEVICE)
    assert result.steps >= 1 and torch.isfinite(torch.tensor(result.mean_loss))
    assert any(not torch.equal(before[n], p) for n, p in trainable.items()), "the adapter did not move"
    base = {n.removeprefix("base_model.model.").replace(".base_layer", ""): p for n, p in model.named_parameters()
            if not p.requires_grad}
    assert all(torch.equal(frozen[n], base[n]) for n in frozen if n in base), "a frozen weight changed"
    assert {p.dtype for p in base.values()} == {dict(bf16=torch.bfloat16, fp16=torch.float16)[dtype]}


def test_a_bf16_run_records_its_weights_and_computes_in_them(run_config: Path, tmp_path: Path):  # noqa: F811
    cfg = load_run_config(run_config, ["model.dtype=bf16", "rounds.max_rounds=1", "device=cpu"])
    root = tmp_path / "run"
    APTRun(cfg, root, progress=False).run()
    manifest = read_json(root / "manifest.json")
    assert manifest["runtime"]["weights"] == "bf16" and manifest["runtime"]["precision"] == "bfloat16"
    assert manifest["config"]["model"]["dtype"] == "bf16"
    assert read_json(root / "round-1" / "train" / "train_result.json")["extra"]["precision"] == "bfloat16"
    from safetensors.torch import load_file

    adapter = load_file(str(root / "round-1" / "train" / "adapter" / "adapter_model.safetensors"))
    assert adapter and {t.dtype for t in adapter.values()} == {torch.float32}


# --- the reference of rounds.reference: original --------------------------------------------

def test_reference_original_after_merged_rounds_holds_one_copy_of_the_weights(
        run_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """Round 2 of a merged run scores its reference with the original weights, then trains on
    that same copy with round 1 merged in: one base load during the stage, never two alive."""
    cfg = load_run_config(run_config)
    cfg.rounds.reference = "original"
    run = APTRun(cfg, tmp_path / "run", progress=False)
    alive: list[weakref.ref] = []
    loads_in_train: list[int] = []
    real_load = APTRun.base_model

    def counted(self: APTRun) -> torch.nn.Module:
        gc.collect()
        live = sum(ref() is not None for ref in alive)
        model = real_load(self)
        alive.append(weakref.ref(model))
        loads_in_train.append(live)
        return model

    real_stage = APTRun.stage_train
    stage_loads: dict[int, list[int]] = {}

    def stage(self: APTRun, round_index: int) -> None:
        gc.collect()
        loads_in_train.clear()
        real_stage(self, round_index)
        stage_loads[round_index] = list(loads_in_train)

    monkeypatch.setattr(APTRun, "base_model", counted)
    monkeypatch.setattr(APTRun, "stage_train", stage)
    run.run()
    assert 2 in stage_loads, "round 2 must train (round 1 accepted)"
    assert stage_loads[2] == [0], f"round 2's train stage loaded the base {len(stage_loads[2])} time(s) " \
                                  f"with {stage_loads[2]} other copies alive"
    manifest = read_json(tmp_path / "run" / "manifest.json")
    assert manifest["stages"]["round-2/train"]["reference"].startswith("original model (log-probs scored before")


def test_gpu_presets_parse_plan_and_match_the_readme():
    """configs/gpu/*.yaml: each parses, is planned for a GPU from its model's config.json shipped
    beside it (configs/gpu/shapes/, no download), fits the GPU its header names, and the README's
    "On a GPU" table shows that planned peak."""
    from aptune.memory_plan import GIB, ModelShape, plan_for_run

    repo = Path(__file__).resolve().parents[1]
    readme = (repo / "README.md").read_text()
    presets = sorted((repo / "configs" / "gpu").glob("*.yaml"))
    assert len(presets) >= 2
    for path in presets:
        cfg = load_run_config(path)
        shape_file = repo / "configs" / "gpu" / "shapes" / f"{cfg.model.name.split('/')[-1]}.json"
        plan = plan_for_run(cfg, device="cuda", shape=ModelShape.from_config_file(str(shape_file)))
        gpu_gb = int(re.search(r"one (\d+) GB", path.read_text()).group(1))
        assert plan.peak_bytes < gpu_gb * 1e9, f"{path.name}: plans {plan.peak_bytes / GIB:.1f} GiB for a {gpu_gb} GB GPU"
        row = next((line for line in readme.splitlines() if line.startswith("|") and f"configs/gpu/{path.name}" in line),
                   None)
        assert row is not None, f"README has no row for {path.name}"
        assert f"{plan.peak_bytes / GIB:.1f} GiB" in row, (path.name, row, plan.peak_bytes / GIB)
