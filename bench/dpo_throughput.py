"""DPO training throughput and peak memory: aptune's trainer vs TRL's DPOTrainer.

Same model (smollm2-135m), same LoRA (r16, alpha 32, all linear layers, no dropout), same 32
chat-formatted QA pairs, same batch size, one epoch, sigmoid DPO (no NLL term, so both do the
same work), bf16 autocast where the CPU supports it. Each trainer runs in its own subprocess so
peak RSS does not mix. Timed: from the training call (TRL: trainer construction, which
tokenises and, when asked, precomputes reference log-probs) to its return; model loading is
excluded for both.

TRL is run twice: with its defaults (gradient checkpointing on, reference forward every step)
and tuned (checkpointing off, reference log-probs precomputed once), so the comparison is not
only against defaults. Ours is run twice too: packed (chosen and rejected behind one prompt, the
default) and with separate rows (``TrainConfig(packed=False)``, TRL's layout), so the packing gain is
measured on its own.

Two pair sets: ``science`` (short chat QA prompts: 40 prompt tokens, 7 response tokens per pair
on average) and ``legal`` (the first 32 training items of the GCI legal reasoning task, statute
text plus facts, cloze answers, the first wrong choice as rejected: 170 prompt tokens, 22
response tokens), where the shared prompt is most of the work.

    python bench/dpo_throughput.py                 # science -> bench/results/dpo_throughput.json
    python bench/dpo_throughput.py --pairs legal   # -> bench/results/dpo_throughput_legal.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = "smollm2-135m"
N_PAIRS = 32
BATCH = 8
LR = 5e-5

# (question, correct answer, wrong answer): short science/general QA, two wrong answers per fact.
FACTS = [
    ("Which gas do plants absorb from the air for photosynthesis?", "Carbon dioxide", ["Oxygen", "Nitrogen"]),
    ("What is the boiling point of water at sea level?", "100 degrees Celsius", ["50 degrees Celsius", "212 degrees Celsius"]),
    ("Which planet is the largest in our solar system?", "Jupiter", ["Mars", "Venus"]),
    ("What part of the cell contains the genetic material?", "The nucleus", ["The cell wall", "The ribosome"]),
    ("What force keeps the planets in orbit around the Sun?", "Gravity", ["Magnetism", "Friction"]),
    ("Which organ pumps blood through the human body?", "The heart", ["The liver", "The lungs"]),
    ("What is the chemical symbol for sodium?", "Na", ["So", "S"]),
    ("Which state of matter has a fixed volume but no fixed shape?", "Liquid", ["Gas", "Solid"]),
    ("What is the main source of energy for the Earth's climate?", "The Sun", ["The Moon", "Volcanoes"]),
    ("Which simple machine is a ramp?", "An inclined plane", ["A pulley", "A lever"]),
    ("What do we call animals that eat only plants?", "Herbivores", ["Carnivores", "Decomposers"]),
    ("Which layer of the Earth do we live on?", "The crust", ["The mantle", "The inner core"]),
    ("What type of energy is stored in a stretched rubber band?", "Elastic potential energy", ["Thermal energy", "Nuclear energy"]),
    ("How many chromosomes do human body cells usually have?", "46", ["23", "48"]),
    ("What is the process by which water vapor becomes liquid?", "Condensation", ["Evaporation", "Sublimation"]),
    ("Which blood cells help fight infections?", "White blood cells", ["Red blood cells", "Platelets"]),
]


def build_pairs(tokenizer):  # noqa: ANN001, ANN201
    """32 PreferencePairs rendered with aptune's prompt format (chat template)."""
    from aptune.data.example import Example
    from aptune.prompts import PromptFormat, render_answer, render_prompt
    from aptune.train import PreferencePair

    fmt = PromptFormat(template="chat")
    pairs = []
    for i, (question, right, wrongs) in enumerate(FACTS):
        ex = Example(id=f"q{i}", task="bench", domain="science", question=question, answer=right)
        prompt = render_prompt(ex, tokenizer, fmt)
        for j, wrong in enumerate(wrongs):
            pairs.append(PreferencePair(f"q{i}-{j}", prompt, render_answer(ex, right, tokenizer, fmt),
                                        render_answer(ex, wrong, tokenizer, fmt)))
    return pairs[:N_PAIRS]


def build_legal_pairs(tokenizer):  # noqa: ANN001, ANN201
    """32 PreferencePairs from GCI legal reasoning (statute text + computation), cloze answers."""
    from aptune.data import load_task
    from aptune.prompts import PromptFormat, render_answer, render_prompt
    from aptune.train import PreferencePair

    fmt = PromptFormat(template="auto", mc_format="cloze")
    pairs = []
    for ex in load_task("gci_reasoning_integrated", split="train", limit=N_PAIRS):
        wrong = next(i for i in range(len(ex.choices)) if i != ex.gold)
        pairs.append(PreferencePair(ex.id, render_prompt(ex, tokenizer, fmt),
                                    render_answer(ex, ex.gold, tokenizer, fmt), render_answer(ex, wrong, tokenizer, fmt)))
    return pairs


