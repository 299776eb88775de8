"""Which device a run computes on: ``device: auto | cpu | cuda | cuda:N | mps``.

``auto`` is the launcher's device under ``accelerate launch`` / ``torchrun`` (each process its own
GPU), else the first CUDA GPU, else Apple's MPS, else the CPU. An explicit choice is checked
against what this torch build and machine have, and a device that is not there is a one-line
error that says what to install or pick instead — never a CUDA traceback from deep inside a stage.
Nothing here touches CUDA at import time.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

import torch

from aptune.distributed import state

#: the forms ``device`` accepts (``cuda:N`` with any index)
DEVICE_HELP = "auto (the launcher's, else the first CUDA GPU, else MPS, else CPU), cpu, cuda, cuda:N or mps"
DEVICE_FORM = re.compile(r"^(?:auto|cpu|mps|cuda(?::\d+)?)$")
_FORM = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


class DeviceError(ValueError):
    """A device this machine or this torch build does not have."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _no_cuda_reason() -> str:
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU build; install a CUDA build (make setup TORCH=cuda)"
    return f"this torch ({torch.__version__}, CUDA {torch.version.cuda}) sees no GPU (check the driver and CUDA_VISIBLE_DEVICES)"


def resolve_device(spec: str = "auto") -> torch.device:
    """The device ``spec`` names, checked; see the module docstring for ``auto``."""
    match = _FORM.match(spec.strip().lower()) if isinstance(spec, str) else None
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise DeviceError(f"device {spec!r}: expected {DEVICE_HELP}")
    kind, index = match.group(1), match.group(2)
    launched = state()
    if launched is not None:
        # under a launcher each process owns one device; asking for another kind is a mistake
        own = torch.device(launched.device)
        if kind in ("auto", own.type) and (index is None or kind != "cuda"):
            return own
        raise DeviceError(f"device {spec!r}: under a launcher this process computes on {own}; "
                          "use device: auto (or pick the device in the launcher's config)")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not _mps_available():
            raise DeviceError("device 'mps': Apple's MPS backend is not available here; use cpu (or auto)")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {spec!r}: CUDA is not available: {_no_cuda_reason()}; or use --device cpu")
    n = torch.cuda.device_count()
    gpu = int(index) if index is not None else 0
    if gpu >= n:
        raise DeviceError(f"device {spec!r}: this machine has {n} CUDA GPU(s) (cuda:0 to cuda:{n - 1})")
    return torch.device("cuda", gpu)


def device_name(device: torch.device) -> str:
    """A human name for the manifest and the console: the GPU's model, or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return _cpu_name()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"
