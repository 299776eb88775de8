"""The APT loop end to end on a tiny random model: stages, files, stopping, resume after kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from aptune.methods.apt import APTRun
from aptune.report.apt_report import write_report
from aptune.run.run_dir import config_changes
from aptune.config import load_run_config
from aptune.io import read_json, read_jsonl, write_json_atomic
from tiny import save_tiny, tiny_mc_rows


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def run_config(tmp_path: Path) -> Path:
    """A complete config over a tiny model and tiny task files, written next to its data."""
    model_dir = save_tiny(tmp_path / "model")
    _write_jsonl(tmp_path / "domain.jsonl", tiny_mc_rows(40, seed=1))
    _write_jsonl(tmp_path / "general.jsonl", tiny_mc_rows(20, seed=2))
    cfg = {
        "name": "tiny",
        "model": model_dir,
        "precision": "fp32",
        "seed": 3,
        "pool": {"tasks": ["domain.jsonl"], "split": "train"},
        "dev": {"tasks": ["domain.jsonl"], "split": "dev"},
        "domain_eval": {"tasks": ["domain.jsonl"], "split": "test"},
        "general_eval": {"tasks": ["general.jsonl"], "split": "test"},
        "adapter": {"kind": "lora", "r": 4, "alpha": 8.0},
        "train": {"lr": 0.05, "epochs": 1, "batch_size": 4, "progress": False},
        "rounds": {"max_rounds": 2, "general_tolerance": 1.0, "patience": 5},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _final_metrics(root: Path) -> dict:
    rounds = sorted(int(p.name.split("-")[1]) for p in root.glob("round-*"))
    return {r: read_json(root / f"round-{r}" / "eval" / "metrics.json")["summary"] for r in rounds
            if (root / f"round-{r}" / "eval" / "metrics.json").exists()}


def test_full_run_writes_every_stage_and_report(run_config: Path, tmp_path: Path):
    cfg = load_run_config(run_config)
    root = tmp_path / "run"
    decision = APTRun(cfg, root, progress=False).run()
    assert decision["stop"] is True
    assert not (root / "report.md").exists(), "a run draws no report of its own: the caller does"
    write_report(root)
    for stage in ("answers.jsonl", "weakness.jsonl", "retrieved.jsonl", "pairs.jsonl", "decision.json"):
        assert (root / "round-1" / stage).exists(), stage
    assert (root / "round-1" / "train" / "train_result.json").exists()
    weakness = read_jsonl(root / "round-1" / "weakness.jsonl")
    pairs = read_jsonl(root / "round-1" / "pairs.jsonl")
    retrieved = read_jsonl(root / "round-1" / "retrieved.jsonl")
    weak_ids = {w["id"] for w in weakness}
    assert weakness, "a random tiny model must get some items wrong"
    assert not weak_ids & {r["id"] for r in retrieved}, "weakness cases must not be retrieved"
    assert len(retrieved) <= len(weakness)
    for p in pairs:
        assert p["chosen"] != p["rejected"]
    by_id = {w["id"]: w for w in weakness}
    for p in (p for p in pairs if p["source"] == "weakness"):
        w = by_id[p["id"]]
        assert p["rejected"].strip() == w["answer_text"].strip()  # the model's own wrong answer
    manifest = read_json(root / "manifest.json")
    assert "round-1/train" in manifest["stages"]
    assert "round-start model" in manifest["stages"]["round-1/train"]["reference"]
    report = (root / "report.md").read_text()
    assert "| 1 |" in report and "domain acc" in report
    assert "one SFT epoch on the full pool is" in report
    assert (root / "plots" / "accuracy.png").stat().st_size > 1000
    assert "<table>" in (root / "report.html").read_text()


def test_general_gate_rolls_back_a_round(run_config: Path, tmp_path: Path):
    cfg = load_run_config(run_config, ["rounds.gate=drop"])
    cfg.rounds.general_tolerance = -1.0  # any round "drops" more than -100 points: always trips
    root = tmp_path / "gated"
    decision = APTRun(cfg, root, progress=False).run()
    assert decision == read_json(root / "round-1" / "decision.json")
    assert decision["accepted"] is False and decision["stop"] is True
    assert "general-capability gate" in decision["reason"]
    assert not (root / "round-2").exists()


def _decide_on(run_config: Path, root: Path, before: dict, after: dict, tolerance: float = 0.02) -> dict:
    """The gate's decision for round 1 given round 0's and round 1's eval summaries."""
    cfg = load_run_config(run_config)
    cfg.rounds.general_tolerance = tolerance
    run = APTRun(cfg, root, progress=False)
    run.open()
    for r, summary in ((0, before), (1, after)):
        run.dir.write_output(r, "eval", {"summary": {v: {"accuracy": a} for v, a in summary.items()}})
    return run.stage_decide(1)


