"""A run directory read back after the fact: its saved config, its rounds, the model it left.

``aptune export``, ``aptune chat`` and ``aptune generate`` all need "the model this run left
after round N"; this is the one place that rebuilds it (the base weights plus the accepted
rounds, exactly as the driver rebuilds a round's starting model), without re-running anything.
"""

from __future__ import annotations

from pathlib import Path

from aptune.config import RunConfig
from aptune.config_loader import build
from aptune.run.driver import Run
from aptune.run.run_dir import RunDir


def open_run(root: str | Path, device: str | None = None) -> Run:
    """The run at ``root``, rebuilt from its own saved config (``device``: compute elsewhere)."""
    run_dir = RunDir(Path(root))
    data = run_dir.config()
    if device is not None:
        data = {**data, "device": device}
    cfg = build(RunConfig, data, source=str(run_dir.manifest_path))
    return Run(cfg, root, progress=False)


def rounds_upto(run: Run, upto: int | None = None) -> tuple[int, list[int]]:
    """(the round asked for — default the run's last finished round —, the accepted rounds up to it)."""
    finished = [r for r in run.dir.rounds_on_disk() if r > 0 and run.dir.is_done(r, "decide")]
    last = max(finished, default=0) if upto is None else upto
    if upto is not None and upto not in [0, *finished]:
        raise ValueError(f"{run.dir.root}: round {upto} did not finish (finished: "
                         f"{', '.join(map(str, finished)) or 'none'})")
    return last, run.accepted_rounds(last + 1)
