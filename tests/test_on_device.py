"""The GPU check: what must hold on an accelerator, run on ``APTUNE_TEST_DEVICE`` (default: the
first CUDA GPU where there is one, else the CPU).

In CI these run on the CPU, so the code paths are exercised by construction on every commit;
``bench/gpu_check.sh`` runs the same file with ``APTUNE_TEST_DEVICE=cuda`` on a GPU machine (no
network, tiny random models built here, nothing downloaded). Each check is one that a GPU could
break while the CPU passes: every stage of a run placed on the device with half-precision
weights, packed scoring against per-choice scoring, ALoRA's rank-space cache, and a checkpoint
resumed there.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
import yaml

from aptune.config import load_run_config
from aptune.data.example import Example
from aptune.evaluate.scoring import score_choices
from aptune.io import read_json, read_jsonl
from aptune.methods.apt import APTRun
from aptune.prompts import PromptFormat
from test_alora import VOCAB, left_padded, randomize, with_alora
from test_apt_loop import run_config  # noqa: F401  (fixture)
from tiny import save_tiny, save_tiny_encoder, tiny_model

DEVICE = torch.device(os.environ.get("APTUNE_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))
#: where the device cannot run bf16 (an old GPU), the checks use fp16 weights
HALF = "bf16" if DEVICE.type != "cuda" or torch.cuda.is_bf16_supported() else "fp16"


def _config(run_config: Path, **overrides: object) -> Path:
    """The APT loop tests' two-round config over a tiny model and tiny task files
    (``test_apt_loop.run_config``), moved to the device with half-precision weights and a tiny
    local encoder (the GPU machine has no offline MiniLM asset)."""
    cfg = yaml.safe_load(run_config.read_text())
    faiss = importlib.util.find_spec("faiss") is not None
    cfg.update({
        "name": "on-device", "model": {"name": cfg["model"], "dtype": HALF}, "device": str(DEVICE), "precision": "auto",
        # retrieval needs faiss; a GPU machine without it still runs every other stage
        "retrieval": {"strategy": "knn" if faiss else "none",
                      "encoder": save_tiny_encoder(run_config.parent / "enc")},
        **overrides,
    })
    path = run_config.parent / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_every_stage_runs_on_the_device_with_half_weights(run_config: Path, tmp_path: Path):  # noqa: F811
    root = tmp_path / "run"
    run = APTRun(load_run_config(_config(run_config)), root, progress=False)
    run.run()
    manifest = read_json(root / "manifest.json")
    runtime = manifest["runtime"]
    assert torch.device(runtime["device"]).type == DEVICE.type and runtime["weights"] == HALF
    assert runtime["precision"] == {"bf16": "bfloat16", "fp16": "float16"}[HALF]
    for stage in ("mine", "retrieve", "pairs", "train", "eval", "decide"):
        assert f"round-1/{stage}" in manifest["stages"], stage
    result = read_json(root / "round-1" / "train" / "train_result.json")
    assert torch.device(result["extra"]["device"]).type == DEVICE.type and result["steps"] >= 1
    assert all(r["loss"] == r["loss"] for r in read_jsonl(root / "round-1" / "train" / "train_metrics.jsonl")
               if "loss" in r), "a NaN loss on the device"
    tokens_per_s = result["tokens"] / max(result["train_s"], 1e-9)
    print(f"\nthroughput: {tokens_per_s:,.0f} training tokens/s on {runtime['device_name']} "
          f"(tiny 2-layer model, {HALF} weights; a smoke figure, not a benchmark)")


def test_a_checkpoint_resumes_on_the_device(run_config: Path, tmp_path: Path,  # noqa: F811
                                            monkeypatch: pytest.MonkeyPatch):
    """Killed right after the first mid-training checkpoint, the rerun carries on from it and
    ends with the uninterrupted run's training metrics."""
    import aptune.train.trainer as trainer

    cfg = load_run_config(_config(run_config, rounds={"max_rounds": 1, "general_tolerance": 1.0}))
    cfg.train.checkpoint_every = 1
    APTRun(cfg, tmp_path / "clean", progress=False).run()
    real = trainer.save_checkpoint

    def killed_after_saving(out_dir, state, *args):  # noqa: ANN001, ANN202
        real(out_dir, state, *args)
        raise KeyboardInterrupt("simulated kill")

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "save_checkpoint", killed_after_saving)
        with pytest.raises(KeyboardInterrupt):
            APTRun(cfg, tmp_path / "killed", progress=False).run()
    assert (tmp_path / "killed" / "round-1" / "train" / "checkpoint-1").is_dir()
    APTRun(cfg, tmp_path / "killed", progress=False).run()

    def rows(run: str) -> list[dict]:
        metrics = read_jsonl(tmp_path / run / "round-1" / "train" / "train_metrics.jsonl")
        return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in metrics]

    clean, resumed = rows("clean"), rows("killed")
    assert len(clean) == len(resumed) >= 2
    for a, b in zip(clean, resumed):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6) for k in a)


