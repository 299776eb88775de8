"""Batched greedy generation equals one-prompt-at-a-time generation (left padding is right)."""

from __future__ import annotations

import torch

from aptune.evaluate.generation import generate_greedy

PROMPTS = ["what is the sun?", "the cat", "1 2 3 4 5 6 7 8 9 0 1 2 3", "red blue green and"]


def test_batched_equals_single(model, tokenizer):
    batched = generate_greedy(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=4, progress=False)
    single = [
        generate_greedy(model, tokenizer, [p], max_new_tokens=8, batch_size=1, progress=False)[0]
        for p in PROMPTS
    ]
    assert batched == single
    assert len(batched) == len(PROMPTS)


def test_cached_equals_manual_uncached_greedy(model, tokenizer):
    prompt = PROMPTS[0]
    out = generate_greedy(model, tokenizer, [prompt], max_new_tokens=6, progress=False)[0]
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        for _ in range(6):
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if nxt == tokenizer.eos_token_id:
                break
            ids.append(nxt)
    manual = tokenizer.decode(ids[len(tokenizer(prompt, add_special_tokens=False)["input_ids"]):], skip_special_tokens=True).strip()
    assert out == manual


def test_long_prompt_is_cut_from_the_left(model, tokenizer, caplog):
    long_prompt = "the cat " * 40
    out = generate_greedy(model, tokenizer, [long_prompt], max_new_tokens=2, max_prompt_tokens=16, progress=False)
    assert len(out) == 1
    assert "keeping the last 16" in caplog.text


def test_generation_stops_at_the_templates_own_end_of_turn(model, tokenizer):
    """The stop token is read off the chat template (the token training appends), not from a
    list of known names: a template closing turns with an unlisted token still stops there."""
    from aptune.evaluate.generation import _stop_token_ids
    from aptune.prompts import end_of_turn_id

    tokenizer.add_special_tokens({"additional_special_tokens": ["<|turn_done|>"]})
    done = tokenizer.convert_tokens_to_ids("<|turn_done|>")
    tokenizer.chat_template = tokenizer.chat_template.replace("<|im_end|>", "<|turn_done|>")
    assert end_of_turn_id(tokenizer) == done
    assert set(_stop_token_ids(tokenizer)) == {tokenizer.eos_token_id, done}
    model.resize_token_embeddings(len(tokenizer))
    ids = torch.tensor([tokenizer(PROMPTS[0], add_special_tokens=False)["input_ids"]])
    with torch.no_grad():  # make the new token the model's first greedy choice after this prompt
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1]
        model.get_output_embeddings().weight[done] = hidden * (100.0 / hidden.norm() ** 2)
        assert int(model(input_ids=ids).logits[0, -1].argmax()) == done
    steps = []
    handle = model.register_forward_hook(lambda *_: steps.append(1))
    out = generate_greedy(model, tokenizer, PROMPTS[:1], max_new_tokens=6, progress=False)
    handle.remove()
    assert out == [""] and len(steps) == 1  # the first token closes the turn: one step, no text
