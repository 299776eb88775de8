"""Device resolution with the machine's answers patched (CUDA, MPS, none, a launcher), the
precision rule per device, and the device every stage of a run actually receives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import aptune.devices as devices
from aptune.config import RunConfig, load_run_config
from aptune.config_loader import ConfigError
from aptune.devices import DeviceError, resolve_device
from aptune.models import resolve_precision
from aptune.run.run_dir import config_changes


def _machine(monkeypatch: pytest.MonkeyPatch, *, gpus: int = 0, mps: bool = False, cuda_build: bool = True,
             launcher_device: str | None = None) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(devices, "_mps_available", lambda: mps)
    monkeypatch.setattr(torch.version, "cuda", "12.8" if cuda_build else None)
    monkeypatch.setattr(devices, "state", lambda: None if launcher_device is None
                        else SimpleNamespace(device=torch.device(launcher_device)))


@pytest.mark.parametrize(("spec", "machine", "expected"), [
    ("auto", {}, "cpu"),
    ("auto", {"mps": True}, "mps"),
    ("auto", {"gpus": 2, "mps": True}, "cuda:0"),
    ("cpu", {"gpus": 2}, "cpu"),
    ("cuda", {"gpus": 2}, "cuda:0"),
    ("cuda:1", {"gpus": 2}, "cuda:1"),
    ("CUDA:1", {"gpus": 2}, "cuda:1"),
    ("mps", {"mps": True}, "mps"),
    ("auto", {"gpus": 4, "launcher_device": "cuda:3"}, "cuda:3"),
    ("cuda", {"gpus": 4, "launcher_device": "cuda:3"}, "cuda:3"),
    ("auto", {"launcher_device": "cpu"}, "cpu"),
    ("cpu", {"launcher_device": "cpu"}, "cpu"),
])
def test_device_resolution(monkeypatch: pytest.MonkeyPatch, spec: str, machine: dict, expected: str):
    _machine(monkeypatch, **machine)
    assert resolve_device(spec) == torch.device(expected)


@pytest.mark.parametrize(("spec", "machine", "message"), [
    ("cuda", {"cuda_build": False}, "CUDA is not available: this torch .* is a CPU build; install a CUDA build "
                                    r"\(make setup TORCH=cuda\); or use --device cpu"),
    ("cuda:0", {}, "CUDA is not available: this torch .* sees no GPU"),
    ("cuda:2", {"gpus": 2}, r"this machine has 2 CUDA GPU\(s\) \(cuda:0 to cuda:1\)"),
    ("mps", {}, "MPS backend is not available"),
    ("gpu", {}, "expected auto .* cpu, cuda, cuda:N or mps"),
    ("cpu:1", {}, "expected auto"),
    ("cuda:1", {"gpus": 4, "launcher_device": "cuda:3"}, "under a launcher this process computes on cuda:3"),
    ("cpu", {"gpus": 4, "launcher_device": "cuda:3"}, "under a launcher"),
])
def test_a_device_that_is_not_there_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, spec: str, machine: dict,
                                                        message: str):
    _machine(monkeypatch, **machine)
    with pytest.raises(DeviceError, match=message) as err:
        resolve_device(spec)
    assert "\n" not in str(err.value)


def test_precision_follows_the_chosen_device(monkeypatch: pytest.MonkeyPatch):
    """`auto` asks the device the run computes on: a GPU machine told to use its CPU follows the
    CPU rule, not the GPU's bf16."""
    import aptune.models as models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(models, "cpu_vendor", lambda: "GenuineIntel")
    cpu = getattr(torch, "cpu")
    monkeypatch.setattr(cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert resolve_precision("auto", "cuda:0") == torch.bfloat16
    assert resolve_precision("auto", "cpu") == torch.float32  # Intel without AMX: fp32 is faster
    assert resolve_precision("auto", "mps") == torch.float32
    assert resolve_precision("bf16", "cpu") == torch.bfloat16 and resolve_precision("fp32", "cuda") == torch.float32


def test_config_checks_the_device_form_and_resume_ignores_the_device(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("device: gpu0\n")
    with pytest.raises(ConfigError, match="device: 'gpu0' is not a device"):
        load_run_config(path)
    assert load_run_config(None, ["device=cuda:1", "mining.judge_device=cuda:0"]).device == "cuda:1"
    saved, now = RunConfig().to_dict(), RunConfig(device="cuda:1").to_dict()
    assert config_changes(saved, now, RunConfig().to_dict()) == []  # where, not what: a run may move
    now["mining"]["judge_device"] = "cpu"
    assert config_changes(saved, now, RunConfig().to_dict()) == []


def test_cli_run_with_an_absent_gpu_fails_in_one_line_before_work(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "aptune.cli", "run", "--device", "cuda:7", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("aptune: error: device 'cuda:7': CUDA is not available")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