ITEMS = [
    Example("q1", "t", "science", "what is the sun?", ("a star", "a planet", "water"), 0),
    Example("q2", "t", "science", "which is red?", ("fire", "the moon is not red at all", "sky", "tree"), 0),
    Example("q3", "t", "general", "the cat and the dog", (" ran", " sat down", " ate"), 1, style="completion"),
]


def test_packed_scoring_equals_per_choice_scoring_on_the_device(tokenizer):
    model = tiny_model("llama").to(DEVICE)
    fmt = PromptFormat(template="chat", mc_format="cloze")
    packed = score_choices(model, tokenizer, ITEMS, fmt, packed=True, progress=False)
    separate = score_choices(model, tokenizer, ITEMS, fmt, packed=False, progress=False)
    for p, s in zip(packed, separate):
        assert p.logprobs == pytest.approx(s.logprobs, abs=1e-4)


def test_alora_cached_generation_equals_uncached_on_the_device():
    model = with_alora("llama", "residual", "bottleneck", 2)
    randomize(model)
    model.to(DEVICE)
    gen = torch.Generator().manual_seed(5)
    ids, mask = left_padded([torch.randint(1, VOCAB, (n,), generator=gen) for n in (4, 7)])
    kw = dict(attention_mask=mask.to(DEVICE), max_new_tokens=8, do_sample=False, output_logits=True,
              return_dict_in_generate=True)
    cached = model.generate(ids.to(DEVICE), use_cache=True, **kw)
    plain = model.generate(ids.to(DEVICE), use_cache=False, **kw)
    assert torch.equal(cached.sequences, plain.sequences)
    for c, p in zip(cached.logits, plain.logits):
        torch.testing.assert_close(c, p, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(DEVICE.type != "cuda" or importlib.util.find_spec("bitsandbytes") is None,
                    reason="4-bit QLoRA needs a CUDA GPU and bitsandbytes")
def test_qlora_4bit_trains_an_fp32_adapter(tmp_path: Path):
    from aptune.adapters import attach_adapter
    from aptune.adapters.config import AdapterConfig
    from aptune.model_config import ModelConfig
    from aptune.models import load_model
    from aptune.train.config import TrainConfig
    from aptune.train.pairs import PreferencePair
    from aptune.train.trainer import train_preference
    from tiny import tiny_tokenizer

    folder = save_tiny(tmp_path / "model")
    model = load_model(folder, device=str(DEVICE), options=ModelConfig(name=folder, quantization="4bit"))
    assert getattr(model, "is_loaded_in_4bit", False)
    model = attach_adapter(model, AdapterConfig(kind="lora", r=4, alpha=8.0))
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    pairs = [PreferencePair(f"p{i}", f"what is the {w}?", f" {w}", " the moon") for i, w in enumerate(["sun", "cat"])]
    result = train_preference(model, tiny_tokenizer(), pairs, TrainConfig(lr=0.05, epochs=2, batch_size=2, progress=False,
                              precision=HALF, save_adapter=False), tmp_path / "train", device=DEVICE)
    assert result.steps >= 1 and result.mean_loss == result.mean_loss


@pytest.mark.skipif(DEVICE.type != "cuda", reason="accelerate runs FSDP on CUDA devices only")
def test_an_fsdp_launch_trains_and_saves_the_gathered_adapter(run_config: Path, tmp_path: Path):  # noqa: F811
    """One process under configs/accelerate/fsdp.yaml: the adapter is gathered from its FSDP
    wrapping and saved; fp32 weights (FSDP flattens a block into one dtype) with the launcher's
    bf16 mixed precision."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    config = _config(run_config, model={"name": str(tmp_path / "model"), "dtype": "fp32"}, device="auto",
                     rounds={"max_rounds": 1, "general_tolerance": 1.0})
    repo = Path(__file__).resolve().parents[1]
    root = tmp_path / "fsdp"
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                           str(repo / "configs" / "accelerate" / "fsdp.yaml"), "--num_processes", "1",
                           "-m", "aptune.cli", "run", str(config), "--out", str(root)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    adapter = load_file(str(root / "round-1" / "train" / "adapter" / "adapter_model.safetensors"))
    assert adapter and all(t.numel() > 0 and torch.isfinite(t).all() for t in adapter.values())
    assert any(t.abs().sum() > 0 for k, t in adapter.items() if "lora_B" in k), "the saved adapter never trained"
