"""Training tokens/s and model FLOP utilisation (MFU) of a LoRA DPO step on the default model.

MFU = model FLOPs a training step needs / its seconds / this machine's matmul peak, where the
peak is measured in the same run (big square ``torch.matmul``s, 2048 and 4096, in the precision
the step computes in: fp32, or bf16 where ``precision: auto`` resolves to bf16 autocast), once
before and once after the training steps; the best of those is the peak. ``F.linear`` at the
model's own GEMM shapes is timed too and reported beside it (``mfu_vs_best_matmul``): a GEMM
small enough to stay in cache can run faster than the big squares.

The step: SmolLM2-135M with the default adapter (LoRA r8/alpha16 on every linear layer, as in
``configs/demo.yaml``), sigmoid DPO + 0.5 NLL, AdamW, a batch of ``--batch`` synthetic pairs
of fixed length, packed the way the trainer packs them (one row per pair: ``--length`` tokens =
prompt + chosen + rejected, the prompt computed once). It is timed through aptune's real
trainer, ``train_preference``, with checkpoints, adapter saving and the progress bar off: one
call of ``warmup + steps`` optimizer steps, per-step times from its ``train_metrics.jsonl``, the
first ``--warmup`` steps dropped. The reference log-probs are passed in (zeros) because the
trainer computes them once per call, not per step; they do not change the step's work. A second,
hand-timed step over aptune's own step functions (``response_logps``, ``PreferenceLoss``,
``backward``, ``AdamW``), run under ``torch.profiler``, says where a step's time goes (forward,
backward, optimizer) and lists the costliest operators.

FLOPs per step (B rows of T positions; K+1 positions per row go through the LM head, which
``logits_to_keep`` allows):

    F = B*T*(4*N + 6*N_adapter) + B*(K+1)*4*V*d            (the MFU figure)
    F_attn = B * L * 12 * T^2 * d_q                          (reported as a second figure)

- N: weights of the frozen linear layers of the decoder blocks (embedding and LM head
  excluded). Full fine-tuning costs 6*N per token (forward 2N, activation gradients 2N, weight
  gradients 2N); with LoRA the frozen weights get no weight gradients, so 4*N.
- N_adapter: the LoRA weights (A and B): forward, activation and weight gradients, 6*N_adapter.
- V*d: the (tied, frozen) LM head, forward and activation gradient on the kept positions only.
- Attention scores and weighted sums (QK^T and PV; d_q = heads * head_dim, L layers):
  4*T^2*d_q per layer forward, twice that backward, counted over the full T x T because the
  packed rows' explicit mask makes SDPA compute all of it. MFU is quoted without it (the usual
  convention, the weights' matmuls only); ``mfu_with_attention`` adds it.
- Not counted: norms, activations, softmax, the loss, the optimizer (a few per cent at most).

    python bench/mfu.py                         # fp32 and auto -> bench/results/mfu.json, mfu.md
    python bench/mfu.py --precision fp32 --batch 4 --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

MODEL = "smollm2-135m"
RESPONSE = 32  # tokens of each of chosen and rejected; the prompt takes the rest of the row
# common English words that SmolLM2's tokenizer keeps as one token each after a space
WORDS = ("the of and to in is was for on that with as by at from his an be this are which or had it not but "
         "one all were when there can more her has been if who will time would their new out up after so "
         "about what other into than only its most made over some first also may two years").split()


def cpu_name() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def matmul_peak(dtype: torch.dtype, sizes: tuple[int, ...] = (2048, 4096)) -> dict[str, Any]:
    """Best and median GFLOP/s of square ``a @ b`` in ``dtype`` per size (after a warm-up)."""
    out: dict[str, Any] = {}
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        repeats = 10 if n <= 2048 else 3
        a @ b  # warm-up: kernel selection, page faults
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        flops = 2 * n**3
        out[str(n)] = {"best_gflops": flops / min(times) / 1e9, "median_gflops": flops / statistics.median(times) / 1e9,
                       "repeats": repeats}
    return out


def shape_rates(dtype: torch.dtype, rows: int, d: int, ffn: int) -> dict[str, float]:
    """GFLOP/s of ``F.linear`` at the model's own GEMM shapes (rows = B*T positions)."""
    out = {}
    for name, (k, m) in {f"{d}x{d}": (d, d), f"{d}x{ffn}": (d, ffn), f"{ffn}x{d}": (ffn, d)}.items():
        x, w = torch.randn(rows, k).to(dtype), torch.randn(m, k).to(dtype)
        torch.nn.functional.linear(x, w)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            torch.nn.functional.linear(x, w)
            times.append(time.perf_counter() - t0)
        out[f"{rows}x{name}"] = 2 * rows * k * m / min(times) / 1e9
    return out


