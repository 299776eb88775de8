"""Tiny random causal LMs and a tokenizer built in-process, for fast unit tests."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast, Qwen2Config
from tokenizers import Tokenizer, models, pre_tokenizers

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer(chat: bool = True) -> PreTrainedTokenizerFast:
    """A character-level byte-BPE tokenizer (no merges) with ChatML specials; no downloads."""
    words = (
        "the a of to is what which answer question : ? . , yes no red blue green sun moon water "
        "fire cat dog tree 1 2 3 4 5 6 7 8 9 0 A B C D continue text planet star"
    ).split()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for w in words + [f"Ġ{w}" for w in words] + ["\n", "Ġ", "Question", "Answer", "user", "assistant", "system", "ĊĊ", "Ċ"]:
        vocab.setdefault(w, len(vocab))
    for ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:?.,!'\"-":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault("Ġ" + ch, len(vocab))
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from tokenizers import decoders

    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tok.padding_side = "left"
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_model(family: str = "llama", vocab_size: int = 256, seed: int = 0) -> torch.nn.Module:
    """A 2-layer random causal LM of the given family, in eval mode."""
    torch.manual_seed(seed)
    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    config = {"llama": LlamaConfig, "qwen2": Qwen2Config}[family](**common)
    model = AutoModelForCausalLM.from_config(config)
    return model.eval()


def save_tiny(folder, family: str = "llama", seed: int = 0) -> str:
    """Save a tiny random model + tokenizer as a local model folder (safetensors)."""
    model = tiny_model(family, seed=seed)
    model.save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer().save_pretrained(folder)
    return str(folder)


WORDS = "red blue green sun moon water fire cat dog tree planet star".split()


def tiny_mc_rows(n: int, seed: int = 0, split: str | None = None) -> list[dict]:
    """Multiple-choice rows over the tiny vocabulary (for user-file tests)."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        choices = rng.sample(WORDS, 3)
        row = {"id": f"item-{i}", "question": f"what is the {rng.choice(WORDS)} {rng.choice(WORDS)}?",
               "choices": choices, "gold": rng.randrange(3)}
        if split:
            row["split"] = split
        rows.append(row)
    return rows


def save_tiny_encoder(folder) -> str:
    """Save a tiny random sentence-transformers encoder (BERT, mean pooling) as a local folder:
    retrieval on a machine without the offline MiniLM asset (the GPU check)."""
    from pathlib import Path

    from sentence_transformers import SentenceTransformer, models as st_models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    raw = folder / "bert"
    raw.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789?.,:", *WORDS]
    (raw / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(raw / "vocab.txt")).save_pretrained(raw)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(raw)
    word = st_models.Transformer(str(raw), max_seq_length=64)
    dim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    encoder = SentenceTransformer(modules=[word, st_models.Pooling(dim())])
    encoder.save(str(folder / "encoder"))
    return str(folder / "encoder")
