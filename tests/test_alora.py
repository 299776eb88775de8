"""ALoRA (attention LoRA) correctness on tiny random models, table-driven over families and options.

What each test pins down (SPEC-ALORA.md):
- zero attention output  => identical to PEFT LoRA with the same A and B;
- B = 0, or adapter disabled => exactly the base model (the DPO reference);
- causality, left padding, packed sequences: the rank-space attention sees only what it may;
- cached generation == uncached recomputation (tokens and logits);
- gradients reach only adapter parameters (A, B and the attention projections);
- save -> load in another process => bit-identical logits.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from aptune.adapters import (
    AdapterConfig,
    AdapterMergeError,
    AttnLoraCacheError,
    adapter_kind,
    attach_adapter,
    disabled_adapter,
    load_adapter,
    merge_adapter,
    save_adapter,
    trainable_parameter_count,
)
from aptune.adapters.attention_lora import AttnLoraLinear

VOCAB = 96
SMALL = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)
FAMILIES = {
    "llama": lambda: LlamaForCausalLM(LlamaConfig(**SMALL)),
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**SMALL)),
    "mistral": lambda: MistralForCausalLM(MistralConfig(**SMALL)),
    "gemma3": lambda: Gemma3ForCausalLM(Gemma3TextConfig(**SMALL, head_dim=8, sliding_window=4)),
}
# (family, combine, placement, heads): every option appears, every family appears.
VARIANTS = [
    ("llama", "residual", "bottleneck", 2),
    ("llama", "gated", "bottleneck", 4),
    ("llama", "replace", "bottleneck", 1),
    ("llama", "residual", "parallel", 2),
    ("qwen2", "residual", "bottleneck", 2),
    ("mistral", "gated", "parallel", 2),
    ("gemma3", "residual", "bottleneck", 2),
]
IDS = [f"{f}-{c}-{p}-h{h}" for f, c, p, h in VARIANTS]


def tiny(family: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = FAMILIES[family]().eval()
    model.generation_config.pad_token_id = 0
    return model


def randomize(model: torch.nn.Module, seed: int = 1, zero_attention: bool = False, name: str | None = None) -> None:
    """Give adapter parameters (of adapter ``name``, default all) non-trivial values (B, gate start at 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, AttnLoraLinear) and name in (None, module.adapter_name):
                for name, param in module.named_parameters():
                    if name.startswith("attn_lora_"):
                        param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
                if zero_attention:
                    module.attn_lora_o.weight.zero_()


def with_alora(family: str, combine: str, placement: str, heads: int, **kw) -> torch.nn.Module:
    cfg = AdapterConfig(kind="alora", r=8, alpha=16, heads=heads, combine=combine, placement=placement, **kw)
    return attach_adapter(tiny(family), cfg)


