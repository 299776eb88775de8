"""Users' own preference pairs: trained directly (``aptune train``, method dpo-pairs) and added
to every APT round's pairs (``pairs.extra``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aptune.config import load_run_config
from aptune.io import read_json, read_jsonl
from tiny import save_tiny, tiny_mc_rows

WORDS = "red blue green sun moon water fire cat dog tree star planet".split()


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _prefs(folder: Path, n: int = 24) -> Path:
    rows = []
    for i in range(n):
        a, b = WORDS[i % len(WORDS)], WORDS[(i + 5) % len(WORDS)]
        prompt = f"what is {a}?" if i % 2 else [{"role": "user", "content": f"what is the {a}?"}]
        rows.append({"id": f"p{i}", "prompt": prompt, "chosen": f"the {a}", "rejected": f"a {b}"})
    return _write(folder / "prefs.jsonl", rows)


def _config(folder: Path, **extra) -> Path:
    model = save_tiny(folder / "model")
    _prefs(folder)
    _write(folder / "general.jsonl", tiny_mc_rows(20, seed=2))
    cfg = {"name": "mine", "model": model, "precision": "fp32", "seed": 1,
           "pool": {"tasks": ["prefs.jsonl"], "split": "train"},
           "dev": {"tasks": []},
           "domain_eval": {"tasks": ["prefs.jsonl"], "split": "test"},
           "general_eval": {"tasks": ["general.jsonl"], "split": "test"},
           "mining": {"max_new_tokens": 4},
           "adapter": {"r": 4, "alpha": 8.0},
           "train": {"lr": 0.01, "epochs": 1, "batch_size": 4, "progress": False},
           "rounds": {"max_rounds": 1, "general_tolerance": 1.0}, **extra}
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_aptune_train_runs_dpo_on_the_users_pairs(tmp_path: Path):
    path = _config(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "aptune.cli", "train", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                            "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    pairs = read_jsonl(out / "round-1" / "pairs.jsonl")
    train_ids = {r["id"] for r in pairs}
    assert pairs and all(r["source"] == "pool" and r["negative"] == "user_rejected" for r in pairs)
    by_id = {r["id"]: r for r in pairs}
    some = next(iter(by_id.values()))
    assert some["chosen"].strip().startswith("the ") and some["rejected"].strip().startswith("a ")
    assert "<|im_start|>user" in some["prompt"], "prompts are rendered with the model's chat template"
    result = read_json(out / "round-1" / "train" / "train_result.json")
    assert result["steps"] >= 1
    assert (out / "round-1" / "train" / "adapter" / "adapter_model.safetensors").exists()
    assert (out / "report.md").exists() and "report:" in proc.stdout
    held_out = {r["id"] for r in read_jsonl(out / "round-1" / "eval" / "predictions.jsonl")
                if r["task"].startswith("domain/")}
    assert held_out and not held_out & train_ids, "the held-out pairs are never trained on"


def test_pairs_extra_adds_the_users_pairs_to_each_apt_round(tmp_path: Path):
    from aptune.methods.apt import APTRun

    model = save_tiny(tmp_path / "model")
    _write(tmp_path / "domain.jsonl", tiny_mc_rows(40, seed=1))
    _prefs(tmp_path, n=6)
    cfg_path = tmp_path / "apt.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "model": model, "precision": "fp32", "pool": {"tasks": ["domain.jsonl"], "split": "train"},
        "dev": {"tasks": []}, "domain_eval": {"tasks": ["domain.jsonl"]}, "general_eval": {"tasks": []},
        "pairs": {"extra": ["prefs.jsonl"]}, "adapter": {"r": 4, "alpha": 8.0},
        "train": {"epochs": 1, "batch_size": 4, "progress": False}, "rounds": {"max_rounds": 1}}))
    cfg = load_run_config(cfg_path)
    assert cfg.pairs.extra == [str((tmp_path / "prefs.jsonl").resolve())]
    APTRun(cfg, tmp_path / "run", progress=False).run()
    pairs = read_jsonl(tmp_path / "run" / "round-1" / "pairs.jsonl")
    user = [p for p in pairs if p["source"] == "user"]
    assert len(user) == 6 and {p["id"] for p in user} == {f"p{i}" for i in range(6)}
    assert any(p["source"] == "weakness" for p in pairs)
    manifest = read_json(tmp_path / "run" / "manifest.json")
    assert manifest["stages"]["round-1/pairs"]["user_pairs"] == 6


def test_a_pool_row_without_a_rejected_answer_is_named(tmp_path: Path):
    from aptune.methods.pairs_data import PairsDataRun

    path = _config(tmp_path)
    _write(tmp_path / "prefs.jsonl", [{"id": "q1", "question": "what is red?", "answer": "red", "split": "train"}])
    run = PairsDataRun(load_run_config(path), tmp_path / "r", progress=False)
    run.open()
    with pytest.raises(ValueError, match=r"item 'q1': no rejected answer"):
        run.stage_pairs(1)


def test_a_separate_retrieval_pool_is_answered_and_never_yields_held_out_items(tmp_path: Path):
    """retrieval.pool: similar cases come from another file; the model answers them after
    retrieval; a pool item that is a held-out item (same task and id, or same text) is refused."""
    from aptune.data import load_task
    from aptune.methods.apt import APTRun

    model = save_tiny(tmp_path / "model")
    _write(tmp_path / "domain.jsonl", tiny_mc_rows(40, seed=1))
    held_out = load_task(str(tmp_path / "domain.jsonl"), split="test")
    extra_rows = tiny_mc_rows(30, seed=9)
    for i, row in enumerate(extra_rows):
        row["id"], row["question"] = f"x{i}", f"{row['question']} (variant {i})"
    leak_by_text = dict(extra_rows[0], question=held_out[0].question)  # a held-out question under another id
    leak_by_id = {**dict(extra_rows[1]), "id": held_out[1].id, "task": "domain"}  # a held-out (task, id)
    _write(tmp_path / "bigger.jsonl", [leak_by_text, leak_by_id, *extra_rows[2:]])
    cfg_path = tmp_path / "apt.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "model": model, "precision": "fp32", "pool": {"tasks": ["domain.jsonl"], "split": "train"},
        "dev": {"tasks": []}, "domain_eval": {"tasks": ["domain.jsonl"]}, "general_eval": {"tasks": []},
        "retrieval": {"s": 3.0, "pool": {"tasks": ["bigger.jsonl"], "split": "source"}},
        "adapter": {"r": 4, "alpha": 8.0}, "train": {"epochs": 1, "batch_size": 4, "progress": False},
        "rounds": {"max_rounds": 1}}))
    run = APTRun(load_run_config(cfg_path), tmp_path / "run", progress=False)
    run.run()
    record = read_json(tmp_path / "run" / "manifest.json")["stages"]["round-1/retrieve"]
    assert record["retrieval_pool"] == 30 and record["refused_held_out"] == 2 and record["candidates"] == 28
    retrieved = read_jsonl(tmp_path / "run" / "round-1" / "retrieved.jsonl")
    assert retrieved and all(r["id"].startswith("x") for r in retrieved), "only the separate pool's items"
    assert "x0" not in {r["id"] for r in retrieved}, "the held-out question under another id is never retrieved"
    assert all({"correct", "prediction", "example"} <= set(r["answer_row"]) for r in retrieved)
    similar = [p for p in read_jsonl(tmp_path / "run" / "round-1" / "pairs.jsonl") if p["source"] == "similar"]
    assert {p["id"] for p in similar} <= {r["id"] for r in retrieved}


def _unpaired(folder: Path, n: int = 24) -> Path:
    """TRL's KTO data: prompt, one completion, a label (JSON booleans and CSV-style text)."""
    rows = []
    for i in range(n):
        a, b = WORDS[i % len(WORDS)], WORDS[(i + 5) % len(WORDS)]
        good = i % 3 != 0
        rows.append({"id": f"u{i}", "prompt": f"what is {a}?", "completion": f"the {a}" if good else f"a {b}",
                     "label": good if i % 2 else ("true" if good else "false")})
    return _write(folder / "unpaired.jsonl", rows)


