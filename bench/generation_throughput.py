"""Free-form answering throughput: aptune's batched greedy generation against Hugging Face
``generate`` one item at a time, in one run, on the same items and the same loaded model.

Both decode greedily from exactly the same prompt tokens (``prompts.encode_prompt``: the prompt
format evaluation, mining and training share) with the same stop tokens and token budget; the
peer is what a plain loop over items does. Outputs must agree: the script counts the items whose
texts differ (batched left-padded fp32 and unbatched decoding can part on a near-tie) and reports
them rather than hiding them. Prints a table and writes bench/results/generation_throughput.json.

    python bench/generation_throughput.py --task basic_common_knowledge --limit 64 --max-new-tokens 16
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from aptune.data import load_task
from aptune.evaluate.generation import _stop_token_ids, generate_greedy
from aptune.models import load_model, load_tokenizer
from aptune.prompts import PromptFormat, encode_prompt, render_prompt
from aptune.provenance import provenance


def _one_at_a_time(model, tokenizer, prompts: list[str], max_new_tokens: int) -> tuple[list[str], float]:
    """The peer: ``model.generate`` per prompt, batch 1, greedy, the same stops."""
    stops = _stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    texts = []
    start = time.perf_counter()
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([encode_prompt(tokenizer, prompt)])
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, num_beams=1, eos_token_id=stops, pad_token_id=pad_id, use_cache=True)
            texts.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return texts, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="basic_common_knowledge")
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--template", default="plain", choices=["plain", "chat"])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "generation_throughput.json")
    args = parser.parse_args()

    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    items = load_task(args.task, split="test", limit=args.limit, seed=0)
    prompts = [render_prompt(ex, tokenizer, PromptFormat(template=args.template)) for ex in items]
    generate_greedy(model, tokenizer, prompts[:2], max_new_tokens=2, progress=False)  # warm-up, both share it

    start = time.perf_counter()
    ours = [o[0] if isinstance(o, list) else o for o in generate_greedy(
        model, tokenizer, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, progress=False)]
    ours_s = time.perf_counter() - start
    peer, peer_s = _one_at_a_time(model, tokenizer, prompts, args.max_new_tokens)
    differ = [ex.id for ex, a, b in zip(items, ours, peer) if a != b]
    result = {
        "task": args.task, "items": len(items), "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
        "template": args.template, "precision": "fp32",
        "aptune_s": round(ours_s, 2), "hf_one_at_a_time_s": round(peer_s, 2), "speedup": round(peer_s / ours_s, 2),
        "outputs_equal": len(items) - len(differ), "outputs_differ": differ, "provenance": provenance(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.task}, {len(items)} items, {args.max_new_tokens} new tokens, fp32: aptune batched {ours_s:.1f} s, "
          f"HF generate one at a time {peer_s:.1f} s: {peer_s / ours_s:.2f}x; outputs equal on "
          f"{len(items) - len(differ)}/{len(items)}")


if __name__ == "__main__":
    main()
