"""How much memory a device has free, and the refusal when a planned peak does not fit.

CUDA: ``torch.cuda.mem_get_info`` (free bytes as the driver sees them: other processes and this
one's CUDA context already subtracted), asked only when called and only where CUDA is
available, never at import. CPU: ``psutil.virtual_memory().available`` where psutil is installed,
else ``MemAvailable`` from ``/proc/meminfo`` (Linux). MPS shares the machine's memory with no
reliable free figure: unknown (None), and ``check_fits`` then checks nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aptune.memory_plan import MemoryPlan

GIB = 1024**3


def _cpu_available() -> int | None:
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def capacity(device: str) -> int | None:
    """Free bytes on ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``); None when unknown.

    Raises ValueError for a CUDA device on a machine without CUDA (one line: what to change)."""
    kind = device.split(":", 1)[0]
    if kind == "cpu":
        return _cpu_available()
    if kind == "mps":
        return None
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"device {device}: CUDA is not available on this machine (torch {torch.__version__}); "
                             "use device: cpu or install a CUDA build of torch")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        free, _total = torch.cuda.mem_get_info(index)
        return int(free)
    raise ValueError(f"device must be cpu, cuda, cuda:N or mps, not {device!r}")


def check_fits(plan: "MemoryPlan", device: str, margin: float = 0.05, available: int | None = None) -> None:
    """Raise a one-line ValueError when ``plan``'s peak exceeds ``(1 - margin)`` of what
    ``device`` has free (``available`` overrides the probe, for tests and dry runs)."""
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), not {margin}")
    free = capacity(device) if available is None else available
    if free is None:
        return
    usable = int(free * (1.0 - margin))
    if plan.peak_bytes <= usable:
        return
    i = plan.inputs
    hints = []
    if i.weight_dtype not in ("4bit", "8bit") and device.startswith("cuda"):
        hints.append("model.quantization: 4bit")
    if not i.gradient_checkpointing:
        hints.append("train.gradient_checkpointing: true")
    if i.batch_size > 1:
        hints.append(f"train.batch_size: {max(1, i.batch_size // 2)} (with more train.grad_accum)")
    if i.weight_dtype == "fp32" and device.startswith("cuda"):
        hints.insert(0, "model.dtype: bf16")
    hint = f"; try {' or '.join(hints)}" if hints else ""
    raise ValueError(f"planned peak {plan.peak_bytes / GIB:.1f} GiB > {usable / GIB:.1f} GiB available on {device} "
                     f"({free / GIB:.1f} GiB free, {margin:.0%} kept in reserve){hint}")
