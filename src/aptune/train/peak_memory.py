"""Peak memory of one training call, not of the whole process.

``ru_maxrss`` is the process's high-water mark since it started, so in ``aptune compare``
(every method in one process) it only grows from method to method and says nothing about the
method that just trained. Resetting the kernel's mark (``/proc/self/clear_refs``) would also
reset what ``/usr/bin/time -v`` reports for the whole process, so instead a daemon thread reads
the resident set (``/proc/self/statm``) every 50 ms while the call runs and keeps the maximum;
CUDA's own peak counter is reset at the start and read at the end. Off Linux the reading is
the process peak so far, and ``scope`` says so.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from pathlib import Path

import torch

_STATM = Path("/proc/self/statm")
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 0.0


def _rss_mb() -> float | None:
    """The resident set now, in MiB; None where /proc is not there."""
    try:
        return int(_STATM.read_text().split()[1]) * _PAGE_MB
    except (OSError, IndexError, ValueError):
        return None


def process_peak_rss_mb() -> float:
    """Peak resident memory of this process since it started, in MiB (ru_maxrss is KiB on
    Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class PeakMemory:
    """``start`` begins watching; ``stop`` ends it; then ``rss_mb`` and ``device_mb`` hold the
    call's peaks. ``scope`` is ``call`` when the RSS was sampled, ``process`` otherwise."""

    interval_s = 0.05

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.scope = "call" if _rss_mb() is not None else "process"
        self._peak = 0.0
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _watch(self) -> None:
        while not self._done.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        now = _rss_mb()
        if now is not None and now > self._peak:
            self._peak = now

    def start(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.scope == "call":
            self._sample()
            self._thread = threading.Thread(target=self._watch, name="aptune-peak-rss", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._done.set()
            self._thread.join()
            self._sample()
            self._thread = None

    def rss_mb(self) -> float:
        """Peak resident memory while watched (or of the process, where it could not be sampled)."""
        return self._peak if self.scope == "call" else process_peak_rss_mb()

    def device_mb(self) -> float | None:
        """Peak memory allocated on the CUDA device since ``start``; None off CUDA."""
        if self.device.type != "cuda":
            return None
        return torch.cuda.max_memory_allocated(self.device) / 2**20
