"""Security: no repository code runs unless asked, no pickle is ever loaded, run-directory
writes stay inside the run directory whatever the data's ids say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aptune.methods.apt import APTRun
from aptune.config import load_run_config
from aptune.models import ModelLoadError, load_model
from test_apt_loop import run_config  # noqa: F401  (fixture: a tiny run config next to its data)
from tiny import save_tiny, tiny_mc_rows

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

EVIL = """
from pathlib import Path
Path(__file__).with_name("EXECUTED").write_text("repository code ran")
from transformers import LlamaConfig, LlamaForCausalLM
class EvilConfig(LlamaConfig):
    model_type = "evil"
class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig
"""


def _remote_code_folder(tmp_path: Path) -> Path:
    folder = Path(save_tiny(tmp_path / "remote"))
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="evil", auto_map={"AutoConfig": "evil.EvilConfig",
                                              "AutoModelForCausalLM": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(EVIL)
    return folder


def test_repository_code_never_runs_without_trust_remote_code(tmp_path: Path):
    folder = _remote_code_folder(tmp_path)
    with pytest.raises(ModelLoadError, match="cannot load a causal LM"):
        load_model(str(folder))
    assert not (folder / "EXECUTED").exists()


def test_repository_code_refused_from_the_cli(tmp_path: Path):
    folder = _remote_code_folder(tmp_path)
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in tiny_mc_rows(4)))
    proc = subprocess.run([sys.executable, "-m", "aptune.cli", "eval", "--model", str(folder), "--tasks", str(data),
                           "--split", "source", "--out", str(tmp_path / "o")],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"aptune: error: {folder}: cannot load a causal LM")
    assert not (folder / "EXECUTED").exists()


def test_pickle_weights_refused_from_the_cli(tmp_path: Path):
    """A folder with only pytorch_model.bin (a pickle) is refused; torch.load is never reached."""
    folder = Path(save_tiny(tmp_path / "pickled"))
    torch.save(load_model(str(folder)).state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in tiny_mc_rows(4)))
    proc = subprocess.run([sys.executable, "-m", "aptune.cli", "eval", "--model", str(folder), "--tasks", str(data),
                           "--split", "source", "--out", str(tmp_path / "o")],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"aptune: error: {folder}: cannot load a causal LM")


def test_item_ids_cannot_write_outside_the_run_directory(run_config: Path, tmp_path: Path):  # noqa: F811
    """Ids like ``../../x`` are data: they are never turned into paths."""
    rows = tiny_mc_rows(40, seed=1)
    for i, row in enumerate(rows):
        row["id"] = f"../../escape-{i}" if i % 2 else f"/tmp/abs-{i}"
    (tmp_path / "domain.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = {p for p in tmp_path.parent.rglob("*") if "run" not in p.relative_to(tmp_path.parent).parts}
    root = tmp_path / "nest" / "run"
    APTRun(load_run_config(run_config), root, progress=False).run()
    after = {p for p in tmp_path.parent.rglob("*") if "run" not in p.relative_to(tmp_path.parent).parts}
    assert after - before == {tmp_path / "nest"}
    assert not list(Path("/tmp").glob("abs-*"))
    assert (root / "round-1" / "pairs.jsonl").exists()
