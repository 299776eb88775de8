"""``aptune compare``: run several methods × seeds on one domain, each in its own run directory
(layout: ``compare_dir.py``).

A finished run (its ``compare_run.json`` present) is reused without loading a model; an
unfinished one resumes at its first unfinished stage (``Run.run``). Round 0 — the starting
model evaluated on the same items — is identical for every method of a seed, so it is
evaluated once and copied into the other runs of that seed (its files are the round-0 stage
outputs, so the copy is exactly what the run would have written), also from a run that an
earlier invocation finished. The report is drawn by the caller (``aptune.report.compare_report``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from aptune.compare.compare_dir import CompareDir
from aptune.compare.config import LoadedCompare
from aptune.config import RunConfig
from aptune.distributed import is_main
from aptune.io import read_json, write_json_atomic
from aptune.methods.registry import MethodSpec, get_method, make_run
from aptune.compare.selection import chosen_methods, chosen_seeds
from aptune.model_config import ModelConfig
from aptune.run.run_dir import RunDir, config_changes

log = logging.getLogger(__name__)


def _eval_key(cfg: RunConfig) -> str:
    """Everything that decides round 0's evaluation (model, format, eval sets, seed, grading)."""
    d = cfg.to_dict()
    keep = {k: d[k] for k in ("model", "precision", "seed", "trust_remote_code", "prompt", "mining",
                              "domain_eval", "general_eval", "dev", "general_dev")}
    if cfg.model == ModelConfig(name=cfg.model.name):  # default loading: the key it had before the section
        keep["model"] = cfg.model.name
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class RunOutcome:
    method: str
    seed: int
    root: Path
    reused: bool
    wall_s: float


def _trains(spec: MethodSpec) -> bool:
    """Sort key: methods that train nothing (base) before the rest."""
    return get_method(spec.kind).trains


def _copy_round0(donor: RunDir, target: RunDir) -> None:
    """Copy a finished round-0 evaluation (predictions first, metrics.json — the marker — last)."""
    src, dst = donor.eval_dir(0), target.eval_dir(0)
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir(), key=lambda p: p.name == "metrics.json"):
        if f.is_file():
            tmp = dst / f".{f.name}.tmp"
            shutil.copyfile(f, tmp)
            tmp.replace(dst / f.name)


def finished_round0(loaded: LoadedCompare, out: Path, seeds: Collection[int]) -> dict[str, RunDir]:
    """Run folders under ``out`` whose round-0 evaluation is finished, by ``_eval_key``.

    Any method of the config counts, chosen in this invocation or not: ``--methods sft-lora-2ep``
    after an earlier ``--methods base`` reuses base's round 0 instead of evaluating the same
    items again. A folder counts only when its ``method.json`` is the config's current entry for
    that method (the base config was checked against ``compare.json`` already), so its round 0
    was made with the run config this invocation would use."""
    donors: dict[str, RunDir] = {}
    folder = CompareDir(out)
    for spec in sorted(loaded.config.specs, key=_trains):
        for seed in seeds:
            run_dir = folder.run_dir(spec.label, seed)
            method_path = folder.method_file(run_dir)
            if not (method_path.exists() and run_dir.is_done(0, "eval")):
                continue
            if read_json(method_path) != spec.to_dict():
                continue
            donors.setdefault(_eval_key(loaded.run_configs[(spec.label, seed)]), run_dir)
    return donors


def run_compare(
    loaded: LoadedCompare,
    out: str | Path,
    *,
    progress: bool = True,
    on_run: Callable[[str, int, str], None] | None = None,
    methods: Collection[str] | None = None,
    seeds: Collection[int] | None = None,
) -> list[RunOutcome]:
    """Run (or reuse, or resume) every (method, seed); the caller then draws the report.

    ``methods`` / ``seeds`` run only those of the config's (e.g. one budget at a time, spread over
    several sessions); the report covers every finished run and lists the rest as not finished."""
    out = Path(out)
    folder = CompareDir(out)
    cfg = loaded.config
    names = chosen_methods([s.label for s in cfg.specs], methods, loaded.path)
    chosen_specs = [s for s in cfg.specs if s.label in names]
    run_seeds = chosen_seeds(cfg.seeds, seeds, loaded.path)
    out.mkdir(parents=True, exist_ok=True)
    resolved = cfg.to_dict()
    meta_path = folder.meta
    if meta_path.exists():
        # the same rule as a run folder's: a key added to the schema since, at its default, is no change
        changed = config_changes(read_json(meta_path).get("base") or {}, resolved["base"], RunConfig().to_dict())
        if changed:
            raise ValueError(f"{meta_path}: this compare folder was made with a different base config "
                             f"(changed: {', '.join(changed)}); use a new --out folder")
    if is_main():  # under a launcher one process writes; the run directories synchronise the rest
        write_json_atomic(meta_path, {**resolved, "quick": loaded.quick, "config_file": str(loaded.path)})

    # validate every run before any work (data files, model path, run-dir config match)
    runs = {}
    for spec in chosen_specs:
        for seed in run_seeds:
            run = make_run(spec, loaded.run_configs[(spec.label, seed)], folder.run_dir(spec.label, seed).root,
                           progress=progress)
            runs[(spec.label, seed)] = run
    validated: set[str] = set()
    for (name, _), run in runs.items():
        key = json.dumps(run.cfg.to_dict(), sort_keys=True, default=str)
        if key not in validated:
            run.validate()
            validated.add(key)
        run.open()
        method_path = folder.method_file(run.dir)
        spec = loaded.spec(name).to_dict()
        if method_path.exists() and read_json(method_path) != spec:
            raise ValueError(f"{method_path}: this run was started with other method settings; use a new --out folder")
        if is_main():
            write_json_atomic(method_path, spec)

    outcomes: list[RunOutcome] = []
    donors = finished_round0(loaded, out, run_seeds)
    order = sorted(chosen_specs, key=_trains)  # the untrained first: their round 0 is shared
    for seed in run_seeds:
        for spec in order:
            run = runs[(spec.label, seed)]
            root = run.dir.root
            marker = folder.finished_marker(run.dir)
            key = _eval_key(run.cfg)
            if marker.exists():
                log.info("%s seed %d: finished earlier, reused", spec.label, seed)
                if on_run:
                    on_run(spec.label, seed, "reused")
                outcomes.append(RunOutcome(spec.label, seed, root, True, read_json(marker)["wall_s"]))
                continue  # already a donor: finished_round0 lists every finished round 0
            if not run.dir.is_done(0, "eval") and key in donors:
                if is_main():
                    _copy_round0(donors[key], run.dir)
                # the donor paid for this evaluation: it costs this run nothing
                run.dir.mark(0, "eval", copied_from=str(donors[key].root.relative_to(out)), seconds=0.0)
            if on_run:
                on_run(spec.label, seed, "running")
            t0 = time.perf_counter()
            decision = run.run()
            wall = time.perf_counter() - t0
            if is_main():
                write_json_atomic(marker, {"method": spec.to_dict(), "seed": seed, "wall_s": wall,
                                           "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                           "stop_reason": decision.get("reason", "")})
            donors.setdefault(key, run.dir)
            outcomes.append(RunOutcome(spec.label, seed, root, False, wall))
    return outcomes


