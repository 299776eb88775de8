"""`aptune compare`: shipped configs parse, finished runs are reused (no training the second
time), the report's HTML shows the tables and images that exist, deltas are paired on items."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from aptune.compare import describe, load_compare_config, run_compare
from aptune.compare.runner import _eval_key, finished_round0
from aptune.io import read_json, write_json_atomic
from aptune.run.driver import Run
from aptune.run.run_dir import RunDir
from aptune.report.compare_plots import pareto_front
from aptune.report.compare_report import write_compare_report
from aptune.report.compare_runs import SeedRun, load_seed_run
from aptune.report.compare_stats import accuracy_and_delta, loglik_delta
from test_methods import write_compare_config

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "configs").glob("compare-*.yaml"))


# ----------------------------------------------------------------------------- shipped configs
def test_compare_configs_are_shipped():
    names = {p.name for p in SHIPPED}
    assert {"compare-science.yaml", "compare-medical.yaml", "compare-legal-gci.yaml"} <= names


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_compare_config_parses(path: Path, quick: bool):
    if quick and not re.search(r"^quick:", path.read_text(), re.M):
        pytest.skip(f"{path.name} has no quick profile")
    loaded = load_compare_config(path, quick=quick)
    cfg = loaded.config
    assert len(loaded.run_configs) == len(cfg.specs) * len(cfg.seeds)
    assert "base" in {s.kind for s in cfg.specs}
    rows = describe(loaded)
    assert all(r["lr"] > 0 for r in rows)
    if quick:
        assert cfg.seeds == [cfg.seeds[0]], "the quick profile runs one seed"
    else:
        assert len(cfg.seeds) >= 3, "committed tables use 3 seeds"
        for rc in loaded.run_configs.values():
            held_out = rc.domain_eval
            assert held_out.split == "test" and rc.general_eval.split == "test"


def test_science_config_has_a_forgetting_budget():
    loaded = load_compare_config(REPO / "configs" / "compare-science.yaml")
    kinds = {s.label: s for s in loaded.config.specs}
    forget = [s for s in kinds.values() if s.kind == "sft-lora" and s.label != "sft-lora"]
    assert forget, "a documented sft-lora budget meant to forget"
    hot = loaded.run_configs[(forget[0].label, loaded.config.seeds[0])].train
    plain = loaded.run_configs[("sft-lora", loaded.config.seeds[0])].train
    assert hot.lr * hot.epochs > plain.lr * plain.epochs


def test_legal_config_has_the_forgetting_budget_the_probe_measured():
    """compare-legal-gci carries the budget that cost general accuracy in the legal probe
    (docs/results.md, section 9), with the probe's settings."""
    legal = load_compare_config(REPO / "configs" / "compare-legal-gci.yaml")
    probe = load_compare_config(REPO / "configs" / "probes" / "forgetting-legal.yaml")
    seed = legal.config.seeds[0]
    here, there = legal.run_configs[("sft-lora-forget", seed)], probe.run_configs[("sft-lora-forget-lr6e-3", seed)]
    assert (here.train.lr, here.train.epochs, here.adapter) == (there.train.lr, there.train.epochs, there.adapter)
    assert here.train.lr > 10 * legal.run_configs[("sft-lora", seed)].train.lr


def test_legal_probe_trains_apt_at_the_forgetting_budget():
    """The probe's APT entry uses the forgetting SFT budget's adapter and rate, and its rounds
    add up to the same passes over a pool-sized pair set, so a general-accuracy difference between
    the two cannot be the budget."""
    probe = load_compare_config(REPO / "configs" / "probes" / "forgetting-legal.yaml")
    seed = probe.config.seeds[0]
    apt, sft = probe.run_configs[("apt-lora-lr6e-3", seed)], probe.run_configs[("sft-lora-forget-lr6e-3", seed)]
    assert (apt.adapter, apt.train.lr) == (sft.adapter, sft.train.lr)
    assert apt.rounds.max_rounds * apt.train.epochs == sft.train.epochs
    assert "apt-lora-lr6e-3:sft-lora-forget-lr6e-3" in probe.config.versus


def test_legal_config_has_an_sft_control_at_apts_step_budget():
    """APT trains max_rounds rounds on a pool-sized pair set; one SFT entry gets the same number
    of passes, so an APT gain over SFT cannot be the larger budget alone."""
    loaded = load_compare_config(REPO / "configs" / "compare-legal-gci.yaml")
    seed = loaded.config.seeds[0]
    apt = loaded.run_configs[("apt-alora", seed)]
    controls = [s for s in loaded.config.specs if s.kind == "sft-alora" and s.label != "sft-alora"]
    assert controls, "a budget-matched sft-alora entry"
    control = loaded.run_configs[(controls[0].label, seed)]
    assert control.train.epochs == apt.rounds.max_rounds * apt.train.epochs
    assert control.train.lr == apt.train.lr and control.adapter == apt.adapter
    quick = {s.label for s in load_compare_config(REPO / "configs" / "compare-legal-gci.yaml", quick=True).config.specs}
    assert controls[0].label not in quick  # the quick profile stays a smoke test of the five GCI methods


