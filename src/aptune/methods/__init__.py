"""Baselines and APT as methods on the shared run machinery, and ``aptune compare``."""

from aptune.methods.compare import CompareConfig, load_compare_config, run_compare
from aptune.methods.runs import BaseRun, DPOAllRun, SFTRun, make_run
from aptune.methods.spec import METHOD_KINDS, MethodSpec, ReplayConfig

__all__ = ["METHOD_KINDS", "BaseRun", "CompareConfig", "DPOAllRun", "MethodSpec", "ReplayConfig", "SFTRun",
           "load_compare_config", "make_run", "run_compare"]
