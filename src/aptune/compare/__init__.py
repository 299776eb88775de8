"""``aptune compare``: methods × seeds on one domain, each an ordinary run in one compare folder."""

from aptune.compare.compare_dir import CompareDir
from aptune.compare.config import CompareConfig, LoadedCompare, describe, load_compare_config
from aptune.compare.runner import RunOutcome, run_compare

__all__ = ["CompareConfig", "CompareDir", "LoadedCompare", "RunOutcome", "describe", "load_compare_config",
           "run_compare"]
