"""PEFT's LoRA variants through aptune's one adapter API: DoRA, rsLoRA, gaussian / PiSSA / OLoRA
initialisation, per-module ranks, modules_to_save. Each trains only what it should, saves and
loads back to the same outputs on a freshly loaded base, and merges to what it computes unmerged;
ALoRA takes rsLoRA and refuses the rest in one line."""

from __future__ import annotations

import pytest
import torch

from aptune.adapters import AdapterConfig, attach_adapter, load_adapter, merge_adapter, save_adapter
from tiny import tiny_model

IDS = torch.tensor([[5, 9, 17, 33, 2, 41], [7, 7, 21, 3, 60, 12]])

VARIANTS = {
    "dora": {"use_dora": True},
    "rslora": {"use_rslora": True},
    "gaussian": {"init": "gaussian"},
    "pissa": {"init": "pissa"},
    "olora": {"init": "olora"},
    "rank_pattern": {"rank_pattern": {"q_proj": 2, "down_proj": 6}},
    "modules_to_save": {"modules_to_save": ["lm_head"]},
}


def _trained(options: dict) -> torch.nn.Module:
    """A tiny Llama with the variant attached and its trainable parameters moved off their init."""
    model = attach_adapter(tiny_model("llama", seed=0), AdapterConfig(r=4, alpha=8.0, **options))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.02 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_trains_only_its_adapter_saves_loads_and_merges(variant: str, tmp_path):
    options = VARIANTS[variant]
    fresh = attach_adapter(tiny_model("llama", seed=0), AdapterConfig(r=4, alpha=8.0, **options)).eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(IDS).logits, tiny_model("llama", seed=0)(IDS).logits, atol=1e-5, rtol=1e-5)
    model = _trained(options)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    allowed = ("lora_", "modules_to_save")
    assert trainable and all(any(a in n for a in allowed) for n in trainable), trainable[:3]
    if variant == "modules_to_save":
        assert any("lm_head" in n and "modules_to_save" in n for n in trainable)
    with torch.no_grad():
        trained = model(IDS).logits
    save_adapter(model, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    loaded = load_adapter(tiny_model("llama", seed=0), tmp_path / "adapter").eval()
    merged = merge_adapter(load_adapter(tiny_model("llama", seed=0), tmp_path / "adapter")).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(IDS).logits, trained, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(merged(IDS).logits, trained, atol=1e-5, rtol=1e-5)


def test_rslora_scales_by_the_square_root_of_the_rank():
    model = attach_adapter(tiny_model("llama", seed=0), AdapterConfig(r=4, alpha=8.0, use_rslora=True))
    layer = next(m for n, m in model.named_modules() if n.endswith("q_proj") and hasattr(m, "scaling"))
    assert layer.scaling["default"] == pytest.approx(8.0 / 2.0)
    assert AdapterConfig(kind="alora", r=4, alpha=8.0, use_rslora=True).scaling == pytest.approx(4.0)
    assert AdapterConfig(kind="alora", r=4, alpha=8.0).scaling == pytest.approx(2.0)


@pytest.mark.parametrize("option", [{"use_dora": True}, {"init": "pissa"}, {"rank_pattern": {"q_proj": 2}},
                                    {"modules_to_save": ["lm_head"]}])
def test_alora_refuses_peft_only_options(option: dict):
    with pytest.raises(ValueError, match="is a PEFT LoRA option; ALoRA"):
        AdapterConfig(kind="alora", r=4, **option)


def test_an_apt_round_with_pissa_scores_the_reference_before_the_init(tmp_path):
    """PiSSA takes its part out of the base weights, so the adapter switched off is not the
    starting model: the round scores the pairs first and says so in the manifest."""
    import json

    import yaml

    from aptune.config import load_run_config
    from aptune.io import read_json
    from aptune.methods.apt import APTRun
    from tiny import save_tiny, tiny_mc_rows

    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tiny_mc_rows(40, seed=1)))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "model": save_tiny(tmp_path / "m"), "precision": "fp32", "pool": {"tasks": ["d.jsonl"], "split": "train"},
        "dev": {"tasks": []}, "domain_eval": {"tasks": ["d.jsonl"]}, "general_eval": {"tasks": []},
        "adapter": {"r": 4, "alpha": 8.0, "init": "pissa"},
        "train": {"batch_size": 4, "epochs": 1, "progress": False}, "rounds": {"max_rounds": 1}}))
    run = APTRun(load_run_config(tmp_path / "c.yaml"), tmp_path / "run", progress=False)
    run.run()
    record = read_json(tmp_path / "run" / "manifest.json")["stages"]["round-1/train"]
    assert record["reference"].startswith("starting model (scored before the pissa init")
    with torch.no_grad():  # the saved round loads on the original weights and merges to the same model
        unmerged = run.trained_model(1)(IDS).logits
        merged = run.start_model(2)(IDS).logits
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
