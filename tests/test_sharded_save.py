"""Saving an adapter whose parameters are sharded (FSDP, DeepSpeed): the trainer gathers the full
state with accelerate's ``get_state_dict`` on every process and the main process writes the
adapter tensors from it, not the shard it holds. FSDP does not run through accelerate on a CPU
(accelerate starts CPU processes as plain MULTI_CPU), so here the sharded case is entered by
patching and the gathered state is checked to be what is written; the GPU check runs the real
FSDP launch (bench/gpu_check.sh)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import aptune.train.trainer as trainer
from aptune.adapters import attach_adapter, save_adapter
from aptune.adapters.config import AdapterConfig
from aptune.train.config import TrainConfig
from aptune.train.pairs import PreferencePair
from tiny import tiny_model, tiny_tokenizer

PAIRS = [PreferencePair(f"p{i}", f"what is the {w}?", f" {w}", " the moon") for i, w in
         enumerate(["sun", "cat", "dog", "tree"])]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(next(folder.glob("*.safetensors"))))


@pytest.mark.parametrize("kind", ["lora", "alora"])
def test_a_gathered_state_is_what_gets_saved(tmp_path: Path, kind: str):
    torch.manual_seed(0)
    model = attach_adapter(tiny_model(), AdapterConfig(kind=kind, r=4, alpha=8.0, heads=2))
    save_adapter(model, tmp_path / "own")
    full = {k: v.clone() for k, v in model.state_dict().items()}
    save_adapter(model, tmp_path / "same", state_dict=full)
    own, same = _weights(tmp_path / "own"), _weights(tmp_path / "same")
    assert own.keys() == same.keys() and all(torch.equal(own[k], same[k]) for k in own)
    # a gathered state that differs from the local parameters (as a shard does): its values win
    gathered = {k: v + 1.0 if ("lora" in k and v.is_floating_point()) else v for k, v in full.items()}
    save_adapter(model, tmp_path / "gathered", state_dict=gathered)
    written = _weights(tmp_path / "gathered")
    assert written.keys() == own.keys() and all(torch.equal(written[k], own[k] + 1.0) for k in own)


def test_the_trainer_gathers_on_every_process_when_sharded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from accelerate import Accelerator

    calls: list[int] = []

    def get_state_dict(self, model, unwrap=True):  # noqa: ANN001, ANN202
        calls.append(1)
        return {k: v + 0.5 if "lora_B" in k else v for k, v in self.unwrap_model(model).state_dict().items()}

    monkeypatch.setattr(trainer, "_sharded", lambda accelerator: True)
    monkeypatch.setattr(Accelerator, "get_state_dict", get_state_dict)
    torch.manual_seed(0)
    model = attach_adapter(tiny_model(), AdapterConfig(kind="lora", r=4, alpha=8.0))
    cfg = TrainConfig(lr=0.05, epochs=1, batch_size=2, precision="fp32", progress=False)
    trainer.train_preference(model, tiny_tokenizer(), PAIRS, cfg, tmp_path / "train", device="cpu")
    assert calls == [1]
    saved = _weights(tmp_path / "train" / "adapter")
    live = {k: v for k, v in model.state_dict().items() if "lora_B" in k}
    assert live and all(torch.equal(saved[k.replace(".default", "")], v + 0.5) for k, v in live.items())
    assert not list((tmp_path / "train").glob("checkpoint-*")), "no replicated-tensor checkpoints when sharded"
