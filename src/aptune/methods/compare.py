"""``aptune compare``: run several methods × seeds on one domain, each in its own run directory.

Layout of a compare folder::

    OUT/compare.json            the resolved compare config (a rerun must match it)
    OUT/<method>/seed-<s>/      one ordinary run directory per (method, seed)
    OUT/<method>/seed-<s>/compare_run.json   written when that run finished: wall time, reuse marker
    OUT/compare.md, compare.html, compare-results.json, plots/

A finished run (``compare_run.json`` present) is reused without loading a model; an
unfinished one resumes at its first unfinished stage (``APTRun.run``). Round 0 — the starting
model evaluated on the same items — is identical for every method of a seed, so it is
evaluated once and copied into the other runs of that seed (its files are the round-0 stage
outputs, so the copy is exactly what the run would have written), also from a run that an
earlier invocation finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aptune.apt.run_dir import RunDir, config_changes
from aptune.config import RunConfig
from aptune.config_loader import ConfigError, _Ctx, build, read_yaml
from aptune.io import read_json, write_json_atomic
from aptune.methods.runs import check_replay, make_run
from aptune.methods.spec import (METHOD_KINDS, MethodSpec, check_pairs, chosen_methods, chosen_seeds, deep_merge,
                                 method_overrides)

log = logging.getLogger(__name__)


@dataclass
class CompareConfig:
    """Methods × seeds on one shared run config (``base``).

    ``methods`` entries are a kind name (``sft-lora``) or a mapping
    ``{kind, name, overrides, replay}``; ``overrides`` are RunConfig keys applied to ``base``
    for that method only. A ``quick:`` section of the YAML file (not a field here) is merged
    over the rest of the file by ``--quick``.
    """

    name: str = "compare"
    base: RunConfig = field(default_factory=RunConfig)
    methods: list[str | MethodSpec] = field(default_factory=lambda: list(METHOD_KINDS))
    seeds: list[int] = field(default_factory=lambda: [0])
    description: str = ""
    # head-to-head rows of the report, "A:B" = A's final models against B's, paired on items
    # (aptune.report.compare_versus); every trained method is also set against sft-lora
    versus: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.methods = [m if isinstance(m, MethodSpec) else MethodSpec(kind=m) for m in self.methods]  # type: ignore[arg-type]
        if not self.methods:
            raise ValueError("methods is empty")
        names = [m.label for m in self.specs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"methods: duplicate method name {dup[0]!r}; give one of them a name:")
        if not self.seeds:
            raise ValueError("seeds is empty")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: duplicate seed")
        check_pairs(self.versus, names, "this config")

    @property
    def specs(self) -> list[MethodSpec]:
        return [m for m in self.methods if isinstance(m, MethodSpec)]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "base": self.base.to_dict(),
                "methods": [m.to_dict() for m in self.specs], "seeds": list(self.seeds), "versus": list(self.versus)}


@dataclass
class LoadedCompare:
    """A parsed compare config with every (method, seed) RunConfig built and validated."""

    config: CompareConfig
    path: Path
    quick: bool
    run_configs: dict[tuple[str, int], RunConfig] = field(default_factory=dict)

    def spec(self, name: str) -> MethodSpec:
        return next(m for m in self.config.specs if m.label == name)


def load_compare_config(path: str | Path, *, quick: bool = False) -> LoadedCompare:
    """Parse a compare YAML strictly (file:line errors); with ``quick``, apply its ``quick:`` section.

    Every method's RunConfig is built here, for every seed, so a bad override fails before
    any work starts.
    """
    path = Path(path)
    data, lines = read_yaml(path)
    quick_section = data.pop("quick", None)
    if quick_section is not None and not isinstance(quick_section, dict):
        raise ConfigError(f"{path}:{lines.get(('quick',), 1)}: quick: expected a mapping")
    if quick:
        if quick_section is None:
            raise ConfigError(f"{path}: --quick asks for a `quick:` section, and this file has none")
        data = deep_merge(data, quick_section)
        lines = {**lines, **{k[1:]: v for k, v in lines.items() if k[:1] == ("quick",) and len(k) > 1}}
    ctx = _Ctx(str(path), lines)
    cfg = build(CompareConfig, data, ctx=ctx)
    cfg.base.resolve_paths(path.parent)
    base = cfg.base.to_dict()
    loaded = LoadedCompare(cfg, path, quick)
    for i, spec in enumerate(cfg.specs):
        where = ("methods", str(i), "overrides")
        for seed in cfg.seeds:
            merged = deep_merge(base, method_overrides(spec))
            merged.update(name=f"{cfg.name}-{spec.label}", seed=seed)
            run_cfg = build(RunConfig, merged, ctx=ctx, path=where).resolve_paths(path.parent)
            if spec.kind == "sft-lora+replay":
                try:
                    check_replay(run_cfg, spec.replay)
                except ValueError as exc:
                    raise ctx.error(("methods", str(i), "replay"), str(exc)) from None
            loaded.run_configs[(spec.label, seed)] = run_cfg
    return loaded


def _eval_key(cfg: RunConfig) -> str:
    """Everything that decides round 0's evaluation (model, format, eval sets, seed, grading)."""
    d = cfg.to_dict()
    keep = {k: d[k] for k in ("model", "precision", "seed", "trust_remote_code", "prompt", "mining",
                              "domain_eval", "general_eval", "dev")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_dir_for(out: Path, method: str, seed: int) -> Path:
    return out / method / f"seed-{seed}"


@dataclass
class RunOutcome:
    method: str
    seed: int
    root: Path
    reused: bool
    wall_s: float


def _copy_round0(donor: Path, target: Path) -> None:
    """Copy a finished round-0 evaluation (predictions first, metrics.json — the marker — last)."""
    src, dst = donor / "round-0" / "eval", target / "round-0" / "eval"
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir(), key=lambda p: p.name == "metrics.json"):
        if f.is_file():
            tmp = dst / f".{f.name}.tmp"
            shutil.copyfile(f, tmp)
            tmp.replace(dst / f.name)


