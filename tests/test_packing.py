"""Packed preference batches (chosen and rejected behind one prompt) give the numbers of
separate rows: log-probs, counts and gradients, for LoRA and ALoRA, sdpa and eager; and the
trainer packs only where that is exact (flash attention and sliding windows fall back)."""

from __future__ import annotations

import pytest
import torch
from test_alora import randomize
from test_trainer_tiny import chat_prompt, tiny_lora, tiny_model, tiny_tokenizer

from aptune.adapters import AdapterConfig, attach_adapter
from aptune.modeling import innermost
from aptune.packing import model_mask, packing_is_exact
from aptune.train.batching import collate_packed_pairs, collate_pairs, pair_collator
from aptune.train.logprobs import response_logps
from aptune.train.pairs import PreferencePair, TokenizedPair, tokenize_pairs

TOL = 1e-5


def _tokenized(tok) -> list[TokenizedPair]:  # noqa: ANN001
    """Prompts and both sides of different lengths, so every padding case occurs."""
    pairs = [
        PreferencePair("a", chat_prompt(tok, "What gas do plants absorb?"), "Carbon dioxide", "O2"),
        PreferencePair("b", chat_prompt(tok, "Boil?"), "100", "ninety degrees"),
        PreferencePair("c", "Question: Which planet is largest?\nAnswer:", " Jupiter", " Mars, the red planet"),
        PreferencePair("d", "Q: 2+2?\nA:", " 4", " 5"),
    ]
    return tokenize_pairs(tok, pairs, max_length=256)


def _grads(model) -> dict[str, torch.Tensor]:  # noqa: ANN001
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _compare_layouts(model, pairs: list[TokenizedPair], pad_id: int) -> None:  # noqa: ANN001
    """Packed and separate rows: same sums, counts and adapter gradients."""
    results = []
    for collate in (collate_pairs, collate_packed_pairs):
        model.zero_grad(set_to_none=True)
        batch = collate(pairs, pad_id)
        logps, counts = response_logps(model, batch)
        # a loss that weighs the two sides differently, so a swapped side would show in the grads
        (logps[: len(pairs)].sum() - 0.3 * logps[len(pairs) :].sum()).backward()
        results.append((logps.detach(), counts, _grads(model)))
    (sep, sep_n, sep_g), (packed, packed_n, packed_g) = results
    assert packed.shape == sep.shape == (2 * len(pairs),)
    torch.testing.assert_close(packed, sep, atol=TOL, rtol=TOL)
    assert packed_n.tolist() == sep_n.tolist()
    assert sep_g and sep_g.keys() == packed_g.keys()
    for name in sep_g:
        torch.testing.assert_close(packed_g[name], sep_g[name], atol=TOL, rtol=1e-4, msg=name)


def test_packed_row_layout_shares_the_prompt_and_hides_chosen_from_rejected() -> None:
    tok = tiny_tokenizer()
    pairs = _tokenized(tok)
    batch = collate_packed_pairs(pairs, tok.pad_token_id)
    assert batch.packed and batch.input_ids.shape[0] == len(pairs) and batch.n_sequences == 2 * len(pairs)
    p = pairs[3]
    n_p, n_c, n_r = len(p.prompt_ids), len(p.chosen_ids), len(p.rejected_ids)
    total = batch.input_ids.shape[1]
    mask = batch.attention_mask[3, 0]
    first_rejected = total - n_r
    assert batch.input_ids[3, -n_r:].tolist() == list(p.rejected_ids)
    assert not mask[first_rejected, first_rejected - n_c : first_rejected].any()  # chosen hidden
    assert mask[first_rejected, first_rejected - n_c - n_p : first_rejected - n_c].all()  # prompt seen
    assert batch.position_ids[3, first_rejected].item() == n_p  # restarts where the prompt ends
    assert mask.any(dim=1).all()  # no empty mask row (padding sees itself)
    # the same tokens as separate rows; the shared prompt counted once per side, as there
    assert batch.n_tokens == collate_pairs(pairs, tok.pad_token_id).n_tokens