def test_the_gate_reads_the_general_dev_items_not_the_test_items(run_config: Path, tmp_path: Path):
    # general TEST accuracy collapses, general DEV holds: the gate keeps the round
    kept = _decide_on(run_config, tmp_path / "a", {"general": 0.6, "general_dev": 0.6},
                      {"general": 0.1, "general_dev": 0.59})
    assert kept["accepted"] is True and "general dev items" in kept["reason"]
    # and the reverse: dev drops 10 points, test rises: rolled back, naming the dev items
    dropped = _decide_on(run_config, tmp_path / "b", {"general": 0.6, "general_dev": 0.6},
                         {"general": 0.9, "general_dev": 0.5})
    assert dropped["accepted"] is False and "general dev items fell 10.0 points" in dropped["reason"]
    # a run without a general_dev view (general_dev.tasks: []) gates on the test items, and says so
    legacy = _decide_on(run_config, tmp_path / "c", {"general": 0.6}, {"general": 0.5})
    assert legacy["accepted"] is False and "general TEST items" in legacy["reason"]


def test_general_dev_defaults_to_the_general_tasks_dev_split_and_refuses_test(run_config: Path, tmp_path: Path):
    from aptune.run.evaluation import view_sets, view_tasks

    cfg = load_run_config(run_config)
    gate = view_sets(cfg)["general_dev"]
    assert gate.tasks == cfg.general_eval.tasks and gate.split == "dev" and gate.limit == 20
    tasks = view_tasks(cfg)
    general_ids = {ex.id for ex in tasks[f"general/{cfg.general_eval.tasks[0]}"]}
    gate_ids = {ex.id for ex in tasks[f"general_dev/{cfg.general_eval.tasks[0]}"]}
    assert gate_ids and not gate_ids & general_ids, "the gate's items are never general test items"
    off = load_run_config(run_config, ["general_dev.tasks=[]"])
    assert not any(key.startswith("general_dev/") for key in view_tasks(off))
    with pytest.raises(ValueError, match="general_dev.split must be dev or train"):
        load_run_config(run_config, ["general_dev.split=test"])


