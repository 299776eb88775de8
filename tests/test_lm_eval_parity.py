"""Our multiple-choice accuracy equals lm-eval-harness's, item by item, on the real model.

lm-eval runs its own pipeline (task template → requests → HFLM scorer) on the same loaded
model; we score the same ARC-Easy validation items in source order with the plain cloze
format, which renders lm-eval's arc_easy template. fp32 on both sides.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

#: lm-eval's side of the comparison lives with the benchmarks (bench/lm_eval_peer.py), not in aptune
BENCH = Path(__file__).resolve().parents[1] / "bench"

N_ITEMS = 24


@pytest.fixture(scope="module")
def real_model():
    from aptune.models import load_model, load_tokenizer

    return load_model("smollm2-135m"), load_tokenizer("smollm2-135m")


def test_item_by_item_parity_with_lm_eval(real_model, monkeypatch):
    import torch

    monkeypatch.syspath_prepend(str(BENCH))
    from lm_eval_peer import run_lm_eval_arc_easy

    from aptune.data import load_task
    from aptune.evaluate.scoring import score_choices
    from aptune.prompts import PromptFormat

    model, tokenizer = real_model
    items = load_task("arc_easy", split="source", limit=N_ITEMS)
    ours = score_choices(model, tokenizer, items, PromptFormat(template="plain"), dtype=torch.float32, progress=False)
    peer = run_lm_eval_arc_easy(model, tokenizer, limit=N_ITEMS, batch_size=8)
    assert len(peer.logprobs) == len(ours) == N_ITEMS
    for ex, sc, lp in zip(items, ours, peer.logprobs):
        assert sc.logprobs == pytest.approx(lp, abs=2e-3), ex.id
    assert [s.prediction for s in ours] == peer.pred_acc
    assert [s.prediction_norm for s in ours] == peer.pred_acc_norm