def synthetic_pairs(tokenizer: Any, n: int, length: int, seed: int = 0) -> list[Any]:
    """``n`` PreferencePairs whose packed row is exactly ``length`` tokens (prompt + 2 x RESPONSE),
    random one-token words, checked against aptune's own tokenisation."""
    import random

    from aptune.train import PreferencePair
    from aptune.train.pairs import tokenize_pairs

    words = [w for w in WORDS if len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1]
    rng = random.Random(seed)

    def text(k: int) -> str:
        return "".join(" " + rng.choice(words) for _ in range(k))

    prompt_len = length - 2 * RESPONSE
    pairs = [PreferencePair(id=f"p{i}", prompt=text(prompt_len), chosen=text(RESPONSE), rejected=text(RESPONSE))
             for i in range(n)]
    extra = len(tokenize_pairs(tokenizer, pairs[:1], 10**6, "never")[0].prompt_ids) - prompt_len  # e.g. a BOS
    if extra > 0:  # drop as many words from the front of each prompt
        pairs = [PreferencePair(id=p.id, prompt=" " + " ".join(p.prompt.split()[extra:]), chosen=p.chosen,
                                rejected=p.rejected) for p in pairs]
    for tp in tokenize_pairs(tokenizer, pairs, 10**6, "never"):
        got = (len(tp.prompt_ids), len(tp.chosen_ids), len(tp.rejected_ids))
        if got != (prompt_len, RESPONSE, RESPONSE):
            raise SystemExit(f"synthetic pair {tp.id} tokenises to {got}, not {(prompt_len, RESPONSE, RESPONSE)}")
    return pairs


def model_counts(model: Any) -> dict[str, int]:
    """N (frozen decoder linear weights), N_adapter, V*d, layers and attention width d_q."""
    from aptune.modeling import innermost

    inner = innermost(model)
    cfg = inner.config
    head = inner.get_output_embeddings().weight
    n_frozen = n_adapter = 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            n_adapter += p.numel()
        elif p.dim() == 2 and ".layers." in name and p.data_ptr() != head.data_ptr():
            n_frozen += p.numel()
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return {"n_frozen_linear": n_frozen, "n_adapter": n_adapter, "head_vd": head.numel(),
            "layers": cfg.num_hidden_layers, "d_q": heads * head_dim, "d_model": cfg.hidden_size,
            "ffn": cfg.intermediate_size}


def step_flops(counts: dict[str, int], batch: int, length: int, kept: int) -> tuple[float, float]:
    """(F, F_attn) of one optimizer step, the module docstring's formulas."""
    f = batch * length * (4 * counts["n_frozen_linear"] + 6 * counts["n_adapter"]) + batch * kept * 4 * counts["head_vd"]
    f_attn = batch * counts["layers"] * 12 * length**2 * counts["d_q"]
    return float(f), float(f_attn)


def fresh_model() -> Any:
    from aptune.adapters import AdapterConfig, attach_adapter
    from aptune.models import load_model

    return attach_adapter(load_model(MODEL), AdapterConfig(kind="lora", r=8, alpha=16.0, dropout=0.0,
                                                           target_modules="all-linear"))


def time_trainer(tokenizer: Any, pairs: list[Any], precision: str, batch: int, warmup: int) -> tuple[Any, dict[str, Any]]:
    """The trained (warm) model and the seconds of each timed optimizer step of one
    ``train_preference`` call (the first ``warmup`` steps dropped)."""
    from aptune.train import TrainConfig, train_preference

    model = fresh_model()
    cfg = TrainConfig(epochs=1, batch_size=batch, lr=2e-4, precision=precision, warmup_ratio=0.0, eos="never",
                      max_length=10**6, save_adapter=False, progress=False, checkpoint_every=0, log_every=1)
    reference = {p.id: (0.0, 0.0) for p in pairs}
    with tempfile.TemporaryDirectory() as out:
        result = train_preference(model, tokenizer, pairs, cfg, out, reference_logps=reference, device="cpu")
        rows = [json.loads(line) for line in Path(out, "train_metrics.jsonl").read_text().splitlines()]
    elapsed = [r["elapsed_s"] for r in rows if "elapsed_s" in r]
    if len(elapsed) != result.steps or result.skipped_steps:
        raise SystemExit(f"expected {len(pairs) // batch} clean steps, got {result.steps} ({result.skipped_steps} skipped)")
    step_s = [b - a for a, b in zip(elapsed[warmup - 1 :], elapsed[warmup:])] if warmup else elapsed[:1] + [
        b - a for a, b in zip(elapsed, elapsed[1:])]
    return model, {"step_s": step_s, "trainer_tokens_per_step": result.tokens / result.steps,
                   "final_loss": result.final_loss, "peak_rss_mb": result.peak_rss_mb}