@pytest.fixture
def ids() -> torch.Tensor:
    return torch.randint(1, VOCAB, (2, 12), generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("bad, field", [
    (dict(kind="alora", r=8, heads=3), "heads"),
    (dict(kind="qlora"), "kind"),
    (dict(kind="alora", r=0), "r"),
    (dict(kind="alora", combine="sum"), "combine"),
    (dict(kind="alora", placement="after_B"), "placement"),
    (dict(kind="lora", dropout=1.5), "dropout"),
    (dict(kind="lora", target_modules=[]), "target_modules"),
])
def test_config_rejects_bad_values_naming_the_field(bad: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"adapter.{field}"):
        AdapterConfig(**bad)


def test_config_from_dict_rejects_unknown_key() -> None:
    with pytest.raises(ValueError, match="unknown option 'rank'"):
        AdapterConfig.from_dict({"kind": "alora", "rank": 8})
    assert AdapterConfig.from_dict({"kind": "alora", "target_modules": ["q_proj"]}).target_modules == ("q_proj",)


@pytest.mark.parametrize("family, combine, placement, heads", VARIANTS, ids=IDS)
def test_fresh_and_disabled_adapter_is_exactly_the_base(family, combine, placement, heads, ids) -> None:
    base = tiny(family)(ids).logits
    model = with_alora(family, combine, placement, heads)
    assert torch.equal(model(ids).logits, base)  # B = 0 at init
    randomize(model)
    assert not torch.allclose(model(ids).logits, base, atol=1e-3)
    with disabled_adapter(model):
        assert torch.equal(model(ids).logits, base)
    assert not torch.allclose(model(ids).logits, base, atol=1e-3)  # re-enabled on exit


@pytest.mark.parametrize("family, combine, placement, heads", [v for v in VARIANTS if v[1] != "replace"],
                         ids=[i for v, i in zip(VARIANTS, IDS) if v[1] != "replace"])
def test_zero_attention_output_equals_peft_lora_with_same_A_B(family, combine, placement, heads, ids) -> None:
    from peft import LoraConfig, get_peft_model

    alora = with_alora(family, combine, placement, heads)
    randomize(alora, zero_attention=True)
    lora = get_peft_model(tiny(family), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    wrapped = {n: m for n, m in alora.named_modules() if isinstance(m, AttnLoraLinear)}
    copied = 0
    with torch.no_grad():
        for name, module in lora.base_model.model.named_modules():
            if name in wrapped:
                module.lora_A["default"].weight.copy_(wrapped[name].attn_lora_A.weight)
                module.lora_B["default"].weight.copy_(wrapped[name].attn_lora_B.weight)
                copied += 1
    assert copied == len(wrapped) > 0
    torch.testing.assert_close(alora(ids).logits, lora(ids).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family, combine, placement, heads", VARIANTS, ids=IDS)
def test_causal_later_tokens_never_change_earlier_outputs(family, combine, placement, heads, ids) -> None:
    model = with_alora(family, combine, placement, heads)
    randomize(model)
    t = 5
    changed = ids.clone()
    changed[:, t + 1:] = (changed[:, t + 1:] + 17) % (VOCAB - 1) + 1
    a, b = model(ids).logits, model(changed).logits
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:], atol=1e-3)


def left_padded(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = s
        mask[i, width - len(s):] = 1
    return ids, mask


@pytest.mark.parametrize("family, combine, placement, heads", VARIANTS, ids=IDS)
def test_left_padded_batch_matches_unpadded_singles(family, combine, placement, heads) -> None:
    model = with_alora(family, combine, placement, heads)
    randomize(model)
    gen = torch.Generator().manual_seed(3)
    seqs = [torch.randint(1, VOCAB, (n,), generator=gen) for n in (5, 9)]
    ids, mask = left_padded(seqs)
    ids[0, :4] = torch.randint(1, VOCAB, (4,), generator=gen)  # pad content must not matter
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    batched = model(ids, attention_mask=mask, position_ids=positions).logits
    for i, s in enumerate(seqs):
        alone = model(s[None]).logits[0]
        torch.testing.assert_close(batched[i, -len(s):], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family, combine, placement, heads", VARIANTS[:2] + VARIANTS[4:5], ids=IDS[:2] + IDS[4:5])
def test_packed_sequences_do_not_attend_across_boundaries(family, combine, placement, heads) -> None:
    """Packed rows (position_ids restart, no mask): the adapter's update per segment equals each alone."""
    model = with_alora(family, combine, placement, heads)
    randomize(model)
    gen = torch.Generator().manual_seed(4)
    a, b = torch.randint(1, VOCAB, (4,), generator=gen), torch.randint(1, VOCAB, (6,), generator=gen)
    layer = next(m for m in model.modules() if isinstance(m, AttnLoraLinear))
    x = torch.randn(1, 10, layer.in_features, generator=gen)
    captured = {}
    handle = layer.register_forward_hook(lambda m, i, o: captured.update(state=m._context.state))
    model(torch.cat([a, b])[None], position_ids=torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, 4, 5]]))
    handle.remove()
    layer._context.state = captured["state"]
    packed = layer.delta(x)
    layer._context.state = None
    torch.testing.assert_close(packed[:, :4], layer.delta(x[:, :4]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[:, 4:], layer.delta(x[:, 4:]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family, combine, placement, heads", VARIANTS, ids=IDS)
def test_cached_generation_matches_uncached(family, combine, placement, heads) -> None:
    model = with_alora(family, combine, placement, heads)
    randomize(model)
    gen = torch.Generator().manual_seed(5)
    ids, mask = left_padded([torch.randint(1, VOCAB, (n,), generator=gen) for n in (4, 7)])
    kw = dict(attention_mask=mask, max_new_tokens=8, do_sample=False, output_logits=True,
              return_dict_in_generate=True)
    cached = model.generate(ids, use_cache=True, **kw)
    again = model.generate(ids, use_cache=True, **kw)  # the adapter cache resets between calls
    plain = model.generate(ids, use_cache=False, **kw)
    assert torch.equal(cached.sequences, plain.sequences)
    assert torch.equal(cached.sequences, again.sequences)
    for c, p, a in zip(cached.logits, plain.logits, again.logits):
        torch.testing.assert_close(c, p, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(c, a, atol=0, rtol=0)


def test_cache_error_on_foreign_past_and_manual_continuation_works(ids) -> None:
    model = with_alora("llama", "residual", "bottleneck", 2)
    randomize(model)
    full = model(ids).logits
    # the cache argument under the name this transformers uses (5.24 renamed past_key_values)
    name = "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"
    first = model(ids[:, :8], use_cache=True)
    second = model(ids[:, 8:], **{name: getattr(first, name)}, use_cache=True)
    torch.testing.assert_close(second.logits, full[:, 8:], atol=1e-5, rtol=1e-5)
    other = getattr(tiny("llama")(ids[:, :8], use_cache=True), name)
    with pytest.raises(AttnLoraCacheError, match="did not see"):
        model(ids[:, 8:], **{name: other}, use_cache=True)


def test_cached_forward_reads_no_deprecated_cache_alias(ids, monkeypatch) -> None:
    """The adapter's hook reads the returned cache under its current name: a user's generate()
    must not log transformers' `past_key_values` deprecation warning because of aptune."""
    from transformers.utils import generic

    warned: list[str] = []
    monkeypatch.setattr(generic.logger, "warning_once", lambda msg, *a, **k: warned.append(msg))
    model = with_alora("llama", "residual", "bottleneck", 2)
    randomize(model)
    model.generate(ids[:, :8], use_cache=True, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert not [m for m in warned if "deprecated" in m]


@pytest.mark.parametrize("family, combine, placement, heads", VARIANTS, ids=IDS)
def test_gradients_reach_only_adapter_parameters(family, combine, placement, heads, ids) -> None:
    model = with_alora(family, combine, placement, heads)
    randomize(model)
    model.train()
    model(ids, labels=ids).loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".attn_lora_" in n for n in trainable)
    assert trainable_parameter_count(model) == sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    got = {n.rsplit(".attn_lora_", 1)[1].split(".")[0] for n, p in model.named_parameters()
           if p.grad is not None and p.grad.abs().sum() > 0}
    expected = {"A", "B", "qkv", "o"} | ({"gate"} if combine == "gated" else set()) | (
        {"A_attn"} if placement == "parallel" else set())
    assert got == expected
    assert all(p.grad is None for n, p in model.named_parameters() if ".attn_lora_" not in n)


def test_merge_is_refused_for_alora_and_works_for_lora(ids) -> None:
    model = with_alora("llama", "residual", "bottleneck", 2)
    with pytest.raises(AdapterMergeError, match="cannot be merged"):
        merge_adapter(model)
    lora = attach_adapter(tiny("qwen2"), AdapterConfig(kind="lora", r=4))
    assert adapter_kind(lora) == "lora"
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    expected = lora(ids).logits
    merged = merge_adapter(lora)
    assert adapter_kind(merged) is None
    torch.testing.assert_close(merged(ids).logits, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["lora", "alora"])
def test_unified_api_disable_save_load_roundtrip(kind, ids, tmp_path) -> None:
    base = tiny("mistral")(ids).logits
    model = attach_adapter(tiny("mistral"), AdapterConfig(kind=kind, r=4, heads=2, target_modules=["q_proj", "v_proj"]))
    assert 0 < trainable_parameter_count(model) < 20_000
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.3)
    with disabled_adapter(model):
        assert torch.equal(model(ids).logits, base)
    expected = model(ids).logits
    save_adapter(model, tmp_path / "adapter")
    loaded = load_adapter(tiny("mistral"), tmp_path / "adapter", trainable=True)
    assert adapter_kind(loaded) == kind
    assert torch.equal(loaded(ids).logits, expected)
    assert trainable_parameter_count(loaded) == trainable_parameter_count(model)


def test_lora_attach_and_load_emit_no_warning(tmp_path) -> None:
    """PEFT reads a property transformers 5 deprecates; users should not see that on every run."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = attach_adapter(tiny("llama"), AdapterConfig(kind="lora", r=4))
        save_adapter(model, tmp_path / "adapter")
        load_adapter(tiny("llama"), tmp_path / "adapter", trainable=True)


def test_stacked_alora_disables_only_the_newest_and_saves_the_stack(ids, tmp_path) -> None:
    model = with_alora("llama", "residual", "bottleneck", 2)
    randomize(model, seed=1)
    round1 = model(ids).logits
    attach_adapter(model, AdapterConfig(kind="alora", r=4, heads=1), name="round2")
    assert torch.equal(model(ids).logits, round1)  # fresh stacked adapter adds nothing
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and not any(".base_layer.attn_lora_" in n for n in trainable)  # round 1 frozen
    randomize(model, seed=2, name="round2")
    stacked = model(ids).logits
    assert not torch.allclose(stacked, round1, atol=1e-3)
    with disabled_adapter(model):
        assert torch.equal(model(ids).logits, round1)
    save_adapter(model, tmp_path / "stack")
    reloaded = load_adapter(tiny("llama"), tmp_path / "stack")
    assert torch.equal(reloaded(ids).logits, stacked)
    with disabled_adapter(reloaded):
        assert torch.equal(reloaded(ids).logits, round1)


def test_load_rejects_mismatched_model(ids, tmp_path) -> None:
    model = with_alora("llama", "residual", "bottleneck", 2)
    save_adapter(model, tmp_path / "a")
    torch.manual_seed(0)
    wider = LlamaForCausalLM(LlamaConfig(**{**SMALL, "hidden_size": 48})).eval()
    with pytest.raises(ValueError, match="has shape"):
        load_adapter(wider, tmp_path / "a")
    shallower = LlamaForCausalLM(LlamaConfig(**{**SMALL, "num_hidden_layers": 1})).eval()
    with pytest.raises(ValueError, match="does not exist"):
        load_adapter(shallower, tmp_path / "a")
    with pytest.raises(ValueError, match="no adapter found"):
        load_adapter(tiny("llama"), tmp_path)


def test_save_load_in_subprocess_is_bit_identical(ids, tmp_path) -> None:
    base = tiny("qwen2")
    base.save_pretrained(tmp_path / "base", safe_serialization=True)
    model = attach_adapter(base, AdapterConfig(kind="alora", r=8, heads=2, combine="gated"))
    randomize(model)
    save_adapter(model, tmp_path / "adapter")
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    expected = model(ids, attention_mask=mask).logits
    script = textwrap.dedent(f"""
        import torch
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM
        from aptune.adapters import load_adapter
        base = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'base')!r}, use_safetensors=True).eval()
        model = load_adapter(base, {str(tmp_path / 'adapter')!r})
        ids = torch.tensor({ids.tolist()})
        mask = torch.tensor({mask.tolist()})
        save_file({{"logits": model(ids, attention_mask=mask).logits}}, {str(tmp_path / 'out.safetensors')!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=120)
    assert torch.equal(load_file(str(tmp_path / "out.safetensors"))["logits"], expected)


def test_dropout_is_active_only_in_training(ids) -> None:
    model = with_alora("llama", "residual", "bottleneck", 2, dropout=0.5)
    randomize(model)
    assert torch.equal(model(ids).logits, model(ids).logits)
    model.train()
    assert not torch.equal(model(ids).logits, model(ids).logits)


def test_gradient_checkpointing_and_a_reference_pass_keep_gradients_exact() -> None:
    """Checkpointed recomputation reads the call's mask; a disabled (reference) pass in between
    must not replace it."""
    gen = torch.Generator().manual_seed(6)
    ids, mask = left_padded([torch.randint(1, VOCAB, (n,), generator=gen) for n in (6, 10)])
    grads = []
    for checkpointing in (False, True):
        model = with_alora("llama", "residual", "bottleneck", 2)
        randomize(model)
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        loss = model(ids, attention_mask=mask, use_cache=False).logits[mask.bool()].logsumexp(-1).mean()
        with torch.no_grad(), disabled_adapter(model):
            model(ids[:1, 2:], use_cache=False)  # another shape, as a reference pass might be
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_beam_search_with_cache_matches_uncached(family) -> None:
    """Beam search reorders the model's cache each step; the adapter's cache must follow."""
    model = with_alora(family, "residual", "bottleneck", 2)
    randomize(model)
    gen = torch.Generator().manual_seed(8)
    ids, mask = left_padded([torch.randint(1, VOCAB, (n,), generator=gen) for n in (3, 6)])
    kw = dict(attention_mask=mask, max_new_tokens=6, num_beams=3, do_sample=False,
              output_scores=True, return_dict_in_generate=True)
    cached, plain = model.generate(ids, use_cache=True, **kw), model.generate(ids, use_cache=False, **kw)
    assert torch.equal(cached.sequences, plain.sequences)
    torch.testing.assert_close(cached.sequences_scores, plain.sequences_scores, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family, combine, placement, heads", VARIANTS, ids=IDS)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])  # boolean 4-D mask, additive float 4-D mask
def test_packed_choice_scoring_equals_one_row_per_choice(family, combine, placement, heads, attn) -> None:
    """The scorer packs a prompt and all its choices into one row with a 4-D mask (each choice sees
    the prompt and itself). The rank-space attention must follow that mask, so packed scores equal
    scoring each (prompt, choice) as its own row — the definition."""
    from aptune.data.example import Example
    from aptune.evaluate.scoring import score_choices
    from aptune.prompts import PromptFormat
    from tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    model = with_alora(family, combine, placement, heads)
    model.config._attn_implementation = attn
    model.resize_token_embeddings(len(tok))
    randomize(model)
    items = [Example("q1", "t", "d", "what is the sun?", ("a star", "a planet", "water"), 0),
             Example("q2", "t", "d", "which is red?", ("fire", "the moon is not red", "sky", "tree"), 2),
             Example("q3", "t", "d", "the cat and the dog", (" ran", " sat down"), 1, style="completion")]
    fmt = PromptFormat(template="chat")
    packed = score_choices(model, tok, items, fmt, packed=True, progress=False)
    alone = score_choices(model, tok, items, fmt, packed=False, progress=False)
    for p, a in zip(packed, alone):
        assert p.logprobs == pytest.approx(a.logprobs, abs=1e-4)
