"""Padded lengths drawn from a small set of sizes, so CPU kernels are built once and reused.

oneDNN (torch's CPU backend, bf16 especially) builds a kernel per input shape. With every
batch at a new length, a long run of varied lengths spent most of its time building kernels:
64 HellaSwag items took 60 s unbucketed and 20 s padded to multiples of 32 (same machine,
same process). Scoring and training both pad through here.
"""

from __future__ import annotations

LENGTH_MULTIPLE = 32


def bucketed(length: int, multiple: int = LENGTH_MULTIPLE) -> int:
    """``length`` rounded up to a multiple of ``multiple``."""
    return -(-length // multiple) * multiple