def breakdown(model: Any, tokenizer: Any, pairs: list[Any], precision: str) -> dict[str, Any]:
    """Seconds of forward (with the loss), backward and optimizer in one hand-timed step on the
    trainer's model (warm: same shapes) with aptune's own step functions, run under
    ``torch.profiler`` for its costliest operators (the profiler adds microseconds per operator,
    not seconds per step)."""
    from aptune.modeling import accepts_logits_to_keep, innermost
    from aptune.models import autocast, resolve_precision
    from aptune.train.batching import pair_collator
    from aptune.train.logprobs import response_logps
    from aptune.train.losses import PreferenceLoss
    from aptune.train.pairs import tokenize_pairs

    model.train()
    dtype = resolve_precision(precision, "cpu")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4)
    loss_fn = PreferenceLoss("sigmoid", 0.1, 0.5, 0.0)
    tokenized = tokenize_pairs(tokenizer, pairs, 10**6, "never")
    batch = pair_collator(innermost(model), tokenizer.pad_token_id, True)(tokenized)
    use_ltk = accepts_logits_to_keep(model)
    n = len(tokenized)
    zeros = torch.zeros(n)

    def step() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        with autocast(dtype, "cpu"):
            logps, lengths = response_logps(model, batch, use_ltk)
            loss = loss_fn(logps[:n], logps[n:], zeros, zeros, lengths[:n], lengths[n:]).loss
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fwd, bwd, opt = step()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops) or 1.0
    top = [{"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "share": e.self_cpu_time_total / total, "calls": e.count}
           for e in ops[:10]]
    return {"forward_s": fwd, "backward_s": bwd, "optimizer_s": opt,
            "kept_positions": batch.response_len + 1, "rows": int(batch.input_ids.shape[0]),
            "row_length": int(batch.input_ids.shape[1]), "packed": batch.packed, "profile_top_ops": top}


def run_precision(tokenizer: Any, precision: str, args: argparse.Namespace, counts: dict[str, int]) -> dict[str, Any]:
    from aptune.models import resolve_precision

    dtype = resolve_precision(precision, "cpu")
    name = str(dtype).replace("torch.", "")
    print(f"[{precision} -> {name}] matmul peak ...", flush=True)
    before = matmul_peak(dtype)
    pairs = synthetic_pairs(tokenizer, args.batch * (args.warmup + args.steps), args.length)
    print(f"[{precision}] trainer: {args.warmup} warm-up + {args.steps} timed steps of {args.batch} x {args.length} ...",
          flush=True)
    model, timed = time_trainer(tokenizer, pairs, precision, args.batch, args.warmup)
    print(f"[{precision}] step breakdown and profile ...", flush=True)
    parts = breakdown(model, tokenizer, pairs[: args.batch], precision)
    del model
    after = matmul_peak(dtype)
    shapes = shape_rates(dtype, args.batch * args.length, counts["d_model"], counts["ffn"])

    if (parts["rows"], parts["row_length"]) != (args.batch, args.length):
        raise SystemExit(f"the trainer's batch is {parts['rows']} x {parts['row_length']}, not {args.batch} x {args.length}")
    flops, flops_attn = step_flops(counts, args.batch, args.length, parts["kept_positions"])
    step_s = statistics.median(timed["step_s"])
    # the peak: the best large square matmul of this run; the best rate at the model's own GEMM
    # shapes is reported beside it (a small GEMM that stays in cache can run faster still)
    peak = max(v["best_gflops"] for run in (before, after) for v in run.values()) * 1e9
    best = max([peak / 1e9, *shapes.values()]) * 1e9
    achieved = flops / step_s
    return {
        "precision": precision, "compute_dtype": name,
        "step_s": timed["step_s"], "median_step_s": step_s,
        "tokens_per_s": args.batch * args.length / step_s,
        "pairs_per_s": args.batch / step_s,
        "trainer_tokens_per_s": timed["trainer_tokens_per_step"] / step_s,
        "flops_per_step": flops, "attention_flops_per_step": flops_attn,
        "achieved_gflops": achieved / 1e9, "peak_gflops": peak / 1e9,
        "mfu": achieved / peak, "mfu_with_attention": (flops + flops_attn) / step_s / peak,
        "best_matmul_gflops": best / 1e9, "mfu_vs_best_matmul": achieved / best,
        "matmul_peak_before": before, "matmul_peak_after": after, "model_shape_gflops": shapes,
        "breakdown": parts, "final_loss": timed["final_loss"], "peak_rss_mb": timed["peak_rss_mb"],
    }


def markdown_line(report: dict[str, Any]) -> str:
    cells = []
    for r in report["results"]:
        cells.append(f"{r['compute_dtype']}: {r['tokens_per_s']:.0f} tokens/s, {r['achieved_gflops']:.1f} of "
                     f"{r['peak_gflops']:.1f} GFLOP/s = **MFU {100 * r['mfu']:.1f}%** "
                     f"({100 * r['mfu_with_attention']:.1f}% with attention; "
                     f"{100 * r['mfu_vs_best_matmul']:.1f}% of the best rate at the model's shapes, "
                     f"{r['best_matmul_gflops']:.0f} GFLOP/s)")
    return (f"| LoRA DPO step, {report['model']}, {report['batch']} x {report['length']} tokens, "
            f"{report['machine']}, torch {report['torch']}, {report['threads']} threads | `python bench/mfu.py` | "
            + "; ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", nargs="+", default=["fp32", "auto"], choices=["fp32", "bf16", "auto"],
                        help="each is run in turn; auto runs only where it resolves to bf16 (else it is fp32)")
    parser.add_argument("--batch", type=int, default=8, help="pairs per step (packed rows)")
    parser.add_argument("--length", type=int, default=256, help="tokens per packed row: prompt + 2 x 32")
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=1, help="optimizer steps dropped before timing")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "mfu.json"))
    args = parser.parse_args()
    if args.length <= 2 * RESPONSE or args.length % 32:
        parser.error(f"--length must be a multiple of 32 above {2 * RESPONSE}")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from aptune.models import bf16_supported, load_tokenizer, resolve_precision

    tokenizer = load_tokenizer(MODEL)
    counts = model_counts(fresh_model())
    wanted, seen = [], set()
    for p in args.precision:
        dtype = resolve_precision(p, "cpu")
        if dtype not in seen:  # auto on a CPU without fast bf16 is fp32 again
            wanted.append(p)
            seen.add(dtype)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    results = [run_precision(tokenizer, p, args, counts) for p in wanted]
    report = {
        "model": MODEL, "adapter": "LoRA r8 alpha16 all-linear", "loss": "sigmoid DPO beta 0.1 + 0.5 NLL",
        "batch": args.batch, "length": args.length, "response_tokens": RESPONSE, "packed": True,
        "warmup_steps": args.warmup, "timed_steps": args.steps,
        "machine": f"{os.cpu_count()}-core {cpu_name()}", "cpu_bf16_fast": bf16_supported("cpu"),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
        "counts": counts,
        "formula": "F = B*T*(4*N + 6*N_adapter) + B*(K+1)*4*V*d; F_attn = B*L*12*T^2*d_q (see the docstring)",
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "wall_s": time.perf_counter() - t0,
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    line = markdown_line(report)
    out.with_suffix(".md").write_text(line + "\n")
    print(f"{'precision':<10} {'step s':>7} {'tokens/s':>9} {'GFLOP/s':>8} {'peak':>7} {'MFU':>6} {'+attn':>6} "
          f"{'fwd s':>6} {'bwd s':>6} {'opt s':>6}")
    for r in results:
        b = r["breakdown"]
        print(f"{r['compute_dtype']:<10} {r['median_step_s']:>7.2f} {r['tokens_per_s']:>9.0f} {r['achieved_gflops']:>8.1f} "
              f"{r['peak_gflops']:>7.1f} {100 * r['mfu']:>5.1f}% {100 * r['mfu_with_attention']:>5.1f}% "
              f"{b['forward_s']:>6.2f} {b['backward_s']:>6.2f} {b['optimizer_s']:>6.2f}")
    print(f"load average {load_before[0]:.1f} before, {report['loadavg_after'][0]:.1f} after "
          f"({os.cpu_count()} cores; other jobs on the machine lower both the step and the peak)")
    print(line)
    print(f"wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
