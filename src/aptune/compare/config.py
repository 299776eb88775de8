"""A compare config: methods × seeds on one shared run config, parsed strictly.

``methods:`` entries are a kind from the method table (``aptune.methods.registry``) or a
mapping ``{kind, name, overrides, replay}``; a ``quick:`` section is merged over the rest of
the file by ``--quick``. Every (method, seed) RunConfig is built and checked at load time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aptune.compare.selection import check_pairs
from aptune.config import RunConfig
from aptune.config_loader import ConfigError, ConfigSource, build, deep_merge, expand_scalar_sections, read_yaml
from aptune.methods.registry import METHODS, MethodSpec, get_method, method_overrides


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
    methods: list[str | MethodSpec] = field(default_factory=lambda: list(METHODS))
    seeds: list[int] = field(default_factory=lambda: [0])
    description: str = ""
    # head-to-head rows of the report, "A:B" = A's final models against B's, paired on items
    # (aptune.report.compare_versus); every trained method is also set against sft-lora
    versus: list[str] = field(default_factory=list)
    # the one comparison the experiment tests, "A:B", named before it runs: shown first in the
    # report, with seeds resampled as well as items; every other row is exploratory
    primary: str = ""

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
        if self.primary:
            check_pairs([self.primary], names, "this config")

    @property
    def specs(self) -> list[MethodSpec]:
        return [m for m in self.methods if isinstance(m, MethodSpec)]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "base": self.base.to_dict(),
                "methods": [m.to_dict() for m in self.specs], "seeds": list(self.seeds), "versus": list(self.versus), "primary": self.primary}


@dataclass
class LoadedCompare:
    """A parsed compare config with every (method, seed) RunConfig built and validated."""

    config: CompareConfig
    path: Path
    quick: bool
    run_configs: dict[tuple[str, int], RunConfig] = field(default_factory=dict)

    def spec(self, name: str) -> MethodSpec:
        return next(m for m in self.config.specs if m.label == name)


def load_compare_config(path: str | Path, *, quick: bool = False, device: str | None = None) -> LoadedCompare:
    """Parse a compare YAML strictly (file:line errors); with ``quick``, apply its ``quick:`` section;
    ``device`` (``--device``) replaces every run's device (where it computes, not what).

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
    ctx = ConfigSource(str(path), lines)
    cfg = build(CompareConfig, data, ctx=ctx)
    cfg.base.resolve_paths(path.parent)
    base = cfg.base.to_dict()
    if device is not None:
        base["device"] = device
    loaded = LoadedCompare(cfg, path, quick)
    for i, spec in enumerate(cfg.specs):
        where = ("methods", str(i), "overrides")
        for seed in cfg.seeds:
            merged = deep_merge(base, expand_scalar_sections(RunConfig, method_overrides(spec)))
            merged.update(name=f"{cfg.name}-{spec.label}", seed=seed)
            run_cfg = build(RunConfig, merged, ctx=ctx, path=where).resolve_paths(path.parent)
            check = get_method(spec.kind).check
            if check is not None:
                try:
                    check(run_cfg, spec)
                except ValueError as exc:
                    raise ctx.error(("methods", str(i), "replay"), str(exc)) from None
            loaded.run_configs[(spec.label, seed)] = run_cfg
    return loaded


def describe(loaded: LoadedCompare) -> list[dict[str, Any]]:
    """One row per method: kind, adapter, rounds, lr, epochs (for the CLI's plan and the report)."""
    rows = []
    for spec in loaded.config.specs:
        rc = loaded.run_configs[(spec.label, loaded.config.seeds[0])]
        trains = get_method(spec.kind).trains
        rows.append({"method": spec.label, "kind": spec.kind, "adapter": rc.adapter.kind if trains else "none",
                     "rounds": rc.rounds.max_rounds if trains else 0, "lr": rc.train.lr,
                     "epochs": rc.train.epochs, "batch": rc.train.batch_size * rc.train.grad_accum,
                     "train": dataclasses.asdict(rc.train)})
    return rows
