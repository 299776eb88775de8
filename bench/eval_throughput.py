"""Multiple-choice scoring throughput: aptune's scorer against lm-eval's HF scorer, one run.

Both score the same first N ARC-Easy validation items with lm-eval's arc_easy template on the
same loaded default model. lm-eval runs in its default precision (fp32 for this model) at the
same batch size (items per forward pass); aptune runs fp32 (must give identical accuracy), fp32
with one item per row (what sharing rows between short items adds), and bf16 autocast (where the
CPU has it). Prints a table and writes bench/results/eval_throughput.json.

    python bench/eval_throughput.py --limit 200 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from aptune.data import load_task
from aptune.evaluate.scoring import ROW_TOKENS, score_choices
from aptune.models import bf16_supported, load_model, load_tokenizer
from aptune.prompts import PromptFormat
from aptune.provenance import provenance

from lm_eval_peer import run_lm_eval_arc_easy  # bench/lm_eval_peer.py (a script's own folder is on sys.path)


def _ours(model, tokenizer, items, dtype, batch_size, row_tokens=ROW_TOKENS):
    start = time.perf_counter()
    scores = score_choices(model, tokenizer, items, PromptFormat(template="plain"), dtype=dtype,
                           max_items=batch_size, row_tokens=row_tokens, progress=False)
    seconds = time.perf_counter() - start
    acc = sum(s.prediction == ex.gold for s, ex in zip(scores, items)) / len(items)
    acc_norm = sum(s.prediction_norm == ex.gold for s, ex in zip(scores, items)) / len(items)
    return {"seconds": seconds, "acc": acc, "acc_norm": acc_norm, "items_per_s": len(items) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "eval_throughput.json")
    args = parser.parse_args()

    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    items = load_task("arc_easy", split="source", limit=args.limit)
    # warm-up both paths once on a few items so neither pays first-call costs in the timing
    score_choices(model, tokenizer, items[:4], PromptFormat(template="plain"), progress=False)

    peer = run_lm_eval_arc_easy(model, tokenizer, limit=args.limit, batch_size=args.batch_size)
    rows = {"lm-eval HFLM (fp32)": {"seconds": peer.seconds, "acc": peer.acc, "acc_norm": peer.acc_norm,
                                    "items_per_s": args.limit / peer.seconds}}
    rows["aptune packed (fp32)"] = _ours(model, tokenizer, items, torch.float32, args.batch_size)
    # the same scorer with one item per row: what sharing rows between short items adds
    rows["aptune packed, one item per row (fp32)"] = _ours(model, tokenizer, items, torch.float32,
                                                           args.batch_size, row_tokens=0)
    if bf16_supported():
        rows["aptune packed (bf16 autocast)"] = _ours(model, tokenizer, items, torch.bfloat16, args.batch_size)
    base = rows["lm-eval HFLM (fp32)"]["items_per_s"]
    print(f"ARC-Easy validation, first {args.limit} items, {args.model}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'scorer':40s} {'items/s':>8s} {'ratio':>6s} {'acc':>6s} {'acc_norm':>8s}")
    for name, row in rows.items():
        row["ratio_vs_lm_eval"] = row["items_per_s"] / base
        print(f"{name:40s} {row['items_per_s']:8.2f} {row['ratio_vs_lm_eval']:6.2f} "
              f"{row['acc']:6.3f} {row['acc_norm']:8.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"limit": args.limit, "batch_size": args.batch_size, "model": args.model,
                                    "results": rows, "provenance": provenance()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