@pytest.mark.parametrize("name", ["compare-science.yaml", "compare-medical.yaml"])
def test_config_has_an_sft_control_near_apts_step_budget(name: str):
    """APT's pair sets shrink round by round (weakness cases + neighbours), so its steps are not a
    fixed multiple of SFT's; the control is sft-lora with one more epoch and nothing else changed,
    and the report sets APT against it."""
    loaded = load_compare_config(REPO / "configs" / name)
    seed = loaded.config.seeds[0]
    plain = loaded.run_configs[("sft-lora", seed)]
    control = loaded.run_configs[("sft-lora-2ep", seed)]
    assert control.train.epochs == 2 * plain.train.epochs
    assert control.train.lr == plain.train.lr and control.adapter == plain.adapter
    assert "apt-lora:sft-lora-2ep" in loaded.config.versus
    quick = load_compare_config(REPO / "configs" / name, quick=True).config
    assert "sft-lora-2ep" not in {s.label for s in quick.specs}  # the quick profile stays a smoke test


# ----------------------------------------------------------------------------- reuse and report
def _compare(loaded, out: Path, **kwargs):  # noqa: ANN001, ANN202
    """What `aptune compare` does: run (or reuse) every run, then draw the report."""
    outcomes = run_compare(loaded, out, **kwargs)
    write_compare_report(out)
    return outcomes


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("compare")
    path = write_compare_config(folder, ["base", "sft-lora", "apt-lora"], seeds=[0, 1],
                                quick={"seeds": [5], "base": {"pool": {"limit": 12}}})
    out = folder / "out"
    first = _compare(load_compare_config(path), out, progress=False)
    return path, out, first


def _train_mtimes(out: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in out.rglob("train_result.json")}


def test_second_invocation_reuses_every_run_without_training(compared, monkeypatch: pytest.MonkeyPatch):
    path, out, first = compared
    assert not any(o.reused for o in first)
    before = _train_mtimes(out)
    assert len(before) == 4  # sft-lora and apt-lora, two seeds each

    def boom(*args, **kwargs):
        raise AssertionError("a reused run must not train or load a model")

    monkeypatch.setattr("aptune.methods.sft.train_sft", boom)
    monkeypatch.setattr("aptune.methods.preference.train_preference", boom)
    monkeypatch.setattr("aptune.run.driver.load_model", boom)
    second = _compare(load_compare_config(path), out, progress=False)
    assert all(o.reused for o in second) and len(second) == len(first)
    assert _train_mtimes(out) == before
    assert [o.wall_s for o in second] == [o.wall_s for o in first]