def test_after_a_rolled_back_round_the_model_is_the_last_accepted_rounds(run_config: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    """Round 1 kept, round 2 rolled back by the gate: the model the run leaves (the start of a
    round 3) computes exactly what round 1's trained model does, not round 2's."""
    import torch

    real = APTRun.stage_decide

    def gate_trips_in_round_2(self, round_index, no_work_reason=None):  # noqa: ANN001, ANN202
        if round_index == 2:
            self.cfg.rounds.general_tolerance, self.cfg.rounds.gate = -1.0, "drop"
        return real(self, round_index, no_work_reason)

    monkeypatch.setattr(APTRun, "stage_decide", gate_trips_in_round_2)
    cfg = load_run_config(run_config)
    run = APTRun(cfg, tmp_path / "run", progress=False)
    run.run()
    decisions = [read_json(tmp_path / "run" / f"round-{r}" / "decision.json") for r in (1, 2)]
    assert decisions[0]["accepted"] is True and decisions[1]["accepted"] is False
    assert run.accepted_rounds(3) == [1]
    ids = torch.tensor([[5, 9, 17, 33, 2, 41]])
    with torch.no_grad():
        kept = run.start_model(3)(ids).logits
        round_1 = run.trained_model(1)(ids).logits
        round_2 = run.trained_model(2)(ids).logits
    torch.testing.assert_close(kept, round_1, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(kept, round_2, atol=1e-4)


def test_rerun_with_changed_config_is_refused(run_config: Path, tmp_path: Path):
    cfg = load_run_config(run_config)
    root = tmp_path / "r"
    APTRun(cfg, root, progress=False).dir.start(cfg.to_dict(), {})
    cfg.train.lr = 0.001
    with pytest.raises(ValueError, match=r"different config \(changed: train\.lr\)"):
        APTRun(cfg, root, progress=False).run()


def test_run_started_before_a_field_was_added_still_resumes(run_config: Path, tmp_path: Path):
    """A run whose saved config predates a new schema field reopens while that field is at its
    default, and is refused once the field is set to something else."""
    cfg = load_run_config(run_config)
    root = tmp_path / "r"
    APTRun(cfg, root, progress=False).open()
    manifest = read_json(root / "manifest.json")
    del manifest["config"]["train"]["max_grad_norm"]  # as an older aptune would have saved it
    del manifest["config"]["trust_remote_code"]
    write_json_atomic(root / "manifest.json", manifest)
    APTRun(cfg, root, progress=False).open()
    cfg.train.max_grad_norm = cfg.train.max_grad_norm * 2
    with pytest.raises(ValueError, match=r"changed: train\.max_grad_norm"):
        APTRun(cfg, root, progress=False).open()


def test_config_changes_names_dotted_paths():
    saved = {"train": {"lr": 1.0, "epochs": 1}, "seed": 0, "gone": 1}
    current = {"train": {"lr": 2.0, "epochs": 1, "new": 3}, "seed": 0, "added": None}
    defaults = {"train": {"new": 3}, "added": None}
    assert config_changes(saved, current, defaults) == ["gone", "train.lr"]
    assert config_changes(saved, current, {}) == ["added", "gone", "train.lr", "train.new"]


def _aptune(*args: str) -> list[str]:
    return [sys.executable, "-m", "aptune.cli", *args]


def test_kill_and_resume_gives_same_metrics(run_config: Path, tmp_path: Path):
    """SIGKILL the CLI mid-run (after round 1 mining), rerun: same final metrics as uninterrupted."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    clean = tmp_path / "clean"
    subprocess.run(_aptune("run", str(run_config), "--out", str(clean)), check=True, env=env,
                   capture_output=True, timeout=600)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_aptune("run", str(run_config), "--out", str(killed)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = killed / "round-1" / "pairs.jsonl"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "round-2" / "decision.json").exists(), "the run finished before the kill"
    for path in killed.rglob("*.json*"):  # every file that exists under its real name is whole
        if not path.name.startswith("."):
            read_jsonl(path) if path.suffix == ".jsonl" else read_json(path)
    subprocess.run(_aptune("run", str(run_config), "--out", str(killed)), check=True, env=env,
                   capture_output=True, timeout=600)
    assert _final_metrics(killed) == _final_metrics(clean)
    assert read_jsonl(killed / "round-2" / "pairs.jsonl") == read_jsonl(clean / "round-2" / "pairs.jsonl")


def test_a_run_killed_mid_training_resumes_at_the_checkpoint(run_config: Path, tmp_path: Path, monkeypatch,
                                                             caplog):
    """Interrupted right after round 1's first mid-training checkpoint, the rerun carries on from
    that step (not step 0) and ends with the uninterrupted run's metrics."""
    import aptune.train.trainer as trainer

    cfg = load_run_config(run_config)
    cfg.train.checkpoint_every = 1
    clean = tmp_path / "clean"
    APTRun(cfg, clean, progress=False).run()
    real = trainer.save_checkpoint

    def killed_after_saving(out_dir, state, *args):  # noqa: ANN001, ANN202
        real(out_dir, state, *args)
        raise KeyboardInterrupt("simulated kill")

    root = tmp_path / "killed"
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "save_checkpoint", killed_after_saving)
        with pytest.raises(KeyboardInterrupt):
            APTRun(cfg, root, progress=False).run()
    assert [p.name for p in (root / "round-1" / "train").glob("checkpoint-*")] == ["checkpoint-1"]
    assert not (root / "round-1" / "train" / "train_result.json").exists()
    trained_before_kill = read_json(root / "round-1" / "train" / "checkpoint-1" / "state.json")["loop"]["elapsed_s"]
    with caplog.at_level("INFO", logger="aptune.train.checkpoint"):
        APTRun(cfg, root, progress=False).run()
    assert "resuming training from" in caplog.text
    # the stage's recorded cost keeps the training the killed invocation did, not only the rerun's
    stage = read_json(root / "manifest.json")["stages"]["round-1/train"]
    assert trained_before_kill > 0 and stage["resumed_s"] == round(trained_before_kill, 1)
    assert stage["seconds"] >= stage["resumed_s"]
    assert "resumed_s" not in read_json(clean / "manifest.json")["stages"]["round-1/train"]
    assert _final_metrics(root) == _final_metrics(clean)
    def rows(run: Path) -> list[dict]:
        metrics = read_jsonl(run / "round-1" / "train" / "train_metrics.jsonl")
        return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in metrics]

    assert rows(root) == rows(clean) and len(rows(root)) >= 2
    assert not list(root.rglob("checkpoint-*"))