def test_unpaired_rows_train_with_kto_and_are_refused_by_dpo(tmp_path: Path):
    from aptune.data import load_task
    from aptune.methods.pairs_data import PairsDataRun

    path = _config(tmp_path, pool={"tasks": ["unpaired.jsonl"], "split": "source"},
                   domain_eval={"tasks": ["general.jsonl"], "split": "test"})
    _unpaired(tmp_path)
    items = load_task(str(tmp_path / "unpaired.jsonl"), split="source")
    assert [ex.meta["desirable"] for ex in items[:4]] == [False, True, True, False]
    with pytest.raises(ValueError, match=r"item 'u0': an unpaired row .* trains with train.loss: kto only, not sigmoid"):
        PairsDataRun(load_run_config(path), tmp_path / "dpo", progress=False).run()
    assert not (tmp_path / "dpo" / "round-0").exists(), "refused before any work"
    cfg = load_run_config(path, ["train.loss=kto"])
    PairsDataRun(cfg, tmp_path / "kto", progress=False).run()
    rows = read_jsonl(tmp_path / "kto" / "round-1" / "pairs.jsonl")
    assert len(rows) == 24 and all((r["chosen"] is None) != (r["rejected"] is None) for r in rows)
    record = read_json(tmp_path / "kto" / "manifest.json")["stages"]["round-1/train"]
    assert record["kto_examples"] == 24 and record["kto_desirable"] == 16 and record["steps"] >= 1


def test_a_bad_label_names_its_line(tmp_path: Path):
    from aptune.data import load_task
    from aptune.data.files import DataError

    _write(tmp_path / "bad.jsonl", [{"prompt": "p", "completion": "c", "label": True},
                                    {"prompt": "q", "completion": "d", "label": "maybe"}])
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'label': must be true or false"):
        load_task(str(tmp_path / "bad.jsonl"), split="source")
