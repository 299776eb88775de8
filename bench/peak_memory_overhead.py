"""What the per-call peak-memory sampler costs a training step, one run.

The trainer watches its own resident set with a daemon thread (``train/peak_memory.py``) that
reads ``/proc/self/statm`` every 50 ms. This times the same forward + backward + optimizer steps
of the default model with the sampler watching and without, alternating the two so both see
the same machine state, and times one sample on its own. Prints a table and writes
bench/results/peak_memory_overhead.json.

    python bench/peak_memory_overhead.py --steps 8 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from aptune.models import load_model
from aptune.provenance import provenance
from aptune.train.peak_memory import PeakMemory, _rss_mb


def _train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=8, help="training steps per timing")
    parser.add_argument("--repeats", type=int, default=3, help="alternations of watched / unwatched")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "peak_memory_overhead.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = load_model(args.model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.length))
    _train_steps(model, optimizer, ids, 1)  # warm-up: allocator and optimizer state

    watched, unwatched = [], []
    for _ in range(args.repeats):
        unwatched.append(_train_steps(model, optimizer, ids, args.steps))
        memory = PeakMemory(torch.device("cpu")).start()
        watched.append(_train_steps(model, optimizer, ids, args.steps))
        memory.stop()

    reads = 2000
    start = time.perf_counter()
    for _ in range(reads):
        _rss_mb()
    sample_us = (time.perf_counter() - start) / reads * 1e6

    row = {
        "unwatched_s": unwatched, "watched_s": watched,
        "median_unwatched_s": statistics.median(unwatched), "median_watched_s": statistics.median(watched),
        "watched_over_unwatched": statistics.median(watched) / statistics.median(unwatched),
        "one_sample_us": sample_us,
        # a sample every interval_s: the share of one core the thread takes, at most
        "sampler_core_share": sample_us * 1e-6 / PeakMemory.interval_s,
    }
    print(f"{args.model}, {args.steps} steps of {args.batch} x {args.length} tokens, {args.repeats} alternations, "
          f"{torch.get_num_threads()} threads")
    print(f"unwatched {row['median_unwatched_s']:.2f} s, watched {row['median_watched_s']:.2f} s (median): "
          f"ratio {row['watched_over_unwatched']:.3f}; one sample {sample_us:.1f} us "
          f"= {100 * row['sampler_core_share']:.3f}% of a core")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "steps": args.steps, "repeats": args.repeats,
                                    "batch": args.batch, "length": args.length, "results": row,
                                    "provenance": provenance()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
