"""ALoRA on the real default model (offline): the disabled adapter is the base model, and cached
greedy generation equals uncached recomputation on a left-padded batch."""

from __future__ import annotations

import pytest
import torch

from aptune.adapters import AdapterConfig, attach_adapter, disabled_adapter


@pytest.mark.integration
def test_alora_on_default_model_cached_generation_and_reference() -> None:
    from aptune.models import load_model, load_tokenizer

    model, tokenizer = load_model("smollm2-135m"), load_tokenizer("smollm2-135m")
    batch = tokenizer(["The capital of France is", "Water boils at a temperature of"],
                      return_tensors="pt", padding=True)
    with torch.no_grad():
        base = model(**batch).logits
    model = attach_adapter(model, AdapterConfig(kind="alora", r=8, heads=2))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():  # B as after some training; the rest as initialised
            if "attn_lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
        adapted = model(**batch).logits
        with disabled_adapter(model):
            assert torch.equal(model(**batch).logits, base)
        assert not torch.allclose(adapted, base, atol=1e-3)
        kw = dict(max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                  output_logits=True, return_dict_in_generate=True)
        cached = model.generate(**batch, use_cache=True, **kw)
        plain = model.generate(**batch, use_cache=False, **kw)
    assert torch.equal(cached.sequences, plain.sequences)
    for c, p in zip(cached.logits, plain.logits):
        torch.testing.assert_close(c, p, atol=2e-4, rtol=1e-4)