def finished_round0(loaded: LoadedCompare, out: Path, seeds: Collection[int]) -> dict[str, Path]:
    """Run folders under ``out`` whose round-0 evaluation is finished, by ``_eval_key``.

    Any method of the config counts, chosen in this invocation or not: ``--methods sft-lora-2ep``
    after an earlier ``--methods base`` reuses base's round 0 instead of evaluating the same
    items again. A folder counts only when its ``method.json`` is the config's current entry for
    that method (the base config was checked against ``compare.json`` already), so its round 0
    was made with the run config this invocation would use."""
    donors: dict[str, Path] = {}
    for spec in sorted(loaded.config.specs, key=lambda s: s.kind != "base"):
        for seed in seeds:
            root = run_dir_for(out, spec.label, seed)
            method_path = root / "method.json"
            if not (method_path.exists() and RunDir(root).is_done(0, "eval")):
                continue
            if read_json(method_path) != spec.to_dict():
                continue
            donors.setdefault(_eval_key(loaded.run_configs[(spec.label, seed)]), root)
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
    """Run (or reuse, or resume) every (method, seed), then write the compare report.

    ``methods`` / ``seeds`` run only those of the config's (e.g. one budget at a time, spread over
    several sessions); the report covers every finished run and lists the rest as not finished."""
    from aptune.report.compare_report import write_compare_report

    out = Path(out)
    cfg = loaded.config
    names = chosen_methods([s.label for s in cfg.specs], methods, loaded.path)
    chosen_specs = [s for s in cfg.specs if s.label in names]
    run_seeds = chosen_seeds(cfg.seeds, seeds, loaded.path)
    out.mkdir(parents=True, exist_ok=True)
    resolved = cfg.to_dict()
    meta_path = out / "compare.json"
    if meta_path.exists():
        # the same rule as a run folder's: a key added to the schema since, at its default, is no change
        changed = config_changes(read_json(meta_path).get("base") or {}, resolved["base"], RunConfig().to_dict())
        if changed:
            raise ValueError(f"{meta_path}: this compare folder was made with a different base config "
                             f"(changed: {', '.join(changed)}); use a new --out folder")
    write_json_atomic(meta_path, {**resolved, "quick": loaded.quick, "config_file": str(loaded.path)})

    # validate every run before any work (data files, model path, run-dir config match)
    runs = {}
    for spec in chosen_specs:
        for seed in run_seeds:
            run = make_run(spec, loaded.run_configs[(spec.label, seed)], run_dir_for(out, spec.label, seed),
                           progress=progress)
            runs[(spec.label, seed)] = run
    validated: set[str] = set()
    for (name, _), run in runs.items():
        key = json.dumps(run.cfg.to_dict(), sort_keys=True, default=str)
        if key not in validated:
            run.validate()
            validated.add(key)
        run.open()
        method_path = run.dir.root / "method.json"
        spec = loaded.spec(name).to_dict()
        if method_path.exists() and read_json(method_path) != spec:
            raise ValueError(f"{method_path}: this run was started with other method settings; use a new --out folder")
        write_json_atomic(method_path, spec)

    outcomes: list[RunOutcome] = []
    donors = finished_round0(loaded, out, run_seeds)
    order = sorted(chosen_specs, key=lambda s: s.kind != "base")  # base first: its round 0 is shared
    for seed in run_seeds:
        for spec in order:
            run = runs[(spec.label, seed)]
            root = run.dir.root
            marker = root / "compare_run.json"
            key = _eval_key(run.cfg)
            if marker.exists():
                log.info("%s seed %d: finished earlier, reused", spec.label, seed)
                if on_run:
                    on_run(spec.label, seed, "reused")
                outcomes.append(RunOutcome(spec.label, seed, root, True, read_json(marker)["wall_s"]))
                continue  # already a donor: finished_round0 lists every finished round 0
            if not run.dir.is_done(0, "eval") and key in donors:
                _copy_round0(donors[key], root)
                # the donor paid for this evaluation: it costs this run nothing
                run.dir.mark(0, "eval", copied_from=str(donors[key].relative_to(out)), seconds=0.0)
            if on_run:
                on_run(spec.label, seed, "running")
            t0 = time.perf_counter()
            decision = run.run()
            wall = time.perf_counter() - t0
            write_json_atomic(marker, {"method": spec.to_dict(), "seed": seed, "wall_s": wall,
                                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                       "stop_reason": decision.get("reason", "")})
            donors.setdefault(key, root)
            outcomes.append(RunOutcome(spec.label, seed, root, False, wall))
    write_compare_report(out)
    return outcomes


def describe(loaded: LoadedCompare) -> list[dict[str, Any]]:
    """One row per method: kind, adapter, rounds, lr, epochs (for the CLI's plan and the report)."""
    rows = []
    for spec in loaded.config.specs:
        rc = loaded.run_configs[(spec.label, loaded.config.seeds[0])]
        rows.append({"method": spec.label, "kind": spec.kind, "adapter": "none" if spec.kind == "base" else rc.adapter.kind,
                     "rounds": 0 if spec.kind == "base" else rc.rounds.max_rounds, "lr": rc.train.lr,
                     "epochs": rc.train.epochs, "batch": rc.train.batch_size * rc.train.grad_accum,
                     "train": dataclasses.asdict(rc.train)})
    return rows
