"""Configs: every shipped YAML parses; bad configs fail with file:line:key messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from aptune.config import RunConfig, load_run_config
from aptune.config_loader import ConfigError

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", [p for p in CONFIGS if not p.name.startswith("compare-")], ids=lambda p: p.name)
def test_shipped_run_configs_parse(path: Path):
    """Run configs; compare-*.yaml have their own schema and test (tests/test_compare.py)."""
    cfg = load_run_config(path)
    assert cfg.pool.tasks


def test_demo_yaml_spells_out_the_defaults():
    """`aptune run` with no argument runs RunConfig(); configs/demo.yaml must say the same."""
    demo = load_run_config(Path(__file__).parents[1] / "configs" / "demo.yaml")
    assert demo.to_dict() == RunConfig().to_dict()


BAD = [
    ("train:\n  lr: fast\n", r"bad.yaml:2: train.lr: expected a number, got 'fast'"),
    ("rounds:\n  max_round: 3\n", r"bad.yaml:2: rounds.max_round: unknown key"),
    ("name: x\nbogus: 1\n", r"bad.yaml:2: bogus: unknown key"),
    ("adapter:\n  kind: alora\n", r"bad.yaml:1: rounds.between: merge is impossible for adapter kind alora"),
    ("adapter:\n  kind: qlora\n", r"bad.yaml:2: adapter.kind: must be one of lora, alora, got 'qlora'"),
    ("pool:\n  split: training\n", r"bad.yaml:2: pool: split must be train, dev, test or source"),
    ("train:\n  epochs: 2.5\n", r"bad.yaml:2: train.epochs: expected an integer, got 2.5"),
    ("precision: fp64\n", r"bad.yaml:1: precision: must be one of auto, bf16, fp32, got 'fp64'"),
    ("train: [1, 2]\n", r"bad.yaml:1: train: expected a mapping, got list"),
    ("name: [unclosed\n", r"bad.yaml:2: invalid YAML"),
    ("- a\n- b\n", r"bad.yaml:1: the config must be a mapping"),
    ("pool:\n  tasks: []\n", r"bad.yaml:1: pool.tasks is empty"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m.split(": ", 1)[1][:30] for _, m in BAD])
def test_bad_config_one_line_error(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    text_out = str(info.value)
    assert "\n" not in text_out
    assert message.replace("bad.yaml", str(path)) in text_out


def test_config_files_are_data_not_code(tmp_path: Path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_run_config(path)


def test_data_paths_resolve_relative_to_the_config(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text("pool:\n  tasks: [mine.jsonl, sciq]\n")
    cfg = load_run_config(path)
    assert cfg.pool.tasks == [str((tmp_path / "sub" / "mine.jsonl").resolve()), "sciq"]
