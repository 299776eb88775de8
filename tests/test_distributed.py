"""Several processes, same answers: a whole APT run under `accelerate launch` (2 CPU processes,
gloo) against the same run in one process, on a tiny random model.

What must match and why:
- round 0 evaluation and round 1 mining run before any training, so item predictions,
  correctness and the weakness cases are identical (items are sharded, results gathered);
- training under 2 processes with grad_accum 1 takes the same optimizer steps as 1 process with
  grad_accum 2 (rank r takes batches r, r+2, ...; DDP averages the two gradients; one process
  averages the same two micro-batches), so the final metrics agree up to float rounding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from aptune.distributed import is_main, map_sharded, world_size
from aptune.io import read_json, read_jsonl
from tiny import save_tiny, tiny_mc_rows

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_single_process_helpers_are_no_ops():
    assert world_size() == 1 and is_main()
    assert map_sharded(lambda xs: [x * 2 for x in xs], [1, 2, 3]) == [2, 4, 6]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _config(tmp_path: Path, name: str, grad_accum: int) -> Path:
    model_dir = tmp_path / "model"
    if not model_dir.exists():
        save_tiny(model_dir)
        _write_jsonl(tmp_path / "domain.jsonl", tiny_mc_rows(45, seed=1))  # 28 pool items, 22 wrong
        _write_jsonl(tmp_path / "general.jsonl", tiny_mc_rows(21, seed=2))
    cfg = {
        "name": name, "model": str(model_dir), "precision": "fp32", "seed": 3,
        "pool": {"tasks": ["domain.jsonl"], "split": "train"},
        "dev": {"tasks": ["domain.jsonl"], "split": "dev"},
        "domain_eval": {"tasks": ["domain.jsonl"], "split": "test"},
        "general_eval": {"tasks": ["general.jsonl"], "split": "source"},
        "adapter": {"kind": "lora", "r": 4, "alpha": 8.0},
        "retrieval": {"strategy": "none"},
        "train": {"lr": 0.05, "epochs": 1, "batch_size": 1, "grad_accum": grad_accum, "progress": False,
                  "checkpoint_every": 2},  # mid-training checkpoints written by the main process only
        "rounds": {"max_rounds": 2, "general_tolerance": 1.0, "patience": 5},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _eval_rows(root: Path, round_index: int) -> list[tuple]:
    rows = read_jsonl(root / f"round-{round_index}" / "eval" / "predictions.jsonl")
    return [(r["task"], r["id"], r["prediction"], r["correct"]) for r in rows]


def test_two_processes_match_one(tmp_path: Path):
    one = tmp_path / "one"
    two = tmp_path / "two"
    proc = subprocess.run([sys.executable, "-m", "aptune.cli", "run", str(_config(tmp_path, "one", 2)),
                           "--out", str(one)], env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # torchrun (what `accelerate launch --multi_gpu` runs underneath); `accelerate launch --cpu`
    # expects mpirun for several CPU processes, so the CPU test uses the launcher directly
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
         "-m", "aptune.cli", "run", str(_config(tmp_path, "two", 1)), "--out", str(two)],
        env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    # before any training: identical item by item
    assert _eval_rows(two, 0) == _eval_rows(one, 0)
    assert read_jsonl(two / "round-1" / "weakness.jsonl") == read_jsonl(one / "round-1" / "weakness.jsonl")
    assert read_jsonl(two / "round-1" / "answers.jsonl") == read_jsonl(one / "round-1" / "answers.jsonl")
    assert read_jsonl(two / "round-1" / "pairs.jsonl") == read_jsonl(one / "round-1" / "pairs.jsonl")
    # an even number of pairs (batch 1): the 2-process run drops no odd last batch
    assert len(read_jsonl(one / "round-1" / "pairs.jsonl")) % 2 == 0
    train_one = read_json(one / "round-1" / "train" / "train_result.json")
    train_two = read_json(two / "round-1" / "train" / "train_result.json")
    assert train_two["extra"]["world_size"] == 2 and train_two["steps"] == train_one["steps"]

    # after training: the same optimizer steps, so the same metrics within float tolerance
    for r in (1, 2):
        a = read_json(one / f"round-{r}" / "eval" / "metrics.json")["summary"]
        b = read_json(two / f"round-{r}" / "eval" / "metrics.json")["summary"]
        for view in a:
            assert abs(a[view]["accuracy"] - b[view]["accuracy"]) <= 0.05, (r, view, a, b)
    # one writer: no leftover temporary files, every file whole
    assert not [p for p in two.rglob(".*.tmp")] and not list(two.glob(".write-test*"))
    assert not list(two.rglob("*checkpoint-*"))  # saved while training, removed at its end
    for path in two.rglob("*.json*"):
        read_jsonl(path) if path.suffix == ".jsonl" else read_json(path)
    assert (two / "report.md").exists()


def test_stage_skip_decision_is_taken_before_processes_sync(tmp_path: Path, monkeypatch) -> None:
    """The race behind a deadlock: if the main process writes a stage's output between another
    process's barrier and its look, that process skips the stage alone. The loop looks first
    and syncs after, so a file written once everyone has synced cannot change the answer."""
    from aptune.run import run_dir as run_dir_module
    from aptune.run.run_dir import RunDir

    run_dir = RunDir(tmp_path)
    output = run_dir.stage_output(1, "pairs")

    def main_process_writes_during_sync() -> None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("")

    monkeypatch.setattr(run_dir_module, "barrier", main_process_writes_during_sync)
    assert run_dir.is_done_everywhere(1, "pairs") is False
    assert output.exists()
