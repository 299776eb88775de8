"""What produced a result: package versions, machine, command line. Written beside every figure."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

TRACKED = ("aptune", "torch", "transformers", "peft", "accelerate", "sentence-transformers", "faiss-cpu")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance() -> dict[str, Any]:
    """Versions, machine and command, for manifests and metrics files."""
    import torch

    return {
        "versions": {p: _version(p) for p in TRACKED},
        "python": platform.python_version(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "argv": sys.argv,
    }