def test_packed_lora_matches_separate_rows_and_trl_path() -> None:
    tok = tiny_tokenizer()
    model = tiny_lora(0, random_b=True)
    _compare_layouts(model, _tokenized(tok), tok.pad_token_id)


def test_packed_eager_attention_matches_separate_rows() -> None:
    tok = tiny_tokenizer()
    model = tiny_lora(0, random_b=True)
    innermost(model).config._attn_implementation = "eager"
    assert model_mask(torch.ones(1, 1, 2, 2, dtype=torch.bool), innermost(model).config).dtype == torch.float32
    _compare_layouts(model, _tokenized(tok), tok.pad_token_id)


@pytest.mark.parametrize("combine,placement", [("residual", "bottleneck"), ("gated", "parallel")])
def test_packed_alora_matches_separate_rows(combine: str, placement: str) -> None:
    tok = tiny_tokenizer()
    pairs = _tokenized(tok)
    model = attach_adapter(tiny_model(0), AdapterConfig(kind="alora", r=8, alpha=16, heads=2,
                                                         combine=combine, placement=placement))
    randomize(model)  # attention path, B and gate away from their zero start
    _compare_layouts(model, pairs, tok.pad_token_id)


def test_trainer_packs_only_where_exact() -> None:
    tok = tiny_tokenizer()
    pairs = _tokenized(tok)
    longest = max(p.length for p in pairs)
    model = tiny_model(0)
    assert packing_is_exact(model, longest) and pair_collator(model, 0)(pairs).packed

    model.config._attn_implementation = "flash_attention_2"  # takes padding only, not a 4-D mask
    assert not packing_is_exact(model, longest) and not pair_collator(model, 0)(pairs).packed

    model.config._attn_implementation = "sdpa"
    model.config.sliding_window = longest - 1  # a pair would reach past the window
    assert not pair_collator(model, 0)(pairs).packed
    model.config.sliding_window = longest
    assert pair_collator(model, 0)(pairs).packed


def test_training_packed_equals_training_on_separate_rows(tmp_path) -> None:  # noqa: ANN001
    """The whole trainer (reference pass, DPO + NLL steps): same losses and adapter either way."""
    from aptune.train import TrainConfig, train_preference

    tok = tiny_tokenizer()
    pairs = [
        PreferencePair(f"p{i}", chat_prompt(tok, f"What is {i} plus {i}?" + " Think." * (i % 3)), f"{2 * i}", f"{2 * i + 1}")
        for i in range(8)
    ]
    runs = []
    for packed in (False, True):
        cfg = TrainConfig(precision="fp32", progress=False, lr=1e-2, epochs=2, batch_size=4, save_adapter=False,
                          packed=packed)
        model = tiny_lora(0)
        result = train_preference(model, tok, pairs, cfg, tmp_path / str(packed))
        lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
        runs.append((result, lora))
    (sep, sep_w), (packed, packed_w) = runs
    assert packed.steps == sep.steps == 4 and packed.tokens == sep.tokens
    assert packed.final_loss == pytest.approx(sep.final_loss, abs=1e-5)
    assert max(w.abs().max().item() for n, w in sep_w.items() if "lora_B" in n) > 1e-3  # B left zero: it trained
    # Adam divides each element's gradient by its own running scale, so an element whose gradient
    # is at rounding level can move by a small part of lr when packing changes the summation
    # order (seen on an AMD EPYC: 1 of 128 elements off by 2e-5 at lr 1e-2, the rest within 1e-7);
    # each element is allowed 1% of lr, and every matrix as a whole must agree to 1e-4
    for name in sep_w:
        torch.testing.assert_close(packed_w[name], sep_w[name], atol=1e-2 * cfg.lr, rtol=1e-4, msg=name)
        assert (packed_w[name] - sep_w[name]).norm() <= 1e-4 * sep_w[name].norm(), name