PAIR_SETS = {"science": build_pairs, "legal": build_legal_pairs}


def lora_config():  # noqa: ANN201
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def run_ours(pair_set: str, packed: bool) -> dict:
    from aptune.adapters import AdapterConfig, attach_adapter
    from aptune.models import load_model, load_tokenizer, resolve_precision
    from aptune.train import TrainConfig, train_preference

    tok = load_tokenizer(MODEL)
    # the same LoRA as lora_config() (TRL's), attached the way aptune users attach it
    model = attach_adapter(load_model(MODEL), AdapterConfig(kind="lora", r=16, alpha=32.0, dropout=0.0,
                                                            target_modules="all-linear"))
    pairs = PAIR_SETS[pair_set](tok)
    cfg = TrainConfig(epochs=1, batch_size=BATCH, lr=LR, nll_weight=0.0, precision="auto",
                      save_adapter=False, progress=False, warmup_ratio=0.0, packed=packed)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        result = train_preference(model, tok, pairs, cfg, out)
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "steps": result.steps, "reference_s": result.reference_s, "train_s": result.train_s,
            "final_loss": result.final_loss, "precision": str(resolve_precision("auto")).replace("torch.", ""),
            "packed": packed, "tokens": result.tokens}


def run_trl(pair_set: str, tuned: bool) -> dict:
    import warnings

    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from aptune.models import bf16_supported, load_model, load_tokenizer

    warnings.simplefilter("ignore")
    tok = load_tokenizer(MODEL)
    model = load_model(MODEL)
    pairs = PAIR_SETS[pair_set](tok)
    # TRL appends EOS (= <|im_end|> here) to non-conversational completions: the same token we add.
    data = Dataset.from_dict({"prompt": [p.prompt for p in pairs], "chosen": [p.chosen for p in pairs],
                              "rejected": [p.rejected for p in pairs]})
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(
            output_dir=out, per_device_train_batch_size=BATCH, num_train_epochs=1, learning_rate=LR,
            bf16=bf16_supported(), use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
            max_length=512, beta=0.1, loss_type=["sigmoid"], warmup_steps=0, disable_tqdm=True,
            gradient_checkpointing=not tuned, precompute_ref_log_probs=tuned, dataloader_num_workers=0,
        )
        t0 = time.perf_counter()
        trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                             peft_config=lora_config())
        out_state = trainer.train()
        wall = time.perf_counter() - t0
    del torch
    return {"wall_s": wall, "steps": out_state.global_step, "final_loss": out_state.training_loss,
            "gradient_checkpointing": not tuned, "precompute_ref_log_probs": tuned}


WORKERS = ["ours", "ours-separate-rows", "trl-default", "trl-tuned"]


def worker(name: str, pair_set: str) -> None:
    if name.startswith("ours"):
        row = run_ours(pair_set, packed=name == "ours")
    else:
        row = run_trl(pair_set, tuned=name == "trl-tuned")
    row["pairs"] = N_PAIRS
    row["pairs_per_s"] = N_PAIRS / row["wall_s"]
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=WORKERS)
    parser.add_argument("--pairs", choices=sorted(PAIR_SETS), default="science")
    parser.add_argument("--out", help="default: bench/results/dpo_throughput[_legal].json")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.pairs)
        return
    suffix = "" if args.pairs == "science" else f"_{args.pairs}"
    out_path = Path(args.out or Path(__file__).parent / "results" / f"dpo_throughput{suffix}.json")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}
    rows = {}
    for name in WORKERS:
        proc = subprocess.run([sys.executable, __file__, "--worker", name, "--pairs", args.pairs],
                              env=env, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
        rows[name] = json.loads(lines[-1][len("RESULT "):])
    ours = rows["ours"]["pairs_per_s"]
    report = {
        "model": MODEL, "pair_set": args.pairs, "pairs": N_PAIRS, "batch_size": BATCH, "epochs": 1,
        "lora": "r16 alpha32 all-linear", "loss": "sigmoid DPO, beta 0.1",
        "machine": f"{os.cpu_count()} CPU cores", "threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "results": rows,
        "speedup_vs_trl_default": ours / rows["trl-default"]["pairs_per_s"],
        "speedup_vs_trl_tuned": ours / rows["trl-tuned"]["pairs_per_s"],
        "speedup_packed_vs_separate_rows": ours / rows["ours-separate-rows"]["pairs_per_s"],
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'trainer':<12} {'pairs/s':>8} {'wall s':>7} {'steps':>5} {'peak RSS MB':>11}")
    for name, row in rows.items():
        print(f"{name:<12} {row['pairs_per_s']:>8.2f} {row['wall_s']:>7.1f} {row['steps']:>5} {row['peak_rss_mb']:>11.0f}")
    print(f"speed-up vs TRL default: {report['speedup_vs_trl_default']:.2f}x, "
          f"vs TRL tuned: {report['speedup_vs_trl_tuned']:.2f}x, "
          f"packed vs separate rows: {report['speedup_packed_vs_separate_rows']:.2f}x")


if __name__ == "__main__":
    main()