def test_each_stage_runs_alone_from_the_cli(run_config: Path, tmp_path: Path):
    """`aptune mine/retrieve/pairs/train-round/evaluate-round/report` each read and write the run dir."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    root = tmp_path / "stages"
    expected = {
        "mine": root / "round-1" / "weakness.jsonl",
        "retrieve": root / "round-1" / "retrieved.jsonl",
        "pairs": root / "round-1" / "pairs.jsonl",
        "train-round": root / "round-1" / "train" / "train_result.json",
        "evaluate-round": root / "round-1" / "eval" / "metrics.json",
    }
    for i, (command, output) in enumerate(expected.items()):
        args = [command, "--run-dir", str(root), "--round", "1"] + (["--config", str(run_config)] if i == 0 else [])
        proc = subprocess.run(_aptune(*args), env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert output.exists(), command
    proc = subprocess.run(_aptune("report", str(root)), env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "| 1 |" in proc.stdout


def test_alora_run_stacks_one_adapter_across_rounds(run_config: Path, tmp_path: Path):
    """`adapter: alora` changes nothing else: same stages, reference = original model."""
    cfg = load_run_config(run_config)
    cfg.adapter = type(cfg.adapter)(kind="alora", r=4, alpha=8.0, heads=2)
    cfg.rounds.between, cfg.rounds.reference = "stack", "original"
    root = tmp_path / "alora"
    APTRun(cfg, root, progress=False).run()
    assert (root / "round-1" / "train" / "adapter" / "attn_lora_config.json").exists()
    manifest = read_json(root / "manifest.json")
    assert "original model" in manifest["stages"]["round-1/train"]["reference"]


def test_bad_pool_file_fails_before_any_work(run_config: Path, tmp_path: Path):
    (tmp_path / "domain.jsonl").write_text('{"question": "q", "choices": ["a", "b"], "gold": 9}\n')
    out = tmp_path / "never"
    proc = subprocess.run(_aptune("run", str(run_config), "--out", str(out)), capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert proc.returncode == 2
    assert "domain.jsonl:1: field 'gold': index 9 out of range for 2 choices" in proc.stderr
    assert not out.exists()


def test_nearly_full_disk_is_refused_before_work(tmp_path: Path, monkeypatch):
    import shutil as _shutil

    from aptune.run import run_dir as rd

    usage = _shutil.disk_usage(tmp_path)
    monkeypatch.setattr(rd.shutil, "disk_usage", lambda _: usage._replace(free=10 * 2**20))
    with pytest.raises(rd.RunDirError, match="only 10 MiB free"):
        rd.RunDir(tmp_path / "run").check_writable()


class _EvenLengthJudge:
    """Correct when the answer text has an even number of characters: deterministic for greedy
    answers, and some sampled answers of a correct item fail it, so sampled negatives exist."""

    name = "even_length"

    def judge_many(self, examples, predictions):  # noqa: ANN001, ANN201
        from aptune.evaluate.judges import Verdict

        return [Verdict(len(str(p)) % 2 == 0, None, "") for p in predictions]


def test_model_sample_negatives_for_generative_similar_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from aptune.evaluate import judges

    monkeypatch.setitem(judges._REGISTRY, "even_length", lambda **_: _EvenLengthJudge())
    model_dir = save_tiny(tmp_path / "model")
    rows = [{"id": f"g{i}", "question": f"what is {i} and {i}?", "answer": str(2 * i), "split": "train"}
            for i in range(24)]
    _write_jsonl(tmp_path / "gen.jsonl", rows)
    cfg = {
        "name": "gen", "model": model_dir, "precision": "fp32", "seed": 0,
        "pool": {"tasks": ["gen.jsonl"], "split": "train"},
        "dev": {"tasks": []}, "domain_eval": {"tasks": ["gen.jsonl"], "split": "train", "limit": 4},
        "general_eval": {"tasks": []},
        "mining": {"judge": "even_length", "max_new_tokens": 5},
        "pairs": {"similar_negative": "model_sample", "samples": 4, "temperature": 1.5},
        "train": {"lr": 0.05, "epochs": 1, "batch_size": 4, "progress": False},
        "rounds": {"max_rounds": 1, "general_tolerance": 1.0},
    }
    (tmp_path / "gen.yaml").write_text(yaml.safe_dump(cfg))
    run = APTRun(load_run_config(tmp_path / "gen.yaml"), tmp_path / "run", progress=False)
    run.dir.start(run.cfg.to_dict(), {})
    for stage in ("mine", "retrieve", "pairs"):
        getattr(run, f"stage_{stage}")(1)
    pairs = read_jsonl(tmp_path / "run" / "round-1" / "pairs.jsonl")
    similar = [p for p in pairs if p["source"] == "similar"]
    assert similar, "the even-length judge must leave some pool items right"
    sampled = [p for p in similar if p["negative"] == "sampled"]
    assert sampled, "some sampled answers have odd length, i.e. are judged wrong"
    for p in sampled:
        assert len(p["rejected"].strip()) % 2 == 1
    assert {p["negative"] for p in similar} <= {"sampled", "other_gold"}
    assert read_json(tmp_path / "run" / "manifest.json")["stages"]["round-1/pairs"]["negatives"]["sampled"] == len(sampled)


def test_separate_llm_judge_model_is_loaded_once_per_run(run_config: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    import aptune.models as models
    from tiny import tiny_model

    judge_dir = save_tiny(tmp_path / "judge", seed=5)
    cfg = load_run_config(run_config)
    cfg.mining.judge, cfg.mining.judge_model = "llm", judge_dir
    loaded = []
    monkeypatch.setattr(models, "load_model", lambda name, **kw: loaded.append(name) or tiny_model(seed=5))
    run = APTRun(cfg, tmp_path / "run", progress=False)
    first, second = run.judge(policy=None), run.judge(policy=None)
    assert first.name == second.name == "llm"
    assert loaded == [judge_dir]


def test_cli_run_says_where_it_computes_each_stage_each_round_and_ends_with_a_narrow_table(
        run_config: Path, tmp_path: Path):
    """What a user sees: device and precision up front (also in the manifest), a header for every
    stage including round 0's evaluation, one paired-change line per round, a closing table that
    fits 100 columns, and `--set` applied to the config the run records."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    root = tmp_path / "cli"
    proc = subprocess.run(_aptune("run", str(run_config), "--out", str(root), "--set", "rounds.max_rounds=1",
                                  "--device", "cpu"), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    runtime = read_json(root / "manifest.json")["runtime"]
    assert runtime["device"] == "cpu" and runtime["precision"] == "float32" and runtime["device_name"]
    assert runtime["weights"] == "fp32" and runtime["attn_implementation"] == "auto"
    assert f"on cpu ({runtime['device_name']}), weights fp32, precision float32 (asked: fp32)" in out
    for header in ("round 0 · eval", "round 1 · mine", "round 1 · retrieve", "round 1 · pairs", "round 1 · train",
                   "round 1 · eval"):
        assert header in out, header
    line = next(x for x in out.splitlines() if x.startswith("round 1: domain "))
    assert "general" in line and "points vs round 0 (paired, 95% CI)" in line and "[" in line
    table = out[out.index("accuracy % and change vs round 0"):out.index("stopped:")]
    assert all(len(x) <= 100 for x in table.splitlines()), table
    assert "Δ domain" in table and "start" in table
    assert read_json(root / "manifest.json")["config"]["rounds"]["max_rounds"] == 1
    assert (root / "report.md").exists()  # the CLI draws the report after the run
    assert read_json(root / "round-1" / "train" / "train_result.json")["extra"]["device"] == "cpu"
    assert "Device: cpu (" in (root / "report.md").read_text()


def test_a_run_begun_under_a_former_default_resumes_with_it(run_config: Path, tmp_path: Path):
    """mining.max_new_tokens was 64 by default and is now each task's own budget (None): a run
    saved with 64 reopens as unchanged and goes on answering within 64 tokens, as it began."""
    cfg = load_run_config(run_config)
    assert cfg.mining.max_new_tokens is None
    root = tmp_path / "old"
    old = cfg.to_dict()
    old["mining"]["max_new_tokens"] = 64
    APTRun(cfg, root, progress=False).dir.start(old, {})
    run = APTRun(load_run_config(run_config), root, progress=False)
    run.open()
    assert run.cfg.mining.max_new_tokens == 64 and run.settings.max_new_tokens == 64
    other = tmp_path / "changed"  # a real change is still refused
    old["mining"]["max_new_tokens"] = 32
    APTRun(cfg, other, progress=False).dir.start(old, {})
    with pytest.raises(Exception, match=r"changed: mining.max_new_tokens"):
        APTRun(load_run_config(run_config), other, progress=False).open()


def test_a_run_begun_before_the_paired_gate_keeps_the_point_rule(run_config: Path, tmp_path: Path):
    """rounds.gate did not exist before the paired rule: a run saved without it gated on the
    point drop, and reopens gating that way; a new run gets the paired rule."""
    cfg = load_run_config(run_config)
    assert cfg.rounds.gate == "paired"
    old = cfg.to_dict()
    del old["rounds"]["gate"]
    APTRun(cfg, tmp_path / "old", progress=False).dir.start(old, {})
    run = APTRun(load_run_config(run_config), tmp_path / "old", progress=False)
    run.open()
    assert run.cfg.rounds.gate == "drop"
    fresh = APTRun(load_run_config(run_config), tmp_path / "new", progress=False)
    fresh.open()
    assert fresh.cfg.rounds.gate == "paired"


def _decide_on_items(run_config: Path, root: Path, before: list[int], after: list[int], gate: str) -> dict:
    """The gate's decision for round 1 from item rows: general_dev items right (1) or wrong (0)
    at round 0 and round 1, summaries drawn from the same rows."""
    cfg = load_run_config(run_config, [f"rounds.gate={gate}", "rounds.general_tolerance=0.02"])
    run = APTRun(cfg, root, progress=False)
    run.open()
    for r, correct in ((0, before), (1, after)):
        rows = [{"task": "general_dev/general.jsonl", "id": f"i{k}", "correct": bool(c)} for k, c in enumerate(correct)]
        run.dir.predictions(r).parent.mkdir(parents=True, exist_ok=True)
        run.dir.predictions(r).write_text("".join(json.dumps(row) + "\n" for row in rows))
        run.dir.write_output(r, "eval", {"summary": {"general_dev": {"accuracy": sum(correct) / len(correct)}}})
    return run.stage_decide(1)


def test_the_paired_gate_keeps_a_round_whose_drop_is_noise_and_rolls_back_a_real_loss(run_config: Path, tmp_path: Path):
    # results 25's case: 140 dev items, 3 more lost than gained (a 2.1-point drop, tolerance 2)
    before = [1] * 60 + [0] * 80
    noise = [0] * 5 + [1] * 55 + [1] * 2 + [0] * 78  # 5 lost, 2 gained
    kept = _decide_on_items(run_config, tmp_path / "a", before, noise, "paired")
    assert kept["accepted"] is True, kept
    assert "fell 2.1 points" in kept["gate"] and "within resampling noise" in kept["gate"]
    assert kept["general_change"]["high"] > 0 > kept["general_change"]["low"]
    point = _decide_on_items(run_config, tmp_path / "b", before, noise, "drop")
    assert point["accepted"] is False and "fell 2.1 points" in point["reason"]
    # 15 lost, none gained: a loss the paired interval sees; rolled back under both rules
    loss = [0] * 15 + [1] * 45 + [0] * 80
    paired = _decide_on_items(run_config, tmp_path / "loss-paired", before, loss, "paired")
    assert paired["accepted"] is False and "the interval excludes no change" in paired["reason"]
    assert paired["general_change"]["high"] < 0
    point = _decide_on_items(run_config, tmp_path / "loss-drop", before, loss, "drop")
    assert point["accepted"] is False and "round rolled back" in point["reason"]
