"""Every method of `aptune compare` on a tiny random model: each runs end to end from a config
and writes its metrics; each builds its training set the way its docstring says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from aptune.config import RunConfig
from aptune.config_loader import ConfigError
from aptune.data import load_task
from aptune.io import read_json, read_jsonl
from aptune.compare import load_compare_config, run_compare
from aptune.methods import METHODS, MethodSpec
from aptune.methods.sft import SFTRun, check_replay
from aptune.config_loader import deep_merge
from aptune.methods import ReplayConfig, method_overrides
from aptune.prompts import PromptFormat, render_answer, render_prompt
from aptune.report.compare_report import write_compare_report
from tiny import save_tiny, tiny_mc_rows, tiny_tokenizer


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_compare_config(folder: Path, methods: list, seeds: list[int] = [0], **extra) -> Path:  # noqa: B006
    """A compare config over a tiny model and tiny task files (domain 40 items, general 2 × 20)."""
    folder.mkdir(parents=True, exist_ok=True)
    model_dir = save_tiny(folder / "model")
    _write_jsonl(folder / "domain.jsonl", tiny_mc_rows(40, seed=1))
    _write_jsonl(folder / "general_a.jsonl", tiny_mc_rows(20, seed=2))
    _write_jsonl(folder / "general_b.jsonl", tiny_mc_rows(20, seed=4))
    cfg = {
        "name": "tinycmp",
        "seeds": seeds,
        "methods": methods,
        "base": {
            "model": model_dir,
            "precision": "fp32",
            "pool": {"tasks": ["domain.jsonl"], "split": "train"},
            "dev": {"tasks": []},
            "domain_eval": {"tasks": ["domain.jsonl"], "split": "test"},
            "general_eval": {"tasks": ["general_a.jsonl", "general_b.jsonl"], "split": "test"},
            "adapter": {"r": 4, "alpha": 8.0},
            "train": {"lr": 0.05, "epochs": 1, "batch_size": 4, "grad_accum": 1, "progress": False},
            "rounds": {"max_rounds": 1, "general_tolerance": 1.0},
        },
        **extra,
    }
    path = folder / "compare.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


#: the methods that train on a question/answer pool (dpo-pairs needs preference rows:
#: tests/test_preference_data.py runs it)
QA_METHODS = [k for k in METHODS if k != "dpo-pairs"]

ALL_METHODS = [
    "base", "sft-lora", {"kind": "sft-lora+replay", "replay": {"ratio": 0.5}}, "sft-alora", "dpo-all",
    "apt-lora", "apt-alora", "apt-orpo", "apt-simpo", "apt-kto", "dpo-all-kto",
]


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory):
    """All seven methods, one seed, run once for the module."""
    folder = tmp_path_factory.mktemp("methods")
    path = write_compare_config(folder, ALL_METHODS)
    loaded = load_compare_config(path)
    out = folder / "out"
    outcomes = run_compare(loaded, out, progress=False)
    write_compare_report(out)
    return loaded, out, outcomes


def test_every_method_runs_end_to_end_and_writes_metrics(compared):
    loaded, out, outcomes = compared
    assert [o.method for o in outcomes][0] == "base"
    assert sorted(o.method for o in outcomes) == sorted(QA_METHODS)
    for kind in QA_METHODS:
        root = out / kind / "seed-0"
        assert (root / "compare_run.json").exists(), kind
        assert (root / "round-0" / "eval" / "metrics.json").exists()
        summary = read_json(root / "round-0" / "eval" / "metrics.json")["summary"]
        assert set(summary) == {"domain", "general", "general_dev"}  # the gate reads general_dev
        if kind == "base":
            assert not (root / "round-1").exists()
            continue
        metrics = read_json(root / "round-1" / "eval" / "metrics.json")
        assert 0.0 <= metrics["summary"]["domain"]["accuracy"] <= 1.0
        result = read_json(root / "round-1" / "train" / "train_result.json")
        assert result["steps"] >= 1 and result["tokens"] > 0
    results = read_json(out / "compare-results.json")
    assert [m["method"] for m in results["methods"]] == [m if isinstance(m, str) else m["kind"] for m in ALL_METHODS]


def test_round0_is_evaluated_once_and_shared(compared):
    _, out, _ = compared
    reference = read_jsonl(out / "base" / "seed-0" / "round-0" / "eval" / "predictions.jsonl")
    for kind in QA_METHODS[1:]:
        root = out / kind / "seed-0"
        assert read_jsonl(root / "round-0" / "eval" / "predictions.jsonl") == reference
        assert read_json(root / "manifest.json")["stages"]["round-0/eval"]["copied_from"] == "base/seed-0"


def test_adapters_and_stages_per_method(compared):
    _, out, _ = compared
    r1 = lambda kind: out / kind / "seed-0" / "round-1"  # noqa: E731
    for kind in ("sft-lora", "sft-lora+replay", "sft-alora"):
        assert not (r1(kind) / "weakness.jsonl").exists(), "SFT does not mine"
    for kind in ("dpo-all", "apt-lora", "apt-alora"):
        assert (r1(kind) / "weakness.jsonl").exists()
    for kind in ("sft-alora", "apt-alora"):
        assert (r1(kind) / "train" / "adapter" / "attn_lora_config.json").exists(), kind
    for kind in ("sft-lora", "dpo-all", "apt-lora"):
        assert (r1(kind) / "train" / "adapter" / "adapter_config.json").exists(), kind
    manifest = read_json(out / "apt-alora" / "seed-0" / "manifest.json")
    assert manifest["config"]["rounds"]["between"] == "stack"
    assert manifest["config"]["rounds"]["reference"] == "original"


def test_sft_items_are_the_whole_pool_in_the_eval_format(compared):
    loaded, out, _ = compared
    cfg = loaded.run_configs[("sft-lora", 0)]
    rows = read_jsonl(out / "sft-lora" / "seed-0" / "round-1" / "sft_items.jsonl")
    pool = load_task(cfg.pool.tasks[0], split="train", seed=cfg.seed)
    assert len(rows) == len(pool) and {r["source"] for r in rows} == {"domain"}
    tok = tiny_tokenizer()
    fmt = PromptFormat(cfg.prompt.template, cfg.prompt.mc_format, cfg.prompt.system_prompt)
    by_id = {r["id"]: r for r in rows}
    for ex in pool:
        row = by_id[f"{ex.task}/{ex.id}"]
        assert row["prompt"] == render_prompt(ex, tok, fmt)
        assert row["response"] == render_answer(ex, ex.gold, tok, fmt)
    train = read_json(out / "sft-lora" / "seed-0" / "round-1" / "train" / "train_result.json")
    assert train["examples"] == len(pool)  # one epoch over every item


def test_replay_mixes_general_train_items_only(compared):
    loaded, out, _ = compared
    cfg = loaded.run_configs[("sft-lora+replay", 0)]
    rows = read_jsonl(out / "sft-lora+replay" / "seed-0" / "round-1" / "sft_items.jsonl")
    domain = [r for r in rows if r["source"] == "domain"]
    replay = [r for r in rows if r["source"] == "replay"]
    assert len(replay) == round(0.5 * len(domain))
    test_ids = {f"{ex.task}/{ex.id}" for t in cfg.general_eval.tasks for ex in load_task(t, split="test")}
    train_ids = {f"{ex.task}/{ex.id}" for t in cfg.general_eval.tasks for ex in load_task(t, split="train")}
    assert {r["id"] for r in replay} <= train_ids
    assert not {r["id"] for r in replay} & test_ids
    assert len({r["id"].rsplit("/", 1)[0] for r in replay}) == 2  # both general tasks contribute


def test_dpo_all_pairs_cover_the_pool(compared):
    _, out, _ = compared
    r1 = out / "dpo-all" / "seed-0" / "round-1"
    answers = read_jsonl(r1 / "answers.jsonl")
    pairs = read_jsonl(r1 / "pairs.jsonl")
    assert {p["id"] for p in pairs} == {a["id"] for a in answers}  # 3 choices: always a wrong option
    wrong = {a["id"]: a for a in answers if not a["correct"]}
    for p in pairs:
        if p["id"] in wrong:
            assert p["rejected"].strip() == wrong[p["id"]]["answer_text"].strip()


def test_each_method_writes_only_its_own_stage_files(compared):
    """No method writes files in another's schema: SFT writes items, not pairs; dpo-all records
    a selection, not retrieval rows; each manifest names the stages the method ran."""
    _, out, _ = compared
    r1 = lambda kind: out / kind / "seed-0" / "round-1"  # noqa: E731
    expected = {
        "sft-lora": {"sft_items.jsonl"},
        "sft-alora": {"sft_items.jsonl"},
        "dpo-all": {"answers.jsonl", "weakness.jsonl", "selected.jsonl", "pairs.jsonl"},
        "apt-lora": {"answers.jsonl", "weakness.jsonl", "retrieved.jsonl", "pairs.jsonl"},
    }
    for kind, files in expected.items():
        written = {p.name for p in r1(kind).glob("*.jsonl")}
        assert written == files, kind
        stages = {k.split("/")[1] for k in read_json(out / kind / "seed-0" / "manifest.json")["stages"]
                  if k.startswith("round-1/")}
        assert stages == {f.removesuffix(".jsonl").replace("weakness", "mine").replace("retrieved", "retrieve")
                          .replace("selected", "select") for f in files if f != "answers.jsonl"} | {"train", "eval", "decide"}
    sft = read_json(out / "sft-lora+replay" / "seed-0" / "manifest.json")["stages"]["round-1/sft_items"]
    assert sft["items"] == sft["domain_items"] + sft["replay_items"] and sft["replay_items"] > 0
    assert "weakness_pairs" not in sft
    answers = read_jsonl(r1("dpo-all") / "answers.jsonl")
    assert read_jsonl(r1("dpo-all") / "selected.jsonl") == [{"id": a["id"]} for a in answers if a["correct"]]


def test_apt_trains_on_at_most_as_many_pairs_as_dpo_all(compared):
    """dpo-all pairs every pool item; APT pairs its weakness cases and at most s x that many
    similar cases, which can only be pool items the model got right."""
    _, out, _ = compared
    r1 = out / "apt-lora" / "seed-0" / "round-1"
    apt = read_jsonl(r1 / "pairs.jsonl")
    dpo = read_jsonl(out / "dpo-all" / "seed-0" / "round-1" / "pairs.jsonl")
    answers, weakness = read_jsonl(r1 / "answers.jsonl"), read_jsonl(r1 / "weakness.jsonl")
    assert len(dpo) == len(answers) and 0 < len(weakness) < len(answers)
    assert 0 < len(apt) <= len(weakness) + min(len(weakness), len(answers) - len(weakness)) <= len(dpo)


def test_apt_without_similar_cases_trains_on_strictly_fewer_pairs_than_dpo_all(compared, tmp_path: Path):
    """Where the setting makes the relation strict — no similar cases (retrieval none), and a
    pool the model gets partly right — APT's pairs are exactly its mistakes, fewer than dpo-all's."""
    from aptune.methods.apt import APTRun

    loaded, out, _ = compared
    import copy

    cfg = copy.deepcopy(loaded.run_configs[("apt-lora", 0)])  # the module's runs keep theirs
    cfg.retrieval.strategy = "none"
    run = APTRun(cfg, tmp_path / "apt-none", progress=False)
    run.dir.start(cfg.to_dict(), {})
    for stage in ("mine", "retrieve", "pairs"):
        getattr(run, f"stage_{stage}")(1)
    weakness = read_jsonl(tmp_path / "apt-none" / "round-1" / "weakness.jsonl")
    apt = read_jsonl(tmp_path / "apt-none" / "round-1" / "pairs.jsonl")
    dpo = read_jsonl(out / "dpo-all" / "seed-0" / "round-1" / "pairs.jsonl")
    assert 0 < len(weakness) < len(dpo), "the setting must leave some pool items right"
    assert len(apt) == len(weakness) < len(dpo)


# ----------------------------------------------------------------------------- specs and configs
def test_presets_build_valid_run_configs():
    base = RunConfig().to_dict()
    for kind in METHODS:
        from aptune.config_loader import build

        cfg = build(RunConfig, deep_merge(base, method_overrides(MethodSpec(kind=kind))))
        if "alora" in kind:
            assert (cfg.adapter.kind, cfg.rounds.between, cfg.rounds.reference) == ("alora", "stack", "original")
        if kind.startswith(("sft", "dpo")):
            assert cfg.rounds.max_rounds == 1


def test_method_overrides_win_over_presets_and_merge_by_key():
    spec = MethodSpec(kind="sft-lora", name="sft-hot", overrides={"train": {"lr": 1e-3}, "rounds": {"max_rounds": 2}})
    merged = deep_merge(RunConfig().to_dict(), method_overrides(spec))
    assert merged["train"]["lr"] == 1e-3 and merged["train"]["batch_size"] == RunConfig().train.batch_size
    assert merged["rounds"]["max_rounds"] == 2 and merged["adapter"]["kind"] == "lora"


def test_bad_method_names_and_kinds():
    with pytest.raises(ValueError, match="unknown method 'sft'"):
        MethodSpec(kind="sft")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="names a folder"):
        MethodSpec(kind="sft-lora", name="../x")


def test_replay_on_the_eval_split_is_refused():
    cfg = RunConfig()
    with pytest.raises(ValueError, match="replayed items would be evaluated on"):
        check_replay(cfg, ReplayConfig(split="test"))
    check_replay(cfg, ReplayConfig(split="train"))
    with pytest.raises(ValueError, match="replay.split"):
        SFTRun(cfg, "/nonexistent-unused", replay=ReplayConfig(split="test"))


def test_bad_override_names_the_file_line_and_key(tmp_path: Path):
    path = write_compare_config(tmp_path, ["base", {"kind": "sft-lora", "overrides": {"train": {"lr": "fast"}}}])
    with pytest.raises(ConfigError) as err:
        load_compare_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}:") and "methods.1.overrides.train.lr" in message and "'fast'" in message


def test_duplicate_method_names_are_refused(tmp_path: Path):
    path = write_compare_config(tmp_path, ["sft-lora", {"kind": "sft-lora"}])
    with pytest.raises(ConfigError, match="duplicate method name 'sft-lora'"):
        load_compare_config(path)



def test_a_new_method_is_one_module_and_one_table_entry(tmp_path: Path):
    """A toy method registered from outside the package runs through compare like the shipped
    ones: its stages, its own output file, the shared evaluation and gate."""
    from aptune.methods import METHODS, Method, register_method
    from aptune.run.driver import Run

    class EvalTwice(Run):
        """Trains nothing: a round only evaluates the starting model again."""

        round_stages = ()

    register_method(Method("eval-twice", "evaluate the starting model twice",
                           lambda cfg, root, spec, progress: EvalTwice(cfg, root, progress=progress),
                           {"rounds": {"max_rounds": 1}}))
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_method(METHODS["eval-twice"])
        path = write_compare_config(tmp_path, ["base", "eval-twice"])
        out = tmp_path / "out"
        outcomes = run_compare(load_compare_config(path), out, progress=False)
        assert [o.method for o in outcomes] == ["base", "eval-twice"]
        root = out / "eval-twice" / "seed-0"
        assert read_json(root / "round-1" / "decision.json")["accepted"] is True
        base = read_jsonl(out / "base" / "seed-0" / "round-0" / "eval" / "predictions.jsonl")
        assert read_jsonl(root / "round-1" / "eval" / "predictions.jsonl") == base  # same model, same answers
    finally:
        METHODS.pop("eval-twice", None)


def test_a_method_naming_an_unknown_stage_is_refused():
    from aptune.run.driver import Run

    class Typo(Run):
        round_stages = ("mine", "retreive")

    with pytest.raises(ValueError, match="unknown stage 'retreive'"):
        Typo(RunConfig(), "/nonexistent-unused")


def test_the_cost_table_shows_the_reference_pass_and_each_methods_own_peak(compared):
    """The reference column is zero exactly for the reference-free losses, and each method's
    peak is its own training call's (sampled), not the compare process's growing mark."""
    _, out, _ = compared
    md = (out / "compare.md").read_text()
    section = md.split("## Cost (per seed)", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in section.splitlines() if line.startswith("| method"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    rows = {r.strip("|").split("|")[0].strip(): [c.strip() for c in r.strip("|").split("|")]
            for r in section.splitlines() if r.startswith("| ") and not r.startswith("| method")}
    ref, peak = cols.index("of which reference s"), cols.index("peak train RSS GB")
    assert rows["apt-orpo"][ref] == rows["apt-simpo"][ref] == "0"
    for kind in ("apt-lora", "apt-orpo", "apt-kto", "sft-lora"):
        assert float(rows[kind][peak]) > 0, kind
    results = read_json(out / "compare-results.json")
    reference = {m["method"]: m["train"].get("reference_s", 0.0) for m in results["methods"]}
    assert reference["apt-kto"] > 0 and reference["dpo-all"] > 0
