"""A tuned model out: merged (bare transformers loads it), one composed PEFT adapter (bare
transformers + peft), ALoRA's folder with its loader; each computes what the run's final model
computes, checked in a fresh process that cannot import aptune."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from aptune.config import load_run_config
from aptune.export import ExportError, export_run
from aptune.methods.apt import APTRun
from test_apt_loop import run_config  # noqa: F401  (the fixture)

IDS = [[5, 9, 17, 33, 2, 41], [7, 7, 21, 3, 60, 12]]

#: a fresh interpreter where importing aptune fails, so the export must stand on its own
NO_APTUNE = "import sys; sys.modules['aptune'] = None\n"


def _fresh(code: str) -> list:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", NO_APTUNE + code], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def finished(run_config: Path, tmp_path: Path):  # noqa: F811
    cfg = load_run_config(run_config)
    run = APTRun(cfg, tmp_path / "run", progress=False)
    run.run()
    accepted = run.accepted_rounds(3)
    assert accepted == [1, 2], "the fixture's gate is open: both rounds are kept"
    with torch.no_grad():
        expected = run.start_model(3)(torch.tensor(IDS)).logits
    return run, expected


def test_merged_export_loads_with_bare_transformers_and_equals_the_run(finished, tmp_path: Path):
    run, expected = finished
    out = export_run(run.dir.root, tmp_path / "merged", "merged")
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin"))
    assert (out / "tokenizer_config.json").exists() and (out / "README.md").exists()
    got = _fresh(f"""
import json, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
m = AutoModelForCausalLM.from_pretrained({str(out)!r}).eval()
AutoTokenizer.from_pretrained({str(out)!r})
with torch.no_grad():
    print(json.dumps(m(torch.tensor({IDS})).logits.tolist()))
""")
    torch.testing.assert_close(torch.tensor(got), expected, atol=1e-5, rtol=1e-5)


def test_peft_export_is_one_adapter_equal_to_the_merged_rounds(finished, tmp_path: Path):
    run, expected = finished
    out = export_run(run.dir.root, tmp_path / "peft", "peft")
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == 2 * run.cfg.adapter.r and cfg["lora_alpha"] == cfg["r"], "rank = the rounds' ranks summed"
    got = _fresh(f"""
import json, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained({run.cfg.model.name!r})
m = PeftModel.from_pretrained(base, {str(out)!r}).eval()
with torch.no_grad():
    print(json.dumps(m(torch.tensor({IDS})).logits.tolist()))
