"""ALoRA vs plain PEFT LoRA of the same rank on the default model: cost of the attention path.

Measures, per adapter kind, in a fresh subprocess each (so peak memory is per kind):
trainable parameters, training step time (forward + backward + AdamW, batch B×T, autocast),
cached greedy generation tokens/second (single stream, N new tokens, adapter unmerged), and
peak memory (max RSS on CPU, max allocated on CUDA). Kinds run in the order
lora, alora, alora, lora; each run reports its median, and the summary keeps the best run per
kind (as timeit does: other load on a shared machine only ever slows a run down); all runs
stay in the JSON. Targets (issue 4): step time <= 1.2x LoRA, tokens/s >= 0.8x.

    python bench/alora.py                      # defaults: r=8, batch 4x128, 32 new tokens
    python bench/alora.py --steps 5 --device cuda

Writes bench/results/alora.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "alora.json"


def worker(args: argparse.Namespace) -> dict:
    """Measure one adapter kind in this process; returns the figures as a dict."""
    import torch

    from aptune.adapters import AdapterConfig, attach_adapter, trainable_parameter_count
    from aptune.models import autocast, load_model, load_tokenizer, resolve_precision

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = resolve_precision(args.precision)
    model = load_model(args.model, device=str(device))
    tokenizer = load_tokenizer(args.model)
    cfg = AdapterConfig(kind=args.worker, r=args.rank, alpha=2 * args.rank, heads=args.heads)
    model = attach_adapter(model, cfg)
    with torch.no_grad():  # a non-zero B so the adapter path is really computed and used
        for name, param in model.named_parameters():
            if param.requires_grad and ("lora_B" in name):
                param.normal_(0, 1e-3)
    trainable = trainable_parameter_count(model)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    # training steps
    model.train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(args.seed)
    times = []
    for step in range(args.steps + 1):
        ids = torch.randint(0, vocab, (args.batch, args.seq_len), generator=gen).to(device)
        sync()
        start = time.perf_counter()
        with autocast(dtype, device):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        sync()
        if step > 0:  # step 0 is warm-up
            times.append(time.perf_counter() - start)
    del optim

    # cached greedy generation, single stream
    model.eval()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Explain why the sky is blue in two sentences."}],
        tokenize=False, add_generation_prompt=True,
    )
    enc = tokenizer(prompt, return_tensors="pt").to(device)
    rates = []
    for _ in range(args.gen_runs + 1):
        sync()
        start = time.perf_counter()
        with torch.no_grad(), autocast(dtype, device):
            out = model.generate(**enc, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                 do_sample=False, use_cache=True, pad_token_id=tokenizer.pad_token_id)
        sync()
        new = out.shape[1] - enc["input_ids"].shape[1]
        rates.append(new / (time.perf_counter() - start))
    rates = rates[1:]  # first run is warm-up

    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "kind": args.worker,
        "trainable_params": trainable,
        "step_s": statistics.median(times),
        "step_s_all": times,
        "gen_tok_s": statistics.median(rates),
        "gen_tok_s_all": rates,
        "peak_mib": peak_mib,
        "prompt_tokens": int(enc["input_ids"].shape[1]),
    }


def run_worker(kind: str, argv: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, *argv]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--gen-runs", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)  # 1: OpenMP spin-waits on a shared machine
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=["lora", "alora"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    argv = [a for a in sys.argv[1:]]
    runs: dict[str, list[dict]] = {"lora": [], "alora": []}
    for kind in ("lora", "alora", "alora", "lora"):
        runs[kind].append(run_worker(kind, argv))
    summary = {}
    for kind, results in runs.items():
        summary[kind] = {
            "trainable_params": results[0]["trainable_params"],
            # best of the runs (as timeit does): other load only ever slows a run down
            "step_s": min(r["step_s"] for r in results),
            "gen_tok_s": max(r["gen_tok_s"] for r in results),
            "peak_mib": max(r["peak_mib"] for r in results),
            "runs": results,
        }
    ratios = {
        "step_time_alora_over_lora": summary["alora"]["step_s"] / summary["lora"]["step_s"],
        "gen_tok_s_alora_over_lora": summary["alora"]["gen_tok_s"] / summary["lora"]["gen_tok_s"],
        "targets": {"step_time_max": 1.2, "gen_tok_s_min": 0.8},
    }
    record = {
        "benchmark": "alora_vs_lora",
        "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "out")},
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "results": summary,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")

    header = f"{'adapter':<8}{'trainable':>12}{'step s':>10}{'gen tok/s':>12}{'peak MiB':>10}"
    lines = [header, "-" * len(header)]
    for kind, row in summary.items():
        lines.append(f"{kind:<8}{row['trainable_params']:>12,}{row['step_s']:>10.3f}"
                     f"{row['gen_tok_s']:>12.1f}{row['peak_mib']:>10.0f}")
    lines.append(f"step time ALoRA/LoRA = {ratios['step_time_alora_over_lora']:.2f} (target <= 1.2); "
                 f"gen tok/s ALoRA/LoRA = {ratios['gen_tok_s_alora_over_lora']:.2f} (target >= 0.8)")
    sys.stdout.write("\n".join(lines) + f"\nwrote {args.out}\n")


if __name__ == "__main__":
    main()
