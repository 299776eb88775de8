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
    assert resolve_precision("fp16") == torch.float16  # fp16 weights compute in fp16 (model.dtype)
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("fp8")  # type: ignore[arg-type]


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


def test_unknown_name_offline_points_to_the_registry_and_the_closest_name(monkeypatch):
    """`--model smollm2` with the Hub offline: one line naming `aptune models` and the close match,
    not transformers' "couldn't connect to huggingface.co" (conftest sets HF_HUB_OFFLINE=1)."""
    from aptune.models import load_tokenizer

    monkeypatch.chdir(Path(__file__).parent)  # no folder called "smollm2" here
    for load in (load_model, load_tokenizer):
        with pytest.raises(ModelLoadError) as caught:
            load("smollm2")
        message = str(caught.value)
        assert message == ("unknown model 'smollm2': not a registry name (see `aptune models`), not a local "
                           "folder, and the Hugging Face Hub is offline; did you mean 'smollm2-135m'?")
    with pytest.raises(ModelLoadError, match=r"offline$"):  # nothing close: no suggestion
        load_model("no-such-model-anywhere")


def test_unreachable_hub_is_told_apart_from_a_model_that_fails_to_load(monkeypatch):
    """Online but without a connection, the same one line; any other load failure keeps its own cause."""
    import transformers

    def unreachable(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            raise ConnectionError("Name or service not known")
        except ConnectionError as exc:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from exc

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", unreachable)
    with pytest.raises(ModelLoadError, match=r"^unknown model 'gemma3': .*did you mean 'gemma3-270m'\?$"):
        load_model("gemma3")

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError("org/model does not appear to have a file named model.safetensors")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", broken)
    with pytest.raises(ModelLoadError, match=r"^org/model: cannot load a causal LM \(org/model does not appear"):
        load_model("org/model")