""")
    torch.testing.assert_close(torch.tensor(got), expected, atol=1e-5, rtol=1e-5)


def test_an_earlier_round_and_the_model_card(finished, tmp_path: Path):
    run, _ = finished
    out = export_run(run.dir.root, tmp_path / "r1", "merged", round_index=1)
    card = (out / "README.md").read_text()
    assert "Rounds accepted: 1 (of the rounds up to 1)" in card
    assert "| domain (held-out) |" in card and "change, points [95% CI]" in card
    assert "Method: APT" in card and "aptune export" in card and "from_pretrained" in card
    with torch.no_grad():
        expected = run.start_model(2)(torch.tensor(IDS)).logits
    from transformers import AutoModelForCausalLM

    got = AutoModelForCausalLM.from_pretrained(str(out)).eval()(torch.tensor(IDS)).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_exports_that_cannot_be_made_are_refused_and_leave_nothing(finished, tmp_path: Path):
    run, _ = finished
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export_run(run.dir.root, tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(ExportError, match="round 7 did not finish"):
        export_run(run.dir.root, tmp_path / "x", round_index=7)
    with pytest.raises(ExportError, match="trained LoRA adapters"):
        export_run(run.dir.root, tmp_path / "y", "alora")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert not list(tmp_path.glob(".*")), "no temporary folder left behind"


def test_alora_exports_its_folder_and_a_loader(run_config: Path, tmp_path: Path):  # noqa: F811
    data = yaml.safe_load(run_config.read_text())
    data["adapter"] = {"kind": "alora", "r": 4, "alpha": 8.0}
    data["rounds"].update(max_rounds=1, between="stack", reference="original")
    run_config.write_text(yaml.safe_dump(data))
    run = APTRun(load_run_config(run_config), tmp_path / "alora-run", progress=False)
    run.run()
    with torch.no_grad():
        expected = run.start_model(2)(torch.tensor(IDS)).logits
    with pytest.raises(ExportError, match="cannot be merged"):
        export_run(run.dir.root, tmp_path / "m", "merged")
    out = export_run(run.dir.root, tmp_path / "alora")
    assert (out / "load_alora.py").exists() and (out / "adapter").is_dir()
    assert "needs aptune" in (out / "load_alora.py").read_text() and "cannot be merged" in (out / "README.md").read_text()
    sys.path.insert(0, str(out))
    try:
        from load_alora import load_model

        model, _ = load_model()
    finally:
        sys.path.remove(str(out))
        sys.modules.pop("load_alora", None)
    with torch.no_grad():
        torch.testing.assert_close(model(torch.tensor(IDS)).logits, expected, atol=1e-5, rtol=1e-5)


def test_the_export_command(finished, tmp_path: Path):
    run, _ = finished
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "aptune.cli", "export", str(run.dir.root), "--to", str(tmp_path / "cli")]
    ok = subprocess.run(cmd + ["--format", "peft"], capture_output=True, text=True, timeout=300, env=env)
    assert ok.returncode == 0, ok.stderr[-1500:]
    assert f"exported {run.dir.root} to {tmp_path / 'cli'}" in ok.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode != 0 and "not empty; export into a new folder" in again.stderr + again.stdout


def test_chat_and_generate_load_a_run_directorys_final_model(finished):
    from aptune.inference.loading import load_for_inference

    run, expected = finished
    model, tokenizer, dtype = load_for_inference(str(run.dir.root), device="cpu")
    assert dtype == torch.float32 and tokenizer is not None
    with torch.no_grad():
        torch.testing.assert_close(model(torch.tensor(IDS)).logits, expected, atol=1e-5, rtol=1e-5)


def test_chat_data_in_a_tuned_model_out(tmp_path: Path):
    """The loop a user runs: a messages-format JSONL → a tiny APT run → a merged export that bare
    transformers loads → a chat with it."""
    from aptune.inference.chat import ChatSession
    from aptune.inference.loading import load_for_inference
    from tiny import save_tiny

    words = "red blue green sun moon water fire cat dog tree star planet".split()
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"what is the {w}?"},
                                         {"role": "assistant", "content": f"the {w}"}]}
            for i, w in enumerate(words * 3)]
    (tmp_path / "chats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg_path = tmp_path / "chat.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "model": save_tiny(tmp_path / "model"), "precision": "fp32",
        "pool": {"tasks": ["chats.jsonl"], "split": "train"}, "dev": {"tasks": []},
        "domain_eval": {"tasks": ["chats.jsonl"], "split": "test"}, "general_eval": {"tasks": []},
        "mining": {"max_new_tokens": 4, "judge": "exact_match", "accept_judge": True},
        "pairs": {"similar_negative": "other_gold"}, "adapter": {"r": 4, "alpha": 8.0},
        "train": {"lr": 0.01, "epochs": 1, "batch_size": 4, "progress": False}, "rounds": {"max_rounds": 1}}))
    run = APTRun(load_run_config(cfg_path), tmp_path / "run", progress=False)
    run.run()
    assert run.accepted_rounds(2) == [1]
    out = export_run(run.dir.root, tmp_path / "export")
    with torch.no_grad():
        expected = run.start_model(2)(torch.tensor(IDS)).logits
    got = _fresh(f"""
import json, torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained({str(out)!r}).eval()
with torch.no_grad():
    print(json.dumps(m(torch.tensor({IDS})).logits.tolist()))
""")
    torch.testing.assert_close(torch.tensor(got), expected, atol=1e-5, rtol=1e-5)
    model, tokenizer, _ = load_for_inference(str(out), device="cpu")
    chat = ChatSession(model, tokenizer, max_new_tokens=4)
    chat.reply("what is the sun?")
    chat.reply("and the moon?")
    assert [m["role"] for m in chat.messages] == ["user", "assistant"] * 2
