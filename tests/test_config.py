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
    ("precision: fp64\n", r"bad.yaml:1: precision: must be one of auto, bf16, fp16, fp32, got 'fp64'"),
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


def test_set_overrides_any_key_with_its_yaml_type(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("name: x\ntrain:\n  lr: 0.001\n")
    cfg = load_run_config(path, ["train.lr=1e-4", "rounds.max_rounds=3", "pool.tasks=[sciq]", "prompt.system_prompt=be brief"])
    assert cfg.train.lr == 1e-4 and cfg.rounds.max_rounds == 3 and cfg.pool.tasks == ["sciq"]
    assert cfg.prompt.system_prompt == "be brief" and cfg.name == "x"
    assert load_run_config(None, ["seed=7"]).seed == 7  # no file: the demo defaults, overridden


@pytest.mark.parametrize(("text", "message"), [
    ("train.lr=fast", "--set train.lr=fast: train.lr: expected a number, got 'fast'"),
    ("train.lrr=1", "--set train.lrr=1: train.lrr: unknown key"),
    ("rounds.max_rounds=0", "--set rounds.max_rounds=0: rounds: max_rounds must be >= 1"),
    ("train", "--set train: expected KEY=VALUE"),
    ("name.x=1", "--set name.x=1: name is not a section"),
])
def test_bad_set_is_a_one_line_error_naming_the_option(tmp_path: Path, text: str, message: str):
    path = tmp_path / "run.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError) as err:
        load_run_config(path, [text])
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_file_error_still_names_the_file_and_line_beside_sets(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("name: x\ntrain:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3: train.epochs: expected an integer"):
        load_run_config(path, ["train.lr=1e-4"])