def test_unfinished_run_resumes_at_its_missing_stage(compared, monkeypatch: pytest.MonkeyPatch):
    path, out, _ = compared
    root = out / "sft-lora" / "seed-1"
    (root / "compare_run.json").unlink()
    (root / "round-1" / "eval" / "metrics.json").unlink()
    (root / "round-1" / "decision.json").unlink()
    before = _train_mtimes(out)
    monkeypatch.setattr("aptune.methods.sft.train_sft", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    outcomes = _compare(load_compare_config(path), out, progress=False)
    assert [(o.method, o.seed) for o in outcomes if not o.reused] == [("sft-lora", 1)]
    assert (root / "round-1" / "eval" / "metrics.json").exists()
    assert _train_mtimes(out) == before
    # Its wall time is the sum of its stages, the training timed in the first invocation included;
    # the round-0 evaluation it copied from base costs it nothing.
    stages = read_json(root / "manifest.json")["stages"]
    assert stages["round-0/eval"]["seconds"] == 0.0 and stages["round-1/train"]["seconds"] > 0
    run = load_seed_run("sft-lora", 1, root)
    assert run.wall_s == pytest.approx(sum(st["seconds"] for st in stages.values()))
    assert not run.wall_partial


def test_untimed_resumed_run_reports_its_wall_time_as_a_lower_bound():
    """Runs from before stages were timed: the marker's wall time covers only the last
    invocation, which is all of the run unless a stage finished before that invocation began."""
    from aptune.report.compare_runs import run_wall

    marker = {"wall_s": 100.0, "finished": "2026-01-01T12:00:00"}
    copied = {"finished": "2026-01-01T10:00:00", "copied_from": "base/seed-0"}
    assert run_wall(marker, {"round-0/eval": copied, "round-1/train": {"finished": "2026-01-01T11:59:00"}}) == (100.0, False)
    assert run_wall(marker, {"round-0/eval": copied, "round-1/train": {"finished": "2026-01-01T11:00:00"}}) == (100.0, True)
    timed = {"round-0/eval": {**copied, "seconds": 0.0}, "round-1/train": {"finished": "2026-01-01T11:00:00", "seconds": 70.5}}
    assert run_wall(marker, timed) == (70.5, False)


def test_html_has_the_table_and_existing_images(compared):
    _, out, _ = compared
    page = (out / "compare.html").read_text()
    assert page.count("<table>") >= 3
    assert "Δ domain vs base" in page and "majority-pos" in page
    for method in ("base", "sft-lora", "apt-lora"):
        assert f"<td>{method}</td>" in page
    images = re.findall(r'<img src="([^"]+)"', page)
    assert "plots/pareto.png" in images
    for src in images:
        assert (out / src).stat().st_size > 1000, src
    md = (out / "compare.md").read_text()
    assert "| method |" in md and "![domain change against general change](plots/pareto.png)" in md
    assert "None/task" not in md and "every item" in md  # the setting line spells an unlimited split
    results = read_json(out / "compare-results.json")
    base = next(m for m in results["methods"] if m["method"] == "base")
    assert base["domain_delta"]["value"] == 0.0 and base["train"] == {}
    sft = next(m for m in results["methods"] if m["method"] == "sft-lora")
    assert sft["train"]["steps"] > 0 and sft["train"]["tokens"] > 0 and sft["wall_s"] > 0
    assert sft["domain_majority_baseline"] is not None
    # the gold-answer likelihood change sits beside accuracy, for every MC item of both views
    assert "<h2>Likelihood of the gold answers</h2>" in page and "## Likelihood of the gold answers" in md
    assert base["general_loglik_delta"]["value"] == 0.0
    # items lost and gained against round 0: none for the untrained base, its counts consistent with Δ
    assert "## Items lost and gained" in md and "<h2>Items lost and gained</h2>" in page
    assert base["interference"]["domain"]["lost"]["value"] == 0.0 and base["interference"]["domain"]["gained"]["value"] == 0.0
    change = sft["interference"]["domain"]
    assert change["gained"]["value"] - change["lost"]["value"] == pytest.approx(sft["domain_delta"]["value"])
    assert sft["general_loglik_delta"]["n"] == sft["general"]["n"] and np.isfinite(sft["general_loglik_delta"]["value"])


def test_folder_from_before_a_new_config_field_is_reused(compared, monkeypatch: pytest.MonkeyPatch):
    """Upgrading aptune adds schema fields; a compare folder written before (its compare.json and
    run manifests lack the key) is reused as long as the new field is at its default."""
    path, out, _ = compared
    meta = read_json(out / "compare.json")
    del meta["base"]["train"]["packed"]
    write_json_atomic(out / "compare.json", meta)
    for manifest_path in out.rglob("manifest.json"):
        manifest = read_json(manifest_path)
        del manifest["config"]["train"]["packed"]
        write_json_atomic(manifest_path, manifest)
    monkeypatch.setattr("aptune.methods.sft.train_sft", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    monkeypatch.setattr("aptune.methods.preference.train_preference", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert all(o.reused for o in _compare(load_compare_config(path), out, progress=False))


def test_changed_base_config_needs_a_new_folder(compared, tmp_path: Path):
    path, out, _ = compared
    with pytest.raises(ValueError, match=r"different base config \(changed: pool\.limit\)"):
        _compare(load_compare_config(path, quick=True), out, progress=False)


def test_quick_section_overrides_the_file(compared):
    path, _, _ = compared
    loaded = load_compare_config(path, quick=True)
    assert loaded.config.seeds == [5]
    assert loaded.run_configs[("sft-lora", 5)].pool.limit == 12
    assert loaded.run_configs[("sft-lora", 5)].train.lr == 0.05  # untouched keys stay


# ----------------------------------------------------------------------------- statistics
def _seed_run(seed: int, before: dict[str, bool], after: dict[str, bool]) -> SeedRun:
    run = SeedRun("m", seed, Path("."), 1)
    run.before = {"domain": {("domain/t", k): v for k, v in before.items()}}
    run.after = {"domain": {("domain/t", k): v for k, v in after.items()}}
    run.gold_hist = {"domain": Counter({0: 3, 1: 1})}
    return run


def test_paired_delta_uses_only_items_evaluated_before_and_after():
    """Items a..d before, b..e after: Δ is over b, c, d only: (1-0)+(1-1)+(0-0) / 3 = 1/3."""
    run = _seed_run(0, {"a": True, "b": False, "c": True, "d": False}, {"b": True, "c": True, "d": False, "e": True})
    acc, delta = accuracy_and_delta([run], "domain")
    assert delta.n == acc.n == 3
    assert delta.value == pytest.approx(1 / 3)
    assert acc.value == pytest.approx(2 / 3)
    assert delta.low <= delta.value <= delta.high


def test_paired_delta_averages_each_item_over_seeds():
    """Item x: +1 in seed 0, 0 in seed 1 -> +0.5; item y: 0 and -1 -> -0.5; mean 0."""
    s0 = _seed_run(0, {"x": False, "y": True}, {"x": True, "y": True})
    s1 = _seed_run(1, {"x": True, "y": True}, {"x": True, "y": False})
    acc, delta = accuracy_and_delta([s0, s1], "domain")
    assert delta.n == 2 and delta.value == pytest.approx(0.0)
    assert acc.value == pytest.approx(np.mean([1.0, 0.5]))


def test_lost_and_gained_items_are_counted_per_item_and_averaged_over_seeds():
    """Seed 0 loses y and gains x; seed 1 loses x: x lost in 1 of 2 seeds (0.5), y in 1 of 2
    (0.5), so 0.5 of the items are lost on average, although seed 0's accuracy is unchanged."""
    from aptune.report.compare_stats import lost_and_gained

    s0 = _seed_run(0, {"x": False, "y": True}, {"x": True, "y": False})
    s1 = _seed_run(1, {"x": True, "y": True}, {"x": False, "y": True})
    lost, gained, lost_per_seed, gained_per_seed = lost_and_gained([s0, s1], "domain")
    assert lost.n == gained.n == 2 and lost.value == pytest.approx(0.5) and gained.value == pytest.approx(0.25)
    assert (lost_per_seed, gained_per_seed) == (1.0, 0.5)
    assert accuracy_and_delta([s0], "domain")[1].value == pytest.approx(0.0)  # the average hides it
    assert lost_and_gained([s0], "general")[0].n == 0


def test_gold_loglik_change_is_paired_and_averaged_over_seeds():
    """Item x: -2 in seed 0, -4 in seed 1 -> -3; item y (seed 0 only): +1; item z has no after."""
    s0, s1 = SeedRun("m", 0, Path("."), 1), SeedRun("m", 1, Path("."), 1)
    s0.loglik_before = {"general": {("general/t", "x"): -5.0, ("general/t", "y"): -3.0, ("general/t", "z"): -1.0}}
    s0.loglik_after = {"general": {("general/t", "x"): -7.0, ("general/t", "y"): -2.0}}
    s1.loglik_before = {"general": {("general/t", "x"): -5.0}}
    s1.loglik_after = {"general": {("general/t", "x"): -9.0}}
    change = loglik_delta([s0, s1], "general")
    assert change.n == 2 and change.value == pytest.approx(-1.0)
    assert change.low <= change.value <= change.high
    assert loglik_delta([s0], "domain").n == 0 and loglik_delta([s0], "domain").nats() == "–"


def test_pareto_front():
    pts = [(0.0, 0.0), (1.0, -1.0), (-1.0, 2.0), (-2.0, 1.0), (0.5, 0.5)]
    assert pareto_front(pts) == [2, 4, 1]


# ----------------------------------------------------------------------------- CLI
def _aptune(*args: str) -> list[str]:
    return [sys.executable, "-m", "aptune.cli", *args]


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def test_cli_compare_runs_then_reuses(tmp_path: Path):
    path = write_compare_config(tmp_path, ["base", "sft-lora"])
    out = tmp_path / "out"
    first = subprocess.run(_aptune("compare", str(path), "--out", str(out)), env=ENV, capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "[sft-lora seed 0] running" in first.stdout and "compare.html" in first.stdout
    second = subprocess.run(_aptune("compare", str(path), "--out", str(out)), env=ENV, capture_output=True,
                            text=True, timeout=600)
    assert second.returncode == 0 and "[sft-lora seed 0] reused" in second.stdout
    redraw = subprocess.run(_aptune("compare-report", str(out)), env=ENV, capture_output=True, text=True, timeout=120)
    assert redraw.returncode == 0 and "| sft-lora |" in redraw.stdout


def test_report_of_some_seeds_and_methods_goes_to_its_own_folder(compared, tmp_path: Path):
    _, out, _ = compared
    full_before = (out / "compare.md").read_text()
    dest = tmp_path / "seed1"
    write_compare_report(out, dest, seeds=[1], methods=["base", "sft-lora"])
    md = (dest / "compare.md").read_text()
    assert "Seeds 1." in md and "| sft-lora | 1 |" in md and "apt-lora" not in md
    assert "| sft-lora | 0 |" not in md  # the per-seed table holds seed 1 only
    results = read_json(dest / "compare-results.json")
    assert results["seeds"] == [1] and [m["method"] for m in results["methods"]] == ["base", "sft-lora"]
    assert all(m["seeds"] == [1] for m in results["methods"])
    for src in re.findall(r'<img src="([^"]+)"', (dest / "compare.html").read_text()):
        assert (dest / src).stat().st_size > 1000, src
    assert (out / "compare.md").read_text() == full_before  # the folder's own report is untouched
    with pytest.raises(ValueError, match="seed 7 is not in"):
        write_compare_report(out, dest, seeds=[7])
    with pytest.raises(ValueError, match="'nope' is not a method"):
        write_compare_report(out, dest, methods=["nope"])
    proc = subprocess.run(_aptune("compare-report", str(out), "--seeds", "1"), env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "--to" in proc.stderr and proc.stderr.strip().count("\n") == 0


def test_cli_quick_without_a_quick_section_is_a_one_line_error(tmp_path: Path):
    path = write_compare_config(tmp_path, ["base"])
    proc = subprocess.run(_aptune("compare", str(path), "--quick", "--out", str(tmp_path / "o")), env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "quick" in proc.stderr and str(path) in proc.stderr


def test_report_redraws_while_runs_are_missing(compared, tmp_path: Path):
    _, out, _ = compared
    meta = read_json(out / "compare.json")
    meta["methods"].append({"kind": "dpo-all", "name": "dpo-all", "overrides": {}, "replay": {}})
    partial = tmp_path / "partial"
    import shutil

    shutil.copytree(out, partial)
    from aptune.io import write_json_atomic

    write_json_atomic(partial / "compare.json", meta)
    write_compare_report(partial)
    assert "Not finished yet: dpo-all/seed-0, dpo-all/seed-1" in (partial / "compare.md").read_text()


def test_gci_table_pools_each_group_view_cell_over_its_tasks():
    """GCI tasks sit in the run's domain view (domain + integrated) and general view. Cell
    reasoning/general pools arith (2 items, both newly right) and words (2 items, unchanged):
    Δ = (1 + 1 + 0 + 0) / 4 = 0.5; reasoning/integrated: one item lost, one kept: Δ = -0.5.
    The cell's majority-position baseline pools its tasks' gold positions: arith golds at A, A and
    words golds at A, B -> always-A is right on 3 of 4 (75%), not either task's own majority."""
    from aptune.data.registry import task_groups
    from aptune.report.compare_report import group_table
    from aptune.report.compare_stats import summarize

    run = SeedRun("m", 0, Path("."), 1)
    run.before = {"domain": {("domain/gci_reasoning_integrated", "a"): True, ("domain/gci_reasoning_integrated", "b"): True,
                             ("domain/gci_ethics_domain", "c"): False},
                  "general": {("general/gci_reasoning_general_arith", "d"): False,
                              ("general/gci_reasoning_general_arith", "e"): False,
                              ("general/gci_reasoning_general_words", "f"): True,
                              ("general/gci_reasoning_general_words", "g"): False}}
    run.after = {"domain": {("domain/gci_reasoning_integrated", "a"): False, ("domain/gci_reasoning_integrated", "b"): True,
                            ("domain/gci_ethics_domain", "c"): True},
                 "general": {("general/gci_reasoning_general_arith", "d"): True,
                             ("general/gci_reasoning_general_arith", "e"): True,
                             ("general/gci_reasoning_general_words", "f"): True,
                             ("general/gci_reasoning_general_words", "g"): False}}
    run.gold_hist = {"general/gci_reasoning_general_arith": Counter({0: 2}),
                     "general/gci_reasoning_general_words": Counter({0: 1, 1: 1}),
                     "domain/gci_reasoning_integrated": Counter({0: 1, 1: 1}),
                     "domain/gci_ethics_domain": Counter({2: 1})}
    summary = summarize("m", "sft-lora", [run])
    gci = summary.groups["gci"]  # the GCI suite's task groups, declared in the task registry
    assert set(gci) == {("reasoning", "general"), ("reasoning", "integrated"), ("ethics", "domain")}
    acc, delta = gci[("reasoning", "general")]
    assert (acc.n, acc.value, delta.value) == (4, 0.75, 0.5)
    acc, delta = gci[("reasoning", "integrated")]
    assert (acc.n, acc.value, delta.value) == (2, 0.5, -0.5)
    header, rows = group_table([summary], task_groups("gci"))
    assert header[1:] == ["reasoning / general acc % [95% CI] (Δ)", "reasoning / integrated acc % [95% CI] (Δ)",
                          "ethics / domain acc % [95% CI] (Δ)"]
    assert rows[0][0] == "m" and "(+50.0" in rows[0][1] and "(-50.0" in rows[0][2]
    assert rows[-2] == ["majority-position baseline", "75.0", "50.0", "100.0"]
    assert rows[-1] == ["distinct items (first row's seeds)", "4", "2", "1"]
    assert summary.to_dict()["gci_majority_baseline"] == {"reasoning/general": 0.75, "reasoning/integrated": 0.5,
                                                          "ethics/domain": 1.0}
    assert summary.domain_per_task["gci_ethics_domain"][1].value == 1.0


def test_report_without_gci_tasks_has_no_gci_table(compared):
    _, out, _ = compared
    md = (out / "compare.md").read_text()
    assert "## Domain tasks" in md and "## GCI" not in md


def test_methods_and_seeds_select_runs_and_the_report_lists_the_rest(tmp_path: Path):
    path = write_compare_config(tmp_path, ["base", "sft-lora", "apt-lora"], seeds=[0, 1])
    out = tmp_path / "out"
    done = _compare(load_compare_config(path), out, progress=False, methods=["sft-lora"], seeds=[1])
    assert [(o.method, o.seed) for o in done] == [("sft-lora", 1)]
    assert not (out / "base").exists() and not (out / "sft-lora" / "seed-0").exists()
    md = (out / "compare.md").read_text()
    assert "| sft-lora |" in md and "Not finished yet: base/seed-0, base/seed-1, sft-lora/seed-0" in md
    with pytest.raises(ValueError, match="'dpo-all' is not a method"):
        _compare(load_compare_config(path), out, progress=False, methods=["dpo-all"])
    with pytest.raises(ValueError, match="seed 7 is not in"):
        _compare(load_compare_config(path), out, progress=False, seeds=[7])


def test_a_later_invocation_copies_round0_from_a_run_an_earlier_one_finished(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    """``--methods base`` first, ``--methods sft-lora`` later: the second copies base's round-0
    evaluation instead of scoring the same items again; a method whose settings changed since
    (another method.json) is no donor."""
    path = write_compare_config(tmp_path, ["base", "sft-lora", "apt-lora"])
    out = tmp_path / "out"
    _compare(load_compare_config(path), out, progress=False, methods=["base"])
    base_eval = out / "base" / "seed-0" / "round-0" / "eval" / "metrics.json"
    calls: list[int] = []
    real = Run.stage_eval

    def counted(self, round_index: int, model=None):  # noqa: ANN001, ANN202
        calls.append(round_index)
        return real(self, round_index, model)

    monkeypatch.setattr(Run, "stage_eval", counted)
    _compare(load_compare_config(path), out, progress=False, methods=["sft-lora"])
    assert calls == [1], "round 0 was evaluated again"
    stages = read_json(out / "sft-lora" / "seed-0" / "manifest.json")["stages"]
    assert stages["round-0/eval"]["copied_from"] == "base/seed-0"
    copied = out / "sft-lora" / "seed-0" / "round-0" / "eval" / "metrics.json"
    assert copied.read_bytes() == base_eval.read_bytes()

    write_json_atomic(out / "base" / "seed-0" / "method.json", {"kind": "base", "name": "other"})
    loaded = load_compare_config(path)
    assert finished_round0(loaded, out, [0]) == {_eval_key(loaded.run_configs[("sft-lora", 0)]): RunDir(out / "sft-lora" / "seed-0")}


def test_cli_bad_methods_selection_is_a_one_line_error(tmp_path: Path):
    path = write_compare_config(tmp_path, ["base"])
    proc = subprocess.run(_aptune("compare", str(path), "--methods", "nope", "--out", str(tmp_path / "o")), env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "'nope' is not a method" in proc.stderr


def test_cli_plan_lists_only_the_selected_methods_and_seeds(tmp_path: Path):
    path = write_compare_config(tmp_path, ["base", "sft-lora"], seeds=[0, 1])
    proc = subprocess.run(_aptune("compare", str(path), "--methods", "base", "--seeds", "1", "--out", str(tmp_path / "o")),
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    plan = proc.stdout.split("[base seed 1]")[0]
    assert "1 methods x seeds [1]" in plan and "  base: base" in plan and "sft-lora:" not in plan


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "probes").glob("*.yaml")), ids=lambda p: p.name)
def test_probe_configs_parse(path: Path):
    loaded = load_compare_config(path)
    assert "base" in {s.kind for s in loaded.config.specs} and describe(loaded)


def test_report_warns_when_methods_cover_different_seeds():
    from types import SimpleNamespace

    from aptune.report.compare_report import seed_coverage_note

    same = [SimpleNamespace(method="base", seeds=[0, 1]), SimpleNamespace(method="sft-lora", seeds=[0, 1])]
    assert seed_coverage_note(same) is None
    mixed = [SimpleNamespace(method="base", seeds=[0, 1]), SimpleNamespace(method="sft-lora", seeds=[0])]
    note = seed_coverage_note(mixed)
    assert note is not None and "base: 0, 1; sft-lora: 0" in note and "Δ columns compare" in note


def test_report_flags_a_run_whose_training_loss_ended_above_its_start(compared, tmp_path: Path):
    import shutil

    _, out, _ = compared
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for seed, losses in ((0, [4.0, 30.0, 9.0, 7.0]), (1, [4.0, 30.0, 9.0, 2.0])):  # seed 0 settled above 4.0
        log_file = copy / "sft-lora" / f"seed-{seed}" / "round-1" / "train" / "train_metrics.jsonl"
        assert log_file.exists()
        log_file.write_text("".join(json.dumps({"step": i + 1, "loss": v}) + "\n" for i, v in enumerate(losses)))
    write_compare_report(copy)
    md, page = (copy / "compare.md").read_text(), (copy / "compare.html").read_text()
    for text in (md, page):
        assert "Training loss ended above where it started" in text and "sft-lora/seed-0 round 1" in text
        assert "sft-lora/seed-1" not in text
    flagged = read_json(copy / "compare-results.json")["loss_rose"]
    assert "sft-lora/seed-0/round-1" in flagged and "sft-lora/seed-1/round-1" not in flagged


def test_position_collapses_need_most_answers_on_one_option_and_enough_items():
    from aptune.report.compare_stats import method_collapses

    def run(method: str, seed: int, pred: dict[str, Counter]) -> SeedRun:
        r = SeedRun(method, seed, Path("."), 1)
        r.pred_hist = {**pred, "general": sum(pred.values(), Counter())}
        r.gold_hist = {t: Counter({0: 3, 1: 7}) for t in pred}
        return r

    a = [run("a", 0, {"general/boolq": Counter({1: 5}), "general/piqa": Counter({0: 4, 1: 6})}),
         run("a", 1, {"general/boolq": Counter({1: 4, 0: 1}), "general/piqa": Counter({0: 5, 1: 5})})]
    (found,) = method_collapses("a", a)  # 9 of 10 boolq answers over the two seeds are B; piqa is split
    assert method_collapses("b", [run("b", 0, {"general/boolq": Counter({1: 9})})]) == []  # 9 items: too few
    assert (found.method, found.task, found.position) == ("a", "general/boolq", 1)
    assert found.share == pytest.approx(0.9) and found.gold_share == pytest.approx(0.7)
    assert "B on 90% of items; gold is B on 70%" in found.describe()


def test_pooled_figures_without_the_collapsed_tasks_leave_out_the_same_tasks_for_every_method():
    """Method a collapsed on boolq. Without it, a's general pool is piqa alone: item p1 right
    before and after, p2 wrong -> right: accuracy 2/2, Δ (0 + 1) / 2 = +0.5. Method b did not
    collapse, yet its row leaves boolq out too (p1 right -> wrong, p2 wrong: accuracy 0, Δ -0.5);
    its boolq items, which would lift its pool, do not count."""
    from aptune.report.compare_report import collapse_free_table
    from aptune.report.compare_stats import Collapse, collapsed_tasks, summarize, without_tasks

    def run(method: str, before: dict[str, bool], after: dict[str, bool]) -> SeedRun:
        """Item ids p* are piqa items, b* boolq items."""
        task = {"p": "general/piqa", "b": "general/boolq"}
        r = SeedRun(method, 0, Path("."), 1)
        r.before = {"general": {(task[i[0]], i): v for i, v in before.items()}}
        r.after = {"general": {(task[i[0]], i): v for i, v in after.items()}}
        return r

    runs = [run("a", {"p1": True, "p2": False, "b1": False}, {"p1": True, "p2": True, "b1": True}),
            run("b", {"p1": True, "p2": False, "b1": False, "b2": False}, {"p1": False, "p2": False, "b1": True, "b2": True})]
    collapses = [Collapse("a", "general/boolq", 1, 1.0, 0.7)]
    assert collapsed_tasks(collapses, "general") == ["general/boolq"] and collapsed_tasks(collapses, "domain") == []
    acc, delta = without_tasks(runs[:1], "general", ["general/boolq"])
    assert (acc.value, delta.value, acc.n) == (1.0, 0.5, 2)
    acc, delta = without_tasks(runs[1:], "general", ["general/boolq"])
    assert (acc.value, delta.value, acc.n) == (0.0, -0.5, 2)
    assert without_tasks(runs[:1], "general", ["general/boolq", "general/piqa"])[0].n == 0  # nothing kept

    summaries = [summarize("a", "sft-lora", runs[:1]), summarize("b", "sft-lora", runs[1:])]
    header, rows, data = collapse_free_table(summaries, runs, collapses)
    assert header[1] == "general acc % without boolq [95% CI]" and len(header) == 4  # no domain columns
    assert [r[0] for r in rows] == ["a", "b"] and rows[0][2].startswith("+50.0") and rows[1][2].startswith("-50.0")
    assert data["left_out"] == {"general": ["general/boolq"]}
    assert data["methods"]["b"]["general"]["delta"]["value"] == -0.5
    assert collapse_free_table(summaries, runs, []) is None


def test_report_names_a_final_model_that_answers_one_option(compared, tmp_path: Path):
    import shutil

    _, out, _ = compared
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for seed in (0, 1):
        path = copy / "sft-lora" / f"seed-{seed}" / "round-1" / "eval" / "metrics.json"
        metrics = read_json(path)
        task = sorted(t for t in metrics["tasks"] if t.startswith("general/"))[0]
        metrics["tasks"][task]["positions"]["predicted_histogram"] = {"1": 10}
        path.write_text(json.dumps(metrics))
    write_compare_report(copy)
    md, page = (copy / "compare.md").read_text(), (copy / "compare.html").read_text()
    for text in (md, page):
        assert "Predictions collapsed onto one option" in text and f"sft-lora on {task} (B on 100%" in text

    def named(folder: Path) -> set[tuple[str, str]]:
        return {(c["method"], c["task"]) for c in read_json(folder / "compare-results.json")["position_collapses"]}

    # the edited task is named; nothing else changed (the tiny models may collapse on their own)
    assert named(copy) - {("sft-lora", task)} == named(out) - {("sft-lora", task)}
    entry = next(c for c in read_json(copy / "compare-results.json")["position_collapses"] if c["method"] == "sft-lora"
                 and c["task"] == task)
    assert (entry["position"], entry["share"]) == (1, 1.0)
    # and the pooled figures come again without that task, for every method
    for text in (md, page):
        assert "Without the collapsed tasks" in text and f"general acc % without {Path(task).name}" in text
    free = read_json(copy / "compare-results.json")["without_collapsed"]
    assert task in free["left_out"]["general"] and set(free["methods"]) == {"base", "sft-lora", "apt-lora"}


# ----------------------------------------------------------------------------- head to head
def _final(method: str, seed: int, correct: dict[str, bool], loglik: dict[str, float] | None = None) -> SeedRun:
    run = SeedRun(method, seed, Path("."), 1)
    run.after = {"domain": {("domain/t", k): v for k, v in correct.items()}}
    run.loglik_after = {"domain": {("domain/t", k): v for k, v in (loglik or {}).items()}}
    return run


def test_versus_pairs_final_models_on_common_items_and_seeds():
    """A and B at seeds 0 and 1 (B also at 2, which A lacks): item x: A-B = +1 at seed 0, 0 at seed 1
    -> +0.5; item y: -1 and -1 -> -1; item z (only A has it at seed 0) is left out. Mean -0.25."""
    from aptune.report.compare_versus import versus

    runs = [_final("a", 0, {"x": True, "y": False, "z": True}, {"x": -1.0, "y": -4.0}),
            _final("a", 1, {"x": True, "y": False}),
            _final("b", 0, {"x": False, "y": True}, {"x": -3.0, "y": -4.0}),
            _final("b", 1, {"x": True, "y": True}),
            _final("b", 2, {"x": False, "y": False})]
    v = versus("a", "b", runs)
    assert v.seeds == [0, 1]
    assert v.domain.n == 2 and v.domain.value == pytest.approx(-0.25)
    assert v.domain.low <= v.domain.value <= v.domain.high
    assert v.domain_loglik.n == 2 and v.domain_loglik.value == pytest.approx(1.0)  # (+2 + 0) / 2
    assert v.general.n == 0 and v.general.pct(True) == "–"
    assert v.per_seed[0][0].value == pytest.approx(0.0) and v.per_seed[1][0].value == pytest.approx(-0.5)
    assert versus("a", "nobody", runs).seeds == [] and versus("a", "nobody", runs).domain.n == 0


def test_report_pairs_default_to_sft_lora_then_the_asked_ones():
    from aptune.report.compare_versus import report_pairs

    methods = ["base", "sft-lora", "apt-lora", "sft-alora-2ep"]
    assert report_pairs(methods) == [("apt-lora", "sft-lora"), ("sft-alora-2ep", "sft-lora")]
    asked = ["apt-lora:sft-alora-2ep", "apt-lora:sft-lora", "apt-lora:dpo-all"]  # a repeat; one not reported
    assert report_pairs(methods, asked) == [("apt-lora", "sft-lora"), ("sft-alora-2ep", "sft-lora"),
                                            ("apt-lora", "sft-alora-2ep")]
    assert report_pairs(["base", "apt-lora"]) == []


@pytest.mark.parametrize("text, message", [("apt-lora", "expected METHOD:METHOD"), ("a:b:c", "expected METHOD:METHOD"),
                                           ("sft-lora:sft-lora", "against itself"), ("apt-lora:nope", "'nope'")])
def test_bad_versus_entry_is_a_config_error(tmp_path: Path, text: str, message: str):
    from aptune.config_loader import ConfigError

    path = write_compare_config(tmp_path, ["base", "sft-lora", "apt-lora"], versus=[text])
    with pytest.raises(ConfigError, match=message):
        load_compare_config(path)


def test_report_has_a_head_to_head_table(compared, tmp_path: Path):
    _, out, _ = compared
    dest = tmp_path / "versus"
    write_compare_report(out, dest, versus_pairs=["apt-lora:base"])
    md, page = (dest / "compare.md").read_text(), (dest / "compare.html").read_text()
    for text in (md, page):
        assert "Head to head (paired, same items)" in text
        assert "apt-lora against sft-lora" in text and "apt-lora against base" in text
    rows = {(v["a"], v["b"]): v for v in read_json(dest / "compare-results.json")["versus"]}
    assert set(rows) == {("apt-lora", "sft-lora"), ("apt-lora", "base")}
    # against base, the head-to-head change is the main table's paired Δ (base's final model is round 0)
    apt = next(m for m in read_json(dest / "compare-results.json")["methods"] if m["method"] == "apt-lora")
    assert rows[("apt-lora", "base")]["domain"]["value"] == pytest.approx(apt["domain_delta"]["value"])
    assert rows[("apt-lora", "base")]["seeds"] == [0, 1]
    with pytest.raises(ValueError, match="'nope'"):
        write_compare_report(out, dest, versus_pairs=["apt-lora:nope"])
    proc = subprocess.run(_aptune("compare-report", str(out), "--to", str(dest), "--versus", "apt-lora"), env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "METHOD:METHOD" in proc.stderr and proc.stderr.strip().count("\n") == 0


def test_the_primary_comparison_comes_first_with_seeds_resampled(compared, tmp_path: Path):
    import shutil

    from aptune.compare.compare_dir import CompareDir

    _, out, _ = compared
    copy = tmp_path / "primary"
    shutil.copytree(out, copy)
    meta = read_json(CompareDir(copy).meta)
    write_json_atomic(CompareDir(copy).meta, {**meta, "primary": "apt-lora:sft-lora"})
    write_compare_report(copy)
    md = (copy / "compare.md").read_text()
    assert md.index("## Primary comparison") < md.index("| method |")
    assert md.index("## All methods against the untrained model (exploratory)") < md.index("| method |")
    assert "| apt-lora against sft-lora | 0,1 |" in md and "seeds + items" in md
    assert "## Head to head" not in md  # its one pair is the primary, shown once
    results = read_json(copy / "compare-results.json")
    assert results["primary"]["a"] == "apt-lora" and results["primary"]["domain_seeds_items"]["n"] > 0


def test_seeds_and_items_interval_widens_when_seeds_disagree():
    """Seed 0: A beats B on every item; seed 1: B beats A on every item. Items alone (each item
    averaged over seeds: 0) gives a point interval; seeds + items spans both outcomes."""
    from aptune.report.compare_versus import versus

    items = [str(i) for i in range(40)]
    runs = []
    for seed, a_right in ((0, True), (1, False)):
        for method, right in (("a", a_right), ("b", not a_right)):
            run = SeedRun(method, seed, Path("."), 1)
            run.after = {"domain": {("domain/t", k): right for k in items}}
            runs.append(run)
    v = versus("a", "b", runs)
    assert v.domain.value == 0.0 and v.domain.low == v.domain.high == 0.0
    assert v.domain_seeds_items.value == 0.0 and v.domain_seeds_items.low == -1.0 and v.domain_seeds_items.high == 1.0


def test_one_seed_hierarchical_interval_is_the_item_bootstrap():
    from aptune.evaluate.metrics import bootstrap_mean, hierarchical_bootstrap_mean

    values = [float(i % 3 == 0) for i in range(300)]
    one, plain = hierarchical_bootstrap_mean([values]), bootstrap_mean(values)
    assert one.value == plain.value and abs(one.low - plain.low) < 0.02 and abs(one.high - plain.high) < 0.02


def test_pooled_delta_interval_resamples_seeds_as_well_as_items():
    """Two seeds on the same 40 items: one training run gained 10 items, the other lost 10. The
    pooled change is 0 either way; averaging items over seeds hides the disagreement (every item
    changes by at most 0.5 and most by 0), while resampling seeds shows it: the seeds + items
    interval is wider, and with one seed the two constructions agree."""
    from aptune.evaluate.metrics import paired_bootstrap_delta

    before = {f"i{n}": n % 2 == 0 for n in range(40)}
    up = {k: (True if int(k[1:]) < 20 and not v else v) for k, v in before.items()}  # +10 items
    down = {k: (False if int(k[1:]) >= 20 and v else v) for k, v in before.items()}  # -10 items
    runs = [_seed_run(0, before, up), _seed_run(1, before, down)]
    _, delta = accuracy_and_delta(runs, "domain")
    keys = sorted(before)
    items_only = paired_bootstrap_delta([(up[k] + down[k]) / 2 for k in keys], [float(before[k]) for k in keys])
    assert delta.value == pytest.approx(0.0) == items_only.value
    assert delta.n == 40
    assert delta.high - delta.low > 1.5 * (items_only.high - items_only.low)
    _, one = accuracy_and_delta(runs[:1], "domain")
    alone = paired_bootstrap_delta([float(up[k]) for k in keys], [float(before[k]) for k in keys])
    assert one.value == pytest.approx(alone.value) == pytest.approx(0.25)
