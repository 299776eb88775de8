"""Faults on a tiny model, through the CLI: kill -9 at random points, NaN losses, an unwritable
output folder. Each checks that nothing already written is lost or half-written."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open

from aptune.io import read_json, read_jsonl
from test_apt_loop import _final_metrics, run_config  # noqa: F401  (fixture: a tiny run config)

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _aptune(*args: str) -> list[str]:
    return [sys.executable, "-m", "aptune.cli", *args]


def _assert_every_file_whole(root: Path) -> None:
    """Every file under its real name parses; temporaries (dot-names) are the only partial ones."""
    for path in root.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix == ".jsonl":
            read_jsonl(path)
        elif path.suffix == ".json":
            read_json(path)
        elif path.suffix == ".safetensors":
            with safe_open(str(path), "pt") as handle:
                for key in handle.keys():
                    handle.get_tensor(key)
        elif path.suffix in (".md", ".html", ".yaml"):
            path.read_text(encoding="utf-8")


@pytest.mark.parametrize("seed", [11, 12])
def test_kill_9_at_random_points_then_resume(run_config: Path, tmp_path: Path, seed: int):  # noqa: F811
    """Three SIGKILLs at random moments into the same run directory, then a clean finish: the
    final metrics and pairs equal an uninterrupted run's; every file is whole after each kill."""
    clean = tmp_path / "clean"
    t0 = time.time()
    subprocess.run(_aptune("run", str(run_config), "--out", str(clean)), check=True, env=ENV, capture_output=True,
                   timeout=600)
    full = time.time() - t0
    rng = random.Random(seed)
    killed = tmp_path / "killed"
    # three moments that together stay under one uninterrupted run: each restart redoes its
    # interrupted stage and its start-up, so the run is still going at every kill (asserted)
    for _ in range(3):
        proc = subprocess.Popen(_aptune("run", str(run_config), "--out", str(killed)), env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.1, 0.3) * full)
        assert proc.poll() is None, "the run finished before the kill: the kill tested nothing"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        if killed.exists():
            _assert_every_file_whole(killed)
    done = subprocess.run(_aptune("run", str(run_config), "--out", str(killed)), env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_every_file_whole(killed)
    assert _final_metrics(killed) == _final_metrics(clean)
    for r in (1, 2):
        assert read_jsonl(killed / f"round-{r}" / "pairs.jsonl") == read_jsonl(clean / f"round-{r}" / "pairs.jsonl")


# The CLI with one fault injected: from round 2 on, every preference loss is NaN.
NAN_FROM_ROUND_2 = """
import sys
import aptune.methods.preference as loop
import aptune.train.trainer as trainer

original = loop.train_preference

def poisoned(model, tokenizer, pairs, cfg, out_dir, **kw):
    if "round-2" in str(out_dir):
        base = trainer.PreferenceLoss
        class NaNLoss(base):
            def forward(self, *a, **k):
                out = super().forward(*a, **k)
                out.loss = out.loss * float("nan")
                return out
        trainer.PreferenceLoss = NaNLoss
    return original(model, tokenizer, pairs, cfg, out_dir, **kw)

loop.train_preference = poisoned
from aptune.cli import app
sys.argv = ["aptune", *sys.argv[1:]]
app()
"""


def test_nan_loss_stops_the_run_cleanly_and_keeps_good_adapters(run_config: Path, tmp_path: Path):  # noqa: F811
    import torch

    root = tmp_path / "nan"
    proc = subprocess.run([sys.executable, "-c", NAN_FROM_ROUND_2, "run", str(run_config), "--out", str(root)],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("aptune: error:")]
    assert len(error) == 1 and "Traceback" not in proc.stderr
    assert "training diverged: 3 non-finite steps in a row" in error[0]
    assert f"last good adapter saved to {root / 'round-2' / 'train' / 'adapter'}" in error[0]
    # round 1 is whole and accepted; round 2 is not marked trained, so a rerun retries it
    assert read_json(root / "round-1" / "decision.json")["accepted"] is True
    assert not (root / "round-2" / "train" / "train_result.json").exists()
    _assert_every_file_whole(root)
    for r in (1, 2):  # the adapters on disk are finite: no NaN step was ever applied
        with safe_open(str(root / f"round-{r}" / "train" / "adapter" / "adapter_model.safetensors"), "pt") as h:
            assert all(torch.isfinite(h.get_tensor(k)).all() for k in h.keys())
    log = [json.loads(line) for line in (root / "round-2" / "train" / "train_metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in log if "event" in e] == ["nonfinite"] * 3
    # the fault gone, the same command resumes at round 2 and finishes
    rerun = subprocess.run(_aptune("run", str(run_config), "--out", str(root)), env=ENV, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (root / "round-2" / "train" / "train_result.json").exists()


def test_nan_lr_in_config_is_refused_before_work(run_config: Path, tmp_path: Path):  # noqa: F811
    text = run_config.read_text().replace("lr: 0.05", "lr: .nan")
    assert ".nan" in text
    bad = tmp_path / "nan-lr.yaml"
    bad.write_text(text)
    out = tmp_path / "never"
    proc = subprocess.run(_aptune("run", str(bad), "--out", str(out)), env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert f"{bad}:" in proc.stderr and "lr must be a finite number > 0, not nan" in proc.stderr
    assert not out.exists()


def test_unwritable_output_folder_fails_before_work(run_config: Path, tmp_path: Path):  # noqa: F811
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = subprocess.run(_aptune("run", str(run_config), "--out", str(blocker / "run")), env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"aptune: error: {blocker / 'run'}: run directory is not writable (Not a directory)"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_output_folder_fails_before_work(run_config: Path, tmp_path: Path):  # noqa: F811
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        proc = subprocess.run(_aptune("run", str(run_config), "--out", str(locked / "run")), env=ENV,
                              capture_output=True, text=True, timeout=120)
    finally:
        locked.chmod(0o700)
    assert proc.returncode == 2 and "run directory is not writable" in proc.stderr
