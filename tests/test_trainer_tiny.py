"""Tiny in-file model and tokenizer shared by the trainer tests (and checks of the tokenizer itself).

The tokenizer is character-level with a ChatML-like template, so chat prompts, the
end-of-turn token and plain prompts can all be exercised without downloading anything.
"""

from __future__ import annotations

import string

import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIALS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer(chat: bool = True) -> PreTrainedTokenizerFast:
    """Character-level tokenizer: 3 special tokens + printable ASCII (98 ids < 128)."""
    chars = [c for c in string.printable if c not in "\x0b\x0c\r"]
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    backend.add_special_tokens(SPECIALS)
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|pad|>")
    tok.padding_side = "left"
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    return LlamaForCausalLM(cfg).eval()


def tiny_lora(seed: int = 0, random_b: bool = False, dropout: float = 0.0):
    """Tiny Llama with a LoRA on all linear layers; ``random_b`` makes the adapter non-trivial."""
    model = get_peft_model(
        tiny_model(seed),
        LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear"),
    )
    if random_b:
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 1.0)
    return model


def chat_prompt(tok: PreTrainedTokenizerFast, question: str) -> str:
    return tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)


def test_tiny_tokenizer_round_trips_and_fits_the_model() -> None:
    tok = tiny_tokenizer()
    ids = tok("Hi there?", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "Hi there?" and max(ids) < 128
    prompt = chat_prompt(tok, "Q")
    assert prompt.endswith("<|im_start|>assistant\n")
    assert tok.convert_tokens_to_ids("<|im_end|>") == 2
