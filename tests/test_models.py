"""Model registry: cache location, precision choice, safe loading of local folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aptune.models import ModelLoadError, cache_dir, load_model, resolve_model_path, resolve_precision
from tiny import save_tiny


def test_cache_dir_follows_environment(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("APTUNE_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("APTUNE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "aptune"


@pytest.mark.parametrize("precision,expected", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_forced_precision(precision, expected):
    assert resolve_precision(precision) == expected


def test_auto_precision_is_bf16_or_fp32_and_bad_value_fails():
    assert resolve_precision("auto") in (torch.bfloat16, torch.float32)
    if not torch.cuda.is_available():  # on CPUs: bf16 with AMX tiles, or AVX512-BF16 on AMD; else fp32
        from aptune.models import cpu_vendor

        fast = torch.cpu._is_amx_tile_supported() or (
            torch.cpu._is_avx512_bf16_supported() and cpu_vendor() == "AuthenticAMD")
        assert (resolve_precision("auto") == torch.bfloat16) == fast
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("fp16")  # type: ignore[arg-type]


def test_local_folder_loads_in_fp32_eval_mode(tmp_path: Path):
    model = load_model(save_tiny(tmp_path / "m"))
    assert next(model.parameters()).dtype == torch.float32 and not model.training


def test_folder_without_config_is_not_a_model(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="not a model folder"):
        resolve_model_path(str(tmp_path / "empty"))


def test_pickled_weights_are_refused(tmp_path: Path):
    """safetensors only: a folder with only a pickle checkpoint must not be unpickled."""
    folder = Path(save_tiny(tmp_path / "m"))
    state = {k: v for k, v in load_model(str(folder)).state_dict().items()}
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError):
        load_model(str(folder))


def test_missing_model_package_says_how_to_install_it(monkeypatch, tmp_path: Path):
    from aptune import models

    monkeypatch.setenv("APTUNE_CACHE", str(tmp_path))  # nothing converted yet
    entry = models.RegisteredModel("m", "d", "no_such_weights_pkg", "m.gguf", install="run `make gemma`")
    monkeypatch.setitem(models.REGISTRY, "m", entry)
    with pytest.raises(ModelLoadError, match=r"'no_such_weights_pkg' is not installed; run `make gemma`"):
        resolve_model_path("m")
    assert "make setup" in models.REGISTRY["smollm2-135m"].install
    assert "make gemma" in models.REGISTRY["gemma3-270m"].install
