"""Taggers for tag-based retrieval: what each pool item is about, as a few short tags.

- ``metadata``: a field the data already carries — an item field (``task``, ``domain``) or a
  ``meta`` key (MedMCQA's subject, a data file's column kept in meta, the GCI group). Pooled
  multi-task pools get one tag per task by default (``tag_field: task``: MMLU's subjects).
- ``keyword``: ``{tag: [words]}``; an item carries every tag one of whose words occurs in its
  question or passage (whole words, case-insensitive).
- ``llm``: a local causal LM names the intent of each item in an InsTag-style prompt (its own
  wording here): "up to three short topic tags, comma-separated"; the tags are normalised
  (lower case, trimmed, at most three) and cached in the run folder under a hash of the items
  and the model, so later rounds do not ask again.

An item without any tag gets ``(untagged)``, a tag like any other: nothing silently drops out.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from aptune.data.example import Example
from aptune.io import write_json_atomic

UNTAGGED = "(untagged)"
TAGGERS: tuple[str, ...] = ("metadata", "keyword", "llm")
LLM_PROMPT = ("Name what the following question is about in up to three short topic tags (one to three words "
              "each), comma-separated, nothing else.\n\nQuestion: {question}\nTags:")


def metadata_tags(items: Sequence[Example], field: str = "task") -> list[list[str]]:
    """One tag per item: the item's ``field`` (an Example attribute or a ``meta`` key)."""
    out = []
    for ex in items:
        value = getattr(ex, field, None) if field in ("task", "domain", "style") else ex.meta.get(field)
        out.append([str(value)] if value not in (None, "") else [UNTAGGED])
    return out


def keyword_tags(items: Sequence[Example], keywords: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Every tag whose words occur in an item's text (whole words, any case)."""
    if not keywords:
        raise ValueError("retrieval.keywords: the keyword tagger needs {tag: [words]}")
    patterns = {tag: re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
                for tag, words in keywords.items() if words}
    out = []
    for ex in items:
        text = f"{ex.context or ''} {ex.question}"
        found = [tag for tag, pattern in patterns.items() if pattern.search(text)]
        out.append(found or [UNTAGGED])
    return out


def parse_llm_tags(text: str) -> list[str]:
    """A model's reply → up to three normalised tags (empty when it named none)."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    tags = [re.sub(r"[^\w\s-]", "", t).strip().lower() for t in first.split(",")]
    return [t for t in dict.fromkeys(tags) if t and len(t.split()) <= 3][:3]


def llm_tags(items: Sequence[Example], generate: Callable[[list[str]], list[str]], cache: Path | None,
             model_name: str) -> list[list[str]]:
    """Tags named by a model (``generate``: prompts → replies), cached under ``cache``."""
    key = hashlib.sha256(json.dumps([model_name, LLM_PROMPT, [ex.question for ex in items]]).encode()).hexdigest()[:16]
    path = cache / f"tags-{key}.json" if cache is not None else None
    if path is not None and path.exists():
        return json.loads(path.read_text())
    replies = generate([LLM_PROMPT.format(question=ex.question) for ex in items])
    tags = [parse_llm_tags(reply) or [UNTAGGED] for reply in replies]
    if path is not None:
        write_json_atomic(path, tags)
    return tags
